//! Durations as written in pipeline files: `500ms`, `30s`, `5m`, `24h`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses `<digits><unit>` with unit `ms`, `s`, `m` or `h`; `None` when the
/// text is anything else or the value does not fit.
pub fn parse(text: &str) -> Option<Duration> {
    let digits_end = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(millis_per_unit).map(Duration::from_millis)
}

/// The deserialization error for a bad duration; the loader recognises it
/// by this exact text and reports it as [`crate::TopologyError::BadDuration`].
pub(crate) fn error_message(text: &str) -> String {
    format!("bad duration `{text}`: expected a number followed by ms, s, m or h")
}

/// A duration read from its text form.
struct Text(Duration);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map(Text).ok_or_else(|| serde::de::Error::custom(error_message(&text)))
    }
}

/// `deserialize_with` for a `Duration` field.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    Text::deserialize(deserializer).map(|text| text.0)
}

/// `deserialize_with` for a `Vec<Duration>` field.
pub(crate) fn deserialize_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Duration>, D::Error> {
    Vec::<Text>::deserialize(deserializer).map(|list| list.into_iter().map(|text| text.0).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse("0s"), Some(Duration::ZERO));
    }

    #[test]
    fn rejects_anything_else() {
        for text in ["", "30", "s", "3x", "1.5s", "-1s", " 1s", "1s ", "1 s", "1d", "1sm", "1S"] {
            assert_eq!(parse(text), None, "{text:?}");
        }
        assert_eq!(parse("18446744073709551615h"), None);
        assert_eq!(parse("99999999999999999999s"), None);
    }
}
