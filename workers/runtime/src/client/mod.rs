//! The user's side of the JetStream pipeline: checking documents before
//! they are submitted, fetching and awaiting document results, and bulk
//! ingestion ([`ingest`]). The CLI commands `submit`, `ingest`, `result` and
//! `watch` are thin shells over this module.

pub mod glob;
pub mod ingest;

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::context::Context;
use async_nats::jetstream::stream::DirectGetErrorKind;
use futures::StreamExt;
use schemas::subjects::{STREAM_RESULTS, result as result_subject};
use schemas::{DocumentKind, DocumentResult, ErrorKind};

use crate::blobs::{BlobStore, sha256_hex};
use crate::jetstream::{Error, claim_check};
use pages::error::StepError;
use pages::steps::split;

/// A document read and checked against the topology's limits, ready to be
/// submitted.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The file name it is submitted under.
    pub name: String,
    pub bytes: Vec<u8>,
    /// Hex sha256 of the bytes: the document id.
    pub doc_id: String,
    pub kind: DocumentKind,
    pub pages: u32,
}

/// Why a document is not submitted.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Unreadable { path: String, source: std::io::Error },
    /// The document breaks a limit or is not a document.
    #[error("{path}: {message}")]
    Rejected { path: String, kind: ErrorKind, message: String },
}

impl PrepareError {
    fn rejected(path: &str, error: StepError) -> Self {
        PrepareError::Rejected { path: path.to_string(), kind: error.kind, message: error.message }
    }
}

/// Reads the file at `path` (refusing one over the byte limit before reading
/// it) and checks it like `split` will: type, byte and page limits.
pub fn prepare_file(path: &Path, limits: &split::Config) -> Result<Prepared, PrepareError> {
    let shown = path.display().to_string();
    let unreadable = |source| PrepareError::Unreadable { path: shown.clone(), source };
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    if size > limits.max_document_bytes {
        let message =
            format!("document is {size} bytes, the limit is {}", limits.max_document_bytes);
        return Err(PrepareError::Rejected { path: shown, kind: ErrorKind::TooLarge, message });
    }
    let bytes = std::fs::read(path).map_err(unreadable)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    prepare_bytes(&shown, name, bytes, limits)
}

/// Checks `bytes` like `split` will: type, byte and page limits. `shown`
/// names the document in errors.
pub fn prepare_bytes(
    shown: &str,
    name: String,
    bytes: Vec<u8>,
    limits: &split::Config,
) -> Result<Prepared, PrepareError> {
    let kind = split::sniff(&bytes).map_err(|e| PrepareError::rejected(shown, e))?;
    let pages =
        split::validate(kind, &bytes, limits).map_err(|e| PrepareError::rejected(shown, e))?;
    Ok(Prepared { name, doc_id: sha256_hex(&bytes), bytes, kind, pages })
}

/// The published result of a document, if the results stream has it; a
/// claim-checked result is read whole from `blobs`.
///
/// Asks with a direct get of the last message on the result subject, whose
/// API subject names the tenant, so NATS permissions can confine a tenant to
/// its own results.
pub async fn stored_result(
    js: &Context,
    blobs: &BlobStore,
    tenant: &str,
    doc_id: &str,
) -> Result<Option<DocumentResult>, Error> {
    let stream = js
        .get_stream_no_info(STREAM_RESULTS)
        .await
        .map_err(|e| Error::jetstream("cannot open the results stream", e))?;
    match stream.direct_get_last_for_subject(result_subject(tenant, doc_id)).await {
        Ok(message) => Ok(Some(claim_check::read_result(blobs, tenant, &message.payload).await?)),
        Err(error) if error.kind() == DirectGetErrorKind::NotFound => Ok(None),
        Err(error) => Err(Error::jetstream("cannot read the document result", error)),
    }
}

/// Waits for the result of one document; subscribe before submitting so
/// that a result published in between is not missed.
#[derive(Debug)]
pub struct ResultWaiter {
    tenant: String,
    doc_id: String,
    subscription: async_nats::Subscriber,
}

impl ResultWaiter {
    /// Subscribes to the document's result subject.
    pub async fn subscribe(
        client: &async_nats::Client,
        tenant: &str,
        doc_id: &str,
    ) -> Result<Self, Error> {
        let subscription = client
            .subscribe(result_subject(tenant, doc_id))
            .await
            .map_err(|e| Error::jetstream("cannot subscribe to the document result", e))?;
        Ok(ResultWaiter { tenant: tenant.to_string(), doc_id: doc_id.to_string(), subscription })
    }

    /// The result of the run submitted at `run_ms` or later (any run when
    /// `None`, e.g. when the submission was a duplicate), or `None` when
    /// none arrives within `timeout`.
    pub async fn wait(
        mut self,
        js: &Context,
        blobs: &BlobStore,
        run_ms: Option<u64>,
        timeout: Duration,
    ) -> Result<Option<DocumentResult>, Error> {
        let wanted =
            |result: &DocumentResult| run_ms.is_none_or(|run| result.submitted_at_ms >= run);
        if let Some(result) = stored_result(js, blobs, &self.tenant, &self.doc_id).await?
            && wanted(&result)
        {
            return Ok(Some(result));
        }
        let arrival = async {
            while let Some(message) = self.subscription.next().await {
                let result =
                    claim_check::read_result(blobs, &self.tenant, &message.payload).await?;
                if wanted(&result) {
                    return Ok(Some(result));
                }
            }
            Ok(None)
        };
        tokio::time::timeout(timeout, arrival).await.unwrap_or(Ok(None))
    }
}
