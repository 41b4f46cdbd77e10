//! Stage workers: pull only as many messages as there are free permits, run
//! the stage on a blocking thread while sending in-progress acks, publish the
//! page onwards, await the publish ack, then double-ack the input.
//!
//! A failed step is nakked with a delay (the topology's backoff, or the
//! step's own hint if longer) while deliveries remain; after the last one,
//! or when the step says it can never succeed, the message goes to the
//! dead-letter stream and the page goes on to `assemble` marked failed.
//! Shutdown stops pulling at once, lets in-flight pages finish within
//! [`super::Settings::shutdown_timeout`] and naks the rest.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::AckKind;
use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::PullConsumer;
use futures::StreamExt;
use schemas::subjects::{HEADER_REPLAY, UNROUTED_TENANT, dead_letter, tenant_of};
use schemas::{
    DeadLetter, DocumentSource, ErrorKind, FailureRecord, PagePayload, PageResult, PageTask,
};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use topology::ConsumerSettings;
use topology::catalogue::{ENTRY_STAGE, EXIT_STAGE};
use tracing::Instrument;

use super::publish::Outgoing;
use super::split::valid_doc_id;
use super::{Error, Runtime, claim_check, page_msg_id, payload};
use crate::blobs::{key_within, tenant_prefix};
use crate::error::{Retry, StepError};
use crate::metrics::Readiness;
use crate::page::Page;
use crate::pipeline::{PageFailure, now_ms};

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

/// The shutdown signal: set once, observed by every loop.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Sets the [`Shutdown`] signal.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Whether shutdown was asked for.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown is asked for.
    pub async fn wait(&mut self) {
        // An error means the trigger is gone: nobody can ask any more, so
        // treat it as asked.
        let _ = self.0.wait_for(|set| *set).await;
    }
}

/// Serves `roles` until `shutdown`, then drains. `ready` is set while the
/// process serves its consumers.
pub async fn run(
    runtime: Arc<Runtime>,
    roles: Vec<Role>,
    shutdown: Shutdown,
    ready: Readiness,
) -> Result<(), Error> {
    let mut served = Vec::new();
    for role in &roles {
        let consumer = bind(&runtime, role.name()).await?;
        let concurrency = concurrency(&runtime, role.name());
        served.push(Served { role: role.clone(), consumer, busy: Arc::default(), concurrency });
        runtime.metrics.start_stage(role.name());
    }
    runtime.local_images.serve(roles.iter().map(|role| role.name().to_string()));
    let mut background = JoinSet::new();
    background.spawn(super::advisory::listen(Arc::clone(&runtime), roles.clone()));
    background.spawn(watch_health(Arc::clone(&runtime), served.clone(), ready.clone()));
    ready.set(true);
    tracing::info!(stages = ?roles.iter().map(Role::name).collect::<Vec<_>>(), "worker serving");

    let mut loops = JoinSet::new();
    for stage in served {
        loops.spawn(serve(Arc::clone(&runtime), stage, shutdown.clone()));
    }
    while loops.join_next().await.is_some() {}
    ready.set(false);
    background.abort_all();
    // Publishes are awaited before acks, so nothing is left to flush but
    // the acks themselves; with no server there is nobody to flush to.
    match tokio::time::timeout(Duration::from_secs(2), runtime.js.client().flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "cannot flush the connection"),
        Err(_) => tracing::warn!("connection not flushed: no server answered"),
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// A stage this process serves.
#[derive(Clone)]
struct Served {
    role: Role,
    consumer: PullConsumer,
    busy: Arc<Busy>,
    /// Pages worked on at once.
    concurrency: usize,
}

/// Pages worked on at once in stage `name` by this process.
fn concurrency(runtime: &Runtime, name: &str) -> usize {
    let plan = runtime.route.stage(name);
    runtime.settings.concurrency.or(plan.map(|p| p.concurrency)).unwrap_or(1).max(1)
}

/// When each message in flight in a stage was taken, to tell a stage whose
/// permits are all stuck.
#[derive(Debug, Default)]
struct Busy {
    started: Mutex<HashMap<u64, Instant>>,
    next: AtomicU64,
}

/// Removes its message from [`Busy`] when dropped.
struct BusyGuard {
    busy: Arc<Busy>,
    id: u64,
}

impl Busy {
    fn enter(self: &Arc<Self>) -> BusyGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut started) = self.started.lock() {
            started.insert(id, Instant::now());
        }
        BusyGuard { busy: Arc::clone(self), id }
    }

    /// Whether all `permits` are held by messages taken longer than `limit` ago.
    fn stuck(&self, permits: usize, limit: Duration) -> bool {
        self.started.lock().is_ok_and(|started| {
            started.len() >= permits && started.values().all(|at| at.elapsed() > limit)
        })
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Ok(mut started) = self.busy.started.lock() {
            started.remove(&self.id);
        }
    }
}

/// The durable consumer of stage `name`.
pub async fn bind(runtime: &Runtime, name: &str) -> Result<PullConsumer, Error> {
    let (stream, consumer, _) = runtime.route.consumer(name);
    let missing = |e| {
        Error::jetstream(
            format!("consumer {stream}/{consumer} (run `pagestream streams apply`)"),
            e,
        )
    };
    let handle = runtime.js.get_stream(&stream).await.map_err(missing)?;
    handle.get_consumer::<async_nats::jetstream::consumer::pull::Config>(&consumer).await.map_err(
        |e| {
            Error::jetstream(
                format!("consumer {stream}/{consumer} (run `pagestream streams apply`)"),
                e,
            )
        },
    )
}

/// The pull loop of one stage. Each pull request asks for as many messages
/// as the permits it holds; while one request is open, permits freed by
/// finished pages go into the next request, so the stage stays busy without
/// ever holding more messages than it can work on.
async fn serve(runtime: Arc<Runtime>, served: Served, mut shutdown: Shutdown) {
    let Served { role, consumer, busy, concurrency } = served;
    let plan = runtime.route.stage(role.name()).cloned();
    let batch_max =
        plan.as_ref().map_or(1, |p| p.consumer.fetch_batch as usize).clamp(1, concurrency);
    let permits = Arc::new(Semaphore::new(concurrency));
    let (abort_trigger, abort) = Shutdown::new();
    let mut failures: u32 = 0;
    let stage = role.name().to_string();

    'pull: loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.wait() => break 'pull,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break 'pull,
            },
        };
        let mut held = vec![first];
        while held.len() < batch_max {
            match Arc::clone(&permits).try_acquire_owned() {
                Ok(permit) => held.push(permit),
                Err(_) => break,
            }
        }
        let request =
            consumer.batch().max_messages(held.len()).expires(runtime.settings.fetch_expires);
        let batch = tokio::select! {
            biased;
            _ = shutdown.wait() => break 'pull,
            batch = request.messages() => batch,
        };
        match batch {
            Ok(batch) => {
                failures = 0;
                let context = BatchContext {
                    runtime: Arc::clone(&runtime),
                    role: role.clone(),
                    busy: Arc::clone(&busy),
                    shutdown: shutdown.clone(),
                    abort: abort.clone(),
                };
                tokio::spawn(read_batch(context, batch, held));
            }
            Err(error) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    tracing::warn!(%error, stage, "cannot pull, retrying");
                }
                let pause = Duration::from_millis(100 * u64::from(failures.min(20)));
                tokio::select! {
                    _ = shutdown.wait() => break 'pull,
                    _ = tokio::time::sleep(pause) => continue 'pull,
                }
            }
        }
    }

    // Drain: every permit comes back when the open pull requests have ended
    // and the pages in flight are done; past the limit, pages are handed back.
    let in_flight = concurrency - permits.available_permits();
    if in_flight > 0 {
        tracing::info!(stage, in_flight, "draining");
    }
    let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
    // With no server, in-flight pages can neither be published nor acked:
    // waiting for them would only delay the exit, and they are redelivered.
    let connected =
        runtime.js.client().connection_state() == async_nats::connection::State::Connected;
    let limit = if connected { runtime.settings.shutdown_timeout } else { Duration::ZERO };
    let drained = tokio::time::timeout(limit, permits.acquire_many(all));
    if drained.await.is_err() {
        let left = concurrency - permits.available_permits();
        tracing::warn!(stage, left, "shutdown limit reached, handing pages back");
        abort_trigger.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(2), permits.acquire_many(all)).await;
    }
}

/// What the reader of one pull request needs.
struct BatchContext {
    runtime: Arc<Runtime>,
    role: Role,
    busy: Arc<Busy>,
    shutdown: Shutdown,
    abort: Shutdown,
}

/// Hands each message of a pull request to a task of its own, with one of
/// the request's permits; the permits left over return when it ends.
async fn read_batch(
    context: BatchContext,
    mut batch: async_nats::jetstream::consumer::pull::Batch,
    mut held: Vec<tokio::sync::OwnedSemaphorePermit>,
) {
    let started = Instant::now();
    let mut received = 0;
    let mut shutdown = context.shutdown.clone();
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            next = batch.next() => next,
        };
        let Some(next) = next else { break };
        let message = match next {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(%error, stage = context.role.name(), "pull request ended");
                break;
            }
        };
        received += 1;
        // Messages still arriving after shutdown was asked for, or beyond
        // the permits (cannot happen): hand them back.
        let permit = match held.pop() {
            Some(permit) if !context.shutdown.is_set() => permit,
            _ => {
                let _ = message.ack_with(AckKind::Nak(None)).await;
                continue;
            }
        };
        let (runtime, role, mut abort) =
            (Arc::clone(&context.runtime), context.role.clone(), context.abort.clone());
        let busy = context.busy.enter();
        tokio::spawn(async move {
            let _permit = permit;
            let _busy = busy;
            tokio::select! {
                _ = handle(&runtime, &role, message.clone()) => {}
                _ = abort.wait() => {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                }
            }
        });
    }
    // A request that ended at once without messages (the server refused it,
    // or is going away): pause before its permits allow the next one.
    let expires = context.runtime.settings.fetch_expires;
    if received == 0 && started.elapsed() < expires / 2 && !context.shutdown.is_set() {
        tokio::time::sleep(expires / 4).await;
    }
}

async fn handle(runtime: &Runtime, role: &Role, message: Message) {
    match role {
        Role::Split => super::split::handle(runtime, message).await,
        Role::Stage(name) => handle_page(runtime, name, message).await,
        Role::Assemble => super::assemble::handle(runtime, message).await,
    }
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
        failure: FailureRecord {
            doc_id: doc_id.to_string(),
            page_index: None,
            stage: delivery.stage.clone(),
            step: "receive".into(),
            kind,
            message: reason.to_string(),
            attempts: delivery.attempt,
            at_ms: now_ms(),
        },
        subject,
        payload: delivery.message.payload.to_vec(),
        payload_blob: None,
    };
    let id = format!("{}/seq/{}", delivery.stage, delivery.sequence());
    let recorded = publish_dead_letter(runtime, &delivery.stage, &id, letter).await;
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

/// One page through one page stage.
async fn handle_page(runtime: &Runtime, stage_name: &str, message: Message) {
    let delivery = Delivery::new(runtime, stage_name, message);
    let payload =
        match receive_page(runtime, &delivery.message.subject, &delivery.message.payload).await {
            Ok(payload) => payload,
            Err(refusal) => return refuse(runtime, &delivery, refusal).await,
        };
    let span = tracing::info_span!(
        "page",
        stage = stage_name,
        doc_id = %payload.task.doc_id,
        page = payload.task.page_index,
        attempt = delivery.attempt
    );
    async {
        let in_flight = runtime.metrics.in_flight.with_label_values(&[stage_name]);
        in_flight.inc();
        let started = Instant::now();
        if delivery.attempt > 1
            && delivery.replay.is_none()
            && document_finished(runtime, &payload.task).await
        {
            // A redelivery whose first attempt went through (its ack was lost).
            tracing::debug!("page of a finished document, skipped");
            delivery.done().await;
        } else if runtime.cancellations.contains(&payload.task.tenant, &payload.task.doc_id) {
            let failure = PageFailure {
                stage: stage_name.to_string(),
                step: "cancel".into(),
                error: StepError::reject(ErrorKind::Cancelled, "the document was cancelled"),
            };
            tracing::info!("document cancelled, page skipped");
            give_up_page(runtime, &delivery, payload.task, payload.result, &failure, false).await;
        } else {
            let task = payload.task.clone();
            match delivery.keep_alive(process_page(runtime, &delivery, payload)).await {
                Ok(()) => {
                    delivery.done().await;
                    runtime.metrics.processed.with_label_values(&[stage_name]).inc();
                }
                Err((result, failure)) => {
                    fail_page(runtime, &delivery, task, result, failure).await
                }
            }
        }
        runtime
            .metrics
            .stage_seconds
            .with_label_values(&[stage_name])
            .observe(started.elapsed().as_secs_f64());
        in_flight.dec();
    }
    .instrument(span)
    .await
}

/// Runs the stage on the page and publishes it onwards. On failure, returns
/// the page result as far as it got, and the failure.
async fn process_page(
    runtime: &Runtime,
    delivery: &Delivery,
    payload: PagePayload,
) -> Result<(), (PageResult, PageFailure)> {
    let stage_name = delivery.stage.clone();
    let failed = |result: PageResult, step: &str, error: StepError| {
        (result, PageFailure { stage: stage_name.clone(), step: step.to_string(), error })
    };
    let Some(index) = runtime.pipeline.stages.iter().position(|s| s.name == stage_name) else {
        return Err(failed(
            payload.result,
            "receive",
            StepError::internal("stage not in this pipeline"),
        ));
    };
    let queue_wait_us = now_ms().saturating_sub(payload.sent_at_ms).saturating_mul(1000);
    runtime
        .metrics
        .queue_wait_seconds
        .with_label_values(&[&stage_name])
        .observe(queue_wait_us as f64 / 1e6);
    let result_so_far = payload.result.clone();
    let needs_document = runtime.pipeline.stages[index].needs_document;
    // The decoded image, when this process handed the page on to this stage.
    let local = match (&payload.image, delivery.msg_id()) {
        (Some(image), Some(id)) => runtime.local_images.take(id, image),
        _ => None,
    };
    let policy = &runtime.settings.images;
    let page = payload::to_page(payload, &runtime.blobs, policy, needs_document, local)
        .await
        .map_err(|error| failed(result_so_far, "receive", error))?;

    let pipeline = Arc::clone(&runtime.pipeline);
    let (mut page, outcome) = tokio::task::spawn_blocking(move || {
        let mut page = page;
        let outcome = pipeline.stages[index].run(&mut page, queue_wait_us);
        (page, outcome)
    })
    .await
    .map_err(|error| {
        (
            PageResult::default(),
            PageFailure {
                stage: stage_name.clone(),
                step: "run".into(),
                error: StepError::internal(format!("stage task failed: {error}")),
            },
        )
    })?;
    runtime.metrics.observe_steps(&stage_name, &page.result);
    if let Err(failure) = outcome {
        return Err((std::mem::take(&mut page.result), failure));
    }

    let next = runtime.route.next(&stage_name).name.clone();
    if next == runtime.route.exit().name && !runtime.has_exit_steps() {
        // Assembling needs the result only: the image stays behind.
        page.image = None;
        page.text_layer.clear();
    }
    let keep_document = runtime.keep_document(&stage_name);
    let result_so_far = page.result.clone();
    let task = page.task.clone();
    let keep_image = runtime.local_images.keeps(&next);
    let (payload, kept) =
        payload::to_payload(page, &next, &runtime.blobs, policy, keep_document, keep_image)
            .await
            .map_err(|error| failed(result_so_far.clone(), "send", error))?;
    if let Some((image, sent)) = kept {
        let id = page_msg_id(&task, &next, delivery.replay);
        runtime.local_images.put(&next, id, image, sent);
    }
    let sent = match page_message(runtime, &payload, &next, delivery.replay).await {
        Ok(outgoing) => runtime.publisher.publish(&outgoing).await.map(drop).map_err(Error::from),
        Err(error) => Err(error),
    };
    sent.map_err(|error| {
        tracing::warn!(%error, doc_id = %task.doc_id, "cannot publish page");
        failed(result_so_far, "send", send_error(&error))
    })
}

/// What a failed hand-on means for the page: retried later unless it can
/// never succeed.
fn send_error(error: &Error) -> StepError {
    if error.is_permanent() {
        StepError::reject(ErrorKind::Internal, error.to_string())
    } else {
        StepError::retry_after(ErrorKind::Unavailable, Duration::from_secs(1), error.to_string())
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

/// A step failed: retry it later, or give the page up.
async fn fail_page(
    runtime: &Runtime,
    delivery: &Delivery,
    task: PageTask,
    result: PageResult,
    failure: PageFailure,
) {
    if delivery.replay.is_none() && document_finished(runtime, &task).await {
        tracing::debug!(error = %failure.error, "page of a finished document failed, dropped");
        delivery.done().await;
        return;
    }
    let kind = format!("{:?}", failure.error.kind).to_lowercase();
    if let Some(delay) = delivery.retry_delay(&failure.error) {
        tracing::warn!(error = %failure.error, step = failure.step, ?delay, "step failed, page will be retried");
        runtime.metrics.failed.with_label_values(&[&delivery.stage, &kind, "retry"]).inc();
        delivery.retry(delay).await;
        return;
    }
    tracing::warn!(error = %failure.error, step = failure.step, "step failed for good, page dead-lettered");
    runtime.metrics.failed.with_label_values(&[&delivery.stage, &kind, "dead_letter"]).inc();
    give_up_page(runtime, delivery, task, result, &failure, true).await;
}

/// Ends a page's journey: (optionally) records it in the dead-letter
/// stream, sends it to `assemble` marked failed, then terms the input. If a
/// publish fails the input is left unacknowledged and comes back.
async fn give_up_page(
    runtime: &Runtime,
    delivery: &Delivery,
    task: PageTask,
    result: PageResult,
    failure: &PageFailure,
    dead_letter: bool,
) {
    let record = failure.record(&Page::new(task.clone()), delivery.attempt);
    let sent = forward_failed(
        runtime,
        &delivery.stage,
        &delivery.message.subject,
        &delivery.message.payload,
        task,
        result,
        record,
        delivery.replay,
        dead_letter,
    )
    .await;
    settle_given_up(delivery, sent).await;
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

/// Every few seconds: the consumers' lag for the metrics, and readiness:
/// ready while connected and no stage has all its permits held by messages
/// taken longer than the stage's time limit ago (a stage that can take no
/// more work).
async fn watch_health(runtime: Arc<Runtime>, served: Vec<Served>, ready: Readiness) {
    let mut ticks = tokio::time::interval(Duration::from_secs(2));
    let mut was_stuck: Vec<&str> = Vec::new();
    loop {
        ticks.tick().await;
        let connected =
            runtime.js.client().connection_state() == async_nats::connection::State::Connected;
        let stuck: Vec<&str> = served
            .iter()
            .filter(|s| s.busy.stuck(s.concurrency, runtime.stage_time_limit(s.role.name())))
            .map(|s| s.role.name())
            .collect();
        if stuck != was_stuck {
            if stuck.is_empty() {
                tracing::info!("every stage takes work again");
            } else {
                tracing::error!(stages = ?stuck, "every permit of these stages is held past the stage's time limit: not ready");
            }
            was_stuck = stuck.clone();
        }
        ready.set(connected && stuck.is_empty());
        for stage in &served {
            if let Ok(info) = stage.consumer.get_info().await {
                let metrics = &runtime.metrics;
                let name = [stage.role.name()];
                let pending = i64::try_from(info.num_pending).unwrap_or(i64::MAX);
                let ack_pending = i64::try_from(info.num_ack_pending).unwrap_or(i64::MAX);
                metrics.consumer_pending.with_label_values(&name).set(pending);
                metrics.consumer_ack_pending.with_label_values(&name).set(ack_pending);
                metrics
                    .consumer_lag
                    .with_label_values(&name)
                    .set(pending.saturating_add(ack_pending));
            }
        }
    }
}
