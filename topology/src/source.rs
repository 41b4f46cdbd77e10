//! Where things are in a pipeline file: dotted key paths, byte spans and
//! `line:column` positions, and the translation of parser and
//! deserializer errors into [`TopologyError`]s that point at them.

use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::duration;
use crate::error::{Location, TopologyError};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A dotted key path such as `stages.render.steps[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// `self` followed by the table key `key`.
    pub(crate) fn key(&self, key: &str) -> KeyPath {
        self.with(Segment::Key(key.to_owned()))
    }

    /// `self` followed by the array index `index`.
    pub(crate) fn index(&self, index: usize) -> KeyPath {
        self.with(Segment::Index(index))
    }

    fn with(&self, segment: Segment) -> KeyPath {
        let mut segments = self.0.clone();
        segments.push(segment);
        KeyPath(segments)
    }
}

/// Builds a [`KeyPath`] from table keys: `key_path!["stages", name, "next"]`.
macro_rules! key_path {
    ($($key:expr),* $(,)?) => {
        $crate::source::KeyPath::default()$(.key($key))*
    };
}
pub(crate) use key_path;

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Byte offsets to `line:column` for one text.
struct LineIndex<'i> {
    origin: &'i str,
    text: &'i str,
    line_starts: Vec<usize>,
}

impl<'i> LineIndex<'i> {
    fn new(text: &'i str, origin: &'i str) -> Self {
        let line_starts =
            std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        LineIndex { origin, text, line_starts }
    }

    fn location(&self, offset: usize) -> Location {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset).max(1);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        Location { origin: self.origin.to_owned(), line, column }
    }
}

/// A parsed pipeline file that can say where any key path is.
pub(crate) struct Source<'i> {
    lines: LineIndex<'i>,
    root: Spanned<DeTable<'i>>,
}

/// An entry of the document found by its span.
struct Hit<'a, 'i> {
    path: KeyPath,
    on_key: bool,
    value: &'a DeValue<'i>,
}

impl<'i> Source<'i> {
    /// Parses `text` as TOML; every syntax error becomes a [`TopologyError::Syntax`].
    pub(crate) fn parse(text: &'i str, origin: &'i str) -> Result<Self, Vec<TopologyError>> {
        let lines = LineIndex::new(text, origin);
        let (root, errors) = DeTable::parse_recoverable(text);
        if errors.is_empty() {
            return Ok(Source { lines, root });
        }
        Err(errors
            .iter()
            .map(|error| TopologyError::Syntax {
                at: lines.location(error.span().map_or(0, |span| span.start)),
                message: error.message().to_owned(),
            })
            .collect())
    }

    /// The document, for deserializing.
    pub(crate) fn document(&self) -> toml::de::Deserializer<'i> {
        toml::de::Deserializer::from(self.root.clone())
    }

    /// The location of `path`'s value, or of its deepest ancestor present in
    /// the file when the key itself is absent (a default).
    pub(crate) fn at(&self, path: &KeyPath) -> Location {
        let mut span = self.root.span();
        let mut segments = path.0.iter();
        let mut found =
            segments.next().and_then(|segment| table_child(self.root.get_ref(), segment));
        while let Some(value) = found {
            span = value.span();
            found = segments.next().and_then(|segment| child(value.get_ref(), segment));
        }
        self.lines.location(span.start)
    }

    /// The keys of the top-level table `name`, each with where it is, and
    /// where the table is; `None` when the file has no such table.
    pub(crate) fn top_level_table(
        &self,
        name: &str,
    ) -> Option<(Location, Vec<(String, Location)>)> {
        let (key, value) = self.root.get_ref().iter().find(|(key, _)| key.get_ref() == name)?;
        let keys = match value.get_ref() {
            DeValue::Table(table) => table
                .iter()
                .map(|(k, _)| (k.get_ref().to_string(), self.lines.location(k.span().start)))
                .collect(),
            _ => Vec::new(),
        };
        Some((self.lines.location(key.span().start), keys))
    }

    /// Turns a deserialization error into the [`TopologyError`] it means,
    /// located at the key or value it is about.
    pub(crate) fn deserialize_error(&self, error: &toml::de::Error) -> TopologyError {
        let message = error.message();
        let span = error.span().unwrap_or(0..0);
        let at = self.lines.location(span.start);
        let hit = find(self.root.get_ref(), &span, &KeyPath::default());
        let table = hit.as_ref().map_or_else(KeyPath::default, |hit| hit.path.clone());
        if let Some(field) =
            message.strip_prefix("missing field `").and_then(|rest| rest.strip_suffix('`'))
        {
            return TopologyError::MissingKey { at, key: table.key(field).to_string() };
        }
        let Some(hit) = hit else {
            return TopologyError::InvalidValue {
                at,
                key: table.to_string(),
                reason: message.to_owned(),
            };
        };
        let key = hit.path.to_string();
        if hit.on_key && message.starts_with("unknown field") {
            let expected = message.split_once(", ").map_or("", |(_, rest)| rest).to_owned();
            return TopologyError::UnknownKey { at, key, expected };
        }
        let bad_duration = |value: &'_ DeValue<'i>| {
            value
                .as_str()
                .filter(|text| message == duration::error_message(text))
                .map(str::to_owned)
        };
        if let Some(value) = bad_duration(hit.value) {
            return TopologyError::BadDuration { at, key, value };
        }
        // a list of durations: the deserializer points at the list, not the item
        let items = hit.value.as_array().map_or(&[][..], |array| &array[..]);
        if let Some((i, item, value)) = items
            .iter()
            .enumerate()
            .find_map(|(i, item)| Some((i, item, bad_duration(item.get_ref())?)))
        {
            let at = self.lines.location(item.span().start);
            return TopologyError::BadDuration { at, key: hit.path.index(i).to_string(), value };
        }
        TopologyError::InvalidValue { at, key, reason: message.to_owned() }
    }
}

fn table_child<'a, 'i>(
    table: &'a DeTable<'i>,
    segment: &Segment,
) -> Option<&'a Spanned<DeValue<'i>>> {
    match segment {
        Segment::Key(key) => table.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v),
        Segment::Index(_) => None,
    }
}

fn child<'a, 'i>(value: &'a DeValue<'i>, segment: &Segment) -> Option<&'a Spanned<DeValue<'i>>> {
    match (value, segment) {
        (DeValue::Table(table), _) => table_child(table, segment),
        (DeValue::Array(array), Segment::Index(index)) => array.get(*index),
        _ => None,
    }
}

/// The entry whose key or value has exactly `span`, searched depth first.
fn find<'a, 'i>(
    table: &'a DeTable<'i>,
    span: &Range<usize>,
    path: &KeyPath,
) -> Option<Hit<'a, 'i>> {
    table.iter().find_map(|(key, value)| {
        let path = path.key(key.get_ref());
        if key.span() == *span || value.span() == *span {
            return Some(Hit { path, on_key: key.span() == *span, value: value.get_ref() });
        }
        find_in_value(value.get_ref(), span, &path)
    })
}

fn find_in_value<'a, 'i>(
    value: &'a DeValue<'i>,
    span: &Range<usize>,
    path: &KeyPath,
) -> Option<Hit<'a, 'i>> {
    match value {
        DeValue::Table(table) => find(table, span, path),
        DeValue::Array(array) => array.iter().enumerate().find_map(|(index, item)| {
            let path = path.index(index);
            if item.span() == *span {
                return Some(Hit { path, on_key: false, value: item.get_ref() });
            }
            find_in_value(item.get_ref(), span, &path)
        }),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn locates_keys_values_and_array_items() {
        let text = "top = 1\n[stages.ocr]\nsteps = [\"a\", \"bé\", \"c\"]\n";
        let source = Source::parse(text, "p.toml").unwrap();
        let at = |path: &KeyPath| {
            let at = source.at(path);
            (at.line, at.column)
        };
        assert_eq!(at(&key_path!["top"]), (1, 7));
        assert_eq!(at(&key_path!["stages", "ocr"]), (2, 1));
        assert_eq!(at(&key_path!["stages", "ocr", "steps"].index(2)), (3, 21));
        // absent keys fall back to their deepest present ancestor
        assert_eq!(at(&key_path!["stages", "ocr", "steps"].index(9)), (3, 9));
        assert_eq!(at(&key_path!["stages", "render", "next"]), (2, 2));
        assert_eq!(source.at(&key_path!["nothing"]).to_string(), "p.toml:1:1");
    }

    #[test]
    fn key_paths_display_dotted_with_indices() {
        assert_eq!(
            key_path!["stages", "render", "steps"].index(1).to_string(),
            "stages.render.steps[1]"
        );
    }
}
