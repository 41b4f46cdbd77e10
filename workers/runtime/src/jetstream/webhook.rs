//! The webhook sink: every document result of a tenant with a webhook in the
//! topology is POSTed to it as JSON, read from the results stream through
//! the durable consumer [`CONSUMER`], so a sink that was down catches up.
//!
//! Each request carries
//! - `Pagestream-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`, the HMAC
//!   under the tenant's secret of `<t>.<body>` (the receiver recomputes it
//!   and rejects old timestamps, so a captured request cannot be replayed
//!   later);
//! - `Pagestream-Delivery: <results stream sequence>`, the same on every
//!   retry of one result: the receiver's idempotency key;
//! - `Pagestream-Tenant`, `Pagestream-Doc-Id`, `Pagestream-Attempt`.
//!
//! A 2xx answer acknowledges the result. A 408, 429 or 5xx answer, a
//! timeout or a connection failure is retried with the configured backoff;
//! after `max_deliver` attempts, or on any other answer (the receiver
//! rejects it: retrying cannot help), the result is dead-lettered to
//! `pagestream.<tenant>.dead.webhook` with the reason.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use schemas::subjects::{PREFIX, STREAM_RESULTS, dead_letter};
use schemas::{DeadLetter, DocumentResult, ErrorKind, FailureRecord};
use tokio::sync::Semaphore;
use topology::WebhookSettings;

use super::Error;
use super::claim_check::read_result;
use super::publish::{Outgoing, Publisher};
use crate::blobs::BlobStore;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Durable consumer of the results stream that feeds the sink.
pub const CONSUMER: &str = "webhooks";
/// Stage name of the sink in dead letters and metrics.
pub const STAGE: &str = "webhook";
/// Header with the request's signature.
pub const HEADER_SIGNATURE: &str = "Pagestream-Signature";
/// Header with the delivery id (results stream sequence).
pub const HEADER_DELIVERY: &str = "Pagestream-Delivery";

/// The sink's consumer: every result of every tenant, from the start of the
/// stream, with the delivery policy of `[webhooks.consumer]`.
pub fn consumer_config(settings: &WebhookSettings) -> pull::Config {
    let consumer = &settings.consumer;
    pull::Config {
        durable_name: Some(CONSUMER.to_string()),
        name: Some(CONSUMER.to_string()),
        description: Some("pagestream webhook deliveries".into()),
        filter_subject: format!("{PREFIX}.*.results.*"),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: consumer.ack_wait,
        max_deliver: i64::from(consumer.max_deliver),
        max_ack_pending: i64::from(consumer.max_ack_pending),
        max_waiting: 512,
        ..Default::default()
    }
}

/// Where one tenant's results go.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Target {
    pub fn new(url: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Target { url: url.into(), secret: secret.into() }
    }
}

/// Why the sink cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("webhook secret of tenant `{tenant}`: environment variable {name} is not set")]
    MissingSecret { tenant: String, name: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The targets of every tenant with a webhook in `topology`, their secrets
/// read from the environment.
pub fn targets(topology: &topology::Pipeline) -> Result<HashMap<String, Target>, ConfigError> {
    topology
        .tenants()
        .iter()
        .filter_map(|(tenant, config)| Some((tenant, config.webhook.as_ref()?)))
        .map(|(tenant, webhook)| {
            let secret =
                std::env::var(&webhook.secret_env).map_err(|_| ConfigError::MissingSecret {
                    tenant: tenant.clone(),
                    name: webhook.secret_env.clone(),
                })?;
            Ok((tenant.clone(), Target::new(webhook.url.clone(), secret)))
        })
        .collect()
}

/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(format!("{timestamp}.").as_bytes());
    context.update(body);
    format!("t={timestamp},v1={}", hex::encode(context.sign().as_ref()))
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    Delivered,
    /// Worth trying again later.
    Transient(String),
    /// The receiver refused it; trying again cannot help.
    Refused(String),
}

/// Delivers results to webhooks.
#[derive(Debug)]
pub struct Sink {
    http: reqwest::Client,
    targets: HashMap<String, Target>,
    settings: WebhookSettings,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    /// Where claim-checked results are read from.
    blobs: BlobStore,
}

impl Sink {
    /// A sink posting to `targets` with the timeouts and retries of
    /// `settings`; dead letters and acks go through `publisher`;
    /// claim-checked results are read from `blobs`.
    pub fn new(
        targets: HashMap<String, Target>,
        settings: WebhookSettings,
        publisher: Publisher,
        metrics: Arc<Metrics>,
        blobs: BlobStore,
    ) -> Result<Self, ConfigError> {
        // reqwest is built without a crypto provider: use ring, which the
        // NATS client links already. An error means one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("pagestream/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        Ok(Sink { http, targets, settings, publisher, metrics, blobs })
    }

    /// The sink's durable consumer (created by `pagestream streams apply`).
    pub async fn bind(js: &async_nats::jetstream::Context) -> Result<PullConsumer, Error> {
        let context =
            format!("consumer {STREAM_RESULTS}/{CONSUMER} (run `pagestream streams apply`)");
        let stream = js
            .get_stream(STREAM_RESULTS)
            .await
            .map_err(|e| Error::jetstream(context.clone(), e))?;
        stream.get_consumer(CONSUMER).await.map_err(|e| Error::jetstream(context, e))
    }

    /// Delivers until `shutdown`, with at most `concurrency` requests open;
    /// then waits up to `drain` for them to finish.
    pub async fn run(
        self: Arc<Self>,
        consumer: PullConsumer,
        concurrency: usize,
        mut shutdown: Shutdown,
        drain: Duration,
    ) -> Result<(), Error> {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(concurrency.max(1))
            .messages()
            .await
            .map_err(|e| Error::jetstream("cannot pull results for webhooks", e))?;
        loop {
            let permit = tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                permit = Arc::clone(&permits).acquire_owned() => permit,
            };
            let Ok(permit) = permit else { break };
            let next = tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    let sink = Arc::clone(&self);
                    tokio::spawn(async move {
                        sink.handle(message).await;
                        drop(permit);
                    });
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "cannot pull results for webhooks, retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => break,
            }
        }
        let all = u32::try_from(concurrency.max(1)).unwrap_or(u32::MAX);
        if tokio::time::timeout(drain, permits.acquire_many(all)).await.is_err() {
            tracing::warn!("webhook deliveries still open at shutdown; they will be redelivered");
        }
        Ok(())
    }

    /// One result: deliver, retry later, or give up.
    async fn handle(&self, message: Message) {
        let subject = message.subject.to_string();
        // pagestream.<tenant>.results.<doc_id>
        let tenant = schemas::subjects::tenant_of(&subject).unwrap_or_default().to_string();
        let Some(target) = self.targets.get(&tenant) else {
            ack(&message, AckKind::Ack).await;
            return;
        };
        let (sequence, attempt) =
            message.info().map_or((0, 1), |info| (info.stream_sequence, info.delivered.max(1)));
        // A claim-checked result is posted whole.
        let result = match read_result(&self.blobs, &tenant, &message.payload).await {
            Ok(result) => result,
            Err(error)
                if error.is_temporary()
                    && attempt < i64::from(self.settings.consumer.max_deliver) =>
            {
                let delay = backoff(&self.settings.consumer.backoff, attempt);
                tracing::warn!(%error, tenant, attempt, ?delay, "cannot read a result for now, retrying");
                ack(&message, AckKind::Nak(Some(delay))).await;
                return;
            }
            Err(error) => {
                let reason = format!("unreadable result: {error}");
                self.give_up(&message, &tenant, "", attempt, reason).await;
                return;
            }
        };
        let outcome = self.post(target, &result, sequence, attempt).await;
        let stage = [STAGE];
        match outcome {
            Attempt::Delivered => {
                self.metrics.processed.with_label_values(&stage).inc();
                tracing::info!(tenant, doc_id = result.doc_id, attempt, "webhook delivered");
                ack(&message, AckKind::Ack).await;
            }
            Attempt::Transient(reason)
                if attempt < i64::from(self.settings.consumer.max_deliver) =>
            {
                self.metrics.failed.with_label_values(&[STAGE, "delivery", "retry"]).inc();
                let delay = backoff(&self.settings.consumer.backoff, attempt);
                tracing::warn!(
                    tenant,
                    doc_id = result.doc_id,
                    attempt,
                    ?delay,
                    reason,
                    "webhook delivery failed, retrying"
                );
                ack(&message, AckKind::Nak(Some(delay))).await;
            }
            Attempt::Transient(reason) | Attempt::Refused(reason) => {
                self.metrics.failed.with_label_values(&[STAGE, "delivery", "dead_letter"]).inc();
                self.give_up(&message, &tenant, &result.doc_id, attempt, reason).await;
            }
        }
    }

    async fn post(
        &self,
        target: &Target,
        result: &DocumentResult,
        sequence: u64,
        attempt: i64,
    ) -> Attempt {
        let body = match serde_json::to_vec(result) {
            Ok(body) => body,
            Err(error) => return Attempt::Refused(format!("cannot encode the result: {error}")),
        };
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let response = self
            .http
            .post(&target.url)
            .header("Content-Type", "application/json")
            .header(HEADER_SIGNATURE, signature(&target.secret, timestamp, &body))
            .header(HEADER_DELIVERY, sequence.to_string())
            .header("Pagestream-Tenant", result.tenant.as_str())
            .header("Pagestream-Doc-Id", result.doc_id.as_str())
            .header("Pagestream-Attempt", attempt.to_string())
            .body(body)
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => Attempt::Delivered,
            Ok(response) => {
                let status = response.status();
                let reason = format!("{} answered {status}", target.url);
                if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
                    Attempt::Transient(reason)
                } else {
                    Attempt::Refused(reason)
                }
            }
            Err(error) => Attempt::Transient(format!("{}: {error}", target.url)),
        }
    }

    /// Dead-letters the result with `reason` and terminates its delivery.
    async fn give_up(
        &self,
        message: &Message,
        tenant: &str,
        doc_id: &str,
        attempt: i64,
        reason: String,
    ) {
        tracing::warn!(tenant, doc_id, attempt, reason, "webhook delivery given up, dead-lettered");
        let sequence = message.info().map_or(0, |info| info.stream_sequence);
        let letter = DeadLetter {
            tenant: tenant.to_string(),
            failure: FailureRecord::new(doc_id, STAGE, "deliver", ErrorKind::Delivery, reason)
                .after(u32::try_from(attempt).unwrap_or(u32::MAX)),
            subject: message.subject.to_string(),
            payload: message.payload.to_vec(),
            payload_blob: None,
        };
        let dead_tenant = if schemas::subjects::validate_tenant(tenant).is_ok() {
            tenant
        } else {
            schemas::subjects::UNROUTED_TENANT
        };
        let published = Outgoing::encode(
            dead_letter(dead_tenant, STAGE),
            format!("dead/webhook/{sequence}"),
            doc_id,
            &letter,
        );
        match published {
            Ok(outgoing) => match self.publisher.publish(&outgoing).await {
                Ok(_) => {
                    self.metrics.dead_lettered.with_label_values(&[STAGE]).inc();
                    ack(message, AckKind::Term).await;
                }
                // Not dead-lettered: leave it to be redelivered after ack_wait.
                Err(error) => tracing::error!(%error, "cannot dead-letter a webhook delivery"),
            },
            Err(error) => tracing::error!(%error, "cannot encode a webhook dead letter"),
        }
    }
}

/// The delay before attempt `attempt + 1`: the `attempt`-th backoff, the
/// last one repeated, one second when none is configured.
fn backoff(backoff: &[Duration], attempt: i64) -> Duration {
    let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(0);
    backoff.get(index).or(backoff.last()).copied().unwrap_or(Duration::from_secs(1))
}

async fn ack(message: &Message, kind: AckKind) {
    if let Err(error) = message.double_ack_with(kind).await {
        tracing::warn!(%error, "cannot acknowledge a result delivery");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // The same key, timestamp and body always sign alike; a change of
        // any of them changes the signature.
        let signed = signature(b"secret", 1_767_225_600, b"{\"a\":1}");
        assert!(signed.starts_with("t=1767225600,v1="), "{signed}");
        assert_eq!(signed.len(), "t=1767225600,v1=".len() + 64);
        assert_eq!(signed, signature(b"secret", 1_767_225_600, b"{\"a\":1}"));
        assert_ne!(signed, signature(b"secret", 1_767_225_601, b"{\"a\":1}"));
        assert_ne!(signed, signature(b"other", 1_767_225_600, b"{\"a\":1}"));
        assert_ne!(signed, signature(b"secret", 1_767_225_600, b"{\"a\":2}"));
    }

    #[test]
    fn signature_matches_an_independent_hmac() {
        // The signature is the HMAC of "<t>.<body>" as a receiver computes
        // it, and the primitive gives the well-known value of
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"key");
        let tag = ring::hmac::sign(&key, b"1.The quick brown fox jumps over the lazy dog");
        let expected = format!("t=1,v1={}", hex::encode(tag.as_ref()));
        assert_eq!(signature(b"key", 1, b"The quick brown fox jumps over the lazy dog"), expected);
        let known = ring::hmac::sign(&key, b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex::encode(known.as_ref()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn backoff_repeats_its_last_delay() {
        let delays = [1, 5, 30].map(Duration::from_secs);
        assert_eq!(backoff(&delays, 1), Duration::from_secs(1));
        assert_eq!(backoff(&delays, 3), Duration::from_secs(30));
        assert_eq!(backoff(&delays, 9), Duration::from_secs(30));
        assert_eq!(backoff(&[], 2), Duration::from_secs(1));
    }
}
