//! The dead-letter stream: listing what failed for good, and replaying it.
//!
//! A replay publishes the original message to its original subject with the
//! [`HEADER_REPLAY`] header (the dead letter's sequence) and removes the
//! dead letter. The page (or document) is analysed again; a replayed page
//! that now succeeds after its document finished without it gets the
//! document result published again with the page in it.

use async_nats::jetstream::context::Context;
use schemas::DeadLetter;
use schemas::subjects::{HEADER_DOC_ID, HEADER_REPLAY, STREAM_DEAD_LETTER};

use super::publish::{Outgoing, Publisher};
use super::{Error, claim_check};
use crate::blobs::BlobStore;

/// One message of the dead-letter stream.
#[derive(Debug, Clone)]
pub struct Entry {
    pub sequence: u64,
    pub subject: String,
    /// The dead letter, or why it cannot be read.
    pub letter: Result<DeadLetter, String>,
}

/// Up to `limit` dead letters, oldest first, from sequence `from` on.
pub async fn list(js: &Context, from: u64, limit: usize) -> Result<Vec<Entry>, Error> {
    let mut stream = js
        .get_stream(STREAM_DEAD_LETTER)
        .await
        .map_err(|e| Error::jetstream("cannot open the dead-letter stream", e))?;
    let state = stream
        .info()
        .await
        .map_err(|e| Error::jetstream("cannot read the dead-letter stream", e))?
        .state
        .clone();
    let mut entries = Vec::new();
    if state.messages == 0 {
        return Ok(entries);
    }
    let mut sequence = from.max(state.first_sequence);
    while sequence <= state.last_sequence && entries.len() < limit {
        // Replayed letters are deleted: gaps are normal.
        if let Ok(message) = stream.get_raw_message(sequence).await {
            let letter = schemas::decode::<DeadLetter>(&message.payload).map_err(|e| e.to_string());
            entries.push(Entry { sequence, subject: message.subject.to_string(), letter });
        }
        sequence += 1;
    }
    Ok(entries)
}

/// Replays the dead letters with the given sequences; returns those replayed.
/// A letter whose original message is in the object store reads it from
/// `blobs`.
pub async fn replay(js: &Context, blobs: &BlobStore, sequences: &[u64]) -> Result<Vec<u64>, Error> {
    let stream = js
        .get_stream(STREAM_DEAD_LETTER)
        .await
        .map_err(|e| Error::jetstream("cannot open the dead-letter stream", e))?;
    let publisher = Publisher::new(js.clone()).retry_for(std::time::Duration::from_secs(30));
    let mut replayed = Vec::new();
    for &sequence in sequences {
        let message = stream
            .get_raw_message(sequence)
            .await
            .map_err(|e| Error::jetstream(format!("no dead letter {sequence}"), e))?;
        let letter: DeadLetter = schemas::decode(&message.payload)?;
        let payload = claim_check::dead_letter_payload(blobs, &letter)
            .await
            .map_err(|e| Error::jetstream(format!("dead letter {sequence}"), e))?;
        let mut outgoing = Outgoing {
            subject: letter.subject.clone(),
            msg_id: format!("replay/{sequence}"),
            headers: async_nats::HeaderMap::new(),
            payload,
        }
        .with_header(HEADER_REPLAY, &sequence.to_string());
        if !letter.failure.doc_id.is_empty() {
            outgoing = outgoing.with_header(HEADER_DOC_ID, &letter.failure.doc_id);
        }
        publisher.publish(&outgoing).await?;
        stream
            .delete_message(sequence)
            .await
            .map_err(|e| Error::jetstream(format!("cannot remove dead letter {sequence}"), e))?;
        replayed.push(sequence);
    }
    Ok(replayed)
}
