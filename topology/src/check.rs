//! The verdict of `pagestream topology check [FILE]`: load, validate and
//! optionally verify the model files, as a printable report.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::catalogue::Catalogue;
use crate::error::TopologyError;
use crate::pipeline::{EMBEDDED_ORIGIN, Pipeline};

/// The outcome of checking a pipeline file; `Display` prints it for people.
#[derive(Debug)]
pub struct CheckReport {
    origin: String,
    model_dir: Option<PathBuf>,
    result: Result<Pipeline, Vec<TopologyError>>,
}

/// Checks the pipeline file `file` (the embedded one when `None`) against
/// `catalogue` and, when `model_dir` is given, that the model files in it
/// match their checksums.
pub fn check(file: Option<&Path>, model_dir: Option<&Path>, catalogue: &Catalogue) -> CheckReport {
    let (origin, loaded) = match file {
        Some(path) => (path.display().to_string(), Pipeline::load(path, catalogue)),
        None => (EMBEDDED_ORIGIN.to_owned(), Pipeline::embedded(catalogue)),
    };
    let result = loaded.and_then(|pipeline| match model_dir {
        Some(dir) => pipeline.verify_models(dir).map(|()| pipeline),
        None => Ok(pipeline),
    });
    CheckReport { origin, model_dir: model_dir.map(Path::to_owned), result }
}

impl CheckReport {
    /// Whether the file is valid (and its models, when verified, match).
    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }

    /// Every problem found; empty when the check passed.
    pub fn errors(&self) -> &[TopologyError] {
        self.result.as_ref().err().map_or(&[], Vec::as_slice)
    }

    /// The pipeline, when it is valid.
    pub fn pipeline(&self) -> Option<&Pipeline> {
        self.result.as_ref().ok()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pipeline = match &self.result {
            Ok(pipeline) => pipeline,
            Err(errors) => {
                for error in errors {
                    writeln!(f, "{error}")?;
                }
                let plural = if errors.len() == 1 { "" } else { "s" };
                return writeln!(f, "{}: {} problem{plural}", self.origin, errors.len());
            }
        };
        writeln!(f, "{}: ok", self.origin)?;
        for stage in pipeline.stages() {
            let scaling = stage.scaling();
            let next =
                if stage.next().is_empty() { "-".to_owned() } else { stage.next().join(", ") };
            writeln!(
                f,
                "  {:<10} -> {:<10} concurrency {:<2} replicas {}..{} (1 per {} pending)  steps: {}",
                stage.name(),
                next,
                stage.concurrency(),
                scaling.min_replicas,
                scaling.max_replicas,
                scaling.lag_threshold,
                stage.steps().join(", "),
            )?;
        }
        let n_models = pipeline.models().len();
        match &self.model_dir {
            Some(dir) => writeln!(f, "  models: {n_models} verified in {}", dir.display()),
            None => writeln!(f, "  models: {n_models} defined, files not verified"),
        }
    }
}
