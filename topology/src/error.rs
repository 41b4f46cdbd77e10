//! Everything that can be wrong with a pipeline definition, each with where it is.

use std::fmt;
use std::path::PathBuf;

/// A position in a pipeline file: `origin:line:column`, both 1-based.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The file name the text came from, e.g. `pipeline.toml`.
    pub origin: String,
    /// Line number, starting at 1.
    pub line: usize,
    /// Column in characters, starting at 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.origin, self.line, self.column)
    }
}

/// A problem with a pipeline definition or the model files it names.
///
/// Every variant but [`TopologyError::Read`] points at the line and column of
/// the offending key or value; `key` fields are dotted paths such as
/// `stages.ocr.consumer.ack_wait` or `stages.render.steps[1]`.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The pipeline file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("{at}: invalid toml: {message}")]
    Syntax {
        /// Where the parser stopped.
        at: Location,
        /// The parser's explanation.
        message: String,
    },
    /// A key that the pipeline format does not have (often a typo).
    #[error("{at}: unknown key `{key}`; {expected}")]
    UnknownKey {
        /// Where the key is.
        at: Location,
        /// The full dotted path of the key.
        key: String,
        /// The keys allowed there, e.g. "expected one of `steps`, `next`".
        expected: String,
    },
    /// A key of an earlier format whose setting now lives elsewhere.
    #[error("{at}: `{key}` has moved: write it as `{to}` (see topology/README.md, \"Steps\")")]
    Moved {
        /// Where the key is.
        at: Location,
        /// The key as written, e.g. `ocr.det_thresh`.
        key: String,
        /// Where it goes now, e.g. `steps.detect_text.db.thresh`.
        to: String,
    },
    /// A required key that is absent.
    #[error("{at}: missing key `{key}`")]
    MissingKey {
        /// Where the table that lacks it is.
        at: Location,
        /// The full dotted path of the key.
        key: String,
    },
    /// A duration that does not parse.
    #[error(
        "{at}: bad duration `{value}` for `{key}`: expected a number followed by ms, s, m or h"
    )]
    BadDuration {
        /// Where the value is.
        at: Location,
        /// The key holding it.
        key: String,
        /// The text as written.
        value: String,
    },
    /// A value of the wrong type, out of range or inconsistent with another.
    #[error("{at}: invalid value for `{key}`: {reason}")]
    InvalidValue {
        /// Where the value is (or the table that lacks it).
        at: Location,
        /// The key holding it.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `[stages.<name>]` table whose name is not a known stage.
    #[error("{at}: unknown stage `{stage}` (known: {})", known.join(", "))]
    UnknownStage {
        /// Where the stage table is.
        at: Location,
        /// The name used.
        stage: String,
        /// The stage names there are.
        known: Vec<&'static str>,
    },
    /// A step that the stage does not have.
    #[error(
        "{at}: unknown step `{step}` in stage `{stage}` (known: {}; or define a rule step in [steps.{step}] with a `kind`)",
        known.join(", ")
    )]
    UnknownStep {
        /// Where the step is named.
        at: Location,
        /// The stage listing it.
        stage: String,
        /// The name used.
        step: String,
        /// The steps the stage can run: its built-in ones and the rule
        /// steps the file defines.
        known: Vec<String>,
    },
    /// A `next` naming a stage that is not defined in the file.
    #[error("{at}: stage `{stage}` continues to `{next}`, which is not a defined stage")]
    UnknownNext {
        /// Where `next` names it.
        at: Location,
        /// The stage whose `next` it is.
        stage: String,
        /// The name used.
        next: String,
    },
    /// The entry or the exit stage is not defined.
    #[error(
        "{at}: stage `{stage}` is missing: every pipeline starts at `split` and ends at `assemble`"
    )]
    MissingStage {
        /// The `stages` table, or the start of the file.
        at: Location,
        /// The stage that is missing.
        stage: &'static str,
    },
    /// A stage other than `assemble` without a successor.
    #[error("{at}: stage `{stage}` has no `next`: every path must end in `assemble`")]
    DeadEnd {
        /// Where the stage table is.
        at: Location,
        /// The stage.
        stage: String,
    },
    /// The stages' `next` links form a cycle.
    #[error("{at}: stages form a cycle: {}", path.join(" -> "))]
    Cycle {
        /// Where the `next` that closes the cycle is.
        at: Location,
        /// The stages along the cycle, the first repeated at the end.
        path: Vec<String>,
    },
    /// A stage that no path from `split` reaches.
    #[error("{at}: stage `{stage}` is unreachable from `split`")]
    Unreachable {
        /// Where the stage table is.
        at: Location,
        /// The stage.
        stage: String,
    },
    /// Two stages reading the same subject.
    #[error("{at}: stage `{stage}` uses subject `{subject}`, already used by stage `{other}`")]
    DuplicateSubject {
        /// Where the second use is.
        at: Location,
        /// The stage with the second use.
        stage: String,
        /// The subject token.
        subject: String,
        /// The stage that uses it first.
        other: String,
    },
    /// A stage using a model that `[models]` does not define.
    #[error("{at}: stage `{stage}` uses model `{model}`, which is not defined in [models]")]
    UndefinedModel {
        /// Where the model is named.
        at: Location,
        /// The stage.
        stage: String,
        /// The model name.
        model: String,
    },
    /// A step that needs a model its stage does not list.
    #[error(
        "{at}: step `{step}` in stage `{stage}` needs model `{model}`, missing from its `models`"
    )]
    StepNeedsModel {
        /// Where the step is named.
        at: Location,
        /// The stage.
        stage: String,
        /// The step.
        step: String,
        /// The model it needs.
        model: &'static str,
    },
    /// A model file that does not exist.
    #[error("{at}: model `{model}` file missing: {}", path.display())]
    ModelMissing {
        /// Where the model's `path` is.
        at: Location,
        /// The model name.
        model: String,
        /// The file looked for.
        path: PathBuf,
    },
    /// A model file that exists but cannot be read.
    #[error("{at}: model `{model}` file {} cannot be read: {source}", path.display())]
    ModelUnreadable {
        /// Where the model's `path` is.
        at: Location,
        /// The model name.
        model: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A model file whose content is not the one the pipeline names.
    #[error("{at}: model `{model}` checksum mismatch for {}: expected sha256 {expected}, found {actual}", path.display())]
    ModelChecksum {
        /// Where the model's `sha256` is.
        at: Location,
        /// The model name.
        model: String,
        /// The file.
        path: PathBuf,
        /// The sha256 in the pipeline file.
        expected: String,
        /// The sha256 of the file.
        actual: String,
    },
}

impl TopologyError {
    /// Where in the pipeline file the problem is; `None` when the file itself
    /// could not be read.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::Read { .. } => None,
            Self::Syntax { at, .. }
            | Self::UnknownKey { at, .. }
            | Self::Moved { at, .. }
            | Self::MissingKey { at, .. }
            | Self::BadDuration { at, .. }
            | Self::InvalidValue { at, .. }
            | Self::UnknownStage { at, .. }
            | Self::UnknownStep { at, .. }
            | Self::UnknownNext { at, .. }
            | Self::MissingStage { at, .. }
            | Self::DeadEnd { at, .. }
            | Self::Cycle { at, .. }
            | Self::Unreachable { at, .. }
            | Self::DuplicateSubject { at, .. }
            | Self::UndefinedModel { at, .. }
            | Self::StepNeedsModel { at, .. }
            | Self::ModelMissing { at, .. }
            | Self::ModelUnreadable { at, .. }
            | Self::ModelChecksum { at, .. } => Some(at),
        }
    }
}
