//! Events for integrations, published to `pagestream.<tenant>.events.<name>`.

use serde::{Deserialize, Serialize};

use crate::codec::Message;
use crate::document::DocumentStatus;
use crate::failure::FailureRecord;

/// Something that happened to a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Tenant that owns the document.
    pub tenant: String,
    /// Identifier of the document.
    pub doc_id: String,
    /// When it happened, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub body: EventBody,
}

impl Message for Event {
    const KIND: &'static str = "event";
}

/// The kinds of event.
///
/// On the wire a map tagged by its `event` key (serde's internally tagged
/// representation), e.g. `{"event": "page_done", "page_index": 0, "ok": true}`.
/// The tag is the snake_case variant name; the subject token is
/// [`EventBody::name`]. An `event` this build does not know is malformed;
/// consumers that subscribe to every event skip what they cannot decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventBody {
    /// A page finished, successfully or not.
    PageDone {
        /// Zero-based index of the page.
        page_index: u32,
        /// Whether the page was analysed (false: it carries a failure).
        ok: bool,
    },
    /// Every page of the document finished; its result is published.
    DocumentDone {
        /// Overall outcome.
        status: DocumentStatus,
        /// Number of pages of the document.
        page_count: u32,
        /// Number of pages that failed.
        failed_pages: u32,
    },
    /// The document could not be analysed at all.
    DocumentFailed {
        /// Why.
        failure: FailureRecord,
    },
}

impl EventBody {
    /// Last subject token of the event, e.g. `document.done`.
    pub fn name(&self) -> &'static str {
        match self {
            EventBody::PageDone { .. } => "page.done",
            EventBody::DocumentDone { .. } => "document.done",
            EventBody::DocumentFailed { .. } => "document.failed",
        }
    }
}
