//! Bulk ingestion: every document of a local directory (recursively) or of
//! an object-store URL submitted with bounded concurrency and an optional
//! rate, slowed down by the pipeline's backpressure (a full DOCS stream
//! refuses publishes; the publisher waits and retries), never dropping one.
//!
//! Resumable: each accepted document is appended to a checkpoint file (one
//! JSON line: key, size, modification time, document id) once the stream
//! has acknowledged it. A rerun skips the keys recorded with the same size
//! and time without reading them, and documents whose content (document id)
//! was already accepted; JetStream's duplicate window catches what was in
//! flight when the previous run stopped.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::glob::Filter;
use super::{PrepareError, Prepared, prepare_bytes};
use crate::blobs::{BlobError, BlobStore, sha256_hex};
use crate::jetstream::publish::Publisher;
use crate::jetstream::submit::{SubmitError, submit};
use pages::steps::split;

/// Why ingestion stopped before it went through the source.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot list {source_name}: {reason}")]
    List { source_name: String, reason: String },
    #[error("checkpoint {path}: {source}")]
    Checkpoint { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// Where documents come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A local directory, walked recursively.
    Dir(PathBuf),
    /// Every object of an object store (`file://` or `s3://` URL).
    Store(BlobStore),
}

impl Source {
    /// `SOURCE` as given on the command line: a URL with a scheme is an
    /// object store, anything else a local directory.
    pub fn parse(text: &str) -> Result<Source, IngestError> {
        let failed = |reason: String| IngestError::List { source_name: text.to_string(), reason };
        if text.contains("://") {
            if let Some(dir) = text.strip_prefix("file://")
                && !Path::new(dir).is_dir()
            {
                return Err(failed("no such directory".into()));
            }
            return BlobStore::open(text).map(Source::Store).map_err(|e| failed(e.to_string()));
        }
        let dir = PathBuf::from(text);
        if !dir.is_dir() {
            return Err(failed("not a directory".into()));
        }
        Ok(Source::Dir(dir))
    }

    /// How the source is named in the checkpoint and in messages.
    pub fn name(&self) -> String {
        match self {
            Source::Dir(dir) => {
                std::path::absolute(dir).unwrap_or(dir.clone()).display().to_string()
            }
            Source::Store(store) => store.url().to_string(),
        }
    }

    /// Every document candidate the filter takes, sorted by key.
    pub async fn list(&self, filter: &Filter) -> Result<Vec<Item>, IngestError> {
        let failed = |reason: String| IngestError::List { source_name: self.name(), reason };
        let mut items = match self {
            Source::Dir(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || walk(&dir))
                    .await
                    .map_err(|e| failed(e.to_string()))?
                    .map_err(|e| failed(e.to_string()))?
            }
            Source::Store(store) => store
                .list()
                .await
                .map_err(|e| failed(e.to_string()))?
                .into_iter()
                .map(|listed| Item {
                    key: listed.key,
                    size: listed.size,
                    modified_ms: listed.modified_ms,
                })
                .collect(),
        };
        items.retain(|item| filter.accepts(&item.key));
        items.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(items)
    }

    async fn read(&self, item: &Item) -> Result<Vec<u8>, std::io::Error> {
        match self {
            Source::Dir(dir) => tokio::fs::read(dir.join(&item.key)).await,
            Source::Store(store) => store
                .get_key(&item.key)
                .await
                .map(|bytes| bytes.to_vec())
                .map_err(|e: BlobError| std::io::Error::other(e.to_string())),
        }
    }
}

/// A file of the source: its key (path relative to the source, `/`
/// separated), size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: String,
    pub size: u64,
    pub modified_ms: u64,
}

/// The files under `root`, keys relative to it (symbolic links are not
/// followed, so a link loop cannot trap the walk).
fn walk(root: &Path) -> std::io::Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                let meta = entry.metadata()?;
                let modified_ms = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as u64);
                let path = entry.path();
                let relative = path.strip_prefix(root).unwrap_or(&path);
                let key = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                items.push(Item { key, size: meta.len(), modified_ms });
            }
        }
    }
    Ok(items)
}

/// One line of the checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Accepted {
    key: String,
    size: u64,
    modified_ms: u64,
    doc_id: String,
}

/// What was accepted before, and where newly accepted documents are appended.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    by_key: HashMap<String, Accepted>,
    doc_ids: HashSet<String>,
    file: std::fs::File,
}

impl Checkpoint {
    /// The default checkpoint of ingesting `source` for `tenant`:
    /// `<dir>/<tenant>-<hash of the source name>.jsonl`.
    pub fn default_path(dir: &Path, tenant: &str, source: &Source) -> PathBuf {
        let hash = sha256_hex(source.name().as_bytes());
        dir.join(format!("{tenant}-{}.jsonl", &hash[..16]))
    }

    /// Opens (or creates) the checkpoint at `path`. Unreadable lines (a
    /// line cut short by a crash) are ignored.
    pub fn open(path: &Path) -> Result<Checkpoint, IngestError> {
        let failed = |source| IngestError::Checkpoint { path: path.to_path_buf(), source };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(failed)?;
        }
        let mut by_key = HashMap::new();
        let mut doc_ids = HashSet::new();
        if path.exists() {
            let reader = std::io::BufReader::new(std::fs::File::open(path).map_err(failed)?);
            for line in reader.lines() {
                let line = line.map_err(failed)?;
                if let Ok(accepted) = serde_json::from_str::<Accepted>(&line) {
                    doc_ids.insert(accepted.doc_id.clone());
                    by_key.insert(accepted.key.clone(), accepted);
                }
            }
        }
        let file =
            std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(failed)?;
        Ok(Checkpoint { path: path.to_path_buf(), by_key, doc_ids, file })
    }

    /// Where the checkpoint is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Documents recorded as accepted.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether nothing is recorded yet.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn has_item(&self, item: &Item) -> bool {
        self.by_key
            .get(&item.key)
            .is_some_and(|a| a.size == item.size && a.modified_ms == item.modified_ms)
    }

    fn record(&mut self, item: &Item, doc_id: &str) -> std::io::Result<()> {
        let accepted = Accepted {
            key: item.key.clone(),
            size: item.size,
            modified_ms: item.modified_ms,
            doc_id: doc_id.to_string(),
        };
        let mut line = serde_json::to_string(&accepted).map_err(std::io::Error::other)?;
        line.push('\n');
        // One write per line: a crash leaves at most one partial last line.
        self.file.write_all(line.as_bytes())?;
        self.file.flush()?;
        self.doc_ids.insert(accepted.doc_id.clone());
        self.by_key.insert(accepted.key.clone(), accepted);
        Ok(())
    }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Submitted; the DOCS stream has it.
    Accepted { doc_id: String, pages: u32 },
    /// Not submitted again: why.
    Skipped { reason: String },
    /// Not a document the pipeline takes: why.
    Rejected { kind: schemas::ErrorKind, reason: String },
}

/// One file's outcome, as reported while ingesting.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub key: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// How to ingest.
#[derive(Debug, Clone)]
pub struct Options {
    pub tenant: String,
    /// Documents read, checked and submitted at once.
    pub concurrency: usize,
    /// Most documents started per second, if limited.
    pub rate: Option<f64>,
    pub limits: split::Config,
    /// Documents up to this size go inline in the message.
    pub inline_max_bytes: usize,
}

/// Submits every item of `source` not in `checkpoint`, calling `report`
/// with each outcome as it happens (in completion order).
pub async fn ingest(
    source: &Source,
    items: Vec<Item>,
    checkpoint: Checkpoint,
    publisher: &Publisher,
    blobs: &BlobStore,
    options: &Options,
    mut report: impl FnMut(Report),
) -> Result<Checkpoint, IngestError> {
    let checkpoint = Mutex::new(checkpoint);
    let pacer = Pacer::new(options.rate);
    {
        let outcomes = futures::stream::iter(items)
            .map(|item| {
                let (checkpoint, pacer) = (&checkpoint, &pacer);
                async move {
                    let outcome =
                        one(source, &item, checkpoint, pacer, publisher, blobs, options).await;
                    outcome.map(|outcome| Report { key: item.key, outcome })
                }
            })
            .buffer_unordered(options.concurrency.max(1));
        let mut outcomes = std::pin::pin!(outcomes);
        while let Some(outcome) = outcomes.next().await {
            report(outcome?);
        }
    }
    Ok(checkpoint.into_inner().unwrap_or_else(PoisonError::into_inner))
}

async fn one(
    source: &Source,
    item: &Item,
    checkpoint: &Mutex<Checkpoint>,
    pacer: &Pacer,
    publisher: &Publisher,
    blobs: &BlobStore,
    options: &Options,
) -> Result<Outcome, IngestError> {
    let lock = || checkpoint.lock().unwrap_or_else(PoisonError::into_inner);
    if lock().has_item(item) {
        return Ok(Outcome::Skipped { reason: "accepted by an earlier run".into() });
    }
    if item.size > options.limits.max_document_bytes {
        return Ok(Outcome::Rejected {
            kind: schemas::ErrorKind::TooLarge,
            reason: format!(
                "document is {} bytes, the limit is {}",
                item.size, options.limits.max_document_bytes
            ),
        });
    }
    pacer.wait().await;
    let bytes = match source.read(item).await {
        Ok(bytes) => bytes,
        Err(error) => {
            return Ok(Outcome::Rejected {
                kind: schemas::ErrorKind::Unavailable,
                reason: format!("cannot read: {error}"),
            });
        }
    };
    let (key, limits) = (item.key.clone(), options.limits.clone());
    let name = key.rsplit('/').next().unwrap_or(&key).to_string();
    let prepared = tokio::task::spawn_blocking(move || prepare_bytes(&key, name, bytes, &limits))
        .await
        .map_err(|e| IngestError::List { source_name: source.name(), reason: e.to_string() })?;
    let Prepared { name, bytes, doc_id, pages, .. } = match prepared {
        Ok(prepared) => prepared,
        Err(PrepareError::Rejected { kind, message, .. }) => {
            return Ok(Outcome::Rejected { kind, reason: message });
        }
        Err(PrepareError::Unreadable { source, .. }) => {
            return Ok(Outcome::Rejected {
                kind: schemas::ErrorKind::Unavailable,
                reason: format!("cannot read: {source}"),
            });
        }
    };
    if lock().doc_ids.contains(&doc_id) {
        return Ok(Outcome::Skipped {
            reason: format!("same content as accepted document {doc_id}"),
        });
    }
    let submitted =
        submit(publisher, blobs, &options.tenant, Some(&name), bytes, options.inline_max_bytes)
            .await?;
    {
        let mut checkpoint = lock();
        if let Err(source) = checkpoint.record(item, &doc_id) {
            return Err(IngestError::Checkpoint { path: checkpoint.path.clone(), source });
        }
    }
    if submitted.duplicate {
        return Ok(Outcome::Skipped {
            reason: format!("same content as document {doc_id}, submitted moments ago"),
        });
    }
    Ok(Outcome::Accepted { doc_id, pages })
}

/// Spaces document starts `1 / rate` seconds apart (none when unlimited).
#[derive(Debug)]
struct Pacer {
    interval: Option<Duration>,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    fn new(rate: Option<f64>) -> Self {
        let interval =
            rate.filter(|r| r.is_finite() && *r > 0.0).map(|r| Duration::from_secs_f64(1.0 / r));
        Pacer { interval, next: tokio::sync::Mutex::new(tokio::time::Instant::now()) }
    }

    async fn wait(&self) {
        let Some(interval) = self.interval else { return };
        let mut next = self.next.lock().await;
        let now = tokio::time::Instant::now();
        if *next > now {
            tokio::time::sleep_until(*next).await;
        }
        *next = (*next).max(now) + interval;
    }
}

/// Totals of an ingestion run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub accepted: usize,
    pub pages: u64,
    pub skipped: usize,
    pub rejected: usize,
    /// `(key, reason)` of every rejected file.
    pub rejections: Vec<(String, String)>,
}

impl Summary {
    /// Adds one outcome.
    pub fn add(&mut self, report: &Report) {
        match &report.outcome {
            Outcome::Accepted { pages, .. } => {
                self.accepted += 1;
                self.pages += u64::from(*pages);
            }
            Outcome::Skipped { .. } => self.skipped += 1,
            Outcome::Rejected { reason, .. } => {
                self.rejected += 1;
                self.rejections.push((report.key.clone(), reason.clone()));
            }
        }
    }
}
