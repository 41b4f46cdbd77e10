//! Stage `render`: steps `rasterize` (PDF page or image page to pixels) and
//! `extract_text` (the PDF text layer with coordinates).

use std::sync::Arc;

use image::imageops::FilterType;
use schemas::{DocumentKind, ErrorKind};

use crate::error::StepError;
use crate::page::{Page, StepMeter};
use crate::steps::Step;
use crate::{images, pdf};

/// Rendering settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Resolution PDF pages are rasterised at.
    pub dpi: u32,
    /// Longest page side in pixels; larger pages and images are scaled down.
    pub max_side_px: u32,
    /// Largest page accepted, in pixels (checked before decoding).
    pub max_page_pixels: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { dpi: 150, max_side_px: 2000, max_page_pixels: 40_000_000 }
    }
}

fn document(page: &Page) -> Result<Arc<Vec<u8>>, StepError> {
    page.document
        .clone()
        .ok_or_else(|| StepError::internal("document bytes were not fetched for the render stage"))
}

fn pdf_geometry(
    document: &pdfium_render::prelude::PdfDocument<'_>,
    page: &Page,
    config: &Config,
) -> Result<pdf::PageGeometry, StepError> {
    let geometry = pdf::geometry(document, page.task.page_index, config.dpi, config.max_side_px)?;
    let pixels = u64::from(geometry.width_px()) * u64::from(geometry.height_px());
    if pixels > config.max_page_pixels {
        return Err(StepError::reject(
            ErrorKind::TooManyPixels,
            format!("page renders to {pixels} pixels, the limit is {}", config.max_page_pixels),
        ));
    }
    Ok(geometry)
}

/// Step `rasterize`: the page image, long side at most `max_side_px`.
#[derive(Debug, Default)]
pub struct Rasterize {
    pub config: Config,
}

impl Step for Rasterize {
    fn name(&self) -> &'static str {
        "rasterize"
    }

    fn needs_document(&self) -> bool {
        true
    }

    fn run(&self, page: &mut Page, _meter: &mut StepMeter) -> Result<(), StepError> {
        let bytes = document(page)?;
        let index = page.task.page_index;
        let (image, dpi) = match page.task.kind {
            DocumentKind::Pdf => {
                let document = pdf::open(&bytes)?;
                let geometry = pdf_geometry(&document, page, &self.config)?;
                (pdf::rasterize(&document, index, &geometry)?, Some(geometry.dpi()))
            }
            kind => {
                let image = images::decode_page(kind, &bytes, index, self.config.max_page_pixels)?;
                (shrink_to(image, self.config.max_side_px), None)
            }
        };
        page.result.width = image.width();
        page.result.height = image.height();
        page.result.dpi = dpi;
        page.image = Some(image);
        Ok(())
    }
}

/// Scales `image` down so that its long side is at most `max_side` pixels.
fn shrink_to(image: image::RgbImage, max_side: u32) -> image::RgbImage {
    let long_side = image.width().max(image.height());
    if long_side <= max_side {
        return image;
    }
    let scale = max_side as f32 / long_side as f32;
    let width = ((image.width() as f32 * scale).round() as u32).max(1);
    let height = ((image.height() as f32 * scale).round() as u32).max(1);
    image::imageops::resize(&image, width, height, FilterType::Triangle)
}

/// Step `extract_text`: the PDF's text layer, in pixels of the rasterised
/// page; nothing for image documents.
#[derive(Debug, Default)]
pub struct ExtractText {
    pub config: Config,
}

impl Step for ExtractText {
    fn name(&self) -> &'static str {
        "extract_text"
    }

    fn needs_document(&self) -> bool {
        true
    }

    fn run(&self, page: &mut Page, _meter: &mut StepMeter) -> Result<(), StepError> {
        if page.task.kind != DocumentKind::Pdf {
            return Ok(());
        }
        let bytes = document(page)?;
        let document = pdf::open(&bytes)?;
        let geometry = pdf_geometry(&document, page, &self.config)?;
        let lines = pdf::text_lines(&document, page.task.page_index, &geometry)?;
        page.text_layer = lines;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrink_keeps_aspect() {
        let image = image::RgbImage::new(4000, 1000);
        let small = shrink_to(image, 2000);
        assert_eq!(small.dimensions(), (2000, 500));
        let image = image::RgbImage::new(100, 50);
        assert_eq!(shrink_to(image, 2000).dimensions(), (100, 50));
    }
}
