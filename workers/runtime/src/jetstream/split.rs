//! Stage `split` on JetStream: consumes a [`DocumentSubmission`] from the
//! DOCS stream, splits it with the same [`pages::steps::split::Splitter`] as
//! the embedded transport, records the document in the key-value bucket and
//! fans out one page message per page.
//!
//! Split is where backpressure reaches producers: it fans out only while the
//! work stream is below its high-water mark, so when the pipeline is full it
//! stops pulling documents, DOCS fills up, and submitting publishers are
//! refused ("maximum bytes exceeded") until there is room again.

use std::time::Duration;
use topology::catalogue::ENTRY_STAGE;

use async_nats::jetstream::Message;
use schemas::subjects::{STREAM_WORK, event};
use schemas::{
    DeadLetter, DocumentSource, DocumentState, DocumentStatus, DocumentSubmission, ErrorKind,
    Event, EventBody, FailureRecord, PagePayload, PageResult, PageState,
};
use tracing::Instrument;

use super::assemble::publish_result;
use super::delivery::{
    Delivery, PhaseFailure, Refusal, decode_from, own_blob, page_message, publish_dead_letter,
    refuse, same_tenant, settle, unavailable, valid_doc_id,
};
use super::payload::{self, blob_error, blocking};
use super::publish::Outgoing;
use super::state::Change;
use super::{Error, Runtime, document_msg_id};
use crate::blobs::{self, sha256_hex};
use pages::error::StepError;
use schemas::now_ms;

/// One submitted document through `split`.
pub(crate) async fn handle(runtime: &Runtime, message: Message) {
    let delivery = Delivery::new(runtime, ENTRY_STAGE, message);
    let received = receive_submission(&delivery.message.subject, &delivery.message.payload);
    let submission = match received {
        Ok(submission) => submission,
        Err(refusal) => return refuse_submission(runtime, &delivery, refusal).await,
    };
    let span = tracing::info_span!("document", stage = "split", doc_id = %submission.doc_id, tenant = %submission.tenant);
    let (submission, delivery) = (&submission, &delivery);
    async {
        let outcome =
            delivery.keep_alive(split_document(runtime, submission, delivery.replay)).await;
        settle(runtime, delivery, outcome, |failure| async move {
            let record =
                failure_record(submission, &failure.phase, &failure.error, delivery.attempt);
            let message = &delivery.message;
            give_up_document(
                runtime,
                submission,
                &message.subject,
                &message.payload,
                record,
                delivery.replay,
            )
            .await
        })
        .await;
    }
    .instrument(span)
    .await
}

/// Decodes and checks a submission: its tenant must be the subject's, its
/// document id the sha256 of its bytes, and a stored document must lie
/// under the tenant's own prefix.
pub(crate) fn receive_submission(
    subject: &str,
    message: &[u8],
) -> Result<DocumentSubmission, Refusal> {
    let (tenant, submission): (_, DocumentSubmission) = decode_from(subject, message)?;
    let doc_id = submission.doc_id.as_str();
    same_tenant(tenant, &submission.tenant, doc_id)?;
    if !valid_doc_id(doc_id) {
        let reason = "document id may only hold letters, digits, '-' and '_' (at most 128)";
        return Err(Refusal::reject(ErrorKind::MalformedMessage, "", reason));
    }
    let sha256 = match &submission.source {
        DocumentSource::Inline { bytes } => sha256_hex(bytes),
        DocumentSource::Blob(blob) => {
            own_blob(tenant, Some(blob), doc_id)?;
            blob.sha256.clone()
        }
    };
    if sha256 != doc_id {
        let reason = "the document id is not the sha256 of the document bytes";
        return Err(Refusal::reject(ErrorKind::MalformedMessage, doc_id, reason));
    }
    Ok(submission)
}

/// A refused submission is dead-lettered like any refused message; a
/// `document.failed` event tells a client awaiting it why no result comes.
async fn refuse_submission(runtime: &Runtime, delivery: &Delivery, refusal: Refusal) {
    if let (Refusal::Reject { kind, doc_id, reason }, Some(tenant)) = (&refusal, &delivery.tenant) {
        let failure = FailureRecord::new(doc_id, &delivery.stage, "receive", *kind, reason)
            .after(delivery.attempt);
        let message = Event {
            tenant: tenant.clone(),
            doc_id: doc_id.clone(),
            at_ms: now_ms(),
            body: EventBody::DocumentFailed { failure },
        };
        let id = format!("rejected/{}/seq/{}", delivery.stage, delivery.sequence());
        let published =
            match Outgoing::encode(event(tenant, message.body.name()), id, doc_id, &message) {
                Ok(outgoing) => {
                    runtime.publisher.publish(&outgoing).await.map(drop).map_err(Error::from)
                }
                Err(error) => Err(error.into()),
            };
        if let Err(error) = published {
            tracing::warn!(%error, "cannot publish the event of a rejected submission");
        }
    }
    refuse(runtime, delivery, refusal).await;
}

fn failure_record(
    submission: &DocumentSubmission,
    step: &str,
    error: &StepError,
    attempts: u32,
) -> FailureRecord {
    FailureRecord::new(&submission.doc_id, ENTRY_STAGE, step, error.kind, &error.message)
        .after(attempts)
}

/// The document's state or its failure could not be recorded: for now.
fn recording_failed(error: impl std::fmt::Display) -> PhaseFailure {
    PhaseFailure::new("record", unavailable(error))
}

async fn split_document(
    runtime: &Runtime,
    submission: &DocumentSubmission,
    replay: Option<u64>,
) -> Result<(), PhaseFailure> {
    // Tenant and document id were checked as the submission was received.
    let (tenant, doc_id) = (submission.tenant.as_str(), submission.doc_id.as_str());
    if !runtime.accepts_tenant(tenant) {
        let message = format!("tenant `{tenant}` is not declared in the topology");
        return Err(PhaseFailure::new(
            "validate",
            StepError::reject(ErrorKind::UnknownTenant, message),
        ));
    }
    let existing = runtime.documents.get(tenant, doc_id).await.map_err(recording_failed)?;
    let same_run =
        existing.as_ref().is_some_and(|s| s.submitted_at_ms == submission.submitted_at_ms);
    match &existing {
        Some(state) if same_run && state.finished.is_some() && replay.is_none() => {
            tracing::info!("document already finished, submission redelivered");
            return Ok(());
        }
        Some(state) if !same_run && state.finished.is_none() => {
            tracing::info!("document already in progress, submission ignored");
            return Ok(());
        }
        _ => {}
    }
    if runtime.cancellations.contains(tenant, doc_id) {
        tracing::info!("document cancelled before it was split");
        let error = StepError::reject(ErrorKind::Cancelled, "the document was cancelled");
        let record = failure_record(submission, "cancel", &error, 1);
        return finish_failed(runtime, submission, None, None, record, replay)
            .await
            .map_err(recording_failed);
    }

    let limit = runtime.pipeline.splitter.config.max_document_bytes;
    let bytes = match &submission.source {
        DocumentSource::Blob(blob) if blob.size > limit => {
            let message = format!("document is {} bytes, the limit is {limit}", blob.size);
            return Err(PhaseFailure::new(
                "validate",
                StepError::reject(ErrorKind::TooLarge, message),
            ));
        }
        source => payload::document_bytes(doc_id, source, &runtime.blobs)
            .await
            .map_err(PhaseFailure::of("fetch"))?,
    };
    let page_source = match &submission.source {
        DocumentSource::Blob(blob) => DocumentSource::Blob(blob.clone()),
        DocumentSource::Inline { .. }
            if bytes.len() <= runtime.settings.images.inline_max_bytes =>
        {
            DocumentSource::Inline { bytes: bytes.to_vec() }
        }
        DocumentSource::Inline { .. } => {
            let key = format!("{}/original", blobs::document_prefix(tenant, doc_id));
            let blob = runtime
                .blobs
                .put(&key, bytes.clone())
                .await
                .map_err(|e| PhaseFailure::new("store", blob_error(e)))?;
            DocumentSource::Blob(blob)
        }
    };

    let splitter = runtime.pipeline.splitter.clone();
    let for_split = (submission.clone(), bytes.clone(), page_source);
    let split = blocking(move || {
        let (submission, bytes, page_source) = for_split;
        Ok(splitter.split(&submission, &bytes, &page_source))
    })
    .await
    .map_err(PhaseFailure::of("split"))?;
    let split = match split {
        Ok(split) => split,
        Err(failed) if matches!(failed.error.retry, pages::error::Retry::After(_)) => {
            return Err(PhaseFailure::new(failed.step, failed.error));
        }
        Err(failed) => {
            // The document itself is bad: it is finished at once, failed.
            let (kind, message) = (failed.error.kind, failed.error.message);
            let record = FailureRecord::new(doc_id, ENTRY_STAGE, failed.step, kind, message);
            tracing::info!(kind = ?record.kind, reason = %record.message, "document rejected");
            return finish_failed(runtime, submission, failed.kind, Some(&bytes), record, replay)
                .await
                .map_err(recording_failed);
        }
    };

    let page_count = split.tasks.len();
    let state = DocumentState {
        doc_id: doc_id.to_string(),
        tenant: tenant.to_string(),
        file_name: submission.file_name.clone(),
        kind: Some(split.kind),
        sha256: sha256_hex(&bytes),
        size: bytes.len() as u64,
        submitted_at_ms: submission.submitted_at_ms,
        pages: vec![PageState::Pending; page_count],
        failures: Vec::new(),
        finished: None,
    };
    runtime
        .documents
        .update(tenant, doc_id, |current| match current {
            // A redelivered submission of a run in progress keeps its state.
            Some(current)
                if current.submitted_at_ms == state.submitted_at_ms
                    && current.finished.is_none() =>
            {
                Change::Keep(())
            }
            _ => Change::Write(state.clone(), ()),
        })
        .await
        .map_err(recording_failed)?;

    wait_for_room(runtime).await;
    let first = runtime.route.next(ENTRY_STAGE).name.clone();
    let mut timings = Some(split.timings);
    let mut messages = Vec::with_capacity(page_count);
    for task in split.tasks {
        let result = PageResult {
            page_index: task.page_index,
            timings: timings.take().unwrap_or_default(),
            ..PageResult::default()
        };
        let payload = PagePayload::result_only(task, result, now_ms());
        let message = page_message(runtime, &payload, &first, replay)
            .await
            .map_err(|e| PhaseFailure::new("fan_out", StepError::internal(e.to_string())))?;
        messages.push(message);
    }
    runtime.publisher.publish_all(&messages, runtime.settings.publish_window).await.map_err(
        |e| {
            let error = if e.is_permanent() {
                StepError::reject(ErrorKind::Internal, e.to_string())
            } else {
                StepError::retry_after(
                    ErrorKind::Unavailable,
                    Duration::from_secs(1),
                    e.to_string(),
                )
            };
            PhaseFailure::new("fan_out", error)
        },
    )?;
    tracing::info!(pages = page_count, "document split");
    Ok(())
}

/// Waits while the work stream is above its high-water mark, so that pages
/// already in the pipeline always find room to move on.
async fn wait_for_room(runtime: &Runtime) {
    let mut waited = false;
    loop {
        let fill = match runtime.js.get_stream_no_info(STREAM_WORK).await {
            Ok(stream) => match stream.get_info().await {
                Ok(info) if info.config.max_bytes > 0 => {
                    info.state.bytes as f64 / info.config.max_bytes as f64
                }
                _ => 0.0,
            },
            Err(_) => 0.0,
        };
        if fill < runtime.settings.work_high_water {
            if waited {
                tracing::info!(fill, "work stream has room again");
            }
            return;
        }
        if !waited {
            tracing::info!(fill, "work stream above its high-water mark, waiting before fan-out");
            waited = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Finishes a document that cannot be split: state, result, event.
async fn finish_failed(
    runtime: &Runtime,
    submission: &DocumentSubmission,
    kind: Option<schemas::DocumentKind>,
    bytes: Option<&[u8]>,
    record: FailureRecord,
    replay: Option<u64>,
) -> Result<(), Error> {
    let state = DocumentState {
        doc_id: submission.doc_id.clone(),
        tenant: submission.tenant.clone(),
        file_name: submission.file_name.clone(),
        kind,
        sha256: bytes.map(sha256_hex).unwrap_or_default(),
        size: bytes.map_or(0, |b| b.len() as u64),
        submitted_at_ms: submission.submitted_at_ms,
        pages: Vec::new(),
        failures: vec![record],
        finished: None,
    };
    let result = state.result(DocumentStatus::Failed, Vec::new(), now_ms());
    runtime
        .documents
        .update(&state.tenant, &state.doc_id, |_| Change::Write(state.clone(), ()))
        .await?;
    publish_result(runtime, result, replay).await
}

/// Gives up a submission for good: dead letter, then the document finished
/// as failed. `submission` passed [`receive_submission`], so its tenant and
/// id are usable.
pub(crate) async fn give_up_document(
    runtime: &Runtime,
    submission: &DocumentSubmission,
    subject: &str,
    original: &[u8],
    record: FailureRecord,
    replay: Option<u64>,
) -> Result<(), Error> {
    let letter = DeadLetter {
        tenant: submission.tenant.clone(),
        failure: record.clone(),
        subject: subject.to_string(),
        payload: original.to_vec(),
        payload_blob: None,
    };
    let id = document_msg_id(
        &submission.tenant,
        &submission.doc_id,
        submission.submitted_at_ms,
        "split",
        replay,
    );
    publish_dead_letter(runtime, ENTRY_STAGE, &id, letter).await?;
    finish_failed(runtime, submission, None, None, record, replay).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn document_ids_must_be_single_tokens() {
        assert!(valid_doc_id(&"a1".repeat(32)));
        assert!(valid_doc_id("invoice-2024_07"));
        for bad in ["", "a.b", "a b", "a*", "a>", "ä", &"x".repeat(129)] {
            assert!(!valid_doc_id(bad), "{bad:?}");
        }
    }
}
