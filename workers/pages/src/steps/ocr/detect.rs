//! Step `detect_text`: finds text lines with the DB detection model and
//! cuts them out of the page, leaving to the text layer what it covers.

use std::borrow::Cow;
use std::sync::Arc;

use image::RgbImage;
use rayon::prelude::*;
use schemas::BBox;
use serde::{Deserialize, Serialize};

use super::text_layer::{self, Coverage};
use super::{Candidate, Quad, crop, db, sort_lines};
use crate::error::StepError;
use crate::models::Model;
use crate::models::prep::{Normalize, resize_linear};
use crate::page::{Page, StepMeter};
use crate::steps::{Step, StepDef, StepSettings, check_settings, defaults_of};
use topology::catalogue::{SettingsProblem, StepInfo};

/// Settings of text detection.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Pages whose longer side exceeds this are scaled down to it first
    /// (pixels; lines are cut from the scaled page).
    pub max_side_len: u32,
    /// The detection input's shorter side is scaled up to at least this
    /// (pixels).
    pub limit_side_len: u32,
    /// The detection input's longer side is at most this (pixels): a
    /// smaller input detects faster, and lines are still cut from the page
    /// at full resolution. The reference detects at up to 2000 pixels; 1280
    /// reads the samples as well, faster; 960 (the PaddleOCR default)
    /// starts to misread the invoice's small print (`cargo bench --bench
    /// models`).
    pub det_max_side_len: u32,
    /// Post-processing of the probability map.
    pub db: db::Params,
    /// When the PDF text layer replaces OCR.
    pub text_layer: text_layer::Config,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_side_len: 2000,
            limit_side_len: 736,
            det_max_side_len: 1280,
            db: db::Params::default(),
            text_layer: text_layer::Config::default(),
        }
    }
}

/// The `detect_text` step.
#[derive(Debug)]
pub struct DetectText {
    config: Config,
    model: Arc<Model>,
}

impl DetectText {
    /// The step running `model` (the `det` model).
    pub fn new(config: Config, model: Arc<Model>) -> Self {
        DetectText { config, model }
    }

    /// Finds the text lines of `image`: corners in image pixels, scores and
    /// crops, in reading order; lines `skip` says are covered are left out.
    pub fn detect(
        &self,
        image: &RgbImage,
        skip: impl Fn(&Quad) -> bool + Sync,
        meter: &mut StepMeter,
    ) -> Result<Vec<Candidate>, StepError> {
        let (width, height) = image.dimensions();
        if width == 0 || height == 0 {
            return Ok(Vec::new());
        }
        let work = shrink(image, self.config.max_side_len);
        let (work_w, work_h) = work.dimensions();
        let (limit, max) = (self.config.limit_side_len, self.config.det_max_side_len);
        let Some((det_w, det_h)) = detection_size(work_w, work_h, limit, max) else {
            return Ok(Vec::new());
        };
        let resized = if (det_w, det_h) == (work_w, work_h) {
            Cow::Borrowed(work.as_ref())
        } else {
            Cow::Owned(resize_linear(&work, det_w, det_h))
        };
        let input = Normalize::symmetric().planes(&resized);
        let shape = [1, 3, det_h as usize, det_w as usize];
        let outputs = self.model.run(&shape, &input, meter)?;
        let map = outputs.tensor(0, 4)?;
        if map.shape[2..] != [i64::from(det_h), i64::from(det_w)] {
            return Err(StepError::internal(format!(
                "detection map has shape {:?} for an input of {det_w}x{det_h}",
                map.shape
            )));
        }
        let boxes = db::text_boxes(
            map.data,
            det_w as usize,
            det_h as usize,
            (work_w, work_h),
            &self.config.db,
        );
        let (rx, ry) = (width as f32 / work_w as f32, height as f32 / work_h as f32);
        let to_page = |q: &Quad| {
            q.map(|[x, y]| [(x * rx).clamp(0.0, width as f32), (y * ry).clamp(0.0, height as f32)])
        };
        Ok(boxes
            .into_par_iter()
            .filter(|b| !skip(&to_page(&b.quad)))
            .map(|b| {
                let (crop, vertical) = crop::crop_line(&work, &b.quad);
                Candidate { quad: to_page(&b.quad), score: b.score, crop, vertical, flipped: false }
            })
            .collect())
    }
}

/// Step `detect_text`.
pub const STEP: StepDef = StepDef {
    info: StepInfo {
        name: "detect_text",
        stage: "ocr",
        models: &[super::super::MODEL_DET],
        reads_document: false,
        after: &[],
        settings: check_settings::<Config>,
        summary: "text lines, from the text layer where it covers a region, else by the detection model",
    },
    defaults: defaults_of::<Config>,
    build: Some(|context, settings| {
        Ok(Box::new(DetectText::new(
            super::super::settings_of(STEP.info.name, settings)?,
            context.model(super::super::MODEL_DET)?,
        )))
    }),
};

impl StepSettings for Config {
    fn check(&self) -> Result<(), SettingsProblem> {
        use super::super::{at_least_one, fraction, positive};
        at_least_one("limit_side_len", self.limit_side_len.into())?;
        at_least_one("det_max_side_len", self.det_max_side_len.into())?;
        at_least_one("max_side_len", self.max_side_len.into())?;
        fraction("db.thresh", self.db.thresh)?;
        fraction("db.box_thresh", self.db.box_thresh)?;
        positive("db.unclip_ratio", self.db.unclip_ratio)?;
        at_least_one("db.max_candidates", self.db.max_candidates as u64)?;
        fraction("text_layer.min_readable", self.text_layer.min_readable)?;
        fraction("text_layer.max_overlap", self.text_layer.max_overlap)
    }
}

impl Step for DetectText {
    fn name(&self) -> &str {
        STEP.info.name
    }

    fn run(&self, page: &mut Page, meter: &mut StepMeter) -> Result<(), StepError> {
        // this stage makes the page's lines: a page run again starts over
        page.ocr.lines.clear();
        page.result.lines.clear();
        let image = page.image.as_ref().ok_or_else(|| StepError::internal("page has no image"))?;
        let mut coverage = None;
        if !page.text_layer.is_empty() {
            let (w, h) = image.dimensions();
            let whole = BBox { x0: 0.0, y0: 0.0, x1: w as f32, y1: h as f32 };
            let cover = Coverage::of(
                &page.text_layer,
                &page.result.regions,
                whole,
                &self.config.text_layer,
            );
            page.result.lines.extend(cover.lines.iter().cloned());
            sort_lines(&mut page.result.lines);
            if cover.complete {
                return Ok(());
            }
            coverage = Some(cover);
        }
        let max_overlap = self.config.text_layer.max_overlap;
        let skip = |quad: &Quad| {
            coverage.as_ref().is_some_and(|c| {
                BBox::enclosing(quad).is_some_and(|bbox| c.covers(&bbox, max_overlap))
            })
        };
        page.ocr.lines = self.detect(image, skip, meter)?;
        Ok(())
    }
}

/// `len * ratio` truncated, then rounded to a multiple of 32 with Python's
/// `round` (ties to even), as the reference sizes its images.
fn scale32(len: u32, ratio: f64) -> u32 {
    let scaled = (f64::from(len) * ratio).trunc();
    ((scaled / 32.0).round_ties_even() * 32.0) as u32
}

/// The page scaled down so that its longer side is at most `max_side`,
/// sides rounded to multiples of 32 (the reference's first step).
fn shrink(image: &RgbImage, max_side: u32) -> Cow<'_, RgbImage> {
    let (w, h) = image.dimensions();
    if w.max(h) <= max_side || max_side == 0 {
        return Cow::Borrowed(image);
    }
    let ratio = f64::from(max_side) / f64::from(w.max(h));
    Cow::Owned(resize_linear(image, scale32(w, ratio).max(32), scale32(h, ratio).max(32)))
}

/// The detection input size: the shorter side scaled up to `limit` when
/// below it, the longer side down to `max_side` when above it (that wins),
/// sides rounded to multiples of 32; none when that is empty.
fn detection_size(w: u32, h: u32, limit: u32, max_side: u32) -> Option<(u32, u32)> {
    let (short, long) = (f64::from(w.min(h)), f64::from(w.max(h)));
    let up = if short < f64::from(limit) { f64::from(limit) / short } else { 1.0 };
    let ratio = up.min(f64::from(max_side) / long);
    let (dw, dh) = (scale32(w, ratio), scale32(h, ratio));
    (dw > 0 && dh > 0).then_some((dw, dh))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_sizes_follow_the_reference() {
        // an A4 page at 150 dpi
        assert_eq!(detection_size(1240, 1754, 736, 2000), Some((1248, 1760)));
        // a small image is scaled up so its short side is 736
        assert_eq!(detection_size(400, 300, 736, 2000), Some((992, 736)));
        // but a strip not beyond the side limit
        assert_eq!(detection_size(1000, 20, 736, 2000), Some((1984, 32)));
        assert_eq!(detection_size(10, 1, 736, 10), None);
        // a cap on the input shrinks it
        assert_eq!(detection_size(1240, 1754, 736, 1280), Some((896, 1280)));
        assert_eq!(scale32(16, 1.0), 0);
        assert_eq!(scale32(48, 1.0), 64);
    }

    #[test]
    fn large_pages_are_shrunk_to_the_side_limit() {
        let page = RgbImage::new(2480, 3508);
        assert_eq!(shrink(&page, 2000).dimensions(), (1408, 1984));
        let page = RgbImage::new(1240, 1754);
        assert!(matches!(shrink(&page, 2000), Cow::Borrowed(_)));
    }
}
