//! Stage `ocr`: text detection, line angle classification and recognition.
//!
//! [`detect::DetectText`] finds text lines (skipping what a good PDF text
//! layer already covers) and cuts them out of the page;
//! [`classify::ClassifyLines`] turns upside-down crops;
//! [`recognize::RecognizeText`] reads them. The crops travel between the
//! three steps in [`OcrScratch`], on the page.

pub mod classify;
pub mod crop;
pub mod db;
pub mod detect;
pub mod recognize;
pub mod text_layer;

use image::RgbImage;
use schemas::Line;

pub use crate::page::{Candidate, OcrScratch, Quad};

/// Puts lines in the reference's order: top to bottom by top-left corner,
/// corners within 10 pixels of the previous one on the same line, then
/// left to right.
fn sort_lines(lines: &mut Vec<Line>) {
    db::sort_reading_order(lines, |l| l.quad.map_or([l.bbox.x0, l.bbox.y0], |q| q[0]));
}

/// Whether the quad is its own bounding box.
fn axis_aligned(quad: &Quad) -> bool {
    quad[0][1] == quad[1][1]
        && quad[2][1] == quad[3][1]
        && quad[0][0] == quad[3][0]
        && quad[1][0] == quad[2][0]
}

/// Height of the line crops the classifier and recogniser take.
const LINE_HEIGHT: u32 = 48;

/// Writes `crop` scaled to [`LINE_HEIGHT`] rows and `min(max_width,
/// ceil(48 * w / h))` columns into `out` (three planes of 48 rows of
/// `stride` values, normalised to [-1, 1]); returns the width written.
fn write_line(crop: &RgbImage, max_width: u32, stride: usize, out: &mut [f32]) -> u32 {
    let ratio = crop.width() as f32 / crop.height().max(1) as f32;
    let width = ((LINE_HEIGHT as f32 * ratio).ceil() as u32).clamp(1, max_width.max(1));
    let resized = crate::models::prep::resize_linear(crop, width, LINE_HEIGHT);
    crate::models::prep::Normalize::symmetric().write_planes(&resized, stride, out);
    width
}
