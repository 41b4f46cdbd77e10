//! Rule kind `extract`: fields found in each line by a regular expression
//! or a word list, normalised, and checked by a checksum when one is named.
//!
//! ```toml
//! [steps.order_number]
//! kind = "extract"
//! pattern = '(?i)order\s*(?:no\.?|#)\s*(?P<value>[A-Z0-9-]{4,20})'
//! normalize = ["uppercase"]
//! ```

use regex::Regex;
use schemas::{DiagnosticLevel, Field, FieldKind, PageResult};
use serde::{Deserialize, Serialize};
use topology::catalogue::{RuleKindInfo, SettingsProblem};

use super::{Normalize, Validator, check_name, compile, normalize};
use crate::error::StepError;
use crate::page::{Page, StepMeter};
use crate::steps::enrich::diagnostic;
use crate::steps::enrich::fields::span_bbox;
use crate::steps::{
    RuleKindDef, Step, StepSettings, check_settings, fraction, settings_error, settings_of,
};

/// Rule kind `extract`.
pub const KIND: RuleKindDef = RuleKindDef {
    info: RuleKindInfo {
        name: "extract",
        settings: check_settings::<Config>,
        summary: "fields found by `pattern` (a regular expression) or `words` (a word list), \
                  normalised, optionally checked by a checksum",
    },
    build: |name, _, settings| {
        let extract = Extract::new(name, settings_of(name, settings)?);
        Ok(Box::new(extract.map_err(|problem| settings_error(name, problem))?))
    },
};

/// Settings of an `extract` rule step.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The name of the fields found; the step's name when absent.
    pub field: Option<String>,
    /// A regular expression matched in each line; its group `value`, if it
    /// has one, is the field's value, else the whole match.
    pub pattern: Option<String>,
    /// Words or phrases to find instead of a pattern: whole words, any case.
    pub words: Vec<String>,
    /// Applied to the value, in order, to give the field's normalized form.
    pub normalize: Vec<Normalize>,
    /// A checksum the normalized value must pass; a value that fails is no
    /// field but a warning diagnostic.
    pub validator: Option<Validator>,
    /// How sure a match is (0 to 1); the field's confidence is this times
    /// its line's.
    pub certainty: f32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            field: None,
            pattern: None,
            words: Vec::new(),
            normalize: Vec::new(),
            validator: None,
            certainty: 1.0,
        }
    }
}

impl StepSettings for Config {
    fn check(&self) -> Result<(), SettingsProblem> {
        if let Some(field) = &self.field {
            check_name("field", field)?;
        }
        fraction("certainty", self.certainty)?;
        self.matcher().map(drop)
    }
}

impl Config {
    /// The expression that finds the values: `pattern`, or the word list
    /// as one case-insensitive alternation of whole words.
    fn matcher(&self) -> Result<Regex, SettingsProblem> {
        match (&self.pattern, self.words.is_empty()) {
            (Some(pattern), true) => compile("pattern", pattern),
            (None, false) => {
                if self.words.iter().any(|word| word.trim().is_empty()) {
                    return Err(SettingsProblem::at("words", "holds an empty word"));
                }
                let mut words: Vec<&str> = self.words.iter().map(|w| w.trim()).collect();
                // longest first, so that "ACME Corp" wins over "ACME"
                words.sort_by_key(|word| std::cmp::Reverse(word.len()));
                let alternatives: Vec<String> = words.iter().map(|w| regex::escape(w)).collect();
                compile("words", &format!(r"(?i)\b(?:{})\b", alternatives.join("|")))
            }
            (Some(_), false) => Err(SettingsProblem::table("give `pattern` or `words`, not both")),
            (None, true) => Err(SettingsProblem::table("needs `pattern` or `words`")),
        }
    }
}

/// An `extract` rule step.
#[derive(Debug)]
pub struct Extract {
    name: String,
    field: String,
    matcher: Regex,
    config: Config,
}

impl Extract {
    /// The step called `name` with its settings.
    pub fn new(name: &str, config: Config) -> Result<Self, SettingsProblem> {
        let matcher = config.matcher()?;
        let field = config.field.clone().unwrap_or_else(|| name.to_owned());
        Ok(Extract { name: name.to_owned(), field, matcher, config })
    }

    fn extract(&self, result: &mut PageResult) {
        let mut fields = Vec::new();
        let mut diagnostics = Vec::new();
        for (i, line) in result.lines.iter().enumerate() {
            for captures in self.matcher.captures_iter(&line.text) {
                let Some(found) = captures.name("value").or_else(|| captures.get(0)) else {
                    continue;
                };
                if found.as_str().trim().is_empty() {
                    continue;
                }
                let normalized = normalize(found.as_str(), &self.config.normalize);
                if let Some(validator) = self.config.validator
                    && !validator.accepts(&normalized)
                {
                    let message = format!(
                        "{} `{}` on line {i} fails the {} check",
                        self.field,
                        found.as_str(),
                        validator.name()
                    );
                    diagnostics.push(diagnostic(
                        DiagnosticLevel::Warning,
                        &self.name,
                        "checksum_invalid",
                        message,
                    ));
                    continue;
                }
                fields.push(Field {
                    kind: FieldKind::Other,
                    value: found.as_str().to_owned(),
                    normalized: Some(normalized),
                    line: Some(i as u32),
                    bbox: Some(span_bbox(line, found.range())),
                    confidence: line.confidence * self.config.certainty,
                    name: Some(self.field.clone()),
                });
            }
        }
        result.fields.append(&mut fields);
        result.diagnostics.append(&mut diagnostics);
    }
}

impl Step for Extract {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, page: &mut Page, _meter: &mut StepMeter) -> Result<(), StepError> {
        self.extract(&mut page.result);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::steps::read_settings;
    use crate::steps::rules::page_of_lines;

    fn step(toml: &str) -> Extract {
        let table: toml::Table = toml.parse().unwrap();
        Extract::new("rule", read_settings(&table).unwrap()).unwrap()
    }

    fn run(step: &Extract, lines: &[&str]) -> PageResult {
        let mut result = page_of_lines(lines);
        step.extract(&mut result);
        result
    }

    #[test]
    fn a_pattern_takes_its_value_group_and_normalises_it() {
        let step = step(
            r#"
            field = "order_number"
            pattern = '(?i)order\s*no\.?\s*(?P<value>[a-z0-9-]{4,20})'
            normalize = ["uppercase"]
            "#,
        );
        let result = run(&step, &["Invoice", "Order No. ab-1234 of today"]);
        assert_eq!(result.fields.len(), 1);
        let field = &result.fields[0];
        assert_eq!((field.name(), field.value.as_str()), ("order_number", "ab-1234"));
        assert_eq!(field.normalized.as_deref(), Some("AB-1234"));
        assert_eq!((field.kind, field.line), (FieldKind::Other, Some(1)));
        assert!((field.confidence - 0.9).abs() < 1e-6);
    }

    #[test]
    fn words_match_whole_words_in_any_case_longest_first() {
        let step = step(r#"words = ["ACME", "Acme Corp"]"#);
        let result = run(&step, &["acme corp and ACME, but not ACMEX"]);
        let values: Vec<&str> = result.fields.iter().map(|f| f.value.as_str()).collect();
        assert_eq!(values, ["acme corp", "ACME"]);
        assert!(result.fields.iter().all(|f| f.name() == "rule"));
    }

    #[test]
    fn a_value_failing_its_checksum_is_a_diagnostic_not_a_field() {
        let step = step(
            r#"
            pattern = '[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){4}(?: ?[A-Z0-9]{1,4})?'
            normalize = ["remove_spaces"]
            validator = "iban"
            "#,
        );
        let result =
            run(&step, &["IBAN DE89 3704 0044 0532 0130 00", "IBAN DE89 3704 0044 0532 0130 01"]);
        assert_eq!(result.fields.len(), 1);
        assert_eq!(result.fields[0].normalized.as_deref(), Some("DE89370400440532013000"));
        assert_eq!(result.diagnostics.len(), 1);
        assert_eq!(result.diagnostics[0].code, "checksum_invalid");
        assert_eq!(result.diagnostics[0].step, "rule");
    }

    #[test]
    fn settings_need_exactly_one_matcher_and_valid_values() {
        let problem = |toml: &str| read_settings::<Config>(&toml.parse().unwrap()).unwrap_err();
        assert!(problem("").reason.contains("needs `pattern` or `words`"));
        assert!(problem("pattern = 'a'\nwords = ['b']").reason.contains("not both"));
        assert_eq!(problem("pattern = '('").key.as_deref(), Some("pattern"));
        assert_eq!(problem("words = ['a', ' ']").key.as_deref(), Some("words"));
        assert_eq!(problem("pattern = 'a'\nfield = 'Bad Name'").key.as_deref(), Some("field"));
        assert_eq!(problem("pattern = 'a'\ncertainty = 2.0").key.as_deref(), Some("certainty"));
        assert!(problem("pattern = 'a'\nvalidator = 'crc'").reason.contains("unknown variant"));
        assert!(problem("pattern = 'a'\npatern = 'b'").reason.contains("unknown field"));
    }
}
