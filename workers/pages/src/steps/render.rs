//! Stage `render`: steps `rasterize` (PDF page or image page to pixels) and
//! `extract_text` (the PDF text layer with coordinates).

use std::sync::Arc;

use image::imageops::FilterType;
use schemas::{DocumentKind, ErrorKind};
use serde::{Deserialize, Serialize};
use topology::catalogue::{SettingsProblem, StepInfo};

use crate::error::StepError;
use crate::page::{Page, StepMeter};
use crate::steps::{
    NoSettings, Step, StepDef, StepSettings, at_least_one, check_settings, defaults_of,
};
use crate::{images, pdf};

/// Settings of [`Rasterize`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Resolution PDF pages are rasterised at.
    pub dpi: u32,
    /// Longest page side in pixels; larger pages and images are scaled down.
    pub max_side_px: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { dpi: 150, max_side_px: 2000 }
    }
}

impl StepSettings for Config {
    fn check(&self) -> Result<(), SettingsProblem> {
        at_least_one("dpi", self.dpi.into())?;
        at_least_one("max_side_px", self.max_side_px.into())
    }
}

/// Step `rasterize`.
pub const RASTERIZE: StepDef = StepDef {
    info: StepInfo {
        name: "rasterize",
        stage: "render",
        models: &[],
        reads_document: true,
        after: &[],
        settings: check_settings::<Config>,
        summary: "the page image: a PDF page rendered, an image page decoded, long side capped",
    },
    defaults: defaults_of::<Config>,
    build: Some(|context, settings| {
        Ok(Box::new(Rasterize {
            config: super::settings_of(RASTERIZE.info.name, settings)?,
            max_page_pixels: context.limits.max_page_pixels,
        }))
    }),
};

/// Step `extract_text`.
pub const EXTRACT_TEXT: StepDef = StepDef {
    info: StepInfo {
        name: "extract_text",
        stage: "render",
        models: &[],
        reads_document: true,
        after: &["rasterize"],
        settings: check_settings::<NoSettings>,
        summary: "the PDF text layer, in pixels of the rasterised page",
    },
    defaults: defaults_of::<NoSettings>,
    build: Some(|_, settings| {
        super::settings_of::<NoSettings>(EXTRACT_TEXT.info.name, settings)?;
        Ok(Box::new(ExtractText))
    }),
};

fn document(page: &Page) -> Result<Arc<Vec<u8>>, StepError> {
    page.document
        .clone()
        .ok_or_else(|| StepError::internal("document bytes were not fetched for the render stage"))
}

/// Step `rasterize`: the page image, long side at most `max_side_px`.
#[derive(Debug)]
pub struct Rasterize {
    pub config: Config,
    /// Largest page accepted, in pixels (checked before decoding).
    pub max_page_pixels: u64,
}

impl Default for Rasterize {
    fn default() -> Self {
        Rasterize {
            config: Config::default(),
            max_page_pixels: topology::Limits::default().max_page_pixels,
        }
    }
}

impl Step for Rasterize {
    fn name(&self) -> &str {
        RASTERIZE.info.name
    }

    fn run(&self, page: &mut Page, _meter: &mut StepMeter) -> Result<(), StepError> {
        let bytes = document(page)?;
        let index = page.task.page_index;
        let (image, scale) = match page.task.kind {
            DocumentKind::Pdf => {
                let document = pdf::open(&bytes)?;
                let geometry =
                    pdf::geometry(&document, index, self.config.dpi, self.config.max_side_px)?;
                let pixels = u64::from(geometry.width_px()) * u64::from(geometry.height_px());
                if pixels > self.max_page_pixels {
                    return Err(StepError::reject(
                        ErrorKind::TooManyPixels,
                        format!(
                            "page renders to {pixels} pixels, the limit is {}",
                            self.max_page_pixels
                        ),
                    ));
                }
                (pdf::rasterize(&document, index, &geometry)?, Some(geometry.scale))
            }
            kind => {
                let image = images::decode_page(kind, &bytes, index, self.max_page_pixels)?;
                (shrink_to(image, self.config.max_side_px), None)
            }
        };
        page.result.width = image.width();
        page.result.height = image.height();
        page.result.dpi = scale.map(|scale| (scale * 72.0).round() as u32);
        page.pixels_per_point = scale;
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

/// Step `extract_text`: the PDF's text layer, in pixels of the page as
/// `rasterize` rendered it; nothing for image documents.
#[derive(Debug, Default)]
pub struct ExtractText;

impl Step for ExtractText {
    fn name(&self) -> &str {
        EXTRACT_TEXT.info.name
    }

    fn run(&self, page: &mut Page, _meter: &mut StepMeter) -> Result<(), StepError> {
        if page.task.kind != DocumentKind::Pdf {
            return Ok(());
        }
        let scale = page.pixels_per_point.ok_or_else(|| {
            StepError::internal("extract_text needs the page rasterised first (step `rasterize`)")
        })?;
        let bytes = document(page)?;
        let document = pdf::open(&bytes)?;
        let index = page.task.page_index;
        let geometry = pdf::geometry_at_scale(&document, index, scale)?;
        page.text_layer = pdf::text_lines(&document, index, &geometry)?;
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
