//! The stage code every transport runs: a [`Stage`] runs its steps on a page,
//! timing each and turning errors and panics into a [`PageFailure`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use schemas::{DocumentResult, DocumentStatus, ErrorKind, FailureRecord, PageResult, StepTiming};

use crate::error::StepError;
use crate::page::{Page, StepMeter};
use crate::steps::Step;
use crate::steps::split::Splitter;

/// A step group: the steps of one stage, run in order.
pub struct Stage {
    pub name: String,
    pub steps: Vec<Box<dyn Step>>,
    /// Pages this stage works on at once (worker threads or tasks).
    pub concurrency: usize,
    /// Longest a step may take on one page; a step that takes longer fails
    /// the page with [`ErrorKind::Timeout`] once it returns (a step is not
    /// interrupted: a step that never returns is caught by the transport,
    /// e.g. JetStream's ack wait and max deliveries).
    pub step_timeout: Option<Duration>,
    /// Whether a step reads `Page::document` (the runtime fetches the
    /// document for such stages and drops it after the last one).
    pub needs_document: bool,
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let steps: Vec<_> = self.steps.iter().map(|s| s.name()).collect();
        f.debug_struct("Stage")
            .field("name", &self.name)
            .field("steps", &steps)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// A page that failed in a step.
#[derive(Debug, Clone, PartialEq)]
pub struct PageFailure {
    pub stage: String,
    pub step: String,
    pub error: StepError,
}

impl PageFailure {
    /// The failure record stored in the page result and the dead-letter stream.
    pub fn record(&self, page: &Page, attempts: u32) -> FailureRecord {
        let (stage, step) = (self.stage.clone(), self.step.clone());
        FailureRecord::new(&page.task.doc_id, stage, step, self.error.kind, &self.error.message)
            .on_page(page.task.page_index)
            .after(attempts)
    }
}

impl Stage {
    pub fn new(name: impl Into<String>, steps: Vec<Box<dyn Step>>) -> Self {
        let needs_document = steps.iter().any(|step| {
            crate::steps::builtin(step.name()).is_some_and(|def| def.info.reads_document)
        });
        Stage { name: name.into(), steps, concurrency: 1, step_timeout: None, needs_document }
    }

    /// Runs every step on `page`, appending a [`StepTiming`] per step.
    /// `queue_wait_us` is recorded on the first step. A panicking step is
    /// reported as an internal error; the page is left as the step left it.
    pub fn run(&self, page: &mut Page, queue_wait_us: u64) -> Result<(), PageFailure> {
        for (i, step) in self.steps.iter().enumerate() {
            let mut meter = StepMeter::default();
            let started = Instant::now();
            let mut outcome = catch_unwind(AssertUnwindSafe(|| step.run(page, &mut meter)))
                .unwrap_or_else(|panic| Err(StepError::internal(panic_message(&panic))));
            let elapsed = started.elapsed();
            if let Some(limit) = self.step_timeout.filter(|limit| elapsed > *limit)
                && outcome.is_ok()
            {
                outcome = Err(StepError::reject(
                    ErrorKind::Timeout,
                    format!("step took {elapsed:.1?}, the limit is {limit:?}"),
                ));
            }
            page.result.timings.push(StepTiming {
                stage: self.name.clone(),
                step: step.name().to_string(),
                duration_us: elapsed.as_micros() as u64,
                inference_us: meter.inference.as_micros() as u64,
                queue_wait_us: if i == 0 { queue_wait_us } else { 0 },
            });
            if let Err(error) = outcome {
                return Err(PageFailure {
                    stage: self.name.clone(),
                    step: step.name().to_string(),
                    error,
                });
            }
        }
        Ok(())
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    format!("step panicked: {text}")
}

/// The whole analysis: split, then the page stages in order.
#[derive(Debug)]
pub struct Pipeline {
    pub splitter: Splitter,
    pub stages: Vec<Stage>,
}

impl Pipeline {
    /// The page stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// Sets the status, class and completion time of an assembled document
/// result, its pages in page order; every transport finishes documents so.
pub fn complete_document(result: &mut DocumentResult) {
    result.pages.sort_by_key(|p| p.page_index);
    let failed = result.pages.iter().filter(|p| p.failure.is_some()).count();
    result.status = if !result.failures.is_empty() || (failed > 0 && failed == result.pages.len()) {
        DocumentStatus::Failed
    } else if failed > 0 {
        DocumentStatus::Partial
    } else {
        DocumentStatus::Complete
    };
    result.class = majority_class(&result.pages);
    result.completed_at_ms = schemas::now_ms();
}

/// The most frequent page class (ties to the alphabetically first).
fn majority_class(pages: &[PageResult]) -> Option<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for class in pages.iter().filter_map(|p| p.class.as_deref()) {
        *counts.entry(class).or_default() += 1;
    }
    counts.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0))).map(|(c, _)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{DocumentKind, DocumentSource, PageTask};

    struct Fails;
    impl Step for Fails {
        fn name(&self) -> &'static str {
            "fails"
        }
        fn run(&self, _: &mut Page, _: &mut StepMeter) -> Result<(), StepError> {
            Err(StepError::reject(ErrorKind::Corrupt, "bad page"))
        }
    }

    struct Panics;
    impl Step for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }
        fn run(&self, _: &mut Page, _: &mut StepMeter) -> Result<(), StepError> {
            panic!("boom")
        }
    }

    struct SetsWidth;
    impl Step for SetsWidth {
        fn name(&self) -> &'static str {
            "sets_width"
        }
        fn run(&self, page: &mut Page, _: &mut StepMeter) -> Result<(), StepError> {
            page.result.width = 42;
            Ok(())
        }
    }

    fn page() -> Page {
        Page::new(PageTask {
            doc_id: "d".into(),
            tenant: "t".into(),
            page_index: 0,
            page_count: 1,
            kind: DocumentKind::Png,
            source: DocumentSource::Inline { bytes: vec![] },
            submitted_at_ms: 0,
        })
    }

    #[test]
    fn runs_steps_in_order_and_times_them() {
        let stage =
            Stage::new("s", vec![Box::new(SetsWidth), Box::new(Fails), Box::new(SetsWidth)]);
        let mut page = page();
        let failure = stage.run(&mut page, 17).unwrap_err();
        assert_eq!((failure.stage.as_str(), failure.step.as_str()), ("s", "fails"));
        assert_eq!(failure.error.kind, ErrorKind::Corrupt);
        assert_eq!(page.result.width, 42);
        let steps: Vec<_> = page.result.timings.iter().map(|t| t.step.as_str()).collect();
        assert_eq!(steps, ["sets_width", "fails"]);
        assert_eq!(page.result.timings[0].queue_wait_us, 17);
    }

    struct Sleeps;
    impl Step for Sleeps {
        fn name(&self) -> &'static str {
            "sleeps"
        }
        fn run(&self, _: &mut Page, _: &mut StepMeter) -> Result<(), StepError> {
            std::thread::sleep(Duration::from_millis(30));
            Ok(())
        }
    }

    #[test]
    fn a_step_past_its_time_limit_fails_the_page() {
        let mut stage = Stage::new("s", vec![Box::new(Sleeps), Box::new(SetsWidth)]);
        stage.step_timeout = Some(Duration::from_millis(1));
        let mut page = page();
        let failure = stage.run(&mut page, 0).unwrap_err();
        assert_eq!((failure.step.as_str(), failure.error.kind), ("sleeps", ErrorKind::Timeout));
        assert_eq!(page.result.width, 0);
        stage.step_timeout = Some(Duration::from_secs(3600));
        assert!(stage.run(&mut page, 0).is_ok());
    }

    #[test]
    fn panic_becomes_internal_error() {
        let stage = Stage::new("s", vec![Box::new(Panics)]);
        let failure = stage.run(&mut page(), 0).unwrap_err();
        assert_eq!(failure.error.kind, ErrorKind::Internal);
        assert!(failure.error.message.contains("boom"));
    }
}
