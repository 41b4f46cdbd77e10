//! What every JetStream handler does with the message it was delivered:
//! the delivery and its acks, reading and checking the message against the
//! tenant of its subject, refusing it (dead letter, then term), and handing
//! pages on (to the next stage, to `assemble` marked failed). The split,
//! page-stage and assemble handlers and the advisory listener share these;
//! none of them imports another for them.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::Message;
use schemas::subjects::{HEADER_REPLAY, UNROUTED_TENANT, dead_letter, tenant_of};
use schemas::{
    DeadLetter, DocumentSource, ErrorKind, FailureRecord, PagePayload, PageResult, PageTask,
};
use topology::ConsumerSettings;

use super::publish::Outgoing;
use super::{Error, Runtime, claim_check, page_msg_id, payload};
use crate::blobs::{key_within, tenant_prefix};
use pages::error::{Retry, StepError};
use schemas::now_ms;

/// Whether `id` can be a subject token and a key-value key: letters,
/// digits, `-` and `_`, at most 128 of them.
pub fn valid_doc_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// One delivery of a message to a stage: the tenant it was sent as, its
/// attempt number, replay mark and the consumer's settings, and the acks.
pub(crate) struct Delivery {
    pub message: Message,
    pub stage: String,
    /// The tenant of the subject the message arrived on; none when that
    /// token is not a valid tenant name. The subject decides, not the body.
    pub tenant: Option<String>,
    /// 1 for the first delivery.
    pub attempt: u32,
    /// Dead-letter sequence the message was replayed from.
    pub replay: Option<u64>,
    pub consumer: ConsumerSettings,
}

impl Delivery {
    pub fn new(runtime: &Runtime, stage: &str, message: Message) -> Self {
        let attempt = message.info().map_or(1, |info| info.delivered.max(1) as u32);
        let replay = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(HEADER_REPLAY))
            .and_then(|value| value.as_str().parse().ok());
        let consumer = runtime.route.stage(stage).map(|s| s.consumer.clone()).unwrap_or_default();
        if attempt > 1 {
            runtime.metrics.redelivered.with_label_values(&[stage]).inc();
        }
        let tenant = tenant_of(&message.subject).map(String::from);
        Delivery { message, stage: stage.to_string(), tenant, attempt, replay, consumer }
    }

    /// The message's de-duplication id, as published.
    pub fn msg_id(&self) -> Option<&str> {
        let headers = self.message.headers.as_ref()?;
        headers.get(schemas::subjects::HEADER_MSG_ID).map(|value| value.as_str())
    }

    /// The stream sequence of the message (0 when unknown).
    pub fn sequence(&self) -> u64 {
        self.message.info().map_or(0, |info| info.stream_sequence)
    }

    /// Runs `work`, telling the server every third of `ack_wait` that the
    /// message is still being worked on.
    pub async fn keep_alive<F: Future>(&self, work: F) -> F::Output {
        let every = (self.consumer.ack_wait / 3).max(Duration::from_millis(200));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = ticks.tick() => {
                    if let Err(error) = self.message.ack_with(AckKind::Progress).await {
                        tracing::debug!(%error, "cannot send in-progress ack");
                    }
                }
            }
        }
    }

    /// Acknowledges the message and waits for the server to confirm. A lost
    /// ack means a redelivery, which the next stage's de-duplication absorbs.
    pub async fn done(&self) {
        if let Err(error) = self.message.double_ack().await {
            tracing::warn!(%error, stage = self.stage, "ack not confirmed; the message may be redelivered");
        }
    }

    /// Stops redelivery of a message that was dealt with by giving up.
    pub async fn term(&self) {
        if let Err(error) = self.message.double_ack_with(AckKind::Term).await {
            tracing::warn!(%error, stage = self.stage, "term not confirmed; the message may be redelivered");
        }
    }

    /// Whether `error` should be retried, and after which delay: the
    /// topology's backoff for this attempt, or the step's hint if longer.
    pub fn retry_delay(&self, error: &StepError) -> Option<Duration> {
        match error.retry {
            Retry::After(hint) if self.attempt < self.consumer.max_deliver => {
                let backoff = &self.consumer.backoff;
                let index =
                    (self.attempt as usize).saturating_sub(1).min(backoff.len().saturating_sub(1));
                Some(backoff.get(index).copied().unwrap_or_default().max(hint))
            }
            _ => None,
        }
    }

    /// Naks the message so that it is redelivered after `delay`.
    pub async fn retry(&self, delay: Duration) {
        if let Err(error) = self.message.ack_with(AckKind::Nak(Some(delay))).await {
            tracing::warn!(%error, stage = self.stage, "nak failed; the message is redelivered after ack_wait");
        }
    }
}

/// Longest reason given for a refused message, in characters.
const MAX_REASON_CHARS: usize = 512;

/// Why a received message is not worked on.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The message itself is bad: undecodable, inconsistent, or reaching
    /// outside its tenant. It is dead-lettered as it is, never retried.
    Reject { kind: ErrorKind, doc_id: String, reason: String },
    /// Something it needs is out of reach for now (the object store).
    Retry(StepError),
}

impl Refusal {
    /// A refusal with `reason`, which may quote the message: it is cut to
    /// [`MAX_REASON_CHARS`] so that a hostile message cannot make its own
    /// dead letter or event too large to publish.
    pub(crate) fn reject(kind: ErrorKind, doc_id: &str, reason: impl Into<String>) -> Self {
        let doc_id = if valid_doc_id(doc_id) { doc_id.to_string() } else { String::new() };
        let mut reason = reason.into();
        if let Some((cut, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
            reason.truncate(cut);
            reason.push('…');
        }
        Refusal::Reject { kind, doc_id, reason }
    }
}

/// The tenant a message arrived as, or the refusal of a message whose
/// subject names no valid tenant.
pub(crate) fn sender(subject: &str) -> Result<&str, Refusal> {
    tenant_of(subject).ok_or_else(|| {
        Refusal::reject(
            ErrorKind::MalformedMessage,
            "",
            format!("subject `{subject}` names no valid tenant"),
        )
    })
}

/// The tenant a message arrived as and the message decoded, or why it is
/// refused.
pub(crate) fn decode_from<'a, M: schemas::Message>(
    subject: &'a str,
    message: &[u8],
) -> Result<(&'a str, M), Refusal> {
    let tenant = sender(subject)?;
    let decoded = schemas::decode(message).map_err(|error| {
        Refusal::reject(ErrorKind::MalformedMessage, "", format!("cannot decode message: {error}"))
    })?;
    Ok((tenant, decoded))
}

/// Refuses a body that names another tenant than the subject it came on.
pub(crate) fn same_tenant(sender: &str, named: &str, doc_id: &str) -> Result<(), Refusal> {
    if named == sender {
        return Ok(());
    }
    let named: String = named.chars().take(80).collect();
    Err(Refusal::reject(
        ErrorKind::Forbidden,
        doc_id,
        format!("the message names tenant {named:?} but was sent as `{sender}`"),
    ))
}

/// Refuses a reference to an object outside the sender's own prefix.
pub(crate) fn own_blob(
    sender: &str,
    blob: Option<&schemas::BlobRef>,
    doc_id: &str,
) -> Result<(), Refusal> {
    match blob {
        Some(blob) if !key_within(&blob.key, &tenant_prefix(sender)) => Err(Refusal::reject(
            ErrorKind::Forbidden,
            doc_id,
            format!("object `{}` lies outside the objects of tenant `{sender}`", blob.key),
        )),
        _ => Ok(()),
    }
}

/// Decodes and checks the page a stage received: the body's tenant must be
/// the subject's, its objects must lie under that tenant's prefix, and a
/// claim-checked payload is fetched whole.
pub(crate) async fn receive_page(
    runtime: &Runtime,
    subject: &str,
    message: &[u8],
) -> Result<PagePayload, Refusal> {
    let (tenant, stub): (_, PagePayload) = decode_from(subject, message)?;
    let doc_id = stub.task.doc_id.clone();
    same_tenant(tenant, &stub.task.tenant, &doc_id)?;
    if !valid_doc_id(&doc_id) {
        return Err(Refusal::reject(ErrorKind::MalformedMessage, "", "invalid document id"));
    }
    own_blob(tenant, stub.spilled.as_ref(), &doc_id)?;
    let payload = claim_check::unspill_page(&runtime.blobs, stub).await.map_err(|error| {
        if error.is_temporary() {
            Refusal::Retry(payload::blob_error_retry(error.to_string()))
        } else {
            Refusal::reject(ErrorKind::MalformedMessage, &doc_id, error.to_string())
        }
    })?;
    let document_blob = match &payload.task.source {
        DocumentSource::Blob(blob) => Some(blob),
        DocumentSource::Inline { .. } => None,
    };
    own_blob(tenant, document_blob, &doc_id)?;
    own_blob(tenant, payload.image.as_ref().and_then(|i| i.blob.as_ref()), &doc_id)?;
    Ok(payload)
}

/// Deals with a refused message: retried later while deliveries remain,
/// else dead-lettered (under the tenant it was sent as) and terminated.
pub(crate) async fn refuse(runtime: &Runtime, delivery: &Delivery, refusal: Refusal) {
    let (kind, doc_id, reason) = match refusal {
        Refusal::Retry(error) => match delivery.retry_delay(&error) {
            Some(delay) => {
                tracing::warn!(%error, ?delay, "message cannot be read for now, will retry");
                return delivery.retry(delay).await;
            }
            None => (error.kind, String::new(), error.message),
        },
        Refusal::Reject { kind, doc_id, reason } => (kind, doc_id, reason),
    };
    reject(runtime, delivery, kind, &doc_id, &reason).await;
}

/// Dead-letters a message as it is, with why, then terminates it. The dead
/// letter goes to the tenant the message was sent as (or the unrouted
/// tenant), under an id naming the message's stream sequence, so each bad
/// message is recorded once however often it is delivered.
pub(crate) async fn reject(
    runtime: &Runtime,
    delivery: &Delivery,
    kind: ErrorKind,
    doc_id: &str,
    reason: &str,
) {
    let subject = delivery.message.subject.to_string();
    tracing::warn!(%reason, subject, stage = delivery.stage, ?kind, "message rejected, dead-lettered");
    let kind_label = format!("{kind:?}").to_lowercase();
    runtime.metrics.failed.with_label_values(&[&delivery.stage, &kind_label, "rejected"]).inc();
    let letter = DeadLetter {
        tenant: delivery.tenant.clone().unwrap_or_else(|| UNROUTED_TENANT.to_string()),
        failure: FailureRecord::new(doc_id, &delivery.stage, "receive", kind, reason)
            .after(delivery.attempt),
        subject,
        payload: delivery.message.payload.to_vec(),
        payload_blob: None,
    };
    let id = format!("{}/seq/{}", delivery.stage, delivery.sequence());
    let recorded = publish_dead_letter(runtime, &delivery.stage, &id, letter).await;
    settle_given_up(delivery, recorded).await;
}

/// A failure that may pass: retried after a second.
pub(crate) fn unavailable(error: impl std::fmt::Display) -> StepError {
    StepError::retry_after(ErrorKind::Unavailable, Duration::from_secs(1), error.to_string())
}

/// What a failed publish or store means for the message being worked on:
/// retried later, unless it can never succeed.
pub(crate) fn what_failed(error: &Error) -> StepError {
    if error.is_permanent() {
        StepError::reject(ErrorKind::Internal, error.to_string())
    } else {
        unavailable(error)
    }
}

/// Work on a message that failed: in which phase (the `step` of its
/// failure record), and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{phase}: {error}")]
pub(crate) struct PhaseFailure {
    /// A phase of the handler (`fetch`, `land`...) or the step that failed.
    pub phase: String,
    pub error: StepError,
}

impl PhaseFailure {
    /// A failure of `phase`.
    pub fn new(phase: impl Into<String>, error: StepError) -> Self {
        PhaseFailure { phase: phase.into(), error }
    }

    /// An adapter for `map_err`: errors of `phase`.
    pub fn of<E: Into<StepError>>(phase: &'static str) -> impl FnOnce(E) -> Self {
        move |error| PhaseFailure::new(phase, error.into())
    }
}

/// The epilogue every handler shares. Work that went through: the message
/// acknowledged, counted as processed. Work that failed: redelivered after
/// the topology's backoff while deliveries remain; after the last one, or
/// when it can never succeed, `give_up` records it (dead letter, failed
/// page or document) and the message is terminated.
pub(crate) async fn settle<G, F>(
    runtime: &Runtime,
    delivery: &Delivery,
    outcome: Result<(), PhaseFailure>,
    give_up: G,
) where
    G: FnOnce(PhaseFailure) -> F,
    F: Future<Output = Result<(), Error>>,
{
    let failure = match outcome {
        Ok(()) => {
            delivery.done().await;
            runtime.metrics.processed.with_label_values(&[&delivery.stage]).inc();
            return;
        }
        Err(failure) => failure,
    };
    let (stage, error, phase) = (&delivery.stage, &failure.error, &failure.phase);
    let kind = format!("{:?}", error.kind).to_lowercase();
    if let Some(delay) = delivery.retry_delay(error) {
        tracing::warn!(%error, phase, ?delay, "failed, will be retried");
        runtime.metrics.failed.with_label_values(&[stage, &kind, "retry"]).inc();
        return delivery.retry(delay).await;
    }
    tracing::warn!(%error, phase, "failed for good, dead-lettered");
    runtime.metrics.failed.with_label_values(&[stage, &kind, "dead_letter"]).inc();
    let recorded = give_up(failure).await;
    settle_given_up(delivery, recorded).await;
}

/// Terminates a message given up on once its dead letter (and whatever
/// else records it) is published; retries it later when that failed for
/// now. When recording can never succeed the message is terminated all the
/// same, loudly: retrying it would only hold a permit forever.
pub(crate) async fn settle_given_up(delivery: &Delivery, recorded: Result<(), Error>) {
    match recorded {
        Ok(()) => delivery.term().await,
        Err(error) if error.is_permanent() => {
            tracing::error!(%error, stage = delivery.stage, "cannot record a given-up message anywhere; it is dropped");
            delivery.term().await;
        }
        Err(error) => {
            tracing::warn!(%error, "cannot record the given-up message for now; it will be redelivered");
            delivery.retry(Duration::from_secs(1)).await;
        }
    }
}

/// The message carrying `payload` into stage `to`; by claim check when the
/// payload is larger than a message may be.
pub(crate) async fn page_message(
    runtime: &Runtime,
    payload: &PagePayload,
    to: &str,
    replay: Option<u64>,
) -> Result<Outgoing, Error> {
    let task = &payload.task;
    let (subject, id) = (runtime.route.subject(&task.tenant, to), page_msg_id(task, to, replay));
    let mut outgoing = Outgoing::encode(subject.clone(), id.clone(), &task.doc_id, payload)?;
    let mut stored = payload.image.as_ref().and_then(|i| i.blob.as_ref()).map_or(0, |b| b.size);
    if outgoing.payload.len() > runtime.message_limit {
        stored += outgoing.payload.len() as u64;
        let stub =
            claim_check::spill_page(&runtime.blobs, payload, outgoing.payload.clone(), to).await?;
        outgoing = Outgoing::encode(subject, id, &task.doc_id, &stub)?;
    }
    let metrics = &runtime.metrics;
    metrics.handoffs.with_label_values(&[to]).inc();
    let bytes = &metrics.handoff_bytes;
    bytes.with_label_values(&[to, "message"]).inc_by(outgoing.payload.len() as u64);
    bytes.with_label_values(&[to, "store"]).inc_by(stored);
    Ok(match replay {
        Some(replay) => outgoing.with_header(HEADER_REPLAY, &replay.to_string()),
        None => outgoing,
    })
}

/// Whether the page's document has finished (its result is published):
/// nothing is left to do for the page.
pub(crate) async fn document_finished(runtime: &Runtime, task: &PageTask) -> bool {
    match runtime.documents.get(&task.tenant, &task.doc_id).await {
        Ok(Some(state)) => {
            state.submitted_at_ms == task.submitted_at_ms && state.finished.is_some()
        }
        _ => false,
    }
}

/// Publishes the dead letter (when `dead_letter`) and the failed page to
/// `assemble`, both idempotent. Shared by workers and the advisory listener.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward_failed(
    runtime: &Runtime,
    stage: &str,
    subject: &str,
    original: &[u8],
    mut task: PageTask,
    mut result: PageResult,
    record: FailureRecord,
    replay: Option<u64>,
    dead_letter: bool,
) -> Result<(), Error> {
    if dead_letter {
        let letter = DeadLetter {
            tenant: task.tenant.clone(),
            failure: record.clone(),
            subject: subject.to_string(),
            payload: original.to_vec(),
            payload_blob: None,
        };
        publish_dead_letter(runtime, stage, &page_msg_id(&task, stage, replay), letter).await?;
    }
    let exit = runtime.route.exit().name.clone();
    if stage == exit {
        return Ok(());
    }
    if matches!(task.source, DocumentSource::Inline { .. }) {
        task.source = DocumentSource::Inline { bytes: Vec::new() };
    }
    result.failure = Some(record);
    let payload = PagePayload::result_only(task, result, now_ms());
    let outgoing = page_message(runtime, &payload, &exit, replay).await?;
    runtime.publisher.publish(&outgoing).await?;
    Ok(())
}

/// Publishes a dead letter for a message of `stage` whose own id is `id`,
/// keeping the original message in the object store when both would not
/// fit in one message. A letter its tenant's subject refuses for good goes
/// to the unrouted tenant's.
pub(crate) async fn publish_dead_letter(
    runtime: &Runtime,
    stage: &str,
    id: &str,
    mut letter: DeadLetter,
) -> Result<(), Error> {
    let encode = |letter: &DeadLetter| {
        let subject = dead_letter(&letter.tenant, stage);
        Outgoing::encode(subject, format!("dead/{id}"), &letter.failure.doc_id, letter)
    };
    let mut outgoing = encode(&letter)?;
    if outgoing.payload.len() > runtime.message_limit {
        letter = claim_check::spill_dead_letter(&runtime.blobs, letter).await?;
        outgoing = encode(&letter)?;
    }
    let published = match runtime.publisher.publish(&outgoing).await {
        Err(error) if error.is_permanent() && letter.tenant != UNROUTED_TENANT => {
            tracing::error!(%error, "dead letter refused, recorded under the unrouted tenant");
            let outgoing = Outgoing { subject: dead_letter(UNROUTED_TENANT, stage), ..outgoing };
            runtime.publisher.publish(&outgoing).await
        }
        published => published,
    };
    published?;
    runtime.metrics.dead_lettered.with_label_values(&[stage]).inc();
    Ok(())
}
