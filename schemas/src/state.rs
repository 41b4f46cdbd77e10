//! Document state: the value of `doc.<tenant>.<doc_id>` in the
//! [`KV_DOCUMENTS`](crate::subjects::KV_DOCUMENTS) bucket, shared by every
//! worker process and read by `pagestream status` and other clients.
//!
//! Unlike the messages, it is stored as JSON so that `nats kv get` shows it
//! as it is; the same compatibility rules apply (fields are only added, with
//! a default).

use serde::{Deserialize, Serialize};

use crate::document::{DocumentKind, DocumentResult, DocumentStatus};
use crate::failure::FailureRecord;
use crate::page::PageResult;

/// Where a page of a document stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageState {
    /// Not yet in `assemble`.
    Pending,
    /// Analysed; its result is stored.
    Done,
    /// Failed for good (dead-lettered or cancelled); its failure is stored.
    Failed,
}

/// What the bucket records about a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentState {
    pub doc_id: String,
    pub tenant: String,
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub kind: Option<DocumentKind>,
    /// Hex sha256 of the document bytes.
    pub sha256: String,
    /// Size of the document in bytes.
    pub size: u64,
    /// Submission time of the run this state belongs to, milliseconds since
    /// the Unix epoch; pages of another run are ignored.
    pub submitted_at_ms: u64,
    /// One entry per page.
    pub pages: Vec<PageState>,
    /// Failures of the document as a whole (it could not be split).
    #[serde(default)]
    pub failures: Vec<FailureRecord>,
    /// Set once the document result is published.
    #[serde(default)]
    pub finished: Option<Finished>,
}

/// How a document ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    pub status: DocumentStatus,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl DocumentState {
    /// Pages that have landed, successfully or not.
    pub fn landed(&self) -> usize {
        self.pages.iter().filter(|p| **p != PageState::Pending).count()
    }

    /// Pages that failed.
    pub fn failed(&self) -> usize {
        self.count(PageState::Failed)
    }

    /// Pages in state `wanted`.
    pub fn count(&self, wanted: PageState) -> usize {
        self.pages.iter().filter(|p| **p == wanted).count()
    }

    /// Whether every page has landed.
    pub fn all_landed(&self) -> bool {
        self.landed() == self.pages.len()
    }

    /// The result of this document's run with `status` and `pages` (empty
    /// when they were not assembled), completed at `completed_at_ms`.
    pub fn result(
        &self,
        status: DocumentStatus,
        pages: Vec<PageResult>,
        completed_at_ms: u64,
    ) -> DocumentResult {
        DocumentResult {
            file_name: self.file_name.clone(),
            kind: self.kind,
            sha256: self.sha256.clone(),
            size: self.size,
            status,
            page_count: self.pages.len() as u32,
            pages,
            failures: self.failures.clone(),
            completed_at_ms,
            ..DocumentResult::new(&self.doc_id, &self.tenant, self.submitted_at_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_landed_pages() {
        let mut state = DocumentState {
            doc_id: "d".into(),
            tenant: "t".into(),
            file_name: None,
            kind: Some(DocumentKind::Pdf),
            sha256: "d".into(),
            size: 1,
            submitted_at_ms: 1,
            pages: vec![PageState::Pending; 3],
            failures: Vec::new(),
            finished: None,
        };
        assert!(!state.all_landed());
        assert_eq!(state.count(PageState::Pending), 3);
        state.pages = vec![PageState::Done, PageState::Failed, PageState::Done];
        assert_eq!((state.landed(), state.failed(), state.all_landed()), (3, 1, true));
        assert_eq!(state.count(PageState::Done), 2);
    }
}
