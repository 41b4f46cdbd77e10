//! Stage `assemble` on JetStream: lands each page (stores its result and
//! marks it in the document's key-value state with compare-and-set) and,
//! when the last page of a document lands, publishes the
//! [`DocumentResult`], the `document.done` event and the JSON and Markdown
//! exports, then deletes the document's blobs.
//!
//! Exactly once: the page that completes the state (or a redelivery of it,
//! when the worker died before finishing) publishes the result under a
//! `Nats-Msg-Id` naming the document's run, so a second publish inside the
//! results stream's duplicate window is dropped; once the state says
//! finished, late duplicates are acknowledged and ignored.

use async_nats::jetstream::Message;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use schemas::subjects::{STREAM_RESULTS, event, result as result_subject};
use schemas::{
    DocumentResult, DocumentState, DocumentStatus, ErrorKind, Event, EventBody, FailureRecord,
    Finished, PagePayload, PageResult, PageState, PageTask,
};
use topology::catalogue::EXIT_STAGE;
use tracing::Instrument;

use super::delivery::{
    Delivery, PhaseFailure, publish_dead_letter, receive_page, refuse, settle, unavailable,
    what_failed,
};
use super::payload::{self, blob_error};
use super::publish::Outgoing;
use super::state::Change;
use super::{Error, Runtime, claim_check, document_msg_id, page_msg_id};
use crate::blobs::{BlobError, document_prefix};
use pages::error::StepError;
use pages::pipeline::{PageFailure, complete_document};
use schemas::now_ms;

/// Key of a landed page's result in the object store.
pub fn page_result_key(tenant: &str, doc_id: &str, page_index: u32) -> String {
    format!("{}/results/{page_index}.msgpack", document_prefix(tenant, doc_id))
}

/// Key of a document's exports (kept after the document's blobs are gone).
pub fn export_key(tenant: &str, doc_id: &str, extension: &str) -> String {
    format!("results/{tenant}/{doc_id}.{extension}")
}

/// What landing a page did to its document.
#[derive(Debug)]
enum Landing {
    /// The document is not (or no longer) known, or the page belongs to
    /// another run: nothing to do.
    Unknown,
    /// The page landed; the state after it.
    Landed(DocumentState),
    /// The page had landed before; the state, if it still needs finishing.
    Duplicate(Option<DocumentState>),
    /// The document is finished and the page changes nothing.
    Finished,
    /// A replayed page succeeded after its document finished without it.
    Reopened(DocumentState),
}

/// One page through `assemble`.
pub(crate) async fn handle(runtime: &Runtime, message: Message) {
    let delivery = Delivery::new(runtime, EXIT_STAGE, message);
    let received =
        receive_page(runtime, &delivery.message.subject, &delivery.message.payload).await;
    let payload = match received {
        Ok(payload) => payload,
        Err(refusal) => return refuse(runtime, &delivery, refusal).await,
    };
    let span = tracing::info_span!(
        "page",
        stage = EXIT_STAGE,
        doc_id = %payload.task.doc_id,
        page = payload.task.page_index,
        attempt = delivery.attempt
    );
    let delivery = &delivery;
    async {
        let task = payload.task.clone();
        let outcome = delivery.keep_alive(land(runtime, payload, delivery)).await;
        let outcome = outcome.map_err(|error| PhaseFailure::new("land", error));
        settle(runtime, delivery, outcome, |failure| async move {
            tracing::error!(error = %failure.error, "page cannot land; its document ends failed");
            let failure =
                PageFailure { stage: EXIT_STAGE.into(), step: failure.phase, error: failure.error };
            let record = failure.record(&pages::page::Page::new(task.clone()), delivery.attempt);
            let letter = schemas::DeadLetter {
                tenant: task.tenant.clone(),
                failure: record.clone(),
                subject: delivery.message.subject.to_string(),
                payload: delivery.message.payload.to_vec(),
                payload_blob: None,
            };
            let id = page_msg_id(&task, EXIT_STAGE, delivery.replay);
            publish_dead_letter(runtime, EXIT_STAGE, &id, letter).await?;
            abandon(runtime, &task, record, delivery.replay).await
        })
        .await;
    }
    .instrument(span)
    .await
}

/// Stores the page's result, marks it in the document state and finishes
/// the document when it was the last.
async fn land(
    runtime: &Runtime,
    mut payload: PagePayload,
    delivery: &Delivery,
) -> Result<(), StepError> {
    let replay = delivery.replay;
    run_assemble_steps(runtime, &mut payload, delivery.attempt).await?;
    let PagePayload { task, result, .. } = payload;
    let encoded = schemas::encode(&result).map_err(|e| StepError::internal(e.to_string()))?;
    let key = page_result_key(&task.tenant, &task.doc_id, task.page_index);
    runtime.blobs.put(&key, Bytes::from(encoded)).await.map_err(blob_error)?;

    let ok = result.failure.is_none();
    let page = task.page_index as usize;
    let landing = runtime
        .documents
        .update(&task.tenant, &task.doc_id, |current| {
            let Some(state) = current else { return Change::Keep(Landing::Unknown) };
            if state.submitted_at_ms != task.submitted_at_ms || page >= state.pages.len() {
                return Change::Keep(Landing::Unknown);
            }
            let mut next = state.clone();
            next.pages[page] = if ok { PageState::Done } else { PageState::Failed };
            if state.finished.is_some() {
                if replay.is_some() && ok && state.pages[page] == PageState::Failed {
                    return Change::Write(next.clone(), Landing::Reopened(next));
                }
                return Change::Keep(Landing::Finished);
            }
            if state.pages[page] != PageState::Pending {
                return Change::Keep(Landing::Duplicate(state.all_landed().then(|| state.clone())));
            }
            Change::Write(next.clone(), Landing::Landed(next))
        })
        .await
        .map_err(unavailable)?;

    match landing {
        Landing::Unknown => {
            tracing::warn!("page of an unknown document or another run, ignored");
            Ok(())
        }
        Landing::Finished => {
            tracing::debug!("page of a finished document, ignored");
            Ok(())
        }
        Landing::Duplicate(None) => Ok(()),
        Landing::Duplicate(Some(state)) => {
            finish(runtime, &state, replay).await.map_err(|e| what_failed(&e))
        }
        Landing::Landed(state) => {
            publish_page_done(runtime, &task, ok, replay).await.map_err(|e| what_failed(&e))?;
            if state.all_landed() {
                finish(runtime, &state, replay).await.map_err(|e| what_failed(&e))?;
            }
            Ok(())
        }
        Landing::Reopened(state) => {
            publish_page_done(runtime, &task, ok, replay).await.map_err(|e| what_failed(&e))?;
            reopen(runtime, &state, result, replay).await.map_err(|e| what_failed(&e))
        }
    }
}

/// Runs the steps of an `assemble` stage, if the pipeline has one, on a
/// page that has not failed; a failing step fails the page.
async fn run_assemble_steps(
    runtime: &Runtime,
    payload: &mut PagePayload,
    attempt: u32,
) -> Result<(), StepError> {
    if !runtime.has_exit_steps() || payload.result.failure.is_some() {
        return Ok(());
    }
    let page =
        payload::to_page(payload.clone(), &runtime.blobs, &runtime.settings.images, false, None)
            .await?;
    let pipeline = std::sync::Arc::clone(&runtime.pipeline);
    let page = payload::blocking(move || {
        let mut page = page;
        if let Some(stage) = pipeline.stage(EXIT_STAGE)
            && let Err(failure) = stage.run(&mut page, 0)
        {
            page.result.failure = Some(failure.record(&page, attempt));
        }
        Ok(page)
    })
    .await?;
    runtime.metrics.observe_steps(EXIT_STAGE, &page.result);
    payload.result = page.result;
    Ok(())
}

async fn publish_page_done(
    runtime: &Runtime,
    task: &PageTask,
    ok: bool,
    replay: Option<u64>,
) -> Result<(), Error> {
    let body = EventBody::PageDone { page_index: task.page_index, ok };
    let message =
        Event { tenant: task.tenant.clone(), doc_id: task.doc_id.clone(), at_ms: now_ms(), body };
    let outgoing = Outgoing::encode(
        event(&task.tenant, message.body.name()),
        page_msg_id(task, message.body.name(), replay),
        &task.doc_id,
        &message,
    )?;
    runtime.publisher.publish(&outgoing).await?;
    Ok(())
}

/// Builds the document result from the stored page results and publishes it.
async fn finish(
    runtime: &Runtime,
    state: &DocumentState,
    replay: Option<u64>,
) -> Result<(), Error> {
    let mut pages = Vec::with_capacity(state.pages.len());
    for page_index in 0..state.pages.len() as u32 {
        let key = page_result_key(&state.tenant, &state.doc_id, page_index);
        let page = match runtime.blobs.get_key(&key).await {
            Ok(bytes) => schemas::decode::<PageResult>(&bytes)?,
            Err(BlobError::NotFound(_)) => {
                // Either another worker finished the document and removed
                // its blobs, or the result is really gone.
                let now = runtime.documents.get(&state.tenant, &state.doc_id).await?;
                if now.is_none_or(|s| {
                    s.finished.is_some() || s.submitted_at_ms != state.submitted_at_ms
                }) {
                    return Ok(());
                }
                lost_page(state, page_index)
            }
            Err(error) => return Err(error.into()),
        };
        pages.push(page);
    }
    let mut result = state.result(DocumentStatus::Complete, pages, 0);
    complete_document(&mut result);
    publish_result(runtime, result, replay).await
}

fn lost_page(state: &DocumentState, page_index: u32) -> PageResult {
    let lost = "the page result was lost from the object store";
    let failure =
        FailureRecord::new(&state.doc_id, EXIT_STAGE, "assemble", ErrorKind::Internal, lost)
            .on_page(page_index);
    PageResult { page_index, failure: Some(failure), ..PageResult::default() }
}

/// A replayed page succeeded after its document finished: the last
/// published result gets the page replaced and is published again.
async fn reopen(
    runtime: &Runtime,
    state: &DocumentState,
    page: PageResult,
    replay: Option<u64>,
) -> Result<(), Error> {
    let stream = runtime
        .js
        .get_stream_no_info(STREAM_RESULTS)
        .await
        .map_err(|e| Error::jetstream("cannot open the results stream", e))?;
    let last = stream
        .get_last_raw_message_by_subject(&result_subject(&state.tenant, &state.doc_id))
        .await
        .map_err(|e| Error::jetstream("cannot read the previous document result", e))?;
    let last: DocumentResult = schemas::decode(&last.payload)?;
    let mut result = claim_check::full_result(&runtime.blobs, last)
        .await
        .map_err(|e| Error::jetstream("cannot read the previous document result", e))?;
    result.pages.retain(|p| p.page_index != page.page_index);
    result.pages.push(page);
    complete_document(&mut result);
    tracing::info!(status = ?result.status, "replayed page landed, document result published again");
    publish_result(runtime, result, replay).await
}

/// Ends a document none of whose pages can land any more (its last page
/// could not be landed within its deliveries): finished, failed, with why.
/// Nothing to do when the document is unknown, another run or finished.
async fn abandon(
    runtime: &Runtime,
    task: &PageTask,
    record: FailureRecord,
    replay: Option<u64>,
) -> Result<(), Error> {
    let state = runtime.documents.get(&task.tenant, &task.doc_id).await?;
    let Some(state) =
        state.filter(|s| s.submitted_at_ms == task.submitted_at_ms && s.finished.is_none())
    else {
        return Ok(());
    };
    let mut result = state.result(DocumentStatus::Failed, Vec::new(), now_ms());
    result.failures.push(record);
    publish_result(runtime, result, replay).await
}

/// Publishes a finished document: result (by claim check when it is large),
/// event, exports; then marks the state finished and removes the document's
/// blobs. Safe to repeat. A result the server refuses for good is replaced
/// by a failed one that says why, so that the document never stays open.
pub(crate) async fn publish_result(
    runtime: &Runtime,
    result: DocumentResult,
    replay: Option<u64>,
) -> Result<(), Error> {
    let (tenant, doc_id, run) =
        (result.tenant.clone(), result.doc_id.clone(), result.submitted_at_ms);
    let (result, ack) = match publish_result_message(runtime, &result, replay).await {
        Ok(ack) => (result, ack),
        Err(error) if error.is_permanent() && !result.failures.iter().any(is_unpublishable) => {
            tracing::error!(%error, "the document result cannot be published; the document ends failed");
            let failed = unpublishable(&result, &error);
            let ack = publish_result_message(runtime, &failed, replay).await?;
            (failed, ack)
        }
        Err(error) => return Err(error),
    };

    let failed_pages = result.pages.iter().filter(|p| p.failure.is_some()).count() as u32;
    let body = match result.failures.first() {
        Some(failure) if result.status == DocumentStatus::Failed => {
            EventBody::DocumentFailed { failure: failure.clone() }
        }
        _ => EventBody::DocumentDone {
            status: result.status,
            page_count: result.page_count,
            failed_pages,
        },
    };
    let message = Event { tenant: tenant.clone(), doc_id: doc_id.clone(), at_ms: now_ms(), body };
    let outgoing = Outgoing::encode(
        event(&tenant, message.body.name()),
        document_msg_id(&tenant, &doc_id, run, message.body.name(), replay),
        &doc_id,
        &message,
    )?;
    runtime.publisher.publish(&outgoing).await?;

    if !ack.duplicate {
        write_exports(runtime, &result).await;
        runtime.metrics.documents.with_label_values(&[status_label(result.status)]).inc();
        if result.page_count > 0 {
            let seconds =
                result.completed_at_ms.saturating_sub(result.submitted_at_ms) as f64 / 1e3;
            runtime
                .metrics
                .document_seconds_per_page
                .observe(seconds / f64::from(result.page_count));
        }
        tracing::info!(status = ?result.status, pages = result.page_count, failed_pages, "document finished");
    }
    let finished = Finished { status: result.status, at_ms: result.completed_at_ms };
    runtime
        .documents
        .update(&tenant, &doc_id, |current| match current {
            Some(state) if state.submitted_at_ms == run && state.finished.is_none() => {
                let mut state = state.clone();
                state.finished = Some(finished);
                Change::Write(state, ())
            }
            _ => Change::Keep(()),
        })
        .await?;
    cleanup(runtime, &tenant, &doc_id).await;
    Ok(())
}

/// Publishes the result message of `result`: the result itself when it is
/// small, else the claim check of the result stored in the object store.
async fn publish_result_message(
    runtime: &Runtime,
    result: &DocumentResult,
    replay: Option<u64>,
) -> Result<PublishAck, Error> {
    let (tenant, doc_id, run) = (&result.tenant, &result.doc_id, result.submitted_at_ms);
    let subject = result_subject(tenant, doc_id);
    let id = document_msg_id(tenant, doc_id, run, "result", replay);
    let mut outgoing = Outgoing::encode(subject.clone(), id.clone(), doc_id, result)?;
    if outgoing.payload.len() > runtime.settings.result_inline_max_bytes {
        let small =
            claim_check::store_result(&runtime.blobs, result, outgoing.payload.clone()).await?;
        outgoing = Outgoing::encode(subject, id, doc_id, &small)?;
    }
    Ok(runtime.publisher.publish(&outgoing).await?)
}

/// Step of the failure recorded when a result cannot be published.
const PUBLISH_RESULT: &str = "publish_result";

fn is_unpublishable(failure: &FailureRecord) -> bool {
    failure.stage == EXIT_STAGE && failure.step == PUBLISH_RESULT
}

/// The failed result that replaces `result` when that cannot be published.
fn unpublishable(result: &DocumentResult, error: &Error) -> DocumentResult {
    let message = format!("the document result cannot be published: {error}");
    let failure = FailureRecord::new(
        &result.doc_id,
        EXIT_STAGE,
        PUBLISH_RESULT,
        ErrorKind::TooLarge,
        message,
    );
    let mut failures = result.failures.clone();
    failures.insert(0, failure);
    DocumentResult {
        status: DocumentStatus::Failed,
        pages: Vec::new(),
        failures,
        full_result: None,
        completed_at_ms: now_ms(),
        ..result.clone()
    }
}

fn status_label(status: DocumentStatus) -> &'static str {
    match status {
        DocumentStatus::Complete => "complete",
        DocumentStatus::Partial => "partial",
        DocumentStatus::Failed => "failed",
    }
}

/// JSON and Markdown of the result in the object store (best effort: the
/// result itself is in the results stream).
async fn write_exports(runtime: &Runtime, result: &DocumentResult) {
    let json = match serde_json::to_vec_pretty(result) {
        Ok(json) => json,
        Err(error) => return tracing::warn!(%error, "cannot export the result as json"),
    };
    let markdown = crate::output::markdown(result).into_bytes();
    for (extension, bytes) in [("json", json), ("md", markdown)] {
        let key = export_key(&result.tenant, &result.doc_id, extension);
        if let Err(error) = runtime.blobs.put(&key, Bytes::from(bytes)).await {
            tracing::warn!(%error, key, "cannot write export");
        }
    }
}

/// Removes the blobs and the cancellation mark of a finished document.
async fn cleanup(runtime: &Runtime, tenant: &str, doc_id: &str) {
    if let Err(error) = runtime.blobs.delete_prefix(&document_prefix(tenant, doc_id)).await {
        tracing::warn!(%error, "cannot delete the document's blobs");
    }
    if let Err(error) = runtime.documents.clear_cancel(tenant, doc_id).await {
        tracing::warn!(%error, "cannot clear the document's cancellation mark");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn page(index: u32, class: Option<&str>, failed: bool) -> PageResult {
        PageResult {
            page_index: index,
            class: class.map(String::from),
            failure: failed.then(|| {
                FailureRecord::new("d", "ocr", "recognize_text", ErrorKind::Model, "model failed")
                    .on_page(index)
                    .after(5)
            }),
            ..PageResult::default()
        }
    }

    fn result(pages: Vec<PageResult>) -> DocumentResult {
        DocumentResult { page_count: pages.len() as u32, pages, ..DocumentResult::new("d", "t", 0) }
    }

    #[test]
    fn status_follows_failed_pages() {
        let mut all_ok = result(vec![
            page(1, Some("letter"), false),
            page(0, Some("invoice"), false),
            page(2, Some("invoice"), false),
        ]);
        complete_document(&mut all_ok);
        assert_eq!(all_ok.status, DocumentStatus::Complete);
        assert_eq!(all_ok.pages.iter().map(|p| p.page_index).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(all_ok.class.as_deref(), Some("invoice"));
        assert!(all_ok.completed_at_ms > 0);

        let mut partial = result(vec![page(0, None, false), page(1, None, true)]);
        complete_document(&mut partial);
        assert_eq!((partial.status, partial.class), (DocumentStatus::Partial, None));

        let mut failed = result(vec![page(0, None, true)]);
        complete_document(&mut failed);
        assert_eq!(failed.status, DocumentStatus::Failed);
    }
}
