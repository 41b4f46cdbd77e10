//! Documents: what a client submits, how a page task names its page, and the
//! assembled result of a whole document.

use serde::{Deserialize, Serialize};

use crate::codec::Message;
use crate::failure::FailureRecord;
use crate::page::PageResult;

/// A document handed to the pipeline, published to `pagestream.<tenant>.submit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentSubmission {
    /// Identifier of the document; by convention the hex sha256 of its bytes,
    /// so that resubmitting the same bytes is recognised as a duplicate.
    pub doc_id: String,
    /// Tenant that owns the document; also part of every subject.
    pub tenant: String,
    /// Original file name, for people and exports only.
    #[serde(default)]
    pub file_name: Option<String>,
    /// The document bytes, inline or as a claim-check reference.
    pub source: DocumentSource,
    /// Submission time, milliseconds since the Unix epoch.
    pub submitted_at_ms: u64,
}

impl Message for DocumentSubmission {
    const KIND: &'static str = "document_submission";
}

/// Where the bytes of a document are.
///
/// On the wire a map tagged by its `type` key (serde's internally tagged
/// representation): `{"type": "inline", "bytes": <bin>}` or
/// `{"type": "blob", "store": ..., "key": ..., "size": ..., "sha256": ...}`.
/// The tag may come anywhere in the map. A `type` this build does not know is
/// malformed: a reader cannot fetch bytes from a source it does not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DocumentSource {
    /// The bytes travel in the message (small documents).
    Inline {
        /// The document bytes, as MessagePack `bin`.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// The bytes are in the object store (claim-check pattern).
    Blob(BlobRef),
}

/// A reference to an object in the object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Object store URL the key is relative to, e.g. `file:///var/lib/pagestream`
    /// or `s3://bucket/prefix`.
    pub store: String,
    /// Object key below the store URL.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex sha256 of the object, checked by the reader.
    pub sha256: String,
}

/// The file type of a document, sniffed from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// PDF, `%PDF-`.
    Pdf,
    /// PNG, `\x89PNG\r\n\x1a\n`.
    Png,
    /// JPEG, `\xff\xd8\xff`.
    Jpeg,
    /// TIFF, `II*\0` or `MM\0*`.
    Tiff,
}

/// One page of a document to be analysed; the unit of work of every stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageTask {
    /// Identifier of the document, see [`DocumentSubmission::doc_id`].
    pub doc_id: String,
    /// Tenant that owns the document.
    pub tenant: String,
    /// Zero-based page index within the document.
    pub page_index: u32,
    /// Number of pages of the document.
    pub page_count: u32,
    /// Sniffed type of the document.
    pub kind: DocumentKind,
    /// Where the document bytes are (the page is rendered from them).
    pub source: DocumentSource,
    /// Submission time of the document, milliseconds since the Unix epoch.
    pub submitted_at_ms: u64,
}

impl Message for PageTask {
    const KIND: &'static str = "page_task";
}

/// Overall outcome of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    /// Every page succeeded.
    Complete,
    /// Some pages failed; their failures are in the page results.
    Partial,
    /// No page could be analysed (or the document itself was rejected).
    Failed,
}

/// The assembled analysis of a whole document, published to
/// `pagestream.<tenant>.results.<doc_id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentResult {
    /// Identifier of the document, see [`DocumentSubmission::doc_id`].
    pub doc_id: String,
    /// Tenant that owns the document.
    pub tenant: String,
    /// Original file name, as submitted.
    #[serde(default)]
    pub file_name: Option<String>,
    /// Sniffed type; absent when the document could not be identified.
    #[serde(default)]
    pub kind: Option<DocumentKind>,
    /// Hex sha256 of the document bytes.
    pub sha256: String,
    /// Size of the document in bytes.
    pub size: u64,
    /// Overall outcome.
    pub status: DocumentStatus,
    /// Number of pages the document has (0 when it could not be opened).
    pub page_count: u32,
    /// One result per page, in page order; failed pages carry their failure.
    pub pages: Vec<PageResult>,
    /// Failures of the document as a whole (e.g. rejected before splitting).
    #[serde(default)]
    pub failures: Vec<FailureRecord>,
    /// Document class (majority of page classes), if any.
    #[serde(default)]
    pub class: Option<String>,
    /// Submission time, milliseconds since the Unix epoch.
    pub submitted_at_ms: u64,
    /// When the result was assembled, milliseconds since the Unix epoch.
    pub completed_at_ms: u64,
    /// Set when the result is too large for a message (claim-check): the
    /// complete result, a `document_result` envelope, is the object this
    /// names, and `pages` is empty here. Everything else is filled in.
    #[serde(default)]
    pub full_result: Option<BlobRef>,
}

impl DocumentResult {
    /// The result of document `doc_id` of `tenant`, submitted at
    /// `submitted_at_ms`, before anything is known of it: no pages, no
    /// failures, status complete, not completed. Callers set the rest with
    /// struct update syntax.
    pub fn new(doc_id: impl Into<String>, tenant: impl Into<String>, submitted_at_ms: u64) -> Self {
        DocumentResult {
            doc_id: doc_id.into(),
            tenant: tenant.into(),
            file_name: None,
            kind: None,
            sha256: String::new(),
            size: 0,
            status: DocumentStatus::Complete,
            page_count: 0,
            pages: Vec::new(),
            failures: Vec::new(),
            class: None,
            submitted_at_ms,
            completed_at_ms: 0,
            full_result: None,
        }
    }

    /// Whether this message stands for a result stored elsewhere
    /// ([`DocumentResult::full_result`]).
    pub fn is_claim_check(&self) -> bool {
        self.full_result.is_some()
    }

    /// The small message that stands for this result when it is stored at
    /// `blob`: the same fields without the pages.
    pub fn claim_check(&self, blob: BlobRef) -> DocumentResult {
        DocumentResult { pages: Vec::new(), full_result: Some(blob), ..self.clone() }
    }
}

impl Message for DocumentResult {
    const KIND: &'static str = "document_result";
}
