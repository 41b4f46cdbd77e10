//! Step `orient`: page orientation model and rotation.
//!
//! The model's classes 0/90/180/270 say by how much the page content is
//! turned clockwise: a page scanned a quarter turn clockwise reads "90" and
//! is corrected by turning it 270 degrees clockwise.

use std::sync::Arc;

use image::{RgbImage, imageops};
use schemas::DiagnosticLevel;
use serde::{Deserialize, Serialize};

use crate::error::StepError;
use crate::models::prep::{Normalize, resize_lanczos4};
use crate::models::{Model, ModelError};
use crate::page::{Page, StepMeter};
use crate::steps::enrich::diagnostic;
use crate::steps::{Step, StepDef, StepSettings, check_settings, defaults_of};
use topology::catalogue::{SettingsProblem, StepInfo};

/// The model looks at a centre crop of this size.
const CROP: u32 = 224;
/// The page's shorter side is scaled to this before cropping.
const SHORT_SIDE: u32 = 256;
/// Pages more elongated than this are not looked at (the scaled page would
/// be huge and the centre crop meaningless).
const MAX_ASPECT: u32 = 16;

/// Settings of orientation correction.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Least probability of the winning class to turn the page.
    pub min_confidence: f32,
    /// Least lead of the winning class over "upright" to turn the page.
    pub min_margin: f32,
}

impl Default for Config {
    fn default() -> Self {
        Config { min_confidence: 0.9, min_margin: 0.5 }
    }
}

/// The `orient` step.
#[derive(Debug)]
pub struct Orient {
    config: Config,
    model: Arc<Model>,
    /// Clockwise content rotation of each output class, degrees.
    angles: Vec<u16>,
}

/// The orientation model's view of a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Guess {
    /// Clockwise rotation of the content, degrees: 0, 90, 180 or 270.
    pub angle: u16,
    /// Its probability.
    pub confidence: f32,
    /// Probability of "upright".
    pub upright: f32,
}

impl Orient {
    /// The step running `model` (the `orientation` model, its classes in
    /// the metadata key `character`).
    pub fn new(config: Config, model: Arc<Model>) -> Result<Self, ModelError> {
        let angles = model
            .require_labels()?
            .iter()
            .map(|label| label.trim().parse::<u16>().ok().filter(|a| a % 90 == 0 && *a < 360))
            .collect::<Option<Vec<_>>>()
            .filter(|angles| angles.contains(&0))
            .ok_or_else(|| ModelError::Output {
                name: model.name().to_string(),
                reason: "orientation labels are not angles".into(),
            })?;
        Ok(Orient { config, model, angles })
    }

    /// What the model thinks of `image`; none for extreme aspect ratios.
    pub fn guess(
        &self,
        image: &RgbImage,
        meter: &mut StepMeter,
    ) -> Result<Option<Guess>, StepError> {
        let (w, h) = image.dimensions();
        let (short, long) = (w.min(h), w.max(h));
        if short == 0 || long / short > MAX_ASPECT {
            return Ok(None);
        }
        let scale = f64::from(SHORT_SIDE) / f64::from(short);
        let (sw, sh) =
            ((f64::from(w) * scale).round() as u32, (f64::from(h) * scale).round() as u32);
        let resized = resize_lanczos4(image, sw.max(CROP), sh.max(CROP));
        let (x, y) = ((resized.width() - CROP) / 2, (resized.height() - CROP) / 2);
        let crop = imageops::crop_imm(&resized, x, y, CROP, CROP).to_image();
        let input = Normalize::imagenet().planes(&crop);
        let outputs = self.model.run(&[1, 3, CROP as usize, CROP as usize], &input, meter)?;
        let probs = outputs.tensor(0, 2)?;
        if probs.data.len() != self.angles.len() {
            return Err(StepError::internal(format!(
                "orientation model gave {} scores for {} classes",
                probs.data.len(),
                self.angles.len()
            )));
        }
        let at = |angle: u16| {
            self.angles.iter().position(|a| *a == angle).map_or(0.0, |i| probs.data[i])
        };
        let (best, confidence) = probs
            .data
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc });
        Ok(Some(Guess { angle: self.angles[best], confidence, upright: at(0) }))
    }
}

/// Step `orient`.
pub const STEP: StepDef = StepDef {
    info: StepInfo {
        name: "orient",
        stage: "preprocess",
        models: &[super::super::MODEL_ORIENTATION],
        reads_document: false,
        after: &[],
        settings: check_settings::<Config>,
        summary: "turns the page upright (0, 90, 180, 270 degrees) by the orientation model",
    },
    defaults: defaults_of::<Config>,
    build: Some(|context, settings| {
        Ok(Box::new(Orient::new(
            super::super::settings_of(STEP.info.name, settings)?,
            context.model(super::super::MODEL_ORIENTATION)?,
        )?))
    }),
};

impl StepSettings for Config {
    fn check(&self) -> Result<(), SettingsProblem> {
        super::super::fraction("min_confidence", self.min_confidence)?;
        super::super::fraction("min_margin", self.min_margin)
    }
}

impl Step for Orient {
    fn name(&self) -> &str {
        STEP.info.name
    }

    fn run(&self, page: &mut Page, meter: &mut StepMeter) -> Result<(), StepError> {
        if !page.text_layer.is_empty() {
            return Ok(()); // a text layer fixes the orientation already
        }
        let image = page.image.as_ref().ok_or_else(|| StepError::internal("page has no image"))?;
        let Some(guess) = self.guess(image, meter)? else {
            return Ok(());
        };
        if guess.angle == 0 {
            return Ok(());
        }
        let sure = guess.confidence >= self.config.min_confidence
            && guess.confidence - guess.upright >= self.config.min_margin;
        if !sure {
            page.result.diagnostics.push(diagnostic(
                DiagnosticLevel::Warning,
                self.name(),
                "orientation_uncertain",
                format!(
                    "page may be turned {} degrees (probability {:.2}, upright {:.2}); left as is",
                    guess.angle, guess.confidence, guess.upright
                ),
            ));
            return Ok(());
        }
        let turn = (360 - guess.angle) % 360;
        let turned = match turn {
            90 => imageops::rotate90(image),
            180 => imageops::rotate180(image),
            270 => imageops::rotate270(image),
            _ => return Ok(()),
        };
        page.result.width = turned.width();
        page.result.height = turned.height();
        page.result.rotation_deg = (page.result.rotation_deg + turn) % 360;
        page.image = Some(turned);
        Ok(())
    }
}
