//! The distributed transport: every stage a pool of worker processes pulling
//! pages from NATS JetStream, running the same [`pages::pipeline::Stage`]s as
//! the embedded transport.
//!
//! ```text
//! submit ─▶ DOCS ─▶ split ─▶ WORK[render] ─▶ render ─▶ WORK[preprocess] ─▶ … ─▶ WORK[assemble] ─▶ assemble ─▶ RESULTS, EVENTS
//!                      failed pages skip ahead to assemble; given-up messages also go to DEAD_LETTER
//! ```
//!
//! Delivery: a worker publishes a page's next message with a
//! `Nats-Msg-Id` naming the page, its run and the target stage, waits for the
//! stream's ack, and only then acknowledges its input (double ack). A crash
//! anywhere in between redelivers the input, and the stream drops the
//! repeated publish as a duplicate; `assemble` counts pages in the key-value
//! bucket with compare-and-set, so each page counts once and the document
//! result is published once.

pub mod advisory;
pub mod assemble;
pub mod claim_check;
pub mod delivery;
pub mod dlq;
pub mod lag;
pub mod local;
pub mod payload;
pub mod provision;
pub mod publish;
pub mod split;
pub mod state;
pub mod submit;
pub mod webhook;
pub mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::context::{Context, ContextBuilder};
use schemas::PageTask;
use schemas::subjects::{STREAM_DOCS, STREAM_WORK, stage_input_all_tenants, submit};
use topology::ConsumerSettings;
use topology::catalogue::{ENTRY_STAGE, EXIT_STAGE};

use crate::blobs::{BlobError, BlobStore};
use crate::metrics::Metrics;
use pages::pipeline::Pipeline;
use payload::ImagePolicy;
use publish::{PublishError, Publisher};
use state::{Cancellations, Documents, StateError};

/// Why the transport could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to nats at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{context}: {error}")]
    JetStream { context: String, error: async_nats::Error },
    #[error("no stage `{name}` to run (known: {known})")]
    UnknownStage { name: String, known: String },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Codec(#[from] schemas::CodecError),
    #[error("document result: {0}")]
    ClaimCheck(#[from] claim_check::ClaimCheckError),
}

impl Error {
    /// Whether doing the same again can never succeed (a message the server
    /// refuses, bytes that do not decode, an object that is not there).
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Publish(error) => error.is_permanent(),
            Error::Codec(_) => true,
            Error::Blob(error) => !matches!(error, BlobError::Store(_)),
            Error::ClaimCheck(error) => !error.is_temporary(),
            _ => false,
        }
    }

    /// A JetStream API error, with what was being done.
    pub fn jetstream(context: impl Into<String>, source: impl Into<async_nats::Error>) -> Self {
        Error::JetStream { context: context.into(), error: source.into() }
    }
}

/// How to reach NATS.
#[derive(Debug, Clone, Default)]
pub struct ConnectConfig {
    /// Server URLs, comma separated.
    pub url: String,
    pub creds: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Prefix of reply subjects (`_INBOX` when empty).
    pub inbox_prefix: String,
    /// Connection name shown by the server.
    pub name: String,
    /// Keep trying when the server is not up yet (workers), instead of
    /// failing at once (one-shot commands).
    pub retry_initial: bool,
}

/// Connects to NATS; later disconnections are retried forever, and logged
/// with the servers tried and since when.
pub async fn connect(config: &ConnectConfig) -> Result<async_nats::Client, Error> {
    let failed = |reason: String| Error::Connect { url: config.url.clone(), reason };
    let outage = Arc::new(Outage { servers: config.url.clone(), since: Mutex::new(None) });
    let mut options = async_nats::ConnectOptions::new()
        .name(&config.name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .event_callback(move |event| {
            let outage = Arc::clone(&outage);
            async move { outage.log(event) }
        });
    if config.retry_initial {
        options = options.retry_on_initial_connect();
    }
    if !config.inbox_prefix.is_empty() {
        options = options.custom_inbox_prefix(&config.inbox_prefix);
    }
    if let Some(creds) = &config.creds {
        options = options
            .credentials_file(creds)
            .await
            .map_err(|e| failed(format!("credentials: {e}")))?;
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(ca) = &config.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone()).require_tls(true);
    }
    let servers = config
        .url
        .split(',')
        .map(|url| url.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(e.to_string()))?;
    options.connect(servers).await.map_err(|e| failed(e.to_string()))
}

/// What the connection reports, logged: the servers' errors (a permissions
/// violation above all) as errors, since the request they refused otherwise
/// only ends in a timeout that does not say why; while disconnected, which
/// servers are tried and since when.
#[derive(Debug)]
struct Outage {
    servers: String,
    since: Mutex<Option<(Instant, SystemTime)>>,
}

impl Outage {
    fn log(&self, event: async_nats::Event) {
        use async_nats::Event;
        let servers = self.servers.as_str();
        let mut since = self.since.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match event {
            Event::ServerError(error) => tracing::error!(%error, "nats server refused"),
            Event::Disconnected => {
                let now = since.get_or_insert((Instant::now(), SystemTime::now()));
                tracing::warn!(servers, since = %rfc3339(now.1), "nats disconnected, reconnecting");
            }
            Event::ClientError(error) => match *since {
                Some((at, wall)) => tracing::error!(
                    %error,
                    servers,
                    since = %rfc3339(wall),
                    down_for_s = at.elapsed().as_secs(),
                    "nats unreachable, still trying"
                ),
                None => tracing::error!(%error, servers, "nats client error"),
            },
            Event::Connected => match since.take() {
                Some((at, _)) => tracing::info!(
                    servers,
                    down_for_s = at.elapsed().as_secs(),
                    "nats connection back"
                ),
                None => tracing::info!(servers, "nats connected"),
            },
            Event::LameDuckMode | Event::SlowConsumer(_) => {
                tracing::warn!(%event, "nats connection")
            }
            Event::Draining | Event::Closed => tracing::info!(%event, "nats connection"),
        }
    }
}

/// A wall-clock time in RFC 3339, for logs.
fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// A JetStream context whose publishes wait for room when too many acks are
/// outstanding (bounded in-flight publishes).
pub fn context(client: async_nats::Client) -> Context {
    ContextBuilder::new()
        .timeout(Duration::from_secs(10))
        .max_ack_inflight(256)
        .backpressure_on_inflight(true)
        .build(client)
}

/// One stage as the transport runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    pub name: String,
    /// Last token of the stage's input subject.
    pub subject: String,
    pub consumer: ConsumerSettings,
    /// Pages one worker process works on at once.
    pub concurrency: usize,
}

/// The path of a page: split, the page stages in order, assemble.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// `split`, the page stages, `assemble`.
    stages: Vec<StagePlan>,
}

impl Route {
    /// The route through the page stages `names` (in order), with subjects
    /// and consumer settings from `topology` where it defines the stage.
    pub fn new<'a>(
        topology: &topology::Pipeline,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let plan = |name: &str| {
            let stage = topology.stage(name);
            StagePlan {
                name: name.to_string(),
                subject: stage.map_or(name, |s| s.subject()).to_string(),
                consumer: stage.map(|s| s.consumer().clone()).unwrap_or_default(),
                concurrency: stage.map_or(1, |s| s.concurrency() as usize).max(1),
            }
        };
        let page_stages = names.into_iter().filter(|n| *n != ENTRY_STAGE && *n != EXIT_STAGE);
        let stages = std::iter::once(ENTRY_STAGE)
            .chain(page_stages)
            .chain(std::iter::once(EXIT_STAGE))
            .map(plan)
            .collect();
        Route { stages }
    }

    /// The route of the topology's own stages, in topological order.
    pub fn from_topology(topology: &topology::Pipeline) -> Self {
        let names: Vec<&str> = topology.stages().iter().map(|s| s.name()).collect();
        Route::new(topology, names)
    }

    /// Every stage, `split` first and `assemble` last.
    pub fn stages(&self) -> &[StagePlan] {
        &self.stages
    }

    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&StagePlan> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The stage after `name` (`assemble` after the last page stage).
    pub fn next(&self, name: &str) -> &StagePlan {
        let position = self.stages.iter().position(|s| s.name == name).unwrap_or(0);
        &self.stages[(position + 1).min(self.stages.len() - 1)]
    }

    /// The stage pages of `name` are given up to: `assemble`.
    pub fn exit(&self) -> &StagePlan {
        &self.stages[self.stages.len() - 1]
    }

    /// `(stream, consumer name, filter subject)` of every stage.
    pub fn consumers(&self) -> Vec<(String, String, String)> {
        self.stages.iter().map(|s| self.consumer(&s.name)).collect()
    }

    /// `(stream, consumer name, filter subject)` of stage `name`.
    pub fn consumer(&self, name: &str) -> (String, String, String) {
        if name == ENTRY_STAGE {
            return (STREAM_DOCS.to_string(), name.to_string(), submit("*"));
        }
        let subject = self.stage(name).map_or(name, |s| s.subject.as_str());
        (STREAM_WORK.to_string(), name.to_string(), stage_input_all_tenants(subject))
    }

    /// The input subject of stage `name` for `tenant`.
    pub fn subject(&self, tenant: &str, name: &str) -> String {
        let subject = self.stage(name).map_or(name, |s| s.subject.as_str());
        schemas::subjects::stage_input(tenant, subject)
    }
}

/// `Nats-Msg-Id` of page `task` entering `stage`:
/// `<tenant>/<run>/<doc_id>/<page>/<stage>[/r<replay>]`. The tenant keeps
/// equal documents of two tenants apart, the run (the submission time) makes
/// a document submitted again after it finished a new run.
pub fn page_msg_id(task: &PageTask, stage: &str, replay: Option<u64>) -> String {
    let (tenant, run, doc_id, page) =
        (&task.tenant, task.submitted_at_ms, &task.doc_id, task.page_index);
    with_replay(format!("{tenant}/{run}/{doc_id}/{page}/{stage}"), replay)
}

/// `Nats-Msg-Id` of a document-level message such as its result:
/// `<tenant>/<run>/<doc_id>/<what>[/r<replay>]`.
pub fn document_msg_id(
    tenant: &str,
    doc_id: &str,
    submitted_at_ms: u64,
    what: &str,
    replay: Option<u64>,
) -> String {
    with_replay(format!("{tenant}/{submitted_at_ms}/{doc_id}/{what}"), replay)
}

fn with_replay(id: String, replay: Option<u64>) -> String {
    match replay {
        Some(replay) => format!("{id}/r{replay}"),
        None => id,
    }
}

/// Settings of a worker process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub images: ImagePolicy,
    /// Pages worked on at once per stage, overriding the topology.
    pub concurrency: Option<usize>,
    /// How long one pull request waits for messages.
    pub fetch_expires: Duration,
    /// On shutdown, how long in-flight pages may finish before they are
    /// handed back (nak) and the process exits.
    pub shutdown_timeout: Duration,
    /// Fill ratio of the work stream above which `split` waits before
    /// fanning out another document (room kept for pages between stages).
    pub work_high_water: f64,
    /// Page messages of one document awaiting their publish ack at once.
    pub publish_window: usize,
    /// Document results larger than this travel by claim check.
    pub result_inline_max_bytes: usize,
    /// How long a publish that fails for now is retried before the message
    /// it belongs to is retried as a whole (nak) or given up.
    pub publish_retry_for: Duration,
    /// Decoded page images kept for this process's own next stage (see
    /// [`local`]); 0 keeps none.
    pub local_images: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            images: ImagePolicy::default(),
            concurrency: None,
            fetch_expires: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(25),
            work_high_water: 0.8,
            publish_window: 64,
            result_inline_max_bytes: 256 << 10,
            publish_retry_for: Duration::from_secs(60),
            local_images: 8,
        }
    }
}

/// NATS's default `max_payload`, assumed when the server did not say.
const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// Everything a worker process shares between its stages.
#[derive(Debug)]
pub struct Runtime {
    pub js: Context,
    pub documents: Documents,
    pub cancellations: Cancellations,
    pub blobs: BlobStore,
    pub pipeline: Arc<Pipeline>,
    pub route: Route,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub publisher: Publisher,
    /// Per page stage, whether a later stage reads the document bytes.
    keep_document: HashMap<String, bool>,
    /// The tenants the topology declares; empty: every tenant.
    tenants: Vec<String>,
    /// Largest message published as it is; larger page payloads and dead
    /// letters travel by claim check (see [`claim_check`]).
    pub message_limit: usize,
    /// The topology's time limit of one step on one page.
    step_timeout: Duration,
    /// Decoded images handed on to this process's own stages.
    pub local_images: local::LocalImages,
}

impl Runtime {
    /// Binds the runtime to the server behind `client`: the document bucket
    /// must exist (`pagestream streams apply`).
    pub async fn new(
        client: async_nats::Client,
        pipeline: Pipeline,
        topology: &topology::Pipeline,
        blobs: BlobStore,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let js = context(client.clone());
        let kv = js.get_key_value(schemas::subjects::KV_DOCUMENTS).await.map_err(|e| {
            Error::jetstream("cannot open the document bucket (run `pagestream streams apply`)", e)
        })?;
        // Room for headers and the envelope under the server's limit; inline
        // images and documents get a third of it each, at most. Read once
        // the server answered: a client still connecting knows no limit yet.
        let max_payload = match client.server_info().max_payload {
            0 => DEFAULT_MAX_PAYLOAD,
            known => known,
        };
        let message_limit = (max_payload / 4 * 3).max(16 << 10);
        let mut settings = settings;
        settings.images.inline_max_bytes = settings.images.inline_max_bytes.min(message_limit / 3);
        let local_images = local::LocalImages::new(settings.local_images);
        let documents = Documents::new(kv);
        let cancellations = documents.watch_cancellations();
        let route = Route::from_topology(topology);
        // From the topology, not from this process's stages: a pool that
        // serves some stages must still carry the bytes a later pool reads.
        let stages = topology.stages();
        let keep_document = stages
            .iter()
            .enumerate()
            .map(|(i, stage)| {
                let later = stages[i + 1..].iter().any(|s| s.reads_document());
                (stage.name().to_string(), later)
            })
            .collect();
        let publisher = Publisher::new(js.clone())
            .retry_for(settings.publish_retry_for)
            .with_metrics(Arc::clone(&metrics));
        Ok(Runtime {
            js,
            documents,
            cancellations,
            blobs,
            pipeline: Arc::new(pipeline),
            route,
            settings,
            metrics,
            publisher,
            keep_document,
            tenants: topology.tenants().keys().cloned().collect(),
            message_limit,
            step_timeout: topology.limits().step_timeout,
            local_images,
        })
    }

    /// Whether the pipeline has `assemble` steps of its own (which may
    /// want the page image).
    pub fn has_exit_steps(&self) -> bool {
        self.pipeline.stage(EXIT_STAGE).is_some_and(|s| !s.steps.is_empty())
    }

    /// Whether documents of `tenant` are accepted (see
    /// [`topology::Pipeline::accepts_tenant`]).
    pub fn accepts_tenant(&self, tenant: &str) -> bool {
        self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant)
    }

    /// How long a page may stay in `stage` before the stage counts as stuck:
    /// the step time limit for each of its steps.
    pub fn stage_time_limit(&self, stage: &str) -> Duration {
        let steps = self.pipeline.stage(stage).map_or(1, |s| s.steps.len().max(1));
        self.step_timeout * u32::try_from(steps).unwrap_or(u32::MAX)
    }

    /// Whether pages leaving `stage` must keep the document bytes.
    pub fn keep_document(&self, stage: &str) -> bool {
        self.keep_document.get(stage).copied().unwrap_or(stage == ENTRY_STAGE)
    }
}

/// What a worker process runs: the document splitter, a page stage, or the
/// assembler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Split,
    Stage(String),
    Assemble,
}

impl Role {
    /// The stage name.
    pub fn name(&self) -> &str {
        match self {
            Role::Split => ENTRY_STAGE,
            Role::Stage(name) => name,
            Role::Assemble => EXIT_STAGE,
        }
    }

    /// Parses `--stage`: `all`, or stage names separated by commas.
    pub fn parse(spec: &str, runtime: &Runtime) -> Result<Vec<Role>, Error> {
        let known: Vec<&str> = runtime.route.stages().iter().map(|s| s.name.as_str()).collect();
        let names: Vec<&str> = if spec.trim() == "all" {
            known.clone()
        } else {
            spec.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
        };
        names
            .into_iter()
            .map(|name| match name {
                ENTRY_STAGE => Ok(Role::Split),
                EXIT_STAGE => Ok(Role::Assemble),
                name if runtime.pipeline.stage(name).is_some() => Ok(Role::Stage(name.to_string())),
                name => {
                    Err(Error::UnknownStage { name: name.to_string(), known: known.join(", ") })
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use schemas::{DocumentKind, DocumentSource};

    #[test]
    fn route_runs_split_page_stages_assemble() {
        let topology = topology::Pipeline::embedded(pages::steps::catalogue()).unwrap();
        let route = Route::new(&topology, ["render", "ocr", "assemble"]);
        let names: Vec<_> = route.stages().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["split", "render", "ocr", "assemble"]);
        assert_eq!(route.next("split").name, "render");
        assert_eq!(route.next("render").name, "ocr");
        assert_eq!(route.next("ocr").name, "assemble");
        assert_eq!(route.next("assemble").name, "assemble");
        assert_eq!(route.subject("acme", "ocr"), "pagestream.acme.pages.ocr");
        assert_eq!(route.stage("ocr").unwrap().consumer.max_ack_pending, 32);
        assert_eq!(Route::from_topology(&topology).stages().len(), 7);
    }

    #[test]
    fn message_ids_name_page_run_stage_and_replay() {
        let task = PageTask {
            doc_id: "abc".into(),
            tenant: "acme".into(),
            page_index: 3,
            page_count: 9,
            kind: DocumentKind::Pdf,
            source: DocumentSource::Inline { bytes: Vec::new() },
            submitted_at_ms: 42,
        };
        assert_eq!(page_msg_id(&task, "ocr", None), "acme/42/abc/3/ocr");
        assert_eq!(page_msg_id(&task, "ocr", Some(7)), "acme/42/abc/3/ocr/r7");
        assert_eq!(document_msg_id("acme", "abc", 42, "result", None), "acme/42/abc/result");
    }
}
