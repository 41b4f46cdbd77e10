//! Publishing to streams with de-duplication ids, awaiting the server's ack,
//! and retrying with backoff while a stream is full (`discard = new` refuses
//! the message: "maximum bytes exceeded") or the server is unreachable.
//!
//! Every failure is classified: a publish that cannot succeed however often
//! it is tried (no stream takes the subject, the message is over the
//! server's `max_payload`, the stream refuses it) is [`PublishError::Refused`]
//! at once; anything else is retried, for at most the publisher's
//! [`Publisher::retry_for`] when one is set.
//!
//! Retrying is safe because every message carries a `Nats-Msg-Id`: a publish
//! that reached the stream but whose ack was lost is recognised as a
//! duplicate when it is sent again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{Context, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use schemas::Message;
use schemas::subjects::{HEADER_DOC_ID, HEADER_KIND, HEADER_SCHEMA};

use crate::metrics::Metrics;

/// A message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    /// The `Nats-Msg-Id` the stream de-duplicates on.
    pub msg_id: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

impl Outgoing {
    /// Encodes `message` with the kind, schema and document headers.
    pub fn encode<M: Message>(
        subject: String,
        msg_id: String,
        doc_id: &str,
        message: &M,
    ) -> Result<Self, schemas::CodecError> {
        let payload = Bytes::from(schemas::encode(message)?);
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_KIND, M::KIND);
        headers.insert(HEADER_SCHEMA, schemas::SCHEMA_VERSION.to_string().as_str());
        if !doc_id.is_empty() {
            headers.insert(HEADER_DOC_ID, doc_id);
        }
        Ok(Outgoing { subject, msg_id, headers, payload })
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.insert(name, value);
        self
    }
}

/// Why a message was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Trying again cannot help.
    #[error("publish to `{subject}` refused: {reason}")]
    Refused { subject: String, reason: String },
    #[error(
        "publish to `{subject}` still failing after {attempts} attempts over {elapsed:?}: {reason}"
    )]
    GaveUp { subject: String, attempts: u32, elapsed: Duration, reason: String },
}

impl PublishError {
    /// Whether trying again can never succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, PublishError::Refused { .. })
    }
}

/// What a failed attempt means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The stream is full: wait for consumers to make room.
    Full,
    /// The server or stream is unreachable for now.
    Unavailable,
    /// Trying again cannot help.
    Permanent,
}

/// Publishes with retries; cheap to clone.
#[derive(Debug, Clone)]
pub struct Publisher {
    js: Context,
    /// How long a message is retried before giving up; `None` retries until
    /// the caller stops waiting (workers drop the future on shutdown).
    retry_for: Option<Duration>,
    metrics: Option<Arc<Metrics>>,
}

/// First and longest delay between attempts.
const FIRST_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(2);

impl Publisher {
    pub fn new(js: Context) -> Self {
        Publisher { js, retry_for: None, metrics: None }
    }

    /// Gives up after retrying for `limit`.
    pub fn retry_for(mut self, limit: Duration) -> Self {
        self.retry_for = Some(limit);
        self
    }

    /// Counts retries in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Publishes `message` and waits for the stream's ack.
    pub async fn publish(&self, message: &Outgoing) -> Result<PublishAck, PublishError> {
        let started = Instant::now();
        let mut delay = FIRST_DELAY;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (failure, reason) = match self.attempt(message).await {
                Ok(ack) => return Ok(ack),
                Err(failed) => failed,
            };
            if failure == Failure::Permanent {
                return Err(PublishError::Refused { subject: message.subject.clone(), reason });
            }
            let elapsed = started.elapsed();
            if self.retry_for.is_some_and(|limit| elapsed + delay > limit) {
                return Err(PublishError::GaveUp {
                    subject: message.subject.clone(),
                    attempts,
                    elapsed,
                    reason,
                });
            }
            if let Some(metrics) = &self.metrics {
                let label = if failure == Failure::Full { "full" } else { "unavailable" };
                metrics.publish_retries.with_label_values(&[label]).inc();
            }
            if attempts == 1 || attempts.is_multiple_of(20) {
                tracing::warn!(subject = %message.subject, attempts, %reason, "publish failed, retrying");
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_DELAY);
        }
    }

    /// Publishes every message, at most `window` awaiting their acks at once.
    pub async fn publish_all(
        &self,
        messages: &[Outgoing],
        window: usize,
    ) -> Result<(), PublishError> {
        use futures::StreamExt;
        let mut pending = futures::stream::FuturesUnordered::new();
        for message in messages {
            if pending.len() >= window.max(1)
                && let Some(done) = pending.next().await
            {
                done?;
            }
            pending.push(self.publish(message));
        }
        while let Some(done) = pending.next().await {
            done?;
        }
        Ok(())
    }

    async fn attempt(&self, message: &Outgoing) -> Result<PublishAck, (Failure, String)> {
        let publish = PublishMessage::build()
            .payload(message.payload.clone())
            .headers(message.headers.clone())
            .message_id(&message.msg_id);
        let sent = self.js.send_publish(message.subject.clone(), publish).await;
        let ack = match sent {
            Ok(ack) => ack.await,
            Err(error) => Err(error),
        };
        let ack = match ack {
            Ok(ack) => ack,
            Err(error) if error.kind() == PublishErrorKind::StreamNotFound => {
                return Err(self.no_responders(&message.subject, error).await);
            }
            Err(error) => return Err(classify(error)),
        };
        if ack.duplicate {
            tracing::debug!(subject = %message.subject, msg_id = %message.msg_id, "duplicate publish ignored by the stream");
        }
        Ok(ack)
    }
}

impl Publisher {
    /// Nobody answered the publish: either no stream takes the subject (for
    /// good), or the stream is between leaders or the server is restarting
    /// (for now). Asks the server which.
    async fn no_responders(
        &self,
        subject: &str,
        error: async_nats::jetstream::context::PublishError,
    ) -> (Failure, String) {
        use async_nats::jetstream::context::GetStreamByNameErrorKind;
        match self.js.stream_by_subject(subject).await {
            Err(lookup) if lookup.kind() == GetStreamByNameErrorKind::NotFound => {
                (Failure::Permanent, format!("no stream takes subject `{subject}`"))
            }
            Err(lookup) if lookup.kind() == GetStreamByNameErrorKind::InvalidSubject => {
                (Failure::Permanent, format!("`{subject}` is not a valid subject"))
            }
            _ => (Failure::Unavailable, error.to_string()),
        }
    }
}

fn classify(error: async_nats::jetstream::context::PublishError) -> (Failure, String) {
    let reason = match std::error::Error::source(&error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    };
    let failure = match error.kind() {
        PublishErrorKind::MaxPayloadExceeded
        | PublishErrorKind::WrongLastMessageId
        | PublishErrorKind::WrongLastSequence => Failure::Permanent,
        PublishErrorKind::Other => {
            let api = std::error::Error::source(&error)
                .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>());
            match api {
                Some(api) => classify_api(api),
                None => Failure::Unavailable,
            }
        }
        _ => Failure::Unavailable,
    };
    (failure, reason)
}

/// JetStream's answer to a publish: full streams and exhausted resources
/// are worth waiting out, anything else is a refusal.
fn classify_api(error: &async_nats::jetstream::Error) -> Failure {
    let full = [
        ErrorCode::STREAM_STORE_FAILED,
        ErrorCode::STORAGE_RESOURCES_EXCEEDED,
        ErrorCode::MEMORY_RESOURCES_EXCEEDED,
        ErrorCode::ACCOUNT_RESOURCES_EXCEEDED,
        ErrorCode::INSUFFICIENT_RESOURCES,
    ];
    if full.contains(&error.error_code()) {
        Failure::Full
    } else if error.code() == 503 {
        Failure::Unavailable
    } else {
        Failure::Permanent
    }
}
