//! Step `classify_lines`: the 0/180 degree line classifier; upside-down
//! crops are turned before recognition.

use std::sync::Arc;

use image::imageops;
use serde::{Deserialize, Serialize};

use super::{LINE_HEIGHT, write_line};
use crate::error::StepError;
use crate::models::Model;
use crate::page::{Page, StepMeter};
use crate::steps::{Step, StepDef, StepSettings, check_settings, defaults_of};
use topology::catalogue::{SettingsProblem, StepInfo};

/// Width of the classifier's input (crops are padded to it).
const INPUT_WIDTH: u32 = 192;

/// Settings of line classification.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Lines per inference.
    pub batch_size: usize,
    /// Score of "180" above which a line is turned.
    pub min_confidence: f32,
}

impl Default for Config {
    fn default() -> Self {
        Config { batch_size: 6, min_confidence: 0.9 }
    }
}

/// The `classify_lines` step.
#[derive(Debug)]
pub struct ClassifyLines {
    config: Config,
    model: Arc<Model>,
}

impl ClassifyLines {
    /// The step running `model` (the `cls` model: outputs 0, 180).
    pub fn new(config: Config, model: Arc<Model>) -> Self {
        ClassifyLines { config, model }
    }
}

/// Step `classify_lines`.
pub const STEP: StepDef = StepDef {
    info: StepInfo {
        name: "classify_lines",
        stage: "ocr",
        models: &[super::super::MODEL_CLS],
        reads_document: false,
        after: &[],
        settings: check_settings::<Config>,
        summary: "turns upside-down lines by the line classifier",
    },
    defaults: defaults_of::<Config>,
    build: Some(|context, settings| {
        Ok(Box::new(ClassifyLines::new(
            super::super::settings_of(STEP.info.name, settings)?,
            context.model(super::super::MODEL_CLS)?,
        )))
    }),
};

impl StepSettings for Config {
    fn check(&self) -> Result<(), SettingsProblem> {
        super::super::at_least_one("batch_size", self.batch_size as u64)?;
        super::super::fraction("min_confidence", self.min_confidence)
    }
}

impl Step for ClassifyLines {
    fn name(&self) -> &str {
        STEP.info.name
    }

    fn run(&self, page: &mut Page, meter: &mut StepMeter) -> Result<(), StepError> {
        let (h, w) = (LINE_HEIGHT as usize, INPUT_WIDTH as usize);
        let per_line = 3 * h * w;
        for batch in page.ocr.lines.chunks_mut(self.config.batch_size.max(1)) {
            let mut input = vec![0f32; batch.len() * per_line];
            for (line, out) in batch.iter().zip(input.chunks_exact_mut(per_line)) {
                write_line(&line.crop, INPUT_WIDTH, w, out);
            }
            let outputs = self.model.run(&[batch.len(), 3, h, w], &input, meter)?;
            let probs = outputs.tensor(0, 2)?;
            if probs.shape[1] != 2 || probs.data.len() != 2 * batch.len() {
                return Err(StepError::internal(format!(
                    "line classifier gave shape {:?} for {} lines",
                    probs.shape,
                    batch.len()
                )));
            }
            for (line, p) in batch.iter_mut().zip(probs.data.chunks_exact(2)) {
                if p[1] > p[0] && p[1] > self.config.min_confidence {
                    imageops::rotate180_in_place(&mut line.crop);
                    line.flipped = !line.flipped;
                }
            }
        }
        Ok(())
    }
}
