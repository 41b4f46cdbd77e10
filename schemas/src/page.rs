//! Pages: the payload passed between stages and the analysed page result.
//!
//! Coordinates are pixels of the analysed page image (after orientation
//! correction), origin top left, x to the right, y down.

use serde::{Deserialize, Serialize};

use crate::codec::Message;
use crate::document::{BlobRef, PageTask};
use crate::failure::FailureRecord;

/// A point in page pixels.
pub type Point = [f32; 2];

/// An axis-aligned box in page pixels: left, top, right, bottom.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BBox {
    /// Left edge.
    pub x0: f32,
    /// Top edge.
    pub y0: f32,
    /// Right edge.
    pub x1: f32,
    /// Bottom edge.
    pub y1: f32,
}

impl BBox {
    /// Width, 0 for an inverted box.
    pub fn width(&self) -> f32 {
        (self.x1 - self.x0).max(0.0)
    }

    /// Height, 0 for an inverted box.
    pub fn height(&self) -> f32 {
        (self.y1 - self.y0).max(0.0)
    }

    /// Area, 0 for an inverted box.
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// The smallest box holding every point; `None` for no points.
    pub fn enclosing(points: &[Point]) -> Option<BBox> {
        let first = points.first()?;
        let mut bbox = BBox { x0: first[0], y0: first[1], x1: first[0], y1: first[1] };
        for p in &points[1..] {
            bbox.x0 = bbox.x0.min(p[0]);
            bbox.y0 = bbox.y0.min(p[1]);
            bbox.x1 = bbox.x1.max(p[0]);
            bbox.y1 = bbox.y1.max(p[1]);
        }
        Some(bbox)
    }

    /// Area of the intersection with `other`.
    pub fn intersection_area(&self, other: &BBox) -> f32 {
        let w = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let h = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        w * h
    }
}

/// Layout region classes (the layout model's labels).
///
/// Unknown classes written by a newer version decode as [`RegionKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionKind {
    /// Body text.
    Text,
    /// Title or heading.
    Title,
    /// Picture, chart or drawing.
    Figure,
    /// Caption of a figure.
    FigureCaption,
    /// Table.
    Table,
    /// Caption of a table.
    TableCaption,
    /// Page header.
    Header,
    /// Page footer.
    Footer,
    /// Bibliography or reference list.
    Reference,
    /// Mathematical formula.
    Equation,
    /// Any other class, including classes this build does not know.
    #[serde(other)]
    Other,
}

/// A layout region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// Class of the region.
    pub kind: RegionKind,
    /// Bounding box.
    pub bbox: BBox,
    /// Detector confidence in [0, 1].
    pub score: f32,
    /// Position in reading order (0 first), once known.
    #[serde(default)]
    pub reading_order: Option<u32>,
}

/// Where the text of a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextSource {
    /// Recognised by OCR from the page image.
    Ocr,
    /// Taken from the PDF's own text layer.
    TextLayer,
}

/// A word of a line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    /// The word, without surrounding spaces.
    pub text: String,
    /// Bounding box.
    pub bbox: BBox,
    /// Recognition confidence in [0, 1].
    pub confidence: f32,
}

/// A line of text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// The text of the line, words separated by single spaces.
    pub text: String,
    /// Bounding box.
    pub bbox: BBox,
    /// The line's quadrilateral (tl, tr, br, bl) where it is not axis-aligned.
    #[serde(default)]
    pub quad: Option<[Point; 4]>,
    /// Recognition confidence in [0, 1] (1 for a text layer).
    pub confidence: f32,
    /// Where the text came from.
    pub source: TextSource,
    /// Index into the page's regions of the region holding this line.
    #[serde(default)]
    pub region: Option<u32>,
    /// The words of the line, left to right (empty when not segmented).
    #[serde(default)]
    pub words: Vec<Word>,
}

/// A table cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableCell {
    /// Zero-based row of the cell's top-left corner.
    pub row: u32,
    /// Zero-based column of the cell's top-left corner.
    pub col: u32,
    /// Number of rows the cell spans (1 when absent).
    #[serde(default = "one")]
    pub row_span: u32,
    /// Number of columns the cell spans (1 when absent).
    #[serde(default = "one")]
    pub col_span: u32,
    /// Bounding box.
    pub bbox: BBox,
    /// Text of the cell, lines joined by `\n`.
    pub text: String,
}

fn one() -> u32 {
    1
}

/// A table reconstructed from a table region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Bounding box.
    pub bbox: BBox,
    /// Index into the page's regions of the table region, if any.
    #[serde(default)]
    pub region: Option<u32>,
    /// Number of rows.
    pub n_rows: u32,
    /// Number of columns.
    pub n_cols: u32,
    /// The cells, row by row; a spanning cell appears once.
    pub cells: Vec<TableCell>,
}

/// Kinds of key field found in business documents.
///
/// Unknown kinds written by a newer version decode as [`FieldKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// A calendar date; normalized as ISO 8601 `YYYY-MM-DD`.
    Date,
    /// A money amount; normalized as `1234.50 EUR`.
    Amount,
    /// An IBAN with a valid checksum; normalized without spaces.
    Iban,
    /// A VAT identification number; normalized without spaces.
    VatId,
    /// An invoice number.
    InvoiceNumber,
    /// An e-mail address.
    Email,
    /// Any other kind, including kinds this build does not know.
    #[serde(other)]
    Other,
}

/// A key field found on the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    /// What the field is.
    pub kind: FieldKind,
    /// The text as found on the page.
    pub value: String,
    /// Canonical form: ISO 8601 date, `1234.50 EUR`, IBAN without spaces...
    #[serde(default)]
    pub normalized: Option<String>,
    /// Index of the line the field was found on.
    #[serde(default)]
    pub line: Option<u32>,
    /// Where the field is on the page.
    #[serde(default)]
    pub bbox: Option<BBox>,
    /// Confidence in [0, 1].
    pub confidence: f32,
    /// The name a rule step of the topology gave the field (its kind is
    /// then `other`); `None` for the built-in kinds (and then not written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Field {
    /// The field's name: the one a rule step gave it, else its kind in
    /// snake case (`iban`, `vat_id`, `invoice_number`...).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(match self.kind {
            FieldKind::Date => "date",
            FieldKind::Amount => "amount",
            FieldKind::Iban => "iban",
            FieldKind::VatId => "vat_id",
            FieldKind::InvoiceNumber => "invoice_number",
            FieldKind::Email => "email",
            FieldKind::Other => "other",
        })
    }
}

/// Detected language of the page text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Language {
    /// ISO 639-3 code, e.g. `eng`, `deu`.
    pub code: String,
    /// Confidence in [0, 1].
    pub confidence: f32,
}

/// Severity of a diagnostic.
///
/// Unknown levels written by a newer version decode as
/// [`DiagnosticLevel::Error`], the most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosticLevel {
    /// For the record.
    Info,
    /// The result may be degraded.
    Warning,
    /// Part of the page could not be analysed.
    #[serde(other)]
    Error,
}

/// Something a step noticed that did not stop the page, e.g. an unreadable
/// region or a low-confidence orientation guess.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Severity.
    pub level: DiagnosticLevel,
    /// Step that noticed it.
    pub step: String,
    /// Stable machine-readable code, e.g. `orientation_uncertain`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Time spent in one step for one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    /// Stage of the step.
    pub stage: String,
    /// The step.
    pub step: String,
    /// Wall time of the step, microseconds.
    pub duration_us: u64,
    /// Of which model inference, microseconds.
    #[serde(default)]
    pub inference_us: u64,
    /// Time the page waited in the stage's queue before the stage picked it
    /// up (recorded on the first step of a stage), microseconds.
    #[serde(default)]
    pub queue_wait_us: u64,
}

/// The analysis of one page: grows as the page moves through the stages.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PageResult {
    /// Zero-based index of the page in its document.
    pub page_index: u32,
    /// Width of the analysed page image, pixels.
    pub width: u32,
    /// Height of the analysed page image, pixels.
    pub height: u32,
    /// Resolution the page was rasterised at (PDF) or declared (images).
    #[serde(default)]
    pub dpi: Option<u32>,
    /// Clockwise rotation applied to make the page upright: 0, 90, 180, 270.
    #[serde(default)]
    pub rotation_deg: u16,
    /// Skew angle corrected by deskewing, degrees (positive = clockwise).
    #[serde(default)]
    pub skew_deg: f32,
    /// Page class, e.g. `invoice`, `letter`, `form`, `article`.
    #[serde(default)]
    pub class: Option<String>,
    /// Detected language of the page text.
    #[serde(default)]
    pub language: Option<Language>,
    /// Layout regions, in detection order (see [`Region::reading_order`]).
    #[serde(default)]
    pub regions: Vec<Region>,
    /// Lines in reading order.
    #[serde(default)]
    pub lines: Vec<Line>,
    /// Tables reconstructed from table regions.
    #[serde(default)]
    pub tables: Vec<Table>,
    /// Key fields found on the page.
    #[serde(default)]
    pub fields: Vec<Field>,
    /// What the steps noticed without failing the page.
    #[serde(default)]
    pub diagnostics: Vec<Diagnostic>,
    /// Time spent in each step, in execution order.
    #[serde(default)]
    pub timings: Vec<StepTiming>,
    /// Set when the page failed; the other fields hold what was found before.
    #[serde(default)]
    pub failure: Option<FailureRecord>,
}

impl Message for PageResult {
    const KIND: &'static str = "page_result";
}

/// Pixel encoding of a page image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageEncoding {
    /// A PNG file.
    Png,
    /// 8-bit RGB, row-major, no padding.
    RawRgb8,
    /// 8-bit greyscale (a page whose every pixel has R = G = B), row-major,
    /// no padding, as one LZ4 block after the uncompressed length (u32,
    /// little-endian).
    Gray8Lz4,
    /// 8-bit RGB, row-major, no padding, as one LZ4 block after the
    /// uncompressed length (u32, little-endian).
    Rgb8Lz4,
}

/// A rendered page image, inline or in the object store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageImage {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// How `data` (or the blob) encodes the pixels.
    pub encoding: ImageEncoding,
    /// Inline pixel data as MessagePack `bin` (empty when `blob` is set).
    #[serde(default, with = "serde_bytes")]
    pub data: Vec<u8>,
    /// The image in the object store, for images too large to travel inline.
    #[serde(default)]
    pub blob: Option<BlobRef>,
}

/// What one stage hands to the next for a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PagePayload {
    /// The page task the payload belongs to.
    pub task: PageTask,
    /// The page image, once rendered.
    #[serde(default)]
    pub image: Option<PageImage>,
    /// Lines of the PDF text layer, kept apart until OCR decides per region
    /// whether to use them.
    #[serde(default)]
    pub text_layer: Vec<Line>,
    /// The result so far.
    pub result: PageResult,
    /// When the payload was published, milliseconds since the Unix epoch
    /// (for queue-wait timings).
    #[serde(default)]
    pub sent_at_ms: u64,
    /// Set when the payload is too large for a message (claim-check): the
    /// complete payload, a `page_payload` envelope, is the object this
    /// names; here only `task` (without inline document bytes) and
    /// `sent_at_ms` are filled in.
    #[serde(default)]
    pub spilled: Option<BlobRef>,
}

impl PagePayload {
    /// A payload of `task` that carries `result` and nothing else: no image,
    /// no text layer.
    pub fn result_only(task: PageTask, result: PageResult, sent_at_ms: u64) -> Self {
        PagePayload { task, image: None, text_layer: Vec::new(), result, sent_at_ms, spilled: None }
    }
}

impl Message for PagePayload {
    const KIND: &'static str = "page_payload";
}
