//! Stage `split`: steps `sniff` (type by magic bytes), `validate` (limits,
//! page count) and `fan_out` (one page task per page).
//!
//! Split works on a whole document rather than a page, so its steps are
//! plain functions run in order by [`Splitter::split`].

use std::time::Instant;

use schemas::{DocumentKind, DocumentSource, DocumentSubmission, ErrorKind, PageTask, StepTiming};

use crate::error::StepError;
use crate::{images, pdf};

/// Limits a document must respect.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub max_document_bytes: u64,
    pub max_pages: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { max_document_bytes: 64 << 20, max_pages: 500 }
    }
}

impl From<&topology::Limits> for Config {
    fn from(limits: &topology::Limits) -> Self {
        Config { max_document_bytes: limits.max_document_bytes, max_pages: limits.max_pages }
    }
}

/// Step `sniff` (run by [`Splitter::split`]).
pub const SNIFF: super::StepDef =
    super::document_level("sniff", "split", "the document's type, from its first bytes");
/// Step `validate` (run by [`Splitter::split`]).
pub const VALIDATE: super::StepDef = super::document_level(
    "validate",
    "split",
    "the document within `[limits]`: bytes, page count, a readable file",
);
/// Step `fan_out` (run by [`Splitter::split`]).
pub const FAN_OUT: super::StepDef =
    super::document_level("fan_out", "split", "one page task per page, on to the next stage");

/// Identifies the document type from its first bytes.
pub fn sniff(bytes: &[u8]) -> Result<DocumentKind, StepError> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    const JPEG: &[u8] = b"\xff\xd8\xff";
    const TIFF_LE: &[u8] = b"II*\0";
    const TIFF_BE: &[u8] = b"MM\0*";
    if bytes.is_empty() {
        return Err(StepError::reject(ErrorKind::UnsupportedFormat, "document is empty"));
    }
    if bytes.starts_with(PNG) {
        return Ok(DocumentKind::Png);
    }
    if bytes.starts_with(JPEG) {
        return Ok(DocumentKind::Jpeg);
    }
    if bytes.starts_with(TIFF_LE) || bytes.starts_with(TIFF_BE) {
        return Ok(DocumentKind::Tiff);
    }
    // The PDF header may follow up to 1024 bytes of junk.
    let head = &bytes[..bytes.len().min(1024)];
    if head.windows(5).any(|w| w == b"%PDF-") {
        return Ok(DocumentKind::Pdf);
    }
    Err(StepError::reject(
        ErrorKind::UnsupportedFormat,
        "not a pdf, png, jpeg or tiff document (unrecognised magic bytes)",
    ))
}

/// Checks the byte and page limits and returns the number of pages.
pub fn validate(kind: DocumentKind, bytes: &[u8], config: &Config) -> Result<u32, StepError> {
    let size = bytes.len() as u64;
    if size > config.max_document_bytes {
        return Err(StepError::reject(
            ErrorKind::TooLarge,
            format!("document is {size} bytes, the limit is {}", config.max_document_bytes),
        ));
    }
    let pages = match kind {
        DocumentKind::Pdf => pdf::page_count(bytes)?,
        _ => images::page_count(kind, bytes)?,
    };
    if pages == 0 {
        return Err(StepError::reject(ErrorKind::Corrupt, "document has no pages"));
    }
    if pages > config.max_pages {
        return Err(StepError::reject(
            ErrorKind::TooManyPages,
            format!("document has {pages} pages, the limit is {}", config.max_pages),
        ));
    }
    Ok(pages)
}

/// One task per page, each pointing at `source` for the document bytes.
pub fn fan_out(
    submission: &DocumentSubmission,
    kind: DocumentKind,
    page_count: u32,
    source: &DocumentSource,
) -> Vec<PageTask> {
    (0..page_count)
        .map(|page_index| PageTask {
            doc_id: submission.doc_id.clone(),
            tenant: submission.tenant.clone(),
            page_index,
            page_count,
            kind,
            source: source.clone(),
            submitted_at_ms: submission.submitted_at_ms,
        })
        .collect()
}

/// What splitting a document produced.
#[derive(Debug)]
pub struct Split {
    pub kind: DocumentKind,
    pub tasks: Vec<PageTask>,
    pub timings: Vec<StepTiming>,
}

/// A failed split: the error and the step that raised it.
#[derive(Debug)]
pub struct SplitError {
    pub step: &'static str,
    pub error: StepError,
    /// The type, when sniffing succeeded.
    pub kind: Option<DocumentKind>,
}

/// Runs `sniff`, `validate` and `fan_out` on a document's bytes.
#[derive(Debug, Clone, Default)]
pub struct Splitter {
    pub config: Config,
}

impl Splitter {
    /// Splits `bytes` (the content of `submission`) into page tasks whose
    /// source is `page_source` (where the runtime stored the original).
    pub fn split(
        &self,
        submission: &DocumentSubmission,
        bytes: &[u8],
        page_source: &DocumentSource,
    ) -> Result<Split, SplitError> {
        let mut timings = Vec::with_capacity(3);
        let mut timed = |step: &'static str, started: Instant| {
            timings.push(StepTiming {
                stage: "split".into(),
                step: step.into(),
                duration_us: started.elapsed().as_micros() as u64,
                inference_us: 0,
                queue_wait_us: 0,
            });
        };

        let started = Instant::now();
        let kind = sniff(bytes).map_err(|error| SplitError {
            step: SNIFF.info.name,
            error,
            kind: None,
        })?;
        timed(SNIFF.info.name, started);

        let started = Instant::now();
        let page_count = validate(kind, bytes, &self.config).map_err(|error| SplitError {
            step: VALIDATE.info.name,
            error,
            kind: Some(kind),
        })?;
        timed(VALIDATE.info.name, started);

        let started = Instant::now();
        let tasks = fan_out(submission, kind, page_count, page_source);
        timed(FAN_OUT.info.name, started);

        Ok(Split { kind, tasks, timings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_magic_bytes() {
        let check = |bytes: &[u8], expect: Option<DocumentKind>| {
            assert_eq!(sniff(bytes).ok(), expect, "{:?}", &bytes[..bytes.len().min(8)]);
        };
        check(b"%PDF-1.7\n", Some(DocumentKind::Pdf));
        check(b"\n\n junk %PDF-1.4", Some(DocumentKind::Pdf));
        check(b"\x89PNG\r\n\x1a\n....", Some(DocumentKind::Png));
        check(b"\xff\xd8\xff\xe0", Some(DocumentKind::Jpeg));
        check(b"II*\0\x08\0\0\0", Some(DocumentKind::Tiff));
        check(b"MM\0*\0\0\0\x08", Some(DocumentKind::Tiff));
        check(b"hello world", None);
        check(b"", None);
        check(b"\x89PN", None);
    }

    #[test]
    fn empty_and_unknown_are_unsupported() {
        assert_eq!(sniff(b"").unwrap_err().kind, ErrorKind::UnsupportedFormat);
        assert_eq!(sniff(b"GIF89a").unwrap_err().kind, ErrorKind::UnsupportedFormat);
    }

    #[test]
    fn byte_limit_is_checked_before_parsing() {
        let config = Config { max_document_bytes: 4, max_pages: 1 };
        let error = validate(DocumentKind::Pdf, b"%PDF-1.7 and more", &config).unwrap_err();
        assert_eq!(error.kind, ErrorKind::TooLarge);
    }

    #[test]
    fn fan_out_numbers_pages() {
        let submission = DocumentSubmission {
            doc_id: "d1".into(),
            tenant: "acme".into(),
            file_name: None,
            source: DocumentSource::Inline { bytes: vec![] },
            submitted_at_ms: 7,
        };
        let tasks = fan_out(&submission, DocumentKind::Tiff, 3, &submission.source);
        let indexes: Vec<_> = tasks.iter().map(|t| (t.page_index, t.page_count)).collect();
        assert_eq!(indexes, [(0, 3), (1, 3), (2, 3)]);
        assert!(tasks.iter().all(|t| t.doc_id == "d1" && t.tenant == "acme"));
    }
}
