//! Realistic, fully populated values of every message kind: a one-page
//! invoice scanned as PNG, taken through the pipeline.

use schemas::{
    BBox, BlobRef, DeadLetter, Diagnostic, DiagnosticLevel, DocumentKind, DocumentResult,
    DocumentSource, DocumentState, DocumentStatus, DocumentSubmission, ErrorKind, Event, EventBody,
    FailureRecord, Field, FieldKind, Finished, ImageEncoding, Language, Line, PageImage,
    PagePayload, PageResult, PageState, PageTask, Region, RegionKind, StepTiming, Table, TableCell,
    TextSource, Word,
};

/// A real 1x1 white grayscale PNG.
pub const PNG: [u8; 67] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x3a, 0x7e, 0x9b,
    0x55, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xf8, 0x0f, 0x00, 0x01,
    0x01, 0x01, 0x00, 0x1c, 0xb0, 0x8c, 0x99, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// Hex sha256 of [`PNG`], the document id.
pub const DOC_ID: &str = "064b66188821584121784c30ca28eadbc5f265e025c6dd9eeed64cf1ef8e1f46";
pub const TENANT: &str = "acme";
const SUBMITTED_AT_MS: u64 = 1_767_225_600_000;

pub fn submission() -> DocumentSubmission {
    DocumentSubmission {
        doc_id: DOC_ID.to_owned(),
        tenant: TENANT.to_owned(),
        file_name: Some("invoice.png".to_owned()),
        source: DocumentSource::Inline { bytes: PNG.to_vec() },
        submitted_at_ms: SUBMITTED_AT_MS,
    }
}

pub fn blob() -> BlobRef {
    BlobRef {
        store: "s3://pagestream-originals/acme".to_owned(),
        key: format!("{DOC_ID}/original.png"),
        size: PNG.len() as u64,
        sha256: DOC_ID.to_owned(),
    }
}

pub fn page_task() -> PageTask {
    PageTask {
        doc_id: DOC_ID.to_owned(),
        tenant: TENANT.to_owned(),
        page_index: 0,
        page_count: 1,
        kind: DocumentKind::Png,
        source: DocumentSource::Blob(blob()),
        submitted_at_ms: SUBMITTED_AT_MS,
    }
}

pub fn failure() -> FailureRecord {
    FailureRecord {
        doc_id: DOC_ID.to_owned(),
        page_index: Some(0),
        stage: "ocr".to_owned(),
        step: "recognize".to_owned(),
        kind: ErrorKind::Timeout,
        message: "recognition took longer than 30 s".to_owned(),
        attempts: 5,
        at_ms: SUBMITTED_AT_MS + 61_250,
    }
}

/// The bucket's state of a three-page run with a failed page, finished.
pub fn document_state() -> DocumentState {
    DocumentState {
        doc_id: DOC_ID.to_owned(),
        tenant: TENANT.to_owned(),
        file_name: Some("invoice.png".to_owned()),
        kind: Some(DocumentKind::Png),
        sha256: DOC_ID.to_owned(),
        size: PNG.len() as u64,
        submitted_at_ms: SUBMITTED_AT_MS,
        pages: vec![PageState::Done, PageState::Failed, PageState::Pending],
        failures: vec![failure()],
        finished: Some(Finished {
            status: DocumentStatus::Partial,
            at_ms: SUBMITTED_AT_MS + 62_000,
        }),
    }
}

fn words(text: &str, bbox: BBox, confidence: f32) -> Vec<Word> {
    let n_chars = text.chars().count().max(1) as f32;
    let char_width = bbox.width() / n_chars;
    let mut words = Vec::new();
    let mut start = 0usize;
    for word in text.split(' ') {
        let len = word.chars().count();
        let x0 = bbox.x0 + start as f32 * char_width;
        let x1 = x0 + len as f32 * char_width;
        words.push(Word {
            text: word.to_owned(),
            bbox: BBox { x0, y0: bbox.y0, x1, y1: bbox.y1 },
            confidence,
        });
        start += len + 1;
    }
    words
}

fn line(text: &str, bbox: BBox, confidence: f32, region: u32) -> Line {
    Line {
        text: text.to_owned(),
        bbox,
        quad: Some([
            [bbox.x0, bbox.y0],
            [bbox.x1, bbox.y0],
            [bbox.x1, bbox.y1],
            [bbox.x0, bbox.y1],
        ]),
        confidence,
        source: TextSource::Ocr,
        region: Some(region),
        words: words(text, bbox, confidence),
    }
}

pub fn page_result() -> PageResult {
    let title = BBox { x0: 120.0, y0: 96.0, x1: 560.0, y1: 150.0 };
    let body = BBox { x0: 120.0, y0: 220.0, x1: 1480.0, y1: 420.0 };
    let table = BBox { x0: 120.0, y0: 480.0, x1: 1480.0, y1: 700.0 };
    let iban = BBox { x0: 120.0, y0: 360.0, x1: 860.0, y1: 392.0 };
    PageResult {
        page_index: 0,
        width: 1654,
        height: 2339,
        dpi: Some(200),
        rotation_deg: 90,
        skew_deg: -0.75,
        class: Some("invoice".to_owned()),
        language: Some(Language { code: "deu".to_owned(), confidence: 0.96 }),
        regions: vec![
            Region { kind: RegionKind::Title, bbox: title, score: 0.93, reading_order: Some(0) },
            Region { kind: RegionKind::Text, bbox: body, score: 0.88, reading_order: Some(1) },
            Region { kind: RegionKind::Table, bbox: table, score: 0.91, reading_order: Some(2) },
        ],
        lines: vec![
            line("Rechnung Nr. RE-2026-0042", title, 0.97, 0),
            line("Datum: 02.01.2026", BBox { x0: 120.0, y0: 230.0, x1: 520.0, y1: 262.0 }, 0.95, 1),
            Line {
                source: TextSource::TextLayer,
                ..line("IBAN DE89 3704 0044 0532 0130 00", iban, 1.0, 1)
            },
        ],
        tables: vec![Table {
            bbox: table,
            region: Some(2),
            n_rows: 2,
            n_cols: 2,
            cells: vec![
                TableCell {
                    row: 0,
                    col: 0,
                    row_span: 1,
                    col_span: 2,
                    bbox: BBox { x0: 120.0, y0: 480.0, x1: 1480.0, y1: 560.0 },
                    text: "Leistung".to_owned(),
                },
                TableCell {
                    row: 1,
                    col: 0,
                    row_span: 1,
                    col_span: 1,
                    bbox: BBox { x0: 120.0, y0: 560.0, x1: 800.0, y1: 700.0 },
                    text: "Beratung".to_owned(),
                },
                TableCell {
                    row: 1,
                    col: 1,
                    row_span: 1,
                    col_span: 1,
                    bbox: BBox { x0: 800.0, y0: 560.0, x1: 1480.0, y1: 700.0 },
                    text: "1.234,50 EUR".to_owned(),
                },
            ],
        }],
        fields: vec![
            Field {
                kind: FieldKind::InvoiceNumber,
                value: "RE-2026-0042".to_owned(),
                normalized: Some("RE-2026-0042".to_owned()),
                line: Some(0),
                bbox: Some(BBox { x0: 350.0, y0: 96.0, x1: 560.0, y1: 150.0 }),
                confidence: 0.9,
                name: None,
            },
            Field {
                kind: FieldKind::Date,
                value: "02.01.2026".to_owned(),
                normalized: Some("2026-01-02".to_owned()),
                line: Some(1),
                bbox: Some(BBox { x0: 280.0, y0: 230.0, x1: 520.0, y1: 262.0 }),
                confidence: 0.95,
                name: None,
            },
            Field {
                kind: FieldKind::Iban,
                value: "DE89 3704 0044 0532 0130 00".to_owned(),
                normalized: Some("DE89370400440532013000".to_owned()),
                line: Some(2),
                bbox: Some(BBox { x0: 200.0, y0: 360.0, x1: 860.0, y1: 392.0 }),
                confidence: 1.0,
                name: None,
            },
            Field {
                kind: FieldKind::Amount,
                value: "1.234,50 EUR".to_owned(),
                normalized: Some("1234.50 EUR".to_owned()),
                line: None,
                bbox: None,
                confidence: 0.85,
                name: None,
            },
        ],
        diagnostics: vec![Diagnostic {
            level: DiagnosticLevel::Warning,
            step: "orient".to_owned(),
            code: "orientation_uncertain".to_owned(),
            message: "orientation 90 chosen with confidence 0.61".to_owned(),
        }],
        timings: vec![
            StepTiming {
                stage: "render".to_owned(),
                step: "decode_image".to_owned(),
                duration_us: 4_210,
                inference_us: 0,
                queue_wait_us: 1_130,
            },
            StepTiming {
                stage: "ocr".to_owned(),
                step: "recognize".to_owned(),
                duration_us: 182_400,
                inference_us: 171_950,
                queue_wait_us: 2_480,
            },
        ],
        failure: None,
    }
}

pub fn page_payload() -> PagePayload {
    PagePayload {
        task: page_task(),
        image: Some(PageImage {
            width: 1,
            height: 1,
            encoding: ImageEncoding::Png,
            data: PNG.to_vec(),
            blob: None,
        }),
        text_layer: vec![Line {
            source: TextSource::TextLayer,
            quad: None,
            ..line("IBAN DE89 3704 0044 0532 0130 00", BBox::default(), 1.0, 1)
        }],
        result: page_result(),
        sent_at_ms: SUBMITTED_AT_MS + 840,
        spilled: None,
    }
}

/// A page payload too large for a message: the claim check standing for it.
pub fn spilled_page_payload() -> PagePayload {
    PagePayload {
        task: PageTask { source: DocumentSource::Inline { bytes: Vec::new() }, ..page_task() },
        image: None,
        text_layer: Vec::new(),
        result: PageResult { page_index: 0, ..PageResult::default() },
        sent_at_ms: SUBMITTED_AT_MS + 840,
        spilled: Some(blob_ref(&format!(
            "docs/{TENANT}/{DOC_ID}/pages/0/0123456789abcdef-ocr.msgpack"
        ))),
    }
}

/// A document result too large for a message: the claim check standing for it.
pub fn claim_checked_document_result() -> DocumentResult {
    let full = document_result();
    full.claim_check(blob_ref(&format!("results/{TENANT}/{DOC_ID}/0123456789abcdef.msgpack")))
}

fn blob_ref(key: &str) -> BlobRef {
    BlobRef {
        store: "s3://pagestream/prod".to_owned(),
        key: key.to_owned(),
        size: 1_572_864,
        sha256: "0123456789abcdef".repeat(4),
    }
}

pub fn document_result() -> DocumentResult {
    let failed_page = PageResult {
        page_index: 1,
        width: 1654,
        height: 2339,
        dpi: Some(200),
        failure: Some(FailureRecord { page_index: Some(1), ..failure() }),
        ..PageResult::default()
    };
    DocumentResult {
        doc_id: DOC_ID.to_owned(),
        tenant: TENANT.to_owned(),
        file_name: Some("invoice.png".to_owned()),
        kind: Some(DocumentKind::Png),
        sha256: DOC_ID.to_owned(),
        size: PNG.len() as u64,
        status: DocumentStatus::Partial,
        page_count: 2,
        pages: vec![page_result(), failed_page],
        failures: vec![FailureRecord {
            page_index: None,
            stage: "assemble".to_owned(),
            step: "export".to_owned(),
            kind: ErrorKind::Unavailable,
            message: "object store unreachable, markdown export skipped".to_owned(),
            attempts: 3,
            ..failure()
        }],
        class: Some("invoice".to_owned()),
        submitted_at_ms: SUBMITTED_AT_MS,
        completed_at_ms: SUBMITTED_AT_MS + 63_020,
        full_result: None,
    }
}

pub fn dead_letter() -> DeadLetter {
    DeadLetter {
        tenant: TENANT.to_owned(),
        failure: failure(),
        subject: "pagestream.acme.pages.ocr".to_owned(),
        payload: schemas::encode(&page_task()).unwrap(),
        payload_blob: None,
    }
}

pub fn event() -> Event {
    Event {
        tenant: TENANT.to_owned(),
        doc_id: DOC_ID.to_owned(),
        at_ms: SUBMITTED_AT_MS + 63_020,
        body: EventBody::DocumentDone {
            status: DocumentStatus::Partial,
            page_count: 2,
            failed_pages: 1,
        },
    }
}

/// Every variant of the event body, for round trips.
pub fn events() -> Vec<Event> {
    let bodies = [
        EventBody::PageDone { page_index: 0, ok: true },
        EventBody::PageDone { page_index: 1, ok: false },
        event().body,
        EventBody::DocumentFailed {
            failure: FailureRecord {
                page_index: None,
                stage: "split".to_owned(),
                step: "validate".to_owned(),
                kind: ErrorKind::Encrypted,
                message: "pdf is encrypted".to_owned(),
                attempts: 1,
                ..failure()
            },
        },
    ];
    bodies.into_iter().map(|body| Event { body, ..event() }).collect()
}

#[test]
fn doc_id_is_the_sha256_of_the_document() {
    use sha2::{Digest, Sha256};
    assert_eq!(format!("{:x}", Sha256::digest(PNG)), DOC_ID);
}
