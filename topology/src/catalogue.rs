//! The names a pipeline file may use: the stages pagestream has, and the
//! [`Catalogue`] of steps and rule kinds the crate that implements the steps
//! hands to the loader (this crate knows no step itself: the step table
//! lives next to the steps, and only what validation needs crosses over).

/// The stage every document enters.
pub const ENTRY_STAGE: &str = "split";
/// The stage every path ends in.
pub const EXIT_STAGE: &str = "assemble";

/// Every stage, in pipeline order.
pub const STAGES: &[&str] =
    &["split", "render", "preprocess", "layout", "ocr", "enrich", "assemble"];

/// Whether `stage` works on pages (not on whole documents, as `split` and
/// `assemble` do); rule steps run only in these.
pub fn is_page_stage(stage: &str) -> bool {
    stage != ENTRY_STAGE && stage != EXIT_STAGE && STAGES.contains(&stage)
}

/// The position of stage `name` in [`STAGES`], used to order stages.
pub(crate) fn stage_rank(name: &str) -> usize {
    STAGES.iter().position(|stage| *stage == name).unwrap_or(STAGES.len())
}

/// The names of all stages.
pub fn stage_names() -> Vec<&'static str> {
    STAGES.to_vec()
}

/// What is wrong with a step's settings table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsProblem {
    /// The key inside the step's table (`db.thresh`), when one is to blame.
    pub key: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl SettingsProblem {
    /// A problem with the value of `key`.
    pub fn at(key: impl Into<String>, reason: impl Into<String>) -> Self {
        SettingsProblem { key: Some(key.into()), reason: reason.into() }
    }

    /// A problem with the table as a whole (an unknown key, a wrong type).
    pub fn table(reason: impl Into<String>) -> Self {
        SettingsProblem { key: None, reason: reason.into() }
    }
}

/// Checks a step's settings table (`[steps.<name>]`, `kind` removed).
pub type SettingsCheck = fn(&toml::Table) -> Result<(), SettingsProblem>;

/// What validation needs to know of a built-in step.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// The step's name, e.g. `detect_text`.
    pub name: &'static str,
    /// The stage that runs it.
    pub stage: &'static str,
    /// The models it runs; its stage must list them.
    pub models: &'static [&'static str],
    /// Whether it reads the document bytes (not only the page image), so
    /// that the transports carry them up to the last such stage.
    pub reads_document: bool,
    /// Steps of its stage that must run before it.
    pub after: &'static [&'static str],
    /// Checks its settings.
    pub settings: SettingsCheck,
    /// One line on what it does, for the documentation.
    pub summary: &'static str,
}

/// What validation needs to know of a rule kind: a step a deployment
/// configures in `[steps.<name>]` with `kind = "<kind>"`.
#[derive(Debug, Clone, Copy)]
pub struct RuleKindInfo {
    /// The kind's name, e.g. `extract`.
    pub name: &'static str,
    /// Checks the settings of a step of this kind.
    pub settings: SettingsCheck,
    /// One line on what it does, for the documentation.
    pub summary: &'static str,
}

/// The built-in steps and rule kinds a pipeline file may use.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    /// Every built-in step, stages in pipeline order.
    pub steps: Vec<StepInfo>,
    /// Every rule kind.
    pub rule_kinds: Vec<RuleKindInfo>,
}

impl Catalogue {
    /// The built-in step called `name`.
    pub fn step(&self, name: &str) -> Option<&StepInfo> {
        self.steps.iter().find(|step| step.name == name)
    }

    /// The rule kind called `name`.
    pub fn rule_kind(&self, name: &str) -> Option<&RuleKindInfo> {
        self.rule_kinds.iter().find(|kind| kind.name == name)
    }

    /// The built-in steps of `stage`, in their natural order.
    pub fn steps_of<'c>(&'c self, stage: &'c str) -> impl Iterator<Item = &'c StepInfo> + 'c {
        self.steps.iter().filter(move |step| step.stage == stage)
    }

    /// The names of the built-in steps of `stage`.
    pub fn step_names(&self, stage: &str) -> Vec<&'static str> {
        self.steps_of(stage).map(|step| step.name).collect()
    }

    /// The names of the rule kinds.
    pub fn rule_kind_names(&self) -> Vec<&'static str> {
        self.rule_kinds.iter().map(|kind| kind.name).collect()
    }
}
