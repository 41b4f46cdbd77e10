//! Events for integrations, published to `pagestream.<tenant>.events.<name>`.

use serde::{Deserialize, Serialize};

use crate::codec::Message;
use crate::document::DocumentStatus;
use crate::failure::FailureRecord;

/// Something that happened to a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub tenant: String,
    pub doc_id: String,
    /// When it happened, milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub body: EventBody,
}

impl Message for Event {
    const KIND: &'static str = "event";
}

/// The kinds of event, tagged by `event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventBody {
    /// A page finished, successfully or not.
    PageDone { page_index: u32, ok: bool },
    /// Every page of the document finished; its result is published.
    DocumentDone { status: DocumentStatus, page_count: u32, failed_pages: u32 },
    /// The document could not be analysed at all.
    DocumentFailed { failure: FailureRecord },
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
