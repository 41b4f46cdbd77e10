//! Step `recognize_text`: reads the line crops with the CTC recognition
//! model, in batches of similar aspect ratio, and splits each line into
//! words placed by the time steps their characters were read at.

use std::sync::Arc;

use image::imageops;
use rayon::prelude::*;
use schemas::{BBox, Line, TextSource, Word};
use serde::{Deserialize, Serialize};

use super::{Candidate, LINE_HEIGHT, Quad, axis_aligned, sort_lines, write_line};
use crate::error::StepError;
use crate::models::{Model, ModelError};
use crate::page::{Page, StepMeter};
use crate::steps::{Step, StepDef, StepSettings, check_settings, defaults_of};
use topology::catalogue::{SettingsProblem, StepInfo};

/// Settings of line recognition.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Lines per inference (sorted by aspect ratio, each batch padded to
    /// its widest line). The reference reads 6 at a time; on a CPU one at a
    /// time is faster, as it needs no padding.
    pub batch_size: usize,
    /// Inputs are padded to at least this width (pixels at height 48); the
    /// reference pads to 320, which costs time on short lines and changes
    /// nothing read.
    pub min_width: u32,
    /// Inputs are at most this wide (pixels at height 48); longer lines are
    /// squeezed to it, which bounds the memory one line takes.
    pub max_width: u32,
    /// Lines read with a lower mean character probability are dropped.
    pub min_score: f32,
    /// Lines the classifier turned and that read with a lower score are read
    /// unturned too, keeping the better reading (the classifier squashes
    /// long lines to 192 pixels and sometimes turns them wrongly).
    pub recheck_turned_below: f32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            batch_size: 1,
            min_width: 8,
            max_width: 4800,
            min_score: 0.5,
            recheck_turned_below: 0.9,
        }
    }
}

/// The `recognize_text` step.
#[derive(Debug)]
pub struct RecognizeText {
    config: Config,
    model: Arc<Model>,
    /// Class index to text: blank, the dictionary, space.
    classes: Vec<String>,
}

impl RecognizeText {
    /// The step running `model` (the `rec` model, its dictionary in the
    /// metadata key `character`).
    pub fn new(config: Config, model: Arc<Model>) -> Result<Self, ModelError> {
        let classes = std::iter::once(String::new())
            .chain(model.require_labels()?.iter().cloned())
            .chain(std::iter::once(" ".to_string()))
            .collect();
        Ok(RecognizeText { config, model, classes })
    }

    /// Reads `lines`: text, score and the characters' positions, in order.
    pub fn read(
        &self,
        lines: &[Candidate],
        meter: &mut StepMeter,
    ) -> Result<Vec<Reading>, StepError> {
        let ratio = |c: &Candidate| c.crop.width() as f32 / c.crop.height().max(1) as f32;
        let mut order: Vec<usize> = (0..lines.len()).collect();
        order.sort_by(|&a, &b| ratio(&lines[a]).total_cmp(&ratio(&lines[b])));
        let mut readings = vec![Reading::default(); lines.len()];
        let height = LINE_HEIGHT as usize;
        for batch in order.chunks(self.config.batch_size.max(1)) {
            let widest = batch.iter().map(|&i| ratio(&lines[i])).fold(0f32, f32::max);
            let width = ((LINE_HEIGHT as f32 * widest) as u32)
                .max(self.config.min_width)
                .min(self.config.max_width)
                .max(8);
            let per_line = 3 * height * width as usize;
            let mut input = vec![0f32; batch.len() * per_line];
            let widths: Vec<u32> = batch
                .par_iter()
                .zip(input.par_chunks_mut(per_line))
                .map(|(&i, out)| write_line(&lines[i].crop, width, width as usize, out))
                .collect();
            let outputs =
                self.model.run(&[batch.len(), 3, height, width as usize], &input, meter)?;
            let probs = outputs.tensor(0, 3)?;
            let (steps, classes) = (probs.shape[1] as usize, probs.shape[2] as usize);
            if probs.shape[0] as usize != batch.len() || classes != self.classes.len() || steps == 0
            {
                return Err(StepError::internal(format!(
                    "recogniser gave shape {:?} for {} lines and {} classes",
                    probs.shape,
                    batch.len(),
                    self.classes.len()
                )));
            }
            let step_px = width as f32 / steps as f32;
            let decoded: Vec<Reading> = probs
                .data
                .par_chunks_exact(steps * classes)
                .zip(widths.par_iter())
                .map(|(row, &w)| self.decode(row, classes, step_px / w as f32))
                .collect();
            for (&i, reading) in batch.iter().zip(decoded) {
                readings[i] = reading;
            }
        }
        Ok(readings)
    }

    /// Greedy CTC decoding of one line: best class per time step, repeats
    /// merged, blanks dropped. `step` is a time step's share of the line.
    fn decode(&self, row: &[f32], classes: usize, step: f32) -> Reading {
        let mut chars = Vec::new();
        let mut prev = 0usize;
        for (t, probs) in row.chunks_exact(classes).enumerate() {
            let (best, p) = argmax(probs);
            if best != 0 && best != prev {
                chars.push(Char { class: best, prob: p, at: (t as f32 + 0.5) * step });
            }
            prev = best;
        }
        let text: String = chars.iter().map(|c| self.classes[c.class].as_str()).collect();
        let score = if chars.is_empty() {
            0.0
        } else {
            chars.iter().map(|c| c.prob).sum::<f32>() / chars.len() as f32
        };
        let words = words(&chars, &self.classes, step);
        Reading { text, score, words }
    }
}

/// Step `recognize_text`.
pub const STEP: StepDef = StepDef {
    info: StepInfo {
        name: "recognize_text",
        stage: "ocr",
        models: &[super::super::MODEL_REC],
        reads_document: false,
        after: &[],
        settings: check_settings::<Config>,
        summary: "the text of each line by the recognition model",
    },
    defaults: defaults_of::<Config>,
    build: Some(|context, settings| {
        Ok(Box::new(RecognizeText::new(
            super::super::settings_of(STEP.info.name, settings)?,
            context.model(super::super::MODEL_REC)?,
        )?))
    }),
};

impl StepSettings for Config {
    fn check(&self) -> Result<(), SettingsProblem> {
        super::super::at_least_one("batch_size", self.batch_size as u64)?;
        super::super::at_least_one("min_width", self.min_width.into())?;
        if self.max_width < self.min_width {
            return Err(SettingsProblem::at("max_width", "must not be below `min_width`"));
        }
        super::super::fraction("min_score", self.min_score)?;
        super::super::fraction("recheck_turned_below", self.recheck_turned_below)
    }
}

impl Step for RecognizeText {
    fn name(&self) -> &str {
        STEP.info.name
    }

    fn run(&self, page: &mut Page, meter: &mut StepMeter) -> Result<(), StepError> {
        let mut candidates = std::mem::take(&mut page.ocr.lines);
        if candidates.is_empty() {
            return Ok(());
        }
        let mut readings = self.read(&candidates, meter)?;
        let doubtful: Vec<usize> = (0..candidates.len())
            .filter(|&i| {
                candidates[i].flipped && readings[i].score < self.config.recheck_turned_below
            })
            .collect();
        if !doubtful.is_empty() {
            let unturned: Vec<Candidate> = doubtful
                .iter()
                .map(|&i| {
                    let mut line = candidates[i].clone();
                    imageops::rotate180_in_place(&mut line.crop);
                    line.flipped = false;
                    line
                })
                .collect();
            let second = self.read(&unturned, meter)?;
            for ((&i, line), reading) in doubtful.iter().zip(unturned).zip(second) {
                if reading.score > readings[i].score {
                    (candidates[i], readings[i]) = (line, reading);
                }
            }
        }
        let lines = candidates.iter().zip(readings).filter_map(|(candidate, reading)| {
            let keep = !reading.text.trim().is_empty() && reading.score >= self.config.min_score;
            keep.then(|| reading.into_line(candidate))
        });
        page.result.lines.extend(lines);
        sort_lines(&mut page.result.lines);
        Ok(())
    }
}

/// What the recogniser read on one line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// The text read, spaces included.
    pub text: String,
    /// Mean probability of the characters read.
    pub score: f32,
    /// The words, with where they are along the line (0 start, 1 end).
    pub words: Vec<WordSpan>,
}

/// A word of a [`Reading`].
#[derive(Debug, Clone, PartialEq)]
pub struct WordSpan {
    /// The word.
    pub text: String,
    /// Mean probability of its characters.
    pub confidence: f32,
    /// Where it starts along the line, as a share of its length.
    pub start: f32,
    /// Where it ends along the line, as a share of its length.
    pub end: f32,
}

/// Index and value of the largest of `values` (the first of equals; NaN
/// never wins; `(0, -inf)` when nothing does). A time step has one value per
/// class of the dictionary (18,710), so this runs over every output of the
/// recogniser: the maximum is taken lane-wise, which vectorises, and then
/// looked up.
fn argmax(values: &[f32]) -> (usize, f32) {
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (max, &v) in lanes.iter_mut().zip(chunk) {
            *max = if v > *max { v } else { *max };
        }
    }
    let best = lanes.iter().chain(rest).fold(f32::NEG_INFINITY, |a, &v| if v > a { v } else { a });
    (values.iter().position(|&v| v == best).unwrap_or(0), best)
}

/// A character read at a time step.
struct Char {
    class: usize,
    prob: f32,
    /// Centre of its time step, as a share of the line.
    at: f32,
}

/// Splits the characters at spaces. A word spans its characters' time
/// steps widened by half the mean character pitch of the line.
fn words(chars: &[Char], classes: &[String], step: f32) -> Vec<WordSpan> {
    let pitch = match (chars.first(), chars.last()) {
        (Some(first), Some(last)) if chars.len() > 1 => {
            (last.at - first.at) / (chars.len() - 1) as f32
        }
        _ => step,
    };
    chars
        .split(|c| classes[c.class].trim().is_empty())
        .filter(|word| !word.is_empty())
        .map(|word| {
            let (first, last) = (&word[0], &word[word.len() - 1]);
            WordSpan {
                text: word.iter().map(|c| classes[c.class].as_str()).collect(),
                confidence: word.iter().map(|c| c.prob).sum::<f32>() / word.len() as f32,
                start: (first.at - pitch / 2.0).clamp(0.0, 1.0),
                end: (last.at + pitch / 2.0).clamp(0.0, 1.0),
            }
        })
        .collect()
}

impl Reading {
    /// The line of `candidate` with this text, its words placed on the
    /// line's quadrilateral.
    fn into_line(self, candidate: &Candidate) -> Line {
        let quad = candidate.quad;
        let bbox = BBox::enclosing(&quad).unwrap_or_default();
        let words = if self.words.len() == 1 {
            let word = &self.words[0];
            vec![Word { text: word.text.clone(), bbox, confidence: word.confidence }]
        } else {
            self.words
                .iter()
                .map(|w| Word {
                    text: w.text.clone(),
                    bbox: span_box(candidate, w.start, w.end),
                    confidence: w.confidence,
                })
                .collect()
        };
        Line {
            text: self.text,
            bbox,
            quad: (!axis_aligned(&quad)).then_some(quad),
            confidence: self.score,
            source: TextSource::Ocr,
            region: None,
            words,
        }
    }
}

/// The box of the part of a line between shares `start` and `end` of its
/// reading direction.
fn span_box(candidate: &Candidate, start: f32, end: f32) -> BBox {
    let [tl, tr, br, bl] = candidate.quad;
    // the crop's x axis runs along the top and bottom edges, or down the
    // left and right edges for vertical text; a flipped crop reads backwards
    let (a0, a1, b0, b1): (_, _, _, _) =
        if candidate.vertical { (tl, bl, tr, br) } else { (tl, tr, bl, br) };
    let at = |p: [f32; 2], q: [f32; 2], f: f32| {
        let f = if candidate.flipped { 1.0 - f } else { f };
        [p[0] + f * (q[0] - p[0]), p[1] + f * (q[1] - p[1])]
    };
    let corners: Quad = [at(a0, a1, start), at(a0, a1, end), at(b0, b1, end), at(b0, b1, start)];
    BBox::enclosing(&corners).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vec<String> {
        ["", "a", "b", "c", " "].into_iter().map(String::from).collect()
    }

    fn chars(spec: &[(usize, f32)]) -> Vec<Char> {
        spec.iter().map(|&(class, at)| Char { class, prob: 0.9, at }).collect()
    }

    #[test]
    fn argmax_finds_the_first_largest_anywhere() {
        // longer than a lane block, the maximum in the block part and in the rest
        let mut values: Vec<f32> = (0..37).map(|i| (i % 7) as f32 * 0.01).collect();
        values[20] = 0.9;
        values[25] = 0.9;
        assert_eq!(argmax(&values), (20, 0.9));
        values[36] = 0.95;
        assert_eq!(argmax(&values), (36, 0.95));
        values[3] = f32::NAN;
        assert_eq!(argmax(&values), (36, 0.95));
        assert_eq!(argmax(&[0.2, 0.7, 0.1]), (1, 0.7));
        assert_eq!(argmax(&[f32::NAN]), (0, f32::NEG_INFINITY));
        assert_eq!(argmax(&[]), (0, f32::NEG_INFINITY));
    }

    #[test]
    fn words_split_at_spaces_and_span_their_steps() {
        // "ab c" read at 0.1, 0.2, (space 0.3), 0.4
        let words = words(&chars(&[(1, 0.1), (2, 0.2), (4, 0.3), (3, 0.4)]), &classes(), 0.05);
        let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, ["ab", "c"]);
        let close = |a: f32, b: f32| (a - b).abs() < 1e-5;
        assert!(close(words[0].start, 0.05) && close(words[0].end, 0.25));
        assert!(close(words[1].start, 0.35) && close(words[1].end, 0.45));
    }

    #[test]
    fn spans_follow_flipped_and_vertical_lines() {
        let candidate = |vertical, flipped| Candidate {
            quad: [[100.0, 10.0], [300.0, 10.0], [300.0, 40.0], [100.0, 40.0]],
            score: 0.9,
            crop: image::RgbImage::new(1, 1),
            vertical,
            flipped,
        };
        let b = span_box(&candidate(false, false), 0.0, 0.25);
        assert_eq!((b.x0, b.x1, b.y0, b.y1), (100.0, 150.0, 10.0, 40.0));
        let b = span_box(&candidate(false, true), 0.0, 0.25);
        assert_eq!((b.x0, b.x1), (250.0, 300.0));
        let b = span_box(&candidate(true, false), 0.0, 0.5);
        assert_eq!((b.x0, b.x1, b.y0, b.y1), (100.0, 300.0, 10.0, 25.0));
    }
}
