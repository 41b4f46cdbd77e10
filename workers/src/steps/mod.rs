//! Stage steps. Every step is a module with its `Config`, the step and its
//! tests; a stage runs its steps in the order the topology gives.

pub mod enrich;
pub mod layout;
pub mod ocr;
pub mod preprocess;
pub mod render;
pub mod split;

use crate::error::StepError;
use crate::page::{Page, StepMeter};

/// One step of a stage, run on one page at a time.
///
/// Steps are synchronous CPU work; the runtime calls them off the async
/// executor (rayon or a blocking thread) and records their timings.
pub trait Step: Send + Sync {
    /// The step's name as written in the topology, e.g. `detect_text`.
    fn name(&self) -> &'static str;

    /// Runs the step on `page`, adding what it finds to `page.result`.
    fn run(&self, page: &mut Page, meter: &mut StepMeter) -> Result<(), StepError>;

    /// Whether the step reads `Page::document` (the runtime fetches the
    /// document for such stages and drops it after the last one).
    fn needs_document(&self) -> bool {
        false
    }
}
