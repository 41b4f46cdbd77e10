//! Failure records and dead letters.

use serde::{Deserialize, Serialize};

use crate::codec::Message;

/// What went wrong, as a stable machine-readable category.
///
/// Unknown kinds written by a newer version decode as [`ErrorKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The bytes are not a supported document type.
    UnsupportedFormat,
    /// The document or page is damaged and cannot be decoded.
    Corrupt,
    /// The PDF is encrypted and cannot be opened without a password.
    Encrypted,
    /// The document is larger than the configured byte limit.
    TooLarge,
    /// The document has more pages than the configured limit.
    TooManyPages,
    /// A page has more pixels than the configured limit.
    TooManyPixels,
    /// A step ran past its time limit.
    Timeout,
    /// A model failed to run.
    Model,
    /// A message could not be decoded or is inconsistent.
    MalformedMessage,
    /// The document was cancelled.
    Cancelled,
    /// A dependency (object store, message broker) was unavailable.
    Unavailable,
    /// A bug or an unexpected condition.
    Internal,
    /// The tenant is not one the pipeline accepts.
    UnknownTenant,
    /// An integration endpoint (a webhook) refused or never took the delivery.
    Delivery,
    /// The message reaches outside the tenant it was sent as: its body names
    /// another tenant, or it refers to another tenant's objects.
    Forbidden,
    /// A kind this build does not know (written by a newer version).
    #[serde(other)]
    Other,
}

/// Why a page (or a document) failed, recorded in its result and in the
/// dead-letter stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// Identifier of the document.
    pub doc_id: String,
    /// The page, or none when the document as a whole failed.
    #[serde(default)]
    pub page_index: Option<u32>,
    /// Stage that failed.
    pub stage: String,
    /// Step of the stage that failed.
    pub step: String,
    /// Category of the failure.
    pub kind: ErrorKind,
    /// Human-readable message (lowercase, no trailing period).
    pub message: String,
    /// Delivery attempts made before giving up (1 when rejected at once).
    pub attempts: u32,
    /// When the failure was recorded, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl FailureRecord {
    /// A failure of `step` in `stage` for document `doc_id` as a whole,
    /// after one attempt, recorded now; see [`Self::on_page`] and
    /// [`Self::after`].
    pub fn new(
        doc_id: impl Into<String>,
        stage: impl Into<String>,
        step: impl Into<String>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        FailureRecord {
            doc_id: doc_id.into(),
            page_index: None,
            stage: stage.into(),
            step: step.into(),
            kind,
            message: message.into(),
            attempts: 1,
            at_ms: crate::now_ms(),
        }
    }

    /// The same failure, of page `page_index`.
    pub fn on_page(self, page_index: u32) -> Self {
        FailureRecord { page_index: Some(page_index), ..self }
    }

    /// The same failure, after `attempts` deliveries.
    pub fn after(self, attempts: u32) -> Self {
        FailureRecord { attempts, ..self }
    }
}

impl Message for FailureRecord {
    const KIND: &'static str = "failure_record";
}

/// A message that could not be processed, kept in the dead-letter stream
/// with its failure so it can be inspected and replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Tenant that owns the document.
    pub tenant: String,
    /// Why the message was given up on.
    pub failure: FailureRecord,
    /// Subject the original message was published to.
    pub subject: String,
    /// The original message, byte for byte (MessagePack `bin`); empty when
    /// it is in the object store ([`DeadLetter::payload_blob`]).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Where the original message is when the dead letter would not fit
    /// in a message with it.
    #[serde(default)]
    pub payload_blob: Option<crate::BlobRef>,
}

impl Message for DeadLetter {
    const KIND: &'static str = "dead_letter";
}
