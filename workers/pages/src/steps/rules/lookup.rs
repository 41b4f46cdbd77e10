//! Rule kind `lookup`: the fields of one name mapped through a table file,
//! each value found in the table giving a new field.
//!
//! ```toml
//! [steps.supplier_id]
//! kind = "lookup"
//! field = "vat_id"                  # a built-in kind or a rule's field name
//! table = "lookups/suppliers.csv"   # `key,value` lines, next to the topology file
//! output = "supplier_id"
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use schemas::{DiagnosticLevel, Field, FieldKind, PageResult};
use serde::{Deserialize, Serialize};
use topology::catalogue::{RuleKindInfo, SettingsProblem};

use super::check_name;
use crate::error::StepError;
use crate::page::{Page, StepMeter};
use crate::steps::enrich::diagnostic;
use crate::steps::{BuildError, RuleKindDef, Step, StepSettings, check_settings, settings_of};

/// Largest table file read, in bytes.
const MAX_TABLE_BYTES: u64 = 16 << 20;

/// Rule kind `lookup`.
pub const KIND: RuleKindDef = RuleKindDef {
    info: RuleKindInfo {
        name: "lookup",
        settings: check_settings::<Config>,
        summary: "the values of one field mapped through a `key,value` table file to a new field",
    },
    build: |name, context, settings| {
        let config: Config = settings_of(name, settings)?;
        let path = context.base_dir.join(&config.table);
        let table = read_table(&path, config.ignore_case)
            .map_err(|reason| BuildError::Settings { step: name.to_owned(), reason })?;
        Ok(Box::new(Lookup::new(name, config, table)))
    },
};

/// What a value missing from the table does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    /// Nothing.
    Ignore,
    /// A warning diagnostic names the value.
    #[default]
    Warn,
}

/// Settings of a `lookup` rule step.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The fields looked up: those of this name (a built-in kind such as
    /// `iban` or `vat_id`, or the field name of a rule step).
    pub field: String,
    /// The table file: UTF-8 lines `key,value` (split at the first comma;
    /// blank lines and lines starting with `#` skipped), its path relative
    /// to the topology file's directory. Keys are compared with the
    /// field's normalized form (its value when it has none), trimmed.
    pub table: PathBuf,
    /// The name of the fields added; the step's name when absent.
    pub output: Option<String>,
    /// Compare keys ignoring case.
    pub ignore_case: bool,
    /// What a value missing from the table does: `warn` (a diagnostic) or
    /// `ignore`.
    pub on_missing: OnMissing,
}

impl StepSettings for Config {
    fn check(&self) -> Result<(), SettingsProblem> {
        if self.field.is_empty() {
            return Err(SettingsProblem::table("needs `field`: the name of the fields looked up"));
        }
        if self.table.as_os_str().is_empty() {
            return Err(SettingsProblem::table("needs `table`: the path of the table file"));
        }
        if let Some(output) = &self.output {
            check_name("output", output)?;
        }
        Ok(())
    }
}

/// Reads a table file into key → value.
fn read_table(path: &Path, ignore_case: bool) -> Result<HashMap<String, String>, String> {
    let cannot = |e: std::io::Error| format!("cannot read table file {}: {e}", path.display());
    let size = std::fs::metadata(path).map_err(cannot)?.len();
    if size > MAX_TABLE_BYTES {
        return Err(format!(
            "table file {} has {size} bytes, more than the {MAX_TABLE_BYTES} a lookup reads",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(cannot)?;
    let mut table = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once(',')
            .ok_or_else(|| format!("{}:{}: expected `key,value`", path.display(), number + 1))?;
        table.insert(key_of(key, ignore_case), value.trim().to_owned());
    }
    Ok(table)
}

fn key_of(text: &str, ignore_case: bool) -> String {
    if ignore_case { text.trim().to_lowercase() } else { text.trim().to_owned() }
}

/// A `lookup` rule step.
#[derive(Debug)]
pub struct Lookup {
    name: String,
    output: String,
    config: Config,
    table: HashMap<String, String>,
}

impl Lookup {
    /// The step called `name`, with its settings and its table.
    pub fn new(name: &str, config: Config, table: HashMap<String, String>) -> Self {
        let output = config.output.clone().unwrap_or_else(|| name.to_owned());
        Lookup { name: name.to_owned(), output, config, table }
    }

    fn look_up(&self, result: &mut PageResult) {
        let mut found = Vec::new();
        for field in result.fields.iter().filter(|f| f.name() == self.config.field) {
            let key = field.normalized.as_deref().unwrap_or(&field.value);
            match self.table.get(&key_of(key, self.config.ignore_case)) {
                Some(mapped) => found.push(Field {
                    kind: FieldKind::Other,
                    value: mapped.clone(),
                    normalized: Some(mapped.clone()),
                    name: Some(self.output.clone()),
                    ..field.clone()
                }),
                None if self.config.on_missing == OnMissing::Warn => {
                    let message =
                        format!("{} `{key}` is not in the table of `{}`", field.name(), self.name);
                    result.diagnostics.push(diagnostic(
                        DiagnosticLevel::Warning,
                        &self.name,
                        "lookup_missing",
                        message,
                    ));
                }
                None => {}
            }
        }
        result.fields.append(&mut found);
    }
}

impl Step for Lookup {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, page: &mut Page, _meter: &mut StepMeter) -> Result<(), StepError> {
        self.look_up(&mut page.result);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::steps::read_settings;

    fn field(name: Option<&str>, kind: FieldKind, value: &str, normalized: &str) -> Field {
        Field {
            kind,
            value: value.to_owned(),
            normalized: Some(normalized.to_owned()),
            line: Some(3),
            bbox: None,
            confidence: 0.8,
            name: name.map(str::to_owned),
        }
    }

    #[test]
    fn mapped_values_become_fields_and_misses_diagnostics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("suppliers.csv");
        std::fs::write(
            &path,
            "# vat id, supplier\nDE136695976, Globex GmbH\n\nATU13585627,Initech\n",
        )
        .unwrap();
        let config: Config = read_settings(
            &"field = 'vat_id'\ntable = 'suppliers.csv'\noutput = 'supplier'".parse().unwrap(),
        )
        .unwrap();
        let table = read_table(&path, config.ignore_case).unwrap();
        let step = Lookup::new("supplier_of_vat", config, table);
        let mut result = PageResult::default();
        result.fields.push(field(None, FieldKind::VatId, "DE 136 695 976", "DE136695976"));
        result.fields.push(field(None, FieldKind::VatId, "FR40303265045", "FR40303265045"));
        result.fields.push(field(Some("other"), FieldKind::Other, "x", "DE136695976"));
        step.look_up(&mut result);
        let added: Vec<&Field> = result.fields.iter().filter(|f| f.name() == "supplier").collect();
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].value, "Globex GmbH");
        assert_eq!((added[0].line, added[0].confidence), (Some(3), 0.8));
        assert_eq!(result.diagnostics.len(), 1);
        assert_eq!(result.diagnostics[0].code, "lookup_missing");
        assert!(result.diagnostics[0].message.contains("FR40303265045"));
    }

    #[test]
    fn a_table_must_be_readable_and_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_table(&dir.path().join("none.csv"), false).unwrap_err();
        assert!(missing.contains("cannot read table file"), "{missing}");
        let path = dir.path().join("bad.csv");
        std::fs::write(&path, "a,1\nno comma here\n").unwrap();
        assert!(read_table(&path, false).unwrap_err().ends_with("bad.csv:2: expected `key,value`"));
        std::fs::write(&path, "Key,1\n").unwrap();
        assert_eq!(read_table(&path, true).unwrap().get("key").map(String::as_str), Some("1"));
    }
}
