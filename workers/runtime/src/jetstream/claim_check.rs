//! Claim checks: a message that could grow past what NATS carries travels
//! as a small message naming an object in the store that holds all of it.
//!
//! - A document result larger than [`super::Settings::result_inline_max_bytes`]
//!   is stored under `results/<tenant>/<doc_id>/` (kept, like the exports);
//!   the results stream gets the result without its pages plus
//!   `full_result`.
//! - A page payload larger than the message limit (a page with thousands of
//!   lines) is stored under the document's prefix (deleted with the
//!   document); the stage input gets the task plus `spilled`.
//! - A dead letter whose original message would not fit beside its failure
//!   record keeps the original under `dead/<tenant>/` (`payload_blob`).
//!
//! Every stored object is named by its content, so a redelivery that stores
//! it again never changes what an earlier reference points at, and every
//! reader checks the object's size and sha256, that it lies under the
//! message's own tenant, and that it belongs to the same document.

use bytes::Bytes;
use schemas::{BlobRef, DeadLetter, DocumentResult, DocumentSource, PagePayload, PageResult};

use crate::blobs::{BlobError, BlobStore, document_prefix, key_within, results_prefix};

/// Why the object a claim check names cannot stand in for the message.
#[derive(Debug, thiserror::Error)]
pub enum ClaimCheckError {
    #[error("claim check `{key}` lies outside `{prefix}`")]
    Outside { key: String, prefix: String },
    #[error("claim check `{key}` holds another {what}")]
    Mismatch { key: String, what: &'static str },
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("unreadable message: {0}")]
    Codec(#[from] schemas::CodecError),
    #[error("a result sent as tenant `{sender}` names tenant `{named}`")]
    Foreign { sender: String, named: String },
}

impl ClaimCheckError {
    /// Whether the store was unreachable, so that trying later may work.
    pub fn is_temporary(&self) -> bool {
        matches!(self, ClaimCheckError::Blob(BlobError::Store(_)))
    }
}

fn within(blob: &BlobRef, prefix: &str) -> Result<(), ClaimCheckError> {
    if key_within(&blob.key, prefix) {
        Ok(())
    } else {
        Err(ClaimCheckError::Outside { key: blob.key.clone(), prefix: prefix.to_string() })
    }
}

/// Where the complete results of a document are stored, ending in `/`.
fn result_dir(tenant: &str, doc_id: &str) -> String {
    format!("{}{doc_id}/", results_prefix(tenant))
}

/// Stores `encoded` (the encoding of `result`) and returns the small message
/// that stands for it.
pub async fn store_result(
    blobs: &BlobStore,
    result: &DocumentResult,
    encoded: Bytes,
) -> Result<DocumentResult, BlobError> {
    let dir = result_dir(&result.tenant, &result.doc_id);
    let blob = blobs.put_content(dir.trim_end_matches('/'), ".msgpack", encoded).await?;
    Ok(result.claim_check(blob))
}

/// Decodes a result message sent as tenant `sender` (the tenant of its
/// subject) and returns the complete result it stands for.
pub async fn read_result(
    blobs: &BlobStore,
    sender: &str,
    message: &[u8],
) -> Result<DocumentResult, ClaimCheckError> {
    let result: DocumentResult = schemas::decode(message)?;
    if result.tenant != sender {
        let named = result.tenant;
        return Err(ClaimCheckError::Foreign { sender: sender.to_string(), named });
    }
    full_result(blobs, result).await
}

/// The complete result `message` stands for: `message` itself, or the result
/// its claim check names, read from `blobs`.
pub async fn full_result(
    blobs: &BlobStore,
    message: DocumentResult,
) -> Result<DocumentResult, ClaimCheckError> {
    let Some(blob) = &message.full_result else { return Ok(message) };
    within(blob, &result_dir(&message.tenant, &message.doc_id))?;
    let full: DocumentResult = schemas::decode(&blobs.get(blob).await?)?;
    let same = full.doc_id == message.doc_id
        && full.tenant == message.tenant
        && full.submitted_at_ms == message.submitted_at_ms
        && full.full_result.is_none();
    if !same {
        return Err(ClaimCheckError::Mismatch { key: blob.key.clone(), what: "document result" });
    }
    Ok(full)
}

/// Stores `encoded` (the encoding of `payload`, bound for `to_stage`) and
/// returns the small payload that stands for it.
pub async fn spill_page(
    blobs: &BlobStore,
    payload: &PagePayload,
    encoded: Bytes,
    to_stage: &str,
) -> Result<PagePayload, BlobError> {
    let task = &payload.task;
    let dir = format!("{}/pages/{}", document_prefix(&task.tenant, &task.doc_id), task.page_index);
    let blob = blobs.put_content(&dir, &format!("-{to_stage}.msgpack"), encoded).await?;
    let mut task = task.clone();
    if matches!(task.source, DocumentSource::Inline { .. }) {
        task.source = DocumentSource::Inline { bytes: Vec::new() };
    }
    let result = PageResult { page_index: task.page_index, ..PageResult::default() };
    let stub = PagePayload::result_only(task, result, payload.sent_at_ms);
    Ok(PagePayload { spilled: Some(blob), ..stub })
}

/// The complete payload `stub` stands for: `stub` itself, or the payload its
/// claim check names.
pub async fn unspill_page(
    blobs: &BlobStore,
    stub: PagePayload,
) -> Result<PagePayload, ClaimCheckError> {
    let Some(blob) = &stub.spilled else { return Ok(stub) };
    let task = &stub.task;
    within(blob, &format!("{}/", document_prefix(&task.tenant, &task.doc_id)))?;
    let full: PagePayload = schemas::decode(&blobs.get(blob).await?)?;
    let same = full.task.doc_id == task.doc_id
        && full.task.tenant == task.tenant
        && full.task.page_index == task.page_index
        && full.task.submitted_at_ms == task.submitted_at_ms
        && full.spilled.is_none();
    if !same {
        return Err(ClaimCheckError::Mismatch { key: blob.key.clone(), what: "page" });
    }
    Ok(full)
}

/// Moves the original message of `letter` to the object store.
pub async fn spill_dead_letter(
    blobs: &BlobStore,
    mut letter: DeadLetter,
) -> Result<DeadLetter, BlobError> {
    let dir = format!("dead/{}/{}", letter.tenant, letter.failure.stage);
    let payload = Bytes::from(std::mem::take(&mut letter.payload));
    letter.payload_blob = Some(blobs.put_content(&dir, ".msg", payload).await?);
    Ok(letter)
}

/// The original message of a dead letter, wherever it is.
pub async fn dead_letter_payload(
    blobs: &BlobStore,
    letter: &DeadLetter,
) -> Result<Bytes, ClaimCheckError> {
    match &letter.payload_blob {
        None => Ok(Bytes::copy_from_slice(&letter.payload)),
        Some(blob) => {
            within(blob, &format!("dead/{}/", letter.tenant))?;
            Ok(blobs.get(blob).await?)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use schemas::{DocumentKind, PageTask};

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&format!("file://{}", dir.path().display())).unwrap();
        (dir, store)
    }

    fn result(tenant: &str, pages: u32) -> DocumentResult {
        DocumentResult {
            kind: Some(DocumentKind::Pdf),
            sha256: "d1".into(),
            size: 10,
            page_count: pages,
            pages: (0..pages)
                .map(|page_index| PageResult { page_index, ..PageResult::default() })
                .collect(),
            completed_at_ms: 9,
            ..DocumentResult::new("d1", tenant, 7)
        }
    }

    #[tokio::test]
    async fn a_stored_result_reads_back_whole_and_only_for_its_own_document() {
        let (_dir, blobs) = store();
        let full = result("acme", 3);
        let encoded = Bytes::from(schemas::encode(&full).unwrap());
        let small = store_result(&blobs, &full, encoded).await.unwrap();
        assert!(small.pages.is_empty() && small.is_claim_check());
        assert_eq!(small.page_count, 3);
        assert!(small.full_result.as_ref().unwrap().key.starts_with("results/acme/d1/"));
        assert_eq!(full_result(&blobs, small.clone()).await.unwrap(), full);

        // The same reference sent as another tenant's result is refused.
        let mut foreign = small.clone();
        foreign.tenant = "other".into();
        assert!(matches!(full_result(&blobs, foreign).await, Err(ClaimCheckError::Outside { .. })));
        // A reference to another run's result is refused.
        let mut other_run = small;
        other_run.submitted_at_ms = 8;
        assert!(matches!(
            full_result(&blobs, other_run).await,
            Err(ClaimCheckError::Mismatch { .. })
        ));
    }

    #[tokio::test]
    async fn a_spilled_page_reads_back_whole() {
        let (_dir, blobs) = store();
        let task = PageTask {
            doc_id: "d1".into(),
            tenant: "acme".into(),
            page_index: 4,
            page_count: 9,
            kind: DocumentKind::Pdf,
            source: DocumentSource::Inline { bytes: vec![1, 2, 3] },
            submitted_at_ms: 7,
        };
        let payload = PagePayload {
            task,
            image: None,
            text_layer: Vec::new(),
            result: PageResult { page_index: 4, width: 99, ..PageResult::default() },
            sent_at_ms: 1,
            spilled: None,
        };
        let encoded = Bytes::from(schemas::encode(&payload).unwrap());
        let stub = spill_page(&blobs, &payload, encoded, "ocr").await.unwrap();
        assert_eq!(stub.task.source, DocumentSource::Inline { bytes: Vec::new() });
        assert_eq!(stub.result.width, 0);
        assert_eq!(unspill_page(&blobs, stub.clone()).await.unwrap(), payload);

        let mut moved = stub;
        moved.task.page_index = 5;
        assert!(matches!(unspill_page(&blobs, moved).await, Err(ClaimCheckError::Mismatch { .. })));
    }
}
