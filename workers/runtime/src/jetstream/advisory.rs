//! The safety net for pages that never get an answer: when a worker crashes
//! (or runs past `ack_wait`) on every delivery of a message, no worker code
//! runs to give the page up. The server then stops delivering it and sends a
//! `MAX_DELIVERIES` advisory; this listener dead-letters the message, sends
//! the page to `assemble` marked failed (or finishes the document failed,
//! for a submission) and deletes the message from its work queue.
//!
//! Every worker process listens for the consumers it serves, in a queue
//! group so that one of them handles each advisory; everything it publishes
//! is de-duplicated, so a repeat is harmless.

use std::sync::Arc;

use async_nats::Subject;
use futures::StreamExt;
use schemas::subjects::{HEADER_REPLAY, STREAM_DOCS, UNROUTED_TENANT, tenant_of};
use schemas::{DeadLetter, ErrorKind, FailureRecord, PagePayload};
use serde::Deserialize;

use super::delivery::{
    Refusal, document_finished, forward_failed, publish_dead_letter, receive_page,
};
use super::split::{give_up_document, receive_submission};
use super::{Error, Role, Runtime};

/// Queue group of the advisory listeners.
const QUEUE_GROUP: &str = "pagestream-advisories";

/// The part of `io.nats.jetstream.advisory.v1.max_deliver` used here.
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    stream: String,
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
}

/// Subject of the max-deliveries advisories of one consumer.
pub fn advisory_subject(stream: &str, consumer: &str) -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}")
}

/// Handles the advisories of the consumers of `roles` until the task is dropped.
pub async fn listen(runtime: Arc<Runtime>, roles: Vec<Role>) {
    let client = runtime.js.client();
    let mut subscriptions = Vec::new();
    for role in &roles {
        let (stream, consumer, _) = runtime.route.consumer(role.name());
        let subject = Subject::from(advisory_subject(&stream, &consumer));
        match client.queue_subscribe(subject, QUEUE_GROUP.into()).await {
            Ok(subscription) => subscriptions.push(subscription),
            Err(error) => {
                tracing::error!(%error, stream, consumer, "cannot listen for max-delivery advisories")
            }
        }
    }
    let mut advisories = futures::stream::select_all(subscriptions);
    while let Some(message) = advisories.next().await {
        let advisory: MaxDeliveries = match serde_json::from_slice(&message.payload) {
            Ok(advisory) => advisory,
            Err(error) => {
                tracing::warn!(%error, "unreadable max-delivery advisory");
                continue;
            }
        };
        if let Err(error) = give_up(&runtime, &advisory).await {
            tracing::error!(%error, stream = advisory.stream, seq = advisory.stream_seq, "cannot give up an undeliverable message");
        }
    }
}

async fn give_up(runtime: &Runtime, advisory: &MaxDeliveries) -> Result<(), Error> {
    let stream = runtime
        .js
        .get_stream_no_info(&advisory.stream)
        .await
        .map_err(|e| Error::jetstream(format!("cannot open stream {}", advisory.stream), e))?;
    let Ok(message) = stream.get_raw_message(advisory.stream_seq).await else {
        // Already handled (and deleted) by another listener, or acked late.
        return Ok(());
    };
    let stage = advisory.consumer.as_str();
    let attempts = u32::try_from(advisory.deliveries).unwrap_or(u32::MAX);
    let reason = format!(
        "delivered {} times without an answer: the worker crashed or ran past ack_wait every time",
        advisory.deliveries
    );
    let replay = message.headers.get(HEADER_REPLAY).and_then(|v| v.as_str().parse().ok());
    tracing::warn!(
        stage,
        seq = advisory.stream_seq,
        "message exhausted its deliveries, giving it up"
    );
    let record = |doc_id: &str, page_index: Option<u32>| FailureRecord {
        page_index,
        ..FailureRecord::new(doc_id, stage, "deliver", ErrorKind::Timeout, &reason).after(attempts)
    };
    let subject = message.subject.as_str();
    if advisory.stream == STREAM_DOCS {
        match receive_submission(subject, &message.payload) {
            Ok(submission) => {
                let failure = record(&submission.doc_id, None);
                give_up_document(runtime, &submission, subject, &message.payload, failure, replay)
                    .await?;
            }
            Err(refusal) => rejected(runtime, advisory, subject, &message.payload, refusal).await?,
        }
    } else {
        match receive_page(runtime, subject, &message.payload).await {
            Ok(payload) if replay.is_none() && document_finished(runtime, &payload.task).await => {
                tracing::debug!("undeliverable page of a finished document, dropped");
            }
            Ok(payload) => {
                let failure = record(&payload.task.doc_id, Some(payload.task.page_index));
                let PagePayload { task, result, .. } = payload;
                forward_failed(
                    runtime,
                    stage,
                    subject,
                    &message.payload,
                    task,
                    result,
                    failure,
                    replay,
                    true,
                )
                .await?;
            }
            Err(refusal) => rejected(runtime, advisory, subject, &message.payload, refusal).await?,
        }
    }
    runtime.metrics.failed.with_label_values(&[stage, "timeout", "dead_letter"]).inc();
    stream
        .delete_message(advisory.stream_seq)
        .await
        .map_err(|e| Error::jetstream("cannot delete the given-up message", e))?;
    Ok(())
}

/// Dead-letters an undeliverable message that is bad in itself, under the
/// tenant it was sent as (the same record a worker would have made).
async fn rejected(
    runtime: &Runtime,
    advisory: &MaxDeliveries,
    subject: &str,
    payload: &[u8],
    refusal: Refusal,
) -> Result<(), Error> {
    let (kind, doc_id, reason) = match refusal {
        Refusal::Reject { kind, doc_id, reason } => (kind, doc_id, reason),
        Refusal::Retry(error) => (error.kind, String::new(), error.message),
    };
    let letter = DeadLetter {
        tenant: tenant_of(subject).unwrap_or(UNROUTED_TENANT).to_string(),
        failure: FailureRecord::new(doc_id, &advisory.consumer, "receive", kind, reason)
            .after(u32::try_from(advisory.deliveries).unwrap_or(u32::MAX)),
        subject: subject.to_string(),
        payload: payload.to_vec(),
        payload_blob: None,
    };
    let id = format!("{}/seq/{}", advisory.consumer, advisory.stream_seq);
    publish_dead_letter(runtime, &advisory.consumer, &id, letter).await
}
