//! Step `deskew`: estimate and correct small skew angles.
//!
//! The skew of the (upright) page is the angle at which the horizontal
//! projection profile of its ink is sharpest: text lines then fall into
//! few rows, and the sum of squared differences of adjacent profile bins
//! peaks. The page is shrunk, binarised, and the profile is taken for every
//! angle of a coarse grid over `[-max_deg, max_deg]`, then of a fine grid
//! around the best coarse angle (angles in parallel on rayon). A page whose
//! sharpest profile hardly beats the median one (no text lines: blank pages,
//! photos, noise) is left alone with a diagnostic, and so are pages whose
//! text comes from a PDF text layer (they are straight by construction).

use image::{GrayImage, Rgb, RgbImage, imageops};
use imageproc::geometric_transformations::{Interpolation, rotate_about_center};
use rayon::prelude::*;
use schemas::DiagnosticLevel;
use serde::{Deserialize, Serialize};

use crate::error::StepError;
use crate::page::{Page, StepMeter};
use crate::steps::enrich::{diagnostic, ink_level, median};
use crate::steps::{Step, StepDef, StepSettings, check_settings, defaults_of};
use topology::catalogue::{SettingsProblem, StepInfo};

/// Step of the coarse angle search, degrees.
const COARSE_STEP_DEG: f32 = 0.25;
/// Step of the fine angle search around the best coarse angle, degrees.
const FINE_STEP_DEG: f32 = 0.05;
/// Share of each page side left out of the estimate (scanner borders).
const MARGIN: f32 = 0.02;
/// Fewest ink pixels of the shrunk page for an estimate.
const MIN_INK: usize = 200;

/// Settings of [`Deskew`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Largest skew looked for, degrees.
    pub max_deg: f32,
    /// Smallest skew that is corrected, degrees.
    pub min_deg: f32,
    /// The page is shrunk to this long side for the estimate, pixels.
    pub work_px: u32,
    /// Least ratio of the sharpest profile to the median profile for a
    /// reliable estimate.
    pub min_peak_ratio: f32,
}

impl Default for Config {
    fn default() -> Self {
        Config { max_deg: 5.0, min_deg: 0.2, work_px: 1000, min_peak_ratio: 1.5 }
    }
}

/// Why a page has no reliable skew estimate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unreliable {
    #[error("too little ink ({0} pixels of the shrunk page)")]
    LittleInk(usize),
    #[error("flat projection profile (peak {0:.2} times the median)")]
    FlatProfile(f32),
    #[error("sharpest profile at the search limit ({0:.2} degrees)")]
    AtLimit(f32),
}

/// Step `deskew`.
#[derive(Debug, Default)]
pub struct Deskew {
    config: Config,
}

impl Deskew {
    /// The step with its settings.
    pub fn new(config: Config) -> Self {
        Deskew { config }
    }
}

/// Step `deskew`.
pub const STEP: StepDef = StepDef {
    info: StepInfo {
        name: "deskew",
        stage: "preprocess",
        models: &[],
        reads_document: false,
        after: &[],
        settings: check_settings::<Config>,
        summary: "straightens a page skewed by up to `max_deg` degrees",
    },
    defaults: defaults_of::<Config>,
    build: Some(|_, settings| {
        Ok(Box::new(Deskew::new(super::super::settings_of(STEP.info.name, settings)?)))
    }),
};

impl StepSettings for Config {
    fn check(&self) -> Result<(), SettingsProblem> {
        if !(0.0..=45.0).contains(&self.max_deg) {
            return Err(SettingsProblem::at("max_deg", "must be between 0 and 45 degrees"));
        }
        super::super::at_least_one("work_px", self.work_px.into())
    }
}

impl Step for Deskew {
    fn name(&self) -> &str {
        STEP.info.name
    }

    fn run(&self, page: &mut Page, _meter: &mut StepMeter) -> Result<(), StepError> {
        if !page.text_layer.is_empty() {
            return Ok(());
        }
        let image = page.image.as_ref().ok_or_else(|| StepError::internal("page has no image"))?;
        match estimate(image, &self.config) {
            Ok(deg) if deg.abs() >= self.config.min_deg => {
                page.image = Some(rotate(image, -deg));
                page.result.skew_deg = deg;
            }
            Ok(_) => {}
            Err(why) => page.result.diagnostics.push(diagnostic(
                DiagnosticLevel::Info,
                self.name(),
                "skew_uncertain",
                format!("page left as is: {why}"),
            )),
        }
        Ok(())
    }
}

/// The skew angle of `image`, degrees, positive when the content is turned
/// clockwise.
pub fn estimate(image: &RgbImage, config: &Config) -> Result<f32, Unreliable> {
    let gray = shrink(&imageops::grayscale(image), config.work_px);
    let level = ink_level(&gray);
    let (w, h) = (gray.width() as f32, gray.height() as f32);
    let (mx, my) = (w * MARGIN, h * MARGIN);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let ink: Vec<(f32, f32)> = gray
        .enumerate_pixels()
        .filter(|&(x, y, p)| {
            let (x, y) = (x as f32, y as f32);
            p.0[0] <= level && x >= mx && x < w - mx && y >= my && y < h - my
        })
        .map(|(x, y, _)| (x as f32 - cx, y as f32 - cy))
        .collect();
    if ink.len() < MIN_INK {
        return Err(Unreliable::LittleInk(ink.len()));
    }
    let reach = (cx * cx + cy * cy).sqrt().ceil() + 1.0;
    let sharpest = |angles: Vec<f32>| -> Vec<(f32, f64)> {
        angles.into_par_iter().map(|deg| (deg, sharpness(&ink, deg, reach))).collect()
    };
    let n = (config.max_deg / COARSE_STEP_DEG).ceil() as i32;
    let coarse = sharpest((-n..=n).map(|i| i as f32 * COARSE_STEP_DEG).collect());
    let best = |scores: &[(f32, f64)]| {
        scores.iter().copied().fold((0.0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a })
    };
    let (deg, peak) = best(&coarse);
    let typical = median(coarse.iter().map(|&(_, s)| s as f32).collect());
    let ratio = if typical > 0.0 { peak as f32 / typical } else { 0.0 };
    if ratio < config.min_peak_ratio {
        return Err(Unreliable::FlatProfile(ratio));
    }
    if n > 0 && deg.abs() >= n as f32 * COARSE_STEP_DEG {
        return Err(Unreliable::AtLimit(deg));
    }
    let k = (COARSE_STEP_DEG / FINE_STEP_DEG).round() as i32;
    let fine = sharpest((-k..=k).map(|i| deg + i as f32 * FINE_STEP_DEG).collect());
    Ok(best(&fine).0)
}

/// The page shrunk so that its long side is at most `long_side` pixels.
fn shrink(gray: &GrayImage, long_side: u32) -> GrayImage {
    let (w, h) = gray.dimensions();
    let scale = long_side as f32 / w.max(h) as f32;
    if scale >= 1.0 {
        return gray.clone();
    }
    let (sw, sh) = (((w as f32 * scale) as u32).max(1), ((h as f32 * scale) as u32).max(1));
    imageops::thumbnail(gray, sw, sh)
}

/// How sharp the horizontal profile of `ink` (points relative to the page
/// centre, at most `reach` from it) is when turned back by `deg`.
fn sharpness(ink: &[(f32, f32)], deg: f32, reach: f32) -> f64 {
    let (sin, cos) = deg.to_radians().sin_cos();
    let mut bins = vec![0u32; 2 * reach as usize + 1];
    let last = bins.len() - 1;
    for &(x, y) in ink {
        let row = (y * cos - x * sin + reach).max(0.0) as usize;
        bins[row.min(last)] += 1;
    }
    bins.windows(2).map(|pair| (f64::from(pair[1]) - f64::from(pair[0])).powi(2)).sum()
}

/// `image` turned clockwise by `deg` about its centre, same size, white
/// where nothing of the page lands.
fn rotate(image: &RgbImage, deg: f32) -> RgbImage {
    rotate_about_center(image, deg.to_radians(), Interpolation::Bilinear, Rgb([255, 255, 255]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::steps::enrich::testing::{bar, blank, line, page};

    /// A page of 1000 x 1300 with paragraphs of word-like bars.
    fn text_page() -> RgbImage {
        let mut image = blank(1000, 1300);
        let mut seed = 7u32;
        let mut next = |n: u32| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) % n
        };
        let mut y = 100;
        while y < 1180 {
            let mut x = 90 + next(3) * 40;
            let end = if next(6) == 0 { 400 + next(400) } else { 880 };
            while x < end {
                let width = 20 + next(100);
                bar(&mut image, x, y, width.min(end - x), 12 + next(3));
                x += width + 10 + next(6);
            }
            y += if next(5) == 0 { 50 } else { 26 };
        }
        image
    }

    fn run(image: RgbImage) -> Page {
        let mut page = page(image.width(), image.height());
        page.image = Some(image);
        Deskew::default().run(&mut page, &mut StepMeter::default()).unwrap();
        page
    }

    fn codes(page: &Page) -> Vec<&str> {
        page.result.diagnostics.iter().map(|d| d.code.as_str()).collect()
    }

    #[test]
    fn skewed_page_is_measured_and_straightened() {
        for turned in [2.0, -1.2] {
            let page = run(rotate(&text_page(), turned));
            let skew = page.result.skew_deg;
            assert!((skew - turned).abs() <= 0.2, "turned {turned}, estimated {skew}");
            let straightened = estimate(page.image.as_ref().unwrap(), &Config::default()).unwrap();
            assert!(straightened.abs() < 0.2, "left {straightened} after correction");
            assert_eq!(page.image.as_ref().unwrap().dimensions(), (1000, 1300));
        }
    }

    #[test]
    fn straight_page_is_left_untouched() {
        let image = text_page();
        let page = run(image.clone());
        assert_eq!(page.result.skew_deg, 0.0);
        assert!(page.image.as_ref().unwrap() == &image);
        assert!(page.result.diagnostics.is_empty());
    }

    #[test]
    fn pages_without_text_lines_get_a_diagnostic() {
        let page = run(blank(800, 1000));
        assert_eq!(codes(&page), ["skew_uncertain"]);

        // Scattered specks: plenty of ink, no lines.
        let mut image = blank(800, 1000);
        let mut seed = 11u32;
        for _ in 0..4000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let (x, y) = ((seed >> 8) % 796, (seed >> 20) % 996);
            bar(&mut image, x, y, 3, 3);
        }
        let page = run(rotate(&image, 3.0));
        assert_eq!(codes(&page), ["skew_uncertain"]);
        assert_eq!(page.result.skew_deg, 0.0);
    }

    #[test]
    fn text_layer_pages_are_not_deskewed() {
        let image = rotate(&text_page(), 2.0);
        let mut page = page(1000, 1300);
        page.image = Some(image.clone());
        page.text_layer = vec![line("text from the PDF", 90.0, 100.0)];
        Deskew::default().run(&mut page, &mut StepMeter::default()).unwrap();
        assert!(page.image.as_ref().unwrap() == &image);
        assert!(page.result.diagnostics.is_empty());
    }

    #[test]
    fn scanned_letter_is_turned_back() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/scan-letter.png");
        let image = image::open(path).unwrap().to_rgb8();
        let skew = estimate(&image, &Config::default()).unwrap();
        // The sample is turned 1.5 degrees counter-clockwise.
        assert!((skew + 1.5).abs() <= 0.2, "estimated {skew}");
    }
}
