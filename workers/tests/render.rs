//! Split and render on the real sample documents and hostile fixtures,
//! through PDFium and the image decoders.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use pages::home::Home;
use pages::page::{Page, StepMeter};
use pages::steps::Step;
use pages::steps::render::{ExtractText, Rasterize};
use pages::steps::split::{Config, Splitter};
use schemas::{DocumentKind, DocumentSource, DocumentSubmission, ErrorKind, TextSource};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn init_pdfium() {
    let home = Home::new(repo().join(".pagestream"));
    pages::pdf::init(&home.pdfium_lib()).expect("PDFium is installed: run ./setup");
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn submission(bytes: &[u8]) -> DocumentSubmission {
    DocumentSubmission {
        doc_id: runtime::embedded::doc_id(bytes),
        tenant: "test".into(),
        file_name: None,
        source: DocumentSource::Inline { bytes: Vec::new() },
        submitted_at_ms: 0,
    }
}

/// Splits `path` and renders page `index` (rasterize + extract_text).
fn render(path: &str, index: usize) -> Result<Page, ErrorKind> {
    init_pdfium();
    let bytes = read(path);
    let split = Splitter::default()
        .split(&submission(&bytes), &bytes, &DocumentSource::Inline { bytes: Vec::new() })
        .map_err(|e| e.error.kind)?;
    let mut page = Page::new(split.tasks[index].clone());
    page.document = Some(std::sync::Arc::new(bytes));
    let mut meter = StepMeter::default();
    Rasterize::default().run(&mut page, &mut meter).map_err(|e| e.kind)?;
    ExtractText.run(&mut page, &mut meter).map_err(|e| e.kind)?;
    Ok(page)
}

#[test]
fn digital_pdf_renders_with_its_text_layer() {
    let page = render("samples/invoice.pdf", 0).unwrap();
    let image = page.image.as_ref().unwrap();
    // A4 at 150 dpi.
    assert_eq!(image.dimensions(), (1240, 1754));
    assert_eq!((page.result.width, page.result.height, page.result.dpi), (1240, 1754, Some(150)));
    // The page is not blank: some dark pixels (text) on a white background.
    let dark = image.pixels().filter(|p| p.0.iter().all(|&c| c < 100)).count();
    assert!(dark > 10_000, "only {dark} dark pixels");

    let lines = &page.text_layer;
    assert!(lines.len() >= 40, "{} text-layer lines", lines.len());
    assert!(lines.iter().all(|l| l.source == TextSource::TextLayer));
    let invoice_no = lines.iter().find(|l| l.text.contains("INV-2026-00417")).unwrap();
    let word = invoice_no.words.iter().find(|w| w.text.contains("INV-2026-00417")).unwrap();
    // Boxes are inside the page and the word is inside its line.
    for line in lines {
        let b = line.bbox;
        assert!(b.x0 >= 0.0 && b.y0 >= 0.0 && b.x1 <= 1240.0 && b.y1 <= 1754.0, "{line:?}");
        assert!(b.height() > 5.0 && b.height() < 60.0, "{line:?}");
    }
    assert!(word.bbox.x0 >= invoice_no.bbox.x0 - 0.5 && word.bbox.x1 <= invoice_no.bbox.x1 + 0.5);
    // The box really covers ink: the word's box holds dark pixels.
    let b = word.bbox;
    let ink = (b.y0 as u32..b.y1 as u32)
        .flat_map(|y| (b.x0 as u32..b.x1 as u32).map(move |x| (x, y)))
        .filter(|&(x, y)| image.get_pixel(x, y).0[0] < 128)
        .count();
    assert!(ink > 50, "word box holds {ink} dark pixels");
}

#[test]
fn two_page_pdf_and_multi_page_tiff_split_into_pages() {
    init_pdfium();
    for (path, kind, pages) in
        [("samples/report.pdf", DocumentKind::Pdf, 2), ("samples/fax.tiff", DocumentKind::Tiff, 3)]
    {
        let bytes = read(path);
        let split = Splitter::default()
            .split(&submission(&bytes), &bytes, &DocumentSource::Inline { bytes: Vec::new() })
            .unwrap();
        assert_eq!(split.kind, kind);
        assert_eq!(split.tasks.len(), pages, "{path}");
        let steps: Vec<_> = split.timings.iter().map(|t| t.step.as_str()).collect();
        assert_eq!(steps, ["sniff", "validate", "fan_out"]);
    }
    let last = render("samples/fax.tiff", 2).unwrap();
    assert!(last.text_layer.is_empty());
    assert!(last.image.unwrap().width() > 1000);
}

#[test]
fn scanned_image_has_no_text_layer() {
    let page = render("samples/scan-letter.png", 0).unwrap();
    assert!(page.text_layer.is_empty());
    assert_eq!(page.result.dpi, None);
    assert_eq!(page.image.unwrap().dimensions(), (1241, 1754));
}

#[test]
fn bad_documents_fail_with_typed_errors() {
    let fixtures = [
        ("workers/tests/fixtures/encrypted.pdf", ErrorKind::Encrypted),
        ("workers/tests/fixtures/truncated.pdf", ErrorKind::Corrupt),
        ("workers/tests/fixtures/zero-pages.pdf", ErrorKind::Corrupt),
        ("workers/tests/fixtures/empty.pdf", ErrorKind::UnsupportedFormat),
        ("workers/tests/fixtures/not-a-document.txt", ErrorKind::UnsupportedFormat),
        ("workers/tests/fixtures/garbage.png", ErrorKind::Corrupt),
        ("workers/tests/fixtures/huge-dimensions.png", ErrorKind::TooManyPixels),
    ];
    for (path, expected) in fixtures {
        assert_eq!(render(path, 0).err(), Some(expected), "{path}");
    }
}

#[test]
fn pdf_encrypted_with_an_empty_user_password_opens() {
    let page = render("workers/tests/fixtures/owner-password.pdf", 0).unwrap();
    assert!(page.text_layer.iter().any(|l| l.text.contains("empty user password")));
}

#[test]
fn limits_are_enforced_at_split() {
    init_pdfium();
    let bytes = read("samples/report.pdf");
    let split = |config: Config| {
        Splitter { config }
            .split(&submission(&bytes), &bytes, &DocumentSource::Inline { bytes: Vec::new() })
            .map(|_| ())
            .map_err(|e| e.error.kind)
    };
    assert_eq!(split(Config { max_document_bytes: 100, max_pages: 10 }), Err(ErrorKind::TooLarge));
    assert_eq!(
        split(Config { max_document_bytes: 1 << 20, max_pages: 1 }),
        Err(ErrorKind::TooManyPages)
    );
    assert_eq!(split(Config { max_document_bytes: 1 << 20, max_pages: 2 }), Ok(()));
}
