//! PDF access through PDFium: open, count pages, rasterise, extract the text
//! layer with coordinates.
//!
//! PDFium is bound once per process ([`init`]); with pdfium-render's
//! `thread_safe` feature every call is serialised, so rendering of different
//! pages from several threads is safe (and contends on one lock).

use std::path::Path;
use std::sync::OnceLock;

use image::RgbImage;
use pdfium_render::prelude::*;
use schemas::{BBox, ErrorKind, Line, TextSource, Word};

use crate::error::StepError;

static PDFIUM: OnceLock<Result<Pdfium, String>> = OnceLock::new();

/// Why PDFium could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot load the PDFium library from {path}: {reason}; run ./setup to install it")]
pub struct PdfiumLoadError {
    pub path: String,
    pub reason: String,
}

/// Binds PDFium from `library` (once per process; later calls return the
/// first outcome).
pub fn init(library: &Path) -> Result<(), PdfiumLoadError> {
    let outcome = PDFIUM.get_or_init(|| {
        if !library.is_file() {
            return Err("file not found".to_string());
        }
        Pdfium::bind_to_library(library).map(Pdfium::new).map_err(|e| format!("{e:?}"))
    });
    outcome.as_ref().map(|_| ()).map_err(|reason| PdfiumLoadError {
        path: library.display().to_string(),
        reason: reason.clone(),
    })
}

fn pdfium() -> Result<&'static Pdfium, StepError> {
    match PDFIUM.get() {
        Some(Ok(pdfium)) => Ok(pdfium),
        _ => Err(StepError::reject(
            ErrorKind::Internal,
            "pdfium is not loaded; run ./setup and start the pipeline again",
        )),
    }
}

/// Opens a PDF from memory. An empty user password is tried implicitly by
/// PDFium; documents that need a real password fail with `Encrypted`.
pub fn open(bytes: &[u8]) -> Result<PdfDocument<'_>, StepError> {
    pdfium()?.load_pdf_from_byte_slice(bytes, None).map_err(|error| match error {
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::PasswordError) => {
            StepError::reject(ErrorKind::Encrypted, "pdf is encrypted and needs a password")
        }
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::SecurityError) => {
            StepError::reject(ErrorKind::Encrypted, "pdf uses an unsupported security handler")
        }
        other => StepError::reject(ErrorKind::Corrupt, format!("cannot parse pdf: {other:?}")),
    })
}

/// Number of pages of a PDF.
pub fn page_count(bytes: &[u8]) -> Result<u32, StepError> {
    let document = open(bytes)?;
    u32::try_from(document.pages().len())
        .map_err(|_| StepError::reject(ErrorKind::Corrupt, "pdf reports a negative page count"))
}

/// How a page maps onto pixels: its size in points and the scale used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageGeometry {
    pub width_pt: f32,
    pub height_pt: f32,
    /// Pixels per point.
    pub scale: f32,
}

impl PageGeometry {
    /// Scale for `dpi`, reduced so that the long side stays within `max_side_px`.
    pub fn new(width_pt: f32, height_pt: f32, dpi: u32, max_side_px: u32) -> Self {
        let mut scale = dpi as f32 / 72.0;
        let long_side = width_pt.max(height_pt) * scale;
        if long_side > max_side_px as f32 {
            scale *= max_side_px as f32 / long_side;
        }
        PageGeometry { width_pt, height_pt, scale }
    }

    pub fn width_px(&self) -> u32 {
        (self.width_pt * self.scale).round().max(1.0) as u32
    }

    pub fn height_px(&self) -> u32 {
        (self.height_pt * self.scale).round().max(1.0) as u32
    }

    /// Effective resolution in dots per inch.
    pub fn dpi(&self) -> u32 {
        (self.scale * 72.0).round() as u32
    }
}

fn page<'a>(document: &'a PdfDocument<'_>, page_index: u32) -> Result<PdfPage<'a>, StepError> {
    let index = i32::try_from(page_index)
        .map_err(|_| StepError::reject(ErrorKind::MalformedMessage, "page index out of range"))?;
    document.pages().get(index).map_err(|e| {
        StepError::reject(ErrorKind::Corrupt, format!("cannot load page {page_index}: {e:?}"))
    })
}

fn render_config(geometry: &PageGeometry) -> PdfRenderConfig {
    PdfRenderConfig::new()
        .set_target_width(geometry.width_px() as i32)
        .set_target_height(geometry.height_px() as i32)
        .render_form_data(true)
        .render_annotations(true)
}

/// The geometry page `page_index` renders with.
pub fn geometry(
    document: &PdfDocument<'_>,
    page_index: u32,
    dpi: u32,
    max_side_px: u32,
) -> Result<PageGeometry, StepError> {
    let page = page(document, page_index)?;
    Ok(PageGeometry::new(page.width().value, page.height().value, dpi, max_side_px))
}

/// The geometry of page `page_index` rendered at `scale` pixels per point.
pub fn geometry_at_scale(
    document: &PdfDocument<'_>,
    page_index: u32,
    scale: f32,
) -> Result<PageGeometry, StepError> {
    let page = page(document, page_index)?;
    Ok(PageGeometry { width_pt: page.width().value, height_pt: page.height().value, scale })
}

/// Rasterises page `page_index` with `geometry` into an RGB image.
pub fn rasterize(
    document: &PdfDocument<'_>,
    page_index: u32,
    geometry: &PageGeometry,
) -> Result<RgbImage, StepError> {
    let page = page(document, page_index)?;
    let bitmap = page.render_with_config(&render_config(geometry)).map_err(|e| {
        StepError::reject(ErrorKind::Corrupt, format!("cannot render page {page_index}: {e:?}"))
    })?;
    let image = bitmap.as_image().map_err(|e| {
        StepError::internal(format!("cannot convert rendered page {page_index}: {e:?}"))
    })?;
    Ok(image.to_rgb8())
}

/// Extracts the text layer of page `page_index` as lines with words, in
/// pixel coordinates of the page rendered with `geometry`, in PDFium's text
/// order.
pub fn text_lines(
    document: &PdfDocument<'_>,
    page_index: u32,
    geometry: &PageGeometry,
) -> Result<Vec<Line>, StepError> {
    let page = page(document, page_index)?;
    let text = page.text().map_err(|e| {
        StepError::reject(
            ErrorKind::Corrupt,
            format!("cannot read text of page {page_index}: {e:?}"),
        )
    })?;
    let config = render_config(geometry);
    let to_pixels = |rect: PdfRect| -> Option<BBox> {
        let (ax, ay) = page.points_to_pixels(rect.left(), rect.top(), &config).ok()?;
        let (bx, by) = page.points_to_pixels(rect.right(), rect.bottom(), &config).ok()?;
        let points = [[ax as f32, ay as f32], [bx as f32, by as f32]];
        BBox::enclosing(&points)
    };

    let mut builder = LineBuilder::default();
    for ch in text.chars().iter() {
        let Some(c) = ch.unicode_char() else { continue };
        if c == '\r' || c == '\n' {
            builder.end_line();
            continue;
        }
        if c.is_whitespace() {
            builder.end_word();
            continue;
        }
        // Generated characters (PDFium's inferred spaces and breaks) have no box.
        let bbox = ch.loose_bounds().ok().and_then(to_pixels);
        match bbox {
            Some(bbox) if bbox.area() > 0.0 => builder.push(c, bbox),
            _ => builder.push_without_box(c),
        }
    }
    builder.end_line();
    Ok(builder.lines)
}

/// Groups characters into words and lines.
#[derive(Default)]
struct LineBuilder {
    lines: Vec<Line>,
    words: Vec<Word>,
    word: String,
    word_box: Option<BBox>,
}

impl LineBuilder {
    fn push(&mut self, c: char, bbox: BBox) {
        // A character far left of or below the current word starts a new line
        // (PDFium does not always emit a break between separate text runs).
        if let Some(current) = self.word_box {
            let line_height = current.height().max(bbox.height());
            let new_line = bbox.y0 > current.y1 - 0.25 * line_height
                || bbox.y1 < current.y0 + 0.25 * line_height
                || bbox.x1 < current.x0 - line_height;
            if new_line {
                self.end_line();
            }
        }
        self.word.push(c);
        self.word_box = Some(match self.word_box {
            Some(b) => union(&b, &bbox),
            None => bbox,
        });
    }

    fn push_without_box(&mut self, c: char) {
        self.word.push(c);
    }

    fn end_word(&mut self) {
        if self.word.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.word);
        if let Some(bbox) = self.word_box.take() {
            self.words.push(Word { text, bbox, confidence: 1.0 });
        } else if let Some(last) = self.words.last_mut() {
            // Box-less characters belong to the previous word.
            last.text.push_str(&text);
        }
    }

    fn end_line(&mut self) {
        self.end_word();
        if self.words.is_empty() {
            return;
        }
        let words = std::mem::take(&mut self.words);
        let bbox = words.iter().skip(1).fold(words[0].bbox, |acc, w| union(&acc, &w.bbox));
        let text = words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" ");
        self.lines.push(Line {
            text,
            bbox,
            quad: None,
            confidence: 1.0,
            source: TextSource::TextLayer,
            region: None,
            words,
        });
    }
}

fn union(a: &BBox, b: &BBox) -> BBox {
    BBox { x0: a.x0.min(b.x0), y0: a.y0.min(b.y0), x1: a.x1.max(b.x1), y1: a.y1.max(b.y1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_caps_long_side() {
        // A4 at 150 dpi is 1240 x 1754 px: within 2000.
        let a4 = PageGeometry::new(595.0, 842.0, 150, 2000);
        assert_eq!((a4.width_px(), a4.height_px()), (1240, 1754));
        assert_eq!(a4.dpi(), 150);
        // At 300 dpi the long side would be 3508 px: capped to 2000.
        let capped = PageGeometry::new(595.0, 842.0, 300, 2000);
        assert_eq!(capped.height_px(), 2000);
        assert!(capped.dpi() < 300);
    }

    #[test]
    fn builder_splits_lines_on_vertical_jump() {
        let mut builder = LineBuilder::default();
        let b = |x: f32, y: f32| BBox { x0: x, y0: y, x1: x + 8.0, y1: y + 12.0 };
        builder.push('a', b(0.0, 0.0));
        builder.push('b', b(8.0, 0.0));
        builder.end_word();
        builder.push('c', b(24.0, 0.5));
        builder.push('d', b(0.0, 30.0));
        builder.end_line();
        let texts: Vec<_> = builder.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["ab c", "d"]);
        assert_eq!(builder.lines[0].words.len(), 2);
    }
}
