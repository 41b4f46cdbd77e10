//! Rule steps: steps a deployment configures in its topology, without
//! recompiling, from the kinds here. A rule step is a `[steps.<name>]` table
//! with `kind = "<kind>"` and that kind's settings; a page stage lists it
//! among its steps by `<name>`, and runs it like a built-in step (timed,
//! its errors and panics recorded as the page's failure).
//!
//! - [`extract`]: fields found by a regular expression or a word list,
//!   normalised, optionally checked by a checksum (IBAN, VAT id, Luhn);
//! - [`lookup`]: a field's value mapped through a table file to a new field;
//! - [`flag`]: a condition on the page (its text, fields, class) that adds a
//!   diagnostic and/or sets the page's class.

pub mod extract;
pub mod flag;
pub mod lookup;

use regex::{Regex, RegexBuilder};
use schemas::DiagnosticLevel;
use serde::{Deserialize, Serialize};
use topology::catalogue::SettingsProblem;

use crate::steps::enrich::fields::{is_valid_iban, is_valid_luhn, is_valid_vat_id};

/// Largest compiled regular expression a rule may have (the `regex`
/// crate's size limit), so that a topology cannot make workers build
/// automata of gigabytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles the regular expression of setting `key`.
fn compile(key: &str, pattern: &str) -> Result<Regex, SettingsProblem> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| SettingsProblem::at(key, format!("not a valid regular expression: {e}")))
}

/// A field or step name: a-z, 0-9, `_`, `-`.
fn check_name(key: &str, name: &str) -> Result<(), SettingsProblem> {
    let is_name_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    if !name.is_empty() && name.chars().all(is_name_char) {
        Ok(())
    } else {
        Err(SettingsProblem::at(key, format!("`{name}` is not a name (a-z, 0-9, '_', '-')")))
    }
}

/// One normalisation of a found value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// Leading and trailing white space removed.
    Trim,
    /// Upper case.
    Uppercase,
    /// Lower case.
    Lowercase,
    /// Every white space character removed.
    RemoveSpaces,
    /// Only the decimal digits kept.
    DigitsOnly,
    /// Only letters and digits kept.
    AlphanumericOnly,
}

impl Normalize {
    fn apply(self, value: &str) -> String {
        match self {
            Normalize::Trim => value.trim().to_owned(),
            Normalize::Uppercase => value.to_uppercase(),
            Normalize::Lowercase => value.to_lowercase(),
            Normalize::RemoveSpaces => value.chars().filter(|c| !c.is_whitespace()).collect(),
            Normalize::DigitsOnly => value.chars().filter(char::is_ascii_digit).collect(),
            Normalize::AlphanumericOnly => value.chars().filter(|c| c.is_alphanumeric()).collect(),
        }
    }
}

/// `value` after each of `steps` in order.
fn normalize(value: &str, steps: &[Normalize]) -> String {
    steps.iter().fold(value.to_owned(), |value, step| step.apply(&value))
}

/// A checksum a found value must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Validator {
    /// An IBAN: country, length and MOD 97-10 checksum.
    Iban,
    /// A European VAT id of a known format, with its checksum where known.
    VatId,
    /// The Luhn check over the value's digits.
    Luhn,
}

impl Validator {
    fn accepts(self, value: &str) -> bool {
        match self {
            Validator::Iban => is_valid_iban(value),
            Validator::VatId => is_valid_vat_id(value),
            Validator::Luhn => is_valid_luhn(value),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Validator::Iban => "IBAN",
            Validator::VatId => "VAT id",
            Validator::Luhn => "Luhn",
        }
    }
}

/// A diagnostic's level, as a rule names it (strictly: a typo is an error,
/// not the most severe level as on the wire).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// For the record.
    Info,
    /// Worth a look.
    #[default]
    Warning,
    /// Something is wrong with the page.
    Error,
}

impl From<Level> for DiagnosticLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Info => DiagnosticLevel::Info,
            Level::Warning => DiagnosticLevel::Warning,
            Level::Error => DiagnosticLevel::Error,
        }
    }
}

/// A page result holding `lines` (OCR lines of confidence 0.9, 10 pixels
/// a character, one below the other), for the rules' tests.
#[cfg(test)]
pub(crate) fn page_of_lines(lines: &[&str]) -> schemas::PageResult {
    use schemas::{BBox, Line, TextSource};
    let line = |(i, text): (usize, &&str)| Line {
        text: (*text).to_owned(),
        bbox: BBox {
            x0: 0.0,
            y0: 30.0 * i as f32,
            x1: 10.0 * text.len() as f32,
            y1: 30.0 * i as f32 + 20.0,
        },
        quad: None,
        confidence: 0.9,
        source: TextSource::Ocr,
        region: None,
        words: Vec::new(),
    };
    schemas::PageResult {
        lines: lines.iter().enumerate().map(line).collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisations_apply_in_order() {
        let steps = [Normalize::Trim, Normalize::RemoveSpaces, Normalize::Uppercase];
        assert_eq!(normalize("  de89 3704 0044 ", &steps), "DE8937040044");
        assert_eq!(normalize("Nr. 12-34/5", &[Normalize::DigitsOnly]), "12345");
        assert_eq!(normalize("A-1 b", &[Normalize::AlphanumericOnly]), "A1b");
    }

    #[test]
    fn validators_check_their_checksums() {
        assert!(Validator::Iban.accepts("DE89 3704 0044 0532 0130 00"));
        assert!(!Validator::Iban.accepts("DE89 3704 0044 0532 0130 01"));
        assert!(!Validator::Iban.accepts("DE89 3704"));
        assert!(Validator::VatId.accepts("DE136695976"));
        assert!(!Validator::VatId.accepts("DE136695977"));
        assert!(Validator::Luhn.accepts("4111 1111 1111 1111"));
        assert!(!Validator::Luhn.accepts("4111 1111 1111 1112"));
    }

    #[test]
    fn oversized_and_broken_patterns_are_refused() {
        assert!(compile("pattern", r"\d{1,3}").is_ok());
        assert!(compile("pattern", r"(unclosed").is_err());
        let huge = compile("pattern", r"\w{1000}\w{1000}\w{1000}").unwrap_err();
        assert_eq!(huge.key.as_deref(), Some("pattern"));
    }
}
