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
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl BBox {
    pub fn width(&self) -> f32 {
        (self.x1 - self.x0).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.y1 - self.y0).max(0.0)
    }

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionKind {
    Text,
    Title,
    Figure,
    FigureCaption,
    Table,
    TableCaption,
    Header,
    Footer,
    Reference,
    Equation,
    #[serde(other)]
    Other,
}

/// A layout region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Region {
    pub kind: RegionKind,
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
    pub text: String,
    pub bbox: BBox,
    pub confidence: f32,
}

/// A line of text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub text: String,
    pub bbox: BBox,
    /// The line's quadrilateral (tl, tr, br, bl) where it is not axis-aligned.
    #[serde(default)]
    pub quad: Option<[Point; 4]>,
    /// Recognition confidence in [0, 1] (1 for a text layer).
    pub confidence: f32,
    pub source: TextSource,
    /// Index into the page's regions of the region holding this line.
    #[serde(default)]
    pub region: Option<u32>,
    #[serde(default)]
    pub words: Vec<Word>,
}

/// A table cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableCell {
    pub row: u32,
    pub col: u32,
    #[serde(default = "one")]
    pub row_span: u32,
    #[serde(default = "one")]
    pub col_span: u32,
    pub bbox: BBox,
    pub text: String,
}

fn one() -> u32 {
    1
}

/// A table reconstructed from a table region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub bbox: BBox,
    /// Index into the page's regions of the table region, if any.
    #[serde(default)]
    pub region: Option<u32>,
    pub n_rows: u32,
    pub n_cols: u32,
    pub cells: Vec<TableCell>,
}

/// Kinds of key field found in business documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Date,
    Amount,
    Iban,
    VatId,
    InvoiceNumber,
    Email,
    #[serde(other)]
    Other,
}

/// A key field found on the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub kind: FieldKind,
    /// The text as found on the page.
    pub value: String,
    /// Canonical form: ISO 8601 date, `1234.50 EUR`, IBAN without spaces...
    #[serde(default)]
    pub normalized: Option<String>,
    /// Index of the line the field was found on.
    #[serde(default)]
    pub line: Option<u32>,
    #[serde(default)]
    pub bbox: Option<BBox>,
    pub confidence: f32,
}

/// Detected language of the page text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Language {
    /// ISO 639-3 code, e.g. `eng`, `deu`.
    pub code: String,
    pub confidence: f32,
}

/// Severity of a diagnostic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosticLevel {
    Info,
    Warning,
    #[serde(other)]
    Error,
}

/// Something a step noticed that did not stop the page, e.g. an unreadable
/// region or a low-confidence orientation guess.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub level: DiagnosticLevel,
    pub step: String,
    /// Stable machine-readable code, e.g. `orientation_uncertain`.
    pub code: String,
    pub message: String,
}

/// Time spent in one step for one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    pub stage: String,
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
    pub page_index: u32,
    /// Size of the analysed page image, pixels.
    pub width: u32,
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
    #[serde(default)]
    pub language: Option<Language>,
    #[serde(default)]
    pub regions: Vec<Region>,
    /// Lines in reading order.
    #[serde(default)]
    pub lines: Vec<Line>,
    #[serde(default)]
    pub tables: Vec<Table>,
    #[serde(default)]
    pub fields: Vec<Field>,
    #[serde(default)]
    pub diagnostics: Vec<Diagnostic>,
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
    Png,
    /// 8-bit RGB, row-major, no padding.
    RawRgb8,
}

/// A rendered page image, inline or in the object store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageImage {
    pub width: u32,
    pub height: u32,
    pub encoding: ImageEncoding,
    /// Inline pixel data (empty when `blob` is set).
    #[serde(default, with = "serde_bytes")]
    pub data: Vec<u8>,
    #[serde(default)]
    pub blob: Option<BlobRef>,
}

/// What one stage hands to the next for a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PagePayload {
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
}

impl Message for PagePayload {
    const KIND: &'static str = "page_payload";
}
