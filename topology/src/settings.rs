//! Typed settings of a pipeline file: the limits every step obeys
//! (`[limits]`), the steps' own tables (`[steps.*]`, typed by each step),
//! and how the transport runs (`[streams.*]`, per-stage consumer, scaling
//! and resources).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::duration;

/// Hard limits that protect workers from hostile or broken input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest document accepted, in bytes.
    pub max_document_bytes: u64,
    /// Most pages a document may have.
    pub max_pages: u32,
    /// Most pixels a rendered or decoded page may have.
    pub max_page_pixels: u64,
    /// Longest one step may run on one page before it is abandoned.
    #[serde(deserialize_with = "duration::deserialize")]
    pub step_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_document_bytes: 64 << 20,
            max_pages: 500,
            max_page_pixels: 40_000_000,
            step_timeout: Duration::from_secs(30),
        }
    }
}

/// A `[steps.<name>]` table: the settings of the built-in step `<name>`,
/// or, with `kind`, a rule step of that kind called `<name>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepTable {
    /// The rule kind; `None` for a built-in step's settings.
    pub kind: Option<String>,
    /// The other keys, as written; the step's own settings type reads them.
    pub settings: toml::Table,
}

/// An ONNX model file and how to run it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// File, relative to the model directory.
    pub path: PathBuf,
    /// Expected sha256 of the file, 64 lowercase hex digits.
    pub sha256: String,
    /// Threads one inference session uses (ONNX Runtime intra-op threads).
    #[serde(default = "one")]
    pub intra_threads: u16,
}

fn one() -> u16 {
    1
}

/// When JetStream drops messages of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Kept until a limit (`max_bytes`, `max_age`) is reached.
    Limits,
    /// Removed once acknowledged by the one consumer of its subject.
    Workqueue,
    /// Removed once every consumer interested in it has acknowledged it.
    Interest,
}

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk; survives restarts.
    File,
    /// In memory.
    Memory,
}

/// What a full stream does with a new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    /// Drops the oldest messages to make room.
    Old,
    /// Refuses the new message, pushing back on the publisher.
    New,
}

/// Settings of one JetStream stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// When messages are removed.
    pub retention: Retention,
    /// Where messages are kept.
    pub storage: Storage,
    /// Largest size of the stream, in bytes.
    pub max_bytes: u64,
    /// Oldest message kept; zero keeps messages regardless of age.
    #[serde(deserialize_with = "duration::deserialize")]
    pub max_age: Duration,
    /// What happens when the stream is full.
    pub discard: Discard,
    /// Window in which a message with an already seen `Nats-Msg-Id` is
    /// dropped as a duplicate.
    #[serde(deserialize_with = "duration::deserialize")]
    pub duplicate_window: Duration,
    /// Copies kept in a cluster (1 to 5).
    pub replicas: u8,
}

/// The five streams of pagestream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Streams {
    /// Submitted documents.
    pub docs: StreamSettings,
    /// Pages between stages.
    pub work: StreamSettings,
    /// Document results.
    pub results: StreamSettings,
    /// Events.
    pub events: StreamSettings,
    /// Pages that failed for good.
    pub dead_letter: StreamSettings,
}

/// How a stage's durable pull consumer delivers pages.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSettings {
    /// Time a worker has to acknowledge a page before it is redelivered.
    #[serde(deserialize_with = "duration::deserialize")]
    pub ack_wait: Duration,
    /// Deliveries of a page before it goes to the dead-letter stream.
    pub max_deliver: u32,
    /// Delays before successive redeliveries; must be shorter than
    /// `max_deliver`.
    #[serde(deserialize_with = "duration::deserialize_list")]
    pub backoff: Vec<Duration>,
    /// Most pages delivered and not yet acknowledged, over all workers.
    pub max_ack_pending: u32,
    /// Most pages a worker fetches in one request.
    pub fetch_batch: u32,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            backoff: [1, 5, 30].map(Duration::from_secs).to_vec(),
            max_ack_pending: 64,
            fetch_batch: 8,
        }
    }
}

/// How a stage's worker pool scales on its consumer lag.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingPolicy {
    /// Pending pages one replica is expected to handle; the pool gets
    /// `ceil(lag / lag_threshold)` replicas.
    pub lag_threshold: u64,
    /// Fewest replicas (zero allows scaling to zero).
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
    /// Time the lag must stay low before replicas are removed.
    #[serde(deserialize_with = "duration::deserialize")]
    pub cooldown: Duration,
    /// Lag above which a pool scaled to zero is woken (KEDA's
    /// `activationLagThreshold`); matters only with `min_replicas = 0`.
    pub activation_lag: u64,
    /// Replicas to keep while the lag cannot be read (KEDA's `fallback`);
    /// `min_replicas` (at least 1) when absent.
    pub fallback_replicas: Option<u32>,
}

impl ScalingPolicy {
    /// Replicas to keep while the lag cannot be read.
    pub fn fallback(&self) -> u32 {
        self.fallback_replicas.unwrap_or(self.min_replicas.max(1))
    }
}

impl Default for ScalingPolicy {
    fn default() -> Self {
        ScalingPolicy {
            lag_threshold: 10,
            min_replicas: 1,
            max_replicas: 4,
            cooldown: Duration::from_secs(300),
            activation_lag: 0,
            fallback_replicas: None,
        }
    }
}

/// CPU and memory one replica of a stage asks for and may use, as
/// Kubernetes quantities (`"500m"`, `"2"`; `"256Mi"`, `"1Gi"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// CPU reserved for a replica (its request).
    pub cpu: String,
    /// Memory reserved for a replica (its request).
    pub memory: String,
    /// Most CPU a replica may use (its limit).
    pub cpu_limit: String,
    /// Most memory a replica may use before it is killed (its limit).
    pub memory_limit: String,
}

impl Resources {
    /// A CPU quantity in millicores: `"500m"`, `"2"`, `"0.5"`.
    pub fn cpu_millis(quantity: &str) -> Option<u64> {
        if let Some(millis) = quantity.strip_suffix('m') {
            return millis.parse().ok();
        }
        let cores: f64 = quantity.parse().ok()?;
        (cores.is_finite() && cores >= 0.0).then(|| (cores * 1000.0).round() as u64)
    }

    /// A memory quantity in bytes: `"256Mi"`, `"1Gi"`, `"500M"`, `"1048576"`.
    pub fn memory_bytes(quantity: &str) -> Option<u64> {
        const UNITS: [(&str, u64); 8] = [
            ("Ki", 1 << 10),
            ("Mi", 1 << 20),
            ("Gi", 1 << 30),
            ("Ti", 1 << 40),
            ("k", 1_000),
            ("M", 1_000_000),
            ("G", 1_000_000_000),
            ("T", 1_000_000_000_000),
        ];
        let (digits, unit) = UNITS
            .iter()
            .find_map(|(suffix, unit)| Some((quantity.strip_suffix(suffix)?, *unit)))
            .unwrap_or((quantity, 1));
        digits.parse::<u64>().ok()?.checked_mul(unit)
    }
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpu: "250m".into(),
            memory: "256Mi".into(),
            cpu_limit: "1".into(),
            memory_limit: "512Mi".into(),
        }
    }
}

/// A tenant declared in `[tenants.<name>]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Where the tenant's finished documents are posted, if anywhere.
    #[serde(default)]
    pub webhook: Option<Webhook>,
}

/// A tenant's webhook: every document result is POSTed to `url` as JSON,
/// signed with HMAC-SHA256 under the secret in environment variable
/// `secret_env` (never in the file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Name of the environment variable holding the signing secret.
    pub secret_env: String,
}

/// How webhooks are delivered (`[webhooks]`), for every tenant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Longest wait for the receiver's answer to one delivery.
    #[serde(deserialize_with = "duration::deserialize")]
    pub timeout: Duration,
    /// The webhook sink's consumer of the results stream: `max_deliver`
    /// attempts with `backoff` between them, then a dead letter.
    pub consumer: ConsumerSettings,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            timeout: Duration::from_secs(10),
            consumer: ConsumerSettings {
                max_deliver: 6,
                backoff: [1, 5, 30, 120, 600].map(Duration::from_secs).to_vec(),
                ..ConsumerSettings::default()
            },
        }
    }
}
