//! Rule kind `flag`: when every condition holds for a page, a diagnostic
//! flags it and/or the page gets a class (the document's class is the
//! majority of its pages' classes, so this routes documents).
//!
//! ```toml
//! [steps.invoice_without_iban]
//! kind = "flag"
//! if_class = "invoice"
//! unless_field = "iban"
//! message = "an invoice without an IBAN"
//! ```

use regex::Regex;
use schemas::PageResult;
use serde::{Deserialize, Serialize};
use topology::catalogue::{RuleKindInfo, SettingsProblem};

use super::{Level, check_name, compile};
use crate::error::StepError;
use crate::page::{Page, StepMeter};
use crate::steps::enrich::diagnostic;
use crate::steps::{RuleKindDef, Step, StepSettings, check_settings, settings_error, settings_of};

/// Rule kind `flag`.
pub const KIND: RuleKindDef = RuleKindDef {
    info: RuleKindInfo {
        name: "flag",
        settings: check_settings::<Config>,
        summary: "when the page's text, fields and class meet conditions: a diagnostic, \
                  and/or a class for the page",
    },
    build: |name, _, settings| {
        let flag = Flag::new(name, settings_of(name, settings)?);
        Ok(Box::new(flag.map_err(|problem| settings_error(name, problem))?))
    },
};

/// Settings of a `flag` rule step: conditions (at least one; all must
/// hold) and what happens then.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// A regular expression some line of the page matches.
    pub if_text: Option<String>,
    /// The page has a field of this name (a built-in kind or a rule's).
    pub if_field: Option<String>,
    /// The page has no field of this name.
    pub unless_field: Option<String>,
    /// The page has this class.
    pub if_class: Option<String>,
    /// The diagnostic's code; the step's name when absent.
    pub code: Option<String>,
    /// The diagnostic's level: `info`, `warning` (the default) or `error`.
    pub level: Level,
    /// The diagnostic's message.
    pub message: Option<String>,
    /// The class the page gets. With only this set (no `code`, `message`),
    /// no diagnostic is added.
    pub set_class: Option<String>,
}

impl StepSettings for Config {
    fn check(&self) -> Result<(), SettingsProblem> {
        if self.if_text.is_none()
            && self.if_field.is_none()
            && self.unless_field.is_none()
            && self.if_class.is_none()
        {
            return Err(SettingsProblem::table(
                "needs a condition: `if_text`, `if_field`, `unless_field` or `if_class`",
            ));
        }
        if let Some(pattern) = &self.if_text {
            compile("if_text", pattern)?;
        }
        for (key, name) in [("code", &self.code), ("set_class", &self.set_class)] {
            if let Some(name) = name {
                check_name(key, name)?;
            }
        }
        Ok(())
    }
}

/// A `flag` rule step.
#[derive(Debug)]
pub struct Flag {
    name: String,
    text: Option<Regex>,
    config: Config,
}

impl Flag {
    /// The step called `name` with its settings.
    pub fn new(name: &str, config: Config) -> Result<Self, SettingsProblem> {
        let text =
            config.if_text.as_deref().map(|pattern| compile("if_text", pattern)).transpose()?;
        Ok(Flag { name: name.to_owned(), text, config })
    }

    fn holds(&self, result: &PageResult) -> bool {
        let has_field = |name: &str| result.fields.iter().any(|field| field.name() == name);
        self.text.as_ref().is_none_or(|re| result.lines.iter().any(|line| re.is_match(&line.text)))
            && self.config.if_field.as_deref().is_none_or(has_field)
            && self.config.unless_field.as_deref().is_none_or(|name| !has_field(name))
            && self
                .config
                .if_class
                .as_deref()
                .is_none_or(|class| result.class.as_deref() == Some(class))
    }

    fn apply(&self, result: &mut PageResult) {
        if !self.holds(result) {
            return;
        }
        let config = &self.config;
        if config.code.is_some() || config.message.is_some() || config.set_class.is_none() {
            let code = config.code.as_deref().unwrap_or(&self.name);
            let message =
                config.message.clone().unwrap_or_else(|| format!("flagged by `{}`", self.name));
            result.diagnostics.push(diagnostic(config.level.into(), &self.name, code, message));
        }
        if let Some(class) = &config.set_class {
            result.class = Some(class.clone());
        }
    }
}

impl Step for Flag {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, page: &mut Page, _meter: &mut StepMeter) -> Result<(), StepError> {
        self.apply(&mut page.result);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use schemas::{DiagnosticLevel, Field, FieldKind};

    use super::*;
    use crate::steps::read_settings;
    use crate::steps::rules::page_of_lines;

    fn flag(toml: &str) -> Flag {
        Flag::new("check", read_settings(&toml.parse().unwrap()).unwrap()).unwrap()
    }

    fn iban() -> Field {
        Field {
            kind: FieldKind::Iban,
            value: "DE89370400440532013000".into(),
            normalized: None,
            line: None,
            bbox: None,
            confidence: 1.0,
            name: None,
        }
    }

    #[test]
    fn every_condition_must_hold() {
        let step = flag(
            "if_class = 'invoice'\nunless_field = 'iban'\nmessage = 'no IBAN'\nlevel = 'error'",
        );
        let mut page = page_of_lines(&["Invoice 42"]);
        step.apply(&mut page);
        assert!(page.diagnostics.is_empty(), "not an invoice yet");
        page.class = Some("invoice".into());
        page.fields.push(iban());
        step.apply(&mut page);
        assert!(page.diagnostics.is_empty(), "has an IBAN");
        page.fields.clear();
        step.apply(&mut page);
        assert_eq!(page.diagnostics.len(), 1);
        let flagged = &page.diagnostics[0];
        assert_eq!((flagged.code.as_str(), flagged.step.as_str()), ("check", "check"));
        assert_eq!((flagged.level, flagged.message.as_str()), (DiagnosticLevel::Error, "no IBAN"));
    }

    #[test]
    fn set_class_alone_routes_without_a_diagnostic() {
        let step = flag("if_text = '(?i)purchase order'\nset_class = 'purchase_order'");
        let mut page = page_of_lines(&["Total", "PURCHASE ORDER 7"]);
        step.apply(&mut page);
        assert_eq!(page.class.as_deref(), Some("purchase_order"));
        assert!(page.diagnostics.is_empty());
        let mut other = page_of_lines(&["Invoice"]);
        step.apply(&mut other);
        assert_eq!(other.class, None);
    }

    #[test]
    fn a_flag_needs_a_condition_and_good_names() {
        let problem = |toml: &str| read_settings::<Config>(&toml.parse().unwrap()).unwrap_err();
        assert!(problem("message = 'x'").reason.contains("needs a condition"));
        assert_eq!(problem("if_text = '['").key.as_deref(), Some("if_text"));
        assert_eq!(problem("if_field = 'a'\nset_class = 'A B'").key.as_deref(), Some("set_class"));
        assert!(problem("if_field = 'a'\nlevel = 'loud'").reason.contains("unknown variant"));
    }
}
