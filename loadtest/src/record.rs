//! What a run observed, with times relative to its start: when each
//! document was due and submitted, when each page and result came back,
//! dead letters, and samples of consumer lag and worker memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use schemas::DocumentResult;

/// A document the load offered.
#[derive(Debug, Clone)]
pub struct Offered {
    pub name: String,
    pub pages: u32,
    pub digital: bool,
    /// When it was due: latency is measured from here, not from when it
    /// could be sent, so a pipeline that holds the sender back is charged
    /// for it (no coordinated omission).
    pub due: Duration,
    /// When the pipeline took it (submit acknowledged), if it did.
    pub accepted: Option<Duration>,
}

/// A periodic sample.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub at: Duration,
    /// Pending plus unacknowledged messages per stage consumer.
    pub lag: Vec<(String, u64)>,
    /// Resident memory per worker, bytes.
    pub rss: Vec<(String, u64)>,
    /// CPU time per worker so far, seconds.
    pub cpu_seconds: Vec<(String, f64)>,
    /// Redeliveries counted by the workers so far.
    pub redelivered: u64,
    /// Worker processes per stage, as `pagestream up` reports them.
    pub replicas: Vec<(String, u64)>,
}

/// Everything observed; shared between the tasks of a run.
#[derive(Debug, Default)]
pub struct Recording {
    pub offered: HashMap<String, Offered>,
    /// Every result received, in arrival order, with its arrival time.
    pub results: Vec<(Duration, DocumentResult)>,
    /// `(doc_id, page_index) -> arrival times` of page completions.
    pub pages: HashMap<(String, u32), Vec<Duration>>,
    /// `(doc_id, stage)` of each dead letter.
    pub dead_letters: Vec<(String, String)>,
    pub samples: Vec<Sample>,
    /// When the last document was due.
    pub last_due: Duration,
    /// When the run stopped waiting.
    pub ended: Duration,
}

/// A [`Recording`] being written, and the clock of the run.
#[derive(Debug, Clone)]
pub struct Recorder {
    started: Instant,
    recording: Arc<Mutex<Recording>>,
}

impl Recorder {
    pub fn new() -> Self {
        Recorder { started: Instant::now(), recording: Arc::default() }
    }

    /// The start of the run.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Time since the start.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Recording) -> T) -> T {
        f(&mut self.recording.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn offer(&self, doc_id: &str, offered: Offered) {
        self.with(|r| {
            r.last_due = r.last_due.max(offered.due);
            r.offered.insert(doc_id.to_string(), offered);
        });
    }

    pub fn accepted(&self, doc_id: &str) {
        let at = self.now();
        self.with(|r| {
            if let Some(offered) = r.offered.get_mut(doc_id) {
                offered.accepted = Some(at);
            }
        });
    }

    pub fn result(&self, result: DocumentResult) {
        let at = self.now();
        self.with(|r| r.results.push((at, result)));
    }

    pub fn page(&self, doc_id: &str, page_index: u32) {
        let at = self.now();
        self.with(|r| r.pages.entry((doc_id.to_string(), page_index)).or_default().push(at));
    }

    pub fn dead_letter(&self, doc_id: &str, stage: &str) {
        self.with(|r| r.dead_letters.push((doc_id.to_string(), stage.to_string())));
    }

    pub fn sample(&self, mut sample: Sample) {
        sample.at = self.now();
        self.with(|r| r.samples.push(sample));
    }

    /// Whether every offered document that was accepted has a result.
    pub fn all_answered(&self) -> bool {
        self.with(|r| {
            let answered: std::collections::HashSet<&str> =
                r.results.iter().map(|(_, result)| result.doc_id.as_str()).collect();
            r.offered.keys().all(|id| answered.contains(id.as_str()))
        })
    }

    /// Documents offered so far.
    pub fn offered(&self) -> usize {
        self.with(|r| r.offered.len())
    }

    /// Ends the run and hands over what was recorded.
    pub fn finish(self) -> Recording {
        let ended = self.now();
        let mut recording =
            std::mem::take(&mut *self.recording.lock().unwrap_or_else(PoisonError::into_inner));
        recording.ended = ended;
        recording
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}
