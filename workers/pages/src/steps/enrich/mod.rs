//! Stage `enrich`: reading order, language, key fields, tables, page class.
//!
//! Steps run in this order: [`reading_order::OrderReading`] first (every
//! line index the later steps record refers to the reading order), then
//! [`language::DetectLanguage`], [`fields::ExtractFields`],
//! [`tables::BuildTables`] and [`classify::ClassifyPage`] (which looks at the
//! fields and tables found before it).

pub mod classify;
pub mod fields;
pub mod language;
pub mod reading_order;
#[cfg(test)]
mod samples;
pub mod tables;

pub use classify::ClassifyPage;
pub use fields::ExtractFields;
pub use language::DetectLanguage;
pub use reading_order::OrderReading;
pub use tables::BuildTables;

use image::GrayImage;
use schemas::{BBox, Diagnostic, DiagnosticLevel};

/// A diagnostic of `step` with a stable `code`.
pub(crate) fn diagnostic(
    level: DiagnosticLevel,
    step: &str,
    code: &str,
    message: impl Into<String>,
) -> Diagnostic {
    Diagnostic { level, step: step.to_owned(), code: code.to_owned(), message: message.into() }
}

/// The smallest box holding both boxes.
pub(crate) fn union(a: &BBox, b: &BBox) -> BBox {
    BBox { x0: a.x0.min(b.x0), y0: a.y0.min(b.y0), x1: a.x1.max(b.x1), y1: a.y1.max(b.y1) }
}

/// The centre of a box.
pub(crate) fn centre(b: &BBox) -> [f32; 2] {
    [(b.x0 + b.x1) / 2.0, (b.y0 + b.y1) / 2.0]
}

/// Whether `point` lies inside `b` (edges included).
pub(crate) fn contains(b: &BBox, point: [f32; 2]) -> bool {
    (b.x0..=b.x1).contains(&point[0]) && (b.y0..=b.y1).contains(&point[1])
}

/// Groups boxes into rows of text: two boxes share a row when they overlap
/// vertically by at least half the height of the smaller one. Returns the
/// indices of `boxes`, rows top to bottom, each row left to right.
pub(crate) fn rows(boxes: &[BBox]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| boxes[a].y0.total_cmp(&boxes[b].y0));
    let mut rows: Vec<(BBox, Vec<usize>)> = Vec::new();
    for i in order {
        let b = &boxes[i];
        let joins = rows.last().is_some_and(|(span, _)| {
            let overlap = b.y1.min(span.y1) - b.y0.max(span.y0);
            overlap >= 0.5 * b.height().min(span.height())
        });
        match rows.last_mut() {
            Some((span, members)) if joins => {
                *span = union(span, b);
                members.push(i);
            }
            _ => rows.push((*b, vec![i])),
        }
    }
    rows.into_iter()
        .map(|(_, mut members)| {
            members.sort_by(|&a, &b| boxes[a].x0.total_cmp(&boxes[b].x0));
            members
        })
        .collect()
}

/// The darkest gray level that still counts as paper: pixels at or below the
/// returned level are ink. Otsu's threshold (computed in 64 bits, as pages
/// of more than 16 million pixels overflow `imageproc::contrast::otsu_level`),
/// capped at 200 so that a blank or evenly toned page has no ink.
pub(crate) fn ink_level(gray: &GrayImage) -> u8 {
    const PAPER: u8 = 200;
    let mut histogram = [0u64; 256];
    for pixel in gray.pixels() {
        histogram[pixel.0[0] as usize] += 1;
    }
    let total: u64 = histogram.iter().sum();
    let total_sum: f64 = histogram.iter().enumerate().map(|(v, &n)| v as f64 * n as f64).sum();
    let (mut weight, mut sum, mut best, mut level) = (0u64, 0f64, 0f64, 0u8);
    for (v, &n) in histogram.iter().enumerate() {
        weight += n;
        if weight == 0 {
            continue;
        }
        if weight == total {
            break;
        }
        sum += v as f64 * n as f64;
        let (w0, w1) = (weight as f64, (total - weight) as f64);
        let between = w0 * w1 * (sum / w0 - (total_sum - sum) / w1).powi(2);
        if between > best {
            best = between;
            level = v as u8;
        }
    }
    level.min(PAPER)
}

/// The median of `values`; 0 for none.
pub(crate) fn median(mut values: Vec<f32>) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f32::total_cmp);
    values[values.len() / 2]
}

/// Builders of realistic pages for the tests of the enrich and preprocess
/// steps.
#[cfg(test)]
pub(crate) mod testing {
    use image::{Rgb, RgbImage};
    use imageproc::drawing::draw_filled_rect_mut;
    use imageproc::rect::Rect;
    use schemas::{BBox, DocumentKind, DocumentSource, Line, PageTask, TextSource, Word};

    use crate::page::Page;

    /// A white page image.
    pub fn blank(width: u32, height: u32) -> RgbImage {
        RgbImage::from_pixel(width, height, Rgb([255, 255, 255]))
    }

    /// Draws a black bar of `width` x `height` pixels at (`x`, `y`).
    pub fn bar(image: &mut RgbImage, x: u32, y: u32, width: u32, height: u32) {
        let rect = Rect::at(x as i32, y as i32).of_size(width.max(1), height.max(1));
        draw_filled_rect_mut(image, rect, Rgb([0, 0, 0]));
    }

    /// An empty page of the given size, no image.
    pub fn page(width: u32, height: u32) -> Page {
        let task = PageTask {
            doc_id: "0".repeat(64),
            tenant: "test".into(),
            page_index: 0,
            page_count: 1,
            kind: DocumentKind::Png,
            source: DocumentSource::Inline { bytes: Vec::new() },
            submitted_at_ms: 0,
        };
        let mut page = Page::new(task);
        page.result.width = width;
        page.result.height = height;
        page
    }

    /// A box from left, top, right, bottom.
    pub fn bbox(x0: f32, y0: f32, x1: f32, y1: f32) -> BBox {
        BBox { x0, y0, x1, y1 }
    }

    /// An OCR line of `text` starting at (`x`, `y`), 20 px high, 10 px per
    /// character, with one word box per space-separated word.
    pub fn line(text: &str, x: f32, y: f32) -> Line {
        const CHAR_W: f32 = 10.0;
        let mut words = Vec::new();
        let mut offset = 0;
        for word in text.split(' ') {
            if !word.is_empty() {
                let x0 = x + offset as f32 * CHAR_W;
                let x1 = x0 + word.chars().count() as f32 * CHAR_W;
                words.push(Word {
                    text: word.to_owned(),
                    bbox: bbox(x0, y, x1, y + 20.0),
                    confidence: 0.95,
                });
            }
            offset += word.chars().count() + 1;
        }
        Line {
            text: text.to_owned(),
            bbox: bbox(x, y, x + text.chars().count() as f32 * CHAR_W, y + 20.0),
            quad: None,
            confidence: 0.95,
            source: TextSource::Ocr,
            region: None,
            words,
        }
    }
}
