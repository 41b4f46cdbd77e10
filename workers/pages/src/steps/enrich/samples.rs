//! The enrich steps together on the sample documents: the text layer of
//! `samples/invoice.pdf` and `samples/report.pdf`, rendered with PDFium.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use schemas::{DocumentKind, DocumentSource, FieldKind, PageResult, PageTask};

use crate::home::Home;
use crate::page::{Page, StepMeter};
use crate::steps::Step;
use crate::steps::enrich::{
    BuildTables, ClassifyPage, DetectLanguage, ExtractFields, OrderReading,
};
use crate::steps::render::{ExtractText, Rasterize};

/// Renders page 0 of `samples/{name}`, runs the enrich steps on its text
/// layer and returns the result.
fn enrich(name: &str) -> PageResult {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    crate::pdf::init(&Home::new(repo.join(".pagestream")).pdfium_lib())
        .expect("PDFium is installed: run ./setup");
    let task = PageTask {
        doc_id: "0".repeat(64),
        tenant: "test".into(),
        page_index: 0,
        page_count: 1,
        kind: DocumentKind::Pdf,
        source: DocumentSource::Inline { bytes: Vec::new() },
        submitted_at_ms: 0,
    };
    let mut page = Page::new(task);
    page.document = Some(Arc::new(std::fs::read(repo.join("samples").join(name)).unwrap()));
    let mut meter = StepMeter::default();
    Rasterize::default().run(&mut page, &mut meter).unwrap();
    ExtractText.run(&mut page, &mut meter).unwrap();
    page.result.lines = page.text_layer.clone();
    let steps: [&dyn Step; 5] = [
        &OrderReading::default(),
        &DetectLanguage::default(),
        &ExtractFields::default(),
        &BuildTables::default(),
        &ClassifyPage::default(),
    ];
    for step in steps {
        step.run(&mut page, &mut meter).unwrap();
    }
    page.result
}

/// The position of the line starting with `prefix`.
fn at(result: &PageResult, prefix: &str) -> usize {
    result.lines.iter().position(|l| l.text.starts_with(prefix)).unwrap()
}

#[test]
fn invoice_reads_in_blocks_with_its_fields_and_table() {
    let result = enrich("invoice.pdf");

    // Seller, invoice data, bill-to, ship-to, table, totals, bank, contact.
    let order = [
        "Nordlicht Office Supplies GmbH",
        "VAT ID: DE123456788",
        "INVOICE",
        "Your order",
        "Bill to:",
        "VAT ID: ATU12345675",
        "Ship to:",
        "We thank you",
        "Description",
        "Delivery and assembly",
        "Subtotal",
        "Total",
        "Bank details",
        "BIC:",
        "Questions about this invoice?",
        "Page 1 of 1",
    ];
    let positions: Vec<usize> = order.iter().map(|p| at(&result, p)).collect();
    assert!(positions.is_sorted(), "{order:?} at {positions:?}");

    let mut fields: Vec<(FieldKind, &str)> =
        result.fields.iter().map(|f| (f.kind, f.normalized.as_deref().unwrap())).collect();
    fields.sort_by_key(|&(kind, value)| (format!("{kind:?}"), value));
    assert_eq!(
        fields,
        [
            (FieldKind::Amount, "3016.80 EUR"),
            (FieldKind::Amount, "3589.99 EUR"),
            (FieldKind::Amount, "3589.99 EUR"),
            (FieldKind::Amount, "573.19 EUR"),
            (FieldKind::Date, "2026-10-21"),
            (FieldKind::Date, "2026-10-28"),
            (FieldKind::Date, "2026-11-03"),
            (FieldKind::Date, "2026-12-03"),
            (FieldKind::Date, "2026-12-03"),
            (FieldKind::Email, "billing@nordlicht-office.example"),
            (FieldKind::Email, "jana.petersen@nordlicht-office.example"),
            (FieldKind::Iban, "DE89370400440532013000"),
            (FieldKind::InvoiceNumber, "INV-2026-00417"),
            (FieldKind::VatId, "ATU12345675"),
            (FieldKind::VatId, "DE123456788"),
        ]
    );
    for field in &result.fields {
        let line = &result.lines[field.line.unwrap() as usize];
        assert!(line.text.contains(&field.value), "{field:?}");
        let (b, l) = (field.bbox.unwrap(), line.bbox);
        assert!(b.x0 >= l.x0 - 1.0 && b.x1 <= l.x1 + 1.0 && b.y0 >= l.y0 - 1.0, "{field:?}");
    }
    // Word boxes narrow a field to its words: the IBAN box leaves out "IBAN:".
    let iban = result.fields.iter().find(|f| f.kind == FieldKind::Iban).unwrap();
    let line = &result.lines[iban.line.unwrap() as usize];
    assert!(iban.bbox.unwrap().x0 > line.bbox.x0 + 20.0, "{iban:?} in {line:?}");

    // The ruled item table, found without a layout region.
    assert_eq!(result.tables.len(), 1);
    let table = &result.tables[0];
    assert_eq!((table.n_rows, table.n_cols, table.region), (8, 4, None));
    let cell = |row, col| {
        table.cells.iter().find(|c| (c.row, c.col) == (row, col)).map(|c| c.text.as_str())
    };
    assert_eq!(cell(0, 2), Some("Unit price (EUR)"));
    assert_eq!(cell(1, 0), Some("Ergonomic office chair Atlas, black"));
    assert_eq!(cell(4, 3), Some("234.50"));
    assert_eq!(cell(7, 1), Some("1"));

    assert_eq!(result.class.as_deref(), Some("invoice"));
    assert_eq!(result.language.as_ref().map(|l| l.code.as_str()), Some("eng"));
}

#[test]
fn report_reads_column_by_column() {
    let result = enrich("report.pdf");
    let order = [
        "Quarterly Operations Report",
        "1. Summary",
        "Parcel volume",
        "2. Hubs and sorting",
        "August; the backlog",
        "3. Fleet",
        "4. People",
        "1.9 to 1.4.",
        "Northern Parcel Network | Quarterly",
    ];
    let positions: Vec<usize> = order.iter().map(|p| at(&result, p)).collect();
    assert!(positions.is_sorted(), "{order:?} at {positions:?}");
    assert_eq!(positions[0], 0);
    assert_eq!(positions[8], result.lines.len() - 1);
    assert_eq!(result.class.as_deref(), Some("article"));
    assert!(result.tables.is_empty() && result.fields.iter().all(|f| f.kind != FieldKind::Iban));
}
