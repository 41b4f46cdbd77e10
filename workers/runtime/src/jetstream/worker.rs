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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::AckKind;
use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::PullConsumer;
use futures::StreamExt;
use schemas::{ErrorKind, PagePayload, PageResult, PageTask};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::delivery::{
    Delivery, PhaseFailure, document_finished, forward_failed, page_message, receive_page, refuse,
    settle, settle_given_up, what_failed,
};
use super::{Error, Role, Runtime, page_msg_id, payload};
use crate::metrics::Readiness;
use crate::shutdown::Shutdown;
use pages::error::StepError;
use pages::page::Page;
use pages::pipeline::PageFailure;
use schemas::now_ms;

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
            skip_cancelled_page(runtime, &delivery, payload.task, payload.result, &failure).await;
        } else {
            let task = payload.task.clone();
            match delivery.keep_alive(process_page(runtime, &delivery, payload)).await {
                Ok(()) => settle(runtime, &delivery, Ok(()), |_| async { Ok(()) }).await,
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
        failed(result_so_far, "send", what_failed(&error))
    })
}

/// A step failed: retry it later, or give the page up (dead letter, then
/// on to `assemble` marked failed).
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
    let PageFailure { step, error, .. } = failure;
    let outcome = Err(PhaseFailure { phase: step, error });
    settle(runtime, delivery, outcome, |failure| async move {
        let failure = PageFailure {
            stage: delivery.stage.clone(),
            step: failure.phase,
            error: failure.error,
        };
        let record = failure.record(&Page::new(task.clone()), delivery.attempt);
        let message = &delivery.message;
        let (subject, original, replay) = (&message.subject, &message.payload, delivery.replay);
        forward_failed(
            runtime,
            &delivery.stage,
            subject,
            original,
            task,
            result,
            record,
            replay,
            true,
        )
        .await
    })
    .await;
}

/// Sends the page of a cancelled document on to `assemble` marked failed
/// (no dead letter: nothing went wrong), then terms the input. If the
/// publish fails the input is left unacknowledged and comes back.
async fn skip_cancelled_page(
    runtime: &Runtime,
    delivery: &Delivery,
    task: PageTask,
    result: PageResult,
    failure: &PageFailure,
) {
    let record = failure.record(&Page::new(task.clone()), delivery.attempt);
    let message = &delivery.message;
    let (subject, original, replay) = (&message.subject, &message.payload, delivery.replay);
    let sent = forward_failed(
        runtime,
        &delivery.stage,
        subject,
        original,
        task,
        result,
        record,
        replay,
        false,
    )
    .await;
    settle_given_up(delivery, sent).await;
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
