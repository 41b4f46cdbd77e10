//! The client side of `split`: publishing a document to
//! `pagestream.<tenant>.submit`, inline when small, else uploaded to the
//! object store first and referenced (claim-check).
//!
//! The DOCS stream de-duplicates on `<tenant>/<doc_id>` (the document id
//! being the sha256 of its bytes), so the same document submitted twice
//! within the duplicate window is analysed once. A full DOCS stream refuses
//! the publish; the [`Publisher`] retries with backoff, which is how bulk
//! ingestion slows down to the pipeline's pace.

use bytes::Bytes;
use schemas::subjects::{submit as submit_subject, validate_tenant};
use schemas::{BlobRef, DocumentSource, DocumentSubmission};

use super::Error;
use super::publish::{Outgoing, Publisher};
use crate::blobs::{BlobStore, document_prefix, sha256_hex};
use schemas::now_ms;

/// Why a document could not be submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("invalid tenant: {0}")]
    Tenant(#[from] schemas::subjects::TenantError),
    #[error(transparent)]
    Transport(#[from] Error),
}

/// A document the DOCS stream has taken.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub submission: DocumentSubmission,
    /// The stream already had this document (same tenant and bytes within
    /// the duplicate window): the earlier submission's run is the one that
    /// counts, and no work is redone.
    pub duplicate: bool,
}

/// Submits `bytes` for `tenant` and waits until the DOCS stream has it.
pub async fn submit(
    publisher: &Publisher,
    blobs: &BlobStore,
    tenant: &str,
    file_name: Option<&str>,
    bytes: Vec<u8>,
    inline_max_bytes: usize,
) -> Result<Submitted, SubmitError> {
    validate_tenant(tenant)?;
    let doc_id = sha256_hex(&bytes);
    let source = if bytes.len() <= inline_max_bytes {
        DocumentSource::Inline { bytes }
    } else {
        let key = format!("{}/submitted", document_prefix(tenant, &doc_id));
        let blob: BlobRef = blobs.put(&key, Bytes::from(bytes)).await.map_err(Error::from)?;
        DocumentSource::Blob(blob)
    };
    let submission = DocumentSubmission {
        doc_id: doc_id.clone(),
        tenant: tenant.to_string(),
        file_name: file_name.map(String::from),
        source,
        submitted_at_ms: now_ms(),
    };
    let outgoing = Outgoing::encode(
        submit_subject(tenant),
        format!("{tenant}/{doc_id}"),
        &doc_id,
        &submission,
    )
    .map_err(Error::from)?;
    let ack = publisher.publish(&outgoing).await.map_err(Error::from)?;
    Ok(Submitted { submission, duplicate: ack.duplicate })
}
