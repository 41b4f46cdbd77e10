//! Stage steps, and the one table of them ([`BUILTIN`]).
//!
//! A built-in step is one module: its settings type (serde with
//! `deny_unknown_fields` and defaults, the only place they are written), the
//! step, its tests, and a `const STEP: StepDef` that names it, its stage and
//! models and builds it from its `[steps.<name>]` table. [`BUILTIN`] lists
//! every `STEP`; the registry builds from it and the topology validates
//! against it ([`catalogue`]). Rule steps ([`rules`]) are configured in the
//! topology from the kinds in [`RULE_KINDS`].

pub mod enrich;
pub mod layout;
pub mod ocr;
pub mod preprocess;
pub mod reference;
pub mod render;
pub mod rules;
pub mod split;

use std::path::Path;
use std::sync::{Arc, LazyLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use topology::catalogue::{Catalogue, RuleKindInfo, SettingsProblem, StepInfo};

use crate::error::StepError;
use crate::models::{Model, ModelError, Models};
use crate::page::{Page, StepMeter};

/// Model name of text detection (DB).
pub const MODEL_DET: &str = "det";
/// Model name of text-line recognition (CTC).
pub const MODEL_REC: &str = "rec";
/// Model name of the text-line 0/180 degree classifier.
pub const MODEL_CLS: &str = "cls";
/// Model name of layout region detection.
pub const MODEL_LAYOUT: &str = "layout";
/// Model name of page orientation.
pub const MODEL_ORIENTATION: &str = "orientation";

/// Every built-in step, stages in pipeline order, each stage's steps in
/// their natural order. Adding a step: its module (declared in its
/// stage's `mod.rs`), and one line here.
pub const BUILTIN: &[StepDef] = &[
    split::SNIFF,
    split::VALIDATE,
    split::FAN_OUT,
    render::RASTERIZE,
    render::EXTRACT_TEXT,
    preprocess::orient::STEP,
    preprocess::deskew::STEP,
    layout::STEP,
    ocr::detect::STEP,
    ocr::classify::STEP,
    ocr::recognize::STEP,
    enrich::reading_order::STEP,
    enrich::language::STEP,
    enrich::fields::STEP,
    enrich::tables::STEP,
    enrich::classify::STEP,
    ASSEMBLE,
];

/// Every rule kind a topology may configure steps of.
pub const RULE_KINDS: &[RuleKindDef] =
    &[rules::extract::KIND, rules::lookup::KIND, rules::flag::KIND];

/// What the topology loader needs to know of [`BUILTIN`] and [`RULE_KINDS`]:
/// `topology::Pipeline::load(path, steps::catalogue())`.
pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| Catalogue {
        steps: BUILTIN.iter().map(|step| step.info).collect(),
        rule_kinds: RULE_KINDS.iter().map(|kind| kind.info).collect(),
    });
    &CATALOGUE
}

/// The built-in step called `name`.
pub fn builtin(name: &str) -> Option<&'static StepDef> {
    BUILTIN.iter().find(|step| step.info.name == name)
}

/// One step of a stage, run on one page at a time.
///
/// Steps are synchronous CPU work; the runtime calls them off the async
/// executor (rayon or a blocking thread) and records their timings.
pub trait Step: Send + Sync {
    /// The step's name as written in the topology, e.g. `detect_text`.
    fn name(&self) -> &str;

    /// Runs the step on `page`, adding what it finds to `page.result`.
    fn run(&self, page: &mut Page, meter: &mut StepMeter) -> Result<(), StepError>;
}

/// A built-in step: what the topology knows of it, and how it is built.
#[derive(Debug, Clone, Copy)]
pub struct StepDef {
    /// Name, stage, models, settings check.
    pub info: StepInfo,
    /// Its settings with every default, as a table.
    pub defaults: fn() -> toml::Table,
    /// Builds the step from its settings table; `None` for the steps of the
    /// document-level stages, which the transports run themselves.
    pub build: Option<BuildStep>,
}

/// Builds a step from its context and its `[steps.<name>]` table.
pub type BuildStep = fn(&BuildContext<'_>, &toml::Table) -> Result<Box<dyn Step>, BuildError>;

/// A rule kind: what the topology knows of it, and how a step of it is built.
#[derive(Debug, Clone, Copy)]
pub struct RuleKindDef {
    /// Name and settings check.
    pub info: RuleKindInfo,
    /// Builds the step called `name` from its settings table.
    pub build: BuildRule,
}

/// Builds the rule step called `name` from its context and settings table.
pub type BuildRule = fn(&str, &BuildContext<'_>, &toml::Table) -> Result<Box<dyn Step>, BuildError>;

/// What a step may take from the process that builds it.
#[derive(Debug)]
pub struct BuildContext<'a> {
    /// Document and page limits.
    pub limits: &'a topology::Limits,
    /// The loaded models.
    pub models: &'a Models,
    /// Where relative paths of the topology point (its file's directory).
    pub base_dir: &'a Path,
}

impl BuildContext<'_> {
    /// The loaded model called `name`.
    pub fn model(&self, name: &str) -> Result<Arc<Model>, BuildError> {
        Ok(self.models.get(name)?)
    }
}

/// Why a step could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("step `{step}`: {reason}")]
    Settings { step: String, reason: String },
}

/// A step's settings type: read from its `[steps.<name>]` table, defaults
/// for what the table leaves out, then checked.
pub trait StepSettings: DeserializeOwned + Serialize + Default {
    /// What is wrong with the values read, if anything.
    fn check(&self) -> Result<(), SettingsProblem> {
        Ok(())
    }
}

/// Reads settings `S` from a step's table.
pub fn read_settings<S: StepSettings>(table: &toml::Table) -> Result<S, SettingsProblem> {
    let settings: S = toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| SettingsProblem::table(e.message().to_owned()))?;
    settings.check()?;
    Ok(settings)
}

/// Checks a step's table as settings `S` (a [`topology::catalogue::SettingsCheck`]).
pub fn check_settings<S: StepSettings>(table: &toml::Table) -> Result<(), SettingsProblem> {
    read_settings::<S>(table).map(drop)
}

/// The defaults of settings `S`, as the table that would spell them out.
pub fn defaults_of<S: StepSettings>() -> toml::Table {
    toml::Table::try_from(S::default()).unwrap_or_default()
}

/// Reads settings `S` of step `step` while building it.
pub fn settings_of<S: StepSettings>(step: &str, table: &toml::Table) -> Result<S, BuildError> {
    read_settings(table).map_err(|problem| settings_error(step, problem))
}

/// The build error of step `step` whose settings have `problem`.
pub fn settings_error(step: &str, problem: SettingsProblem) -> BuildError {
    let reason = match problem.key {
        Some(key) => format!("`{key}`: {}", problem.reason),
        None => problem.reason,
    };
    BuildError::Settings { step: step.to_owned(), reason }
}

/// Settings of a step that has none: only an empty table is accepted.
#[derive(Debug, Default, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

impl StepSettings for NoSettings {}

/// `value` must be between 0 and 1.
pub fn fraction(key: &str, value: f32) -> Result<(), SettingsProblem> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(SettingsProblem::at(key, format!("{value} is not between 0 and 1")))
    }
}

/// `value` must be at least 1.
pub fn at_least_one(key: &str, value: u64) -> Result<(), SettingsProblem> {
    if value >= 1 { Ok(()) } else { Err(SettingsProblem::at(key, "must be at least 1")) }
}

/// `value` must be a positive number.
pub fn positive(key: &str, value: f32) -> Result<(), SettingsProblem> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(SettingsProblem::at(key, format!("{value} is not a positive number")))
    }
}

/// A step of a document-level stage: named here so the topology knows it,
/// run by the transports.
const fn document_level(name: &'static str, stage: &'static str, summary: &'static str) -> StepDef {
    StepDef {
        info: StepInfo {
            name,
            stage,
            models: &[],
            reads_document: false,
            after: &[],
            settings: check_settings::<NoSettings>,
            summary,
        },
        defaults: defaults_of::<NoSettings>,
        build: None,
    }
}

/// Step `assemble`: collects a document's pages into its result (run by the
/// transports).
pub const ASSEMBLE: StepDef = document_level(
    "assemble",
    "assemble",
    "collects a document's pages, in page order, into its result",
);
