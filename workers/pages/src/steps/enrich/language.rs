//! Step `detect_language`: the language of the page text (whatlang
//! trigram models), kept only when the detection is reliable.

use schemas::{DiagnosticLevel, Language, PageResult};
use serde::{Deserialize, Serialize};

use super::diagnostic;
use crate::error::StepError;
use crate::page::{Page, StepMeter};
use crate::steps::{Step, StepDef, StepSettings, check_settings, defaults_of};
use topology::catalogue::{SettingsProblem, StepInfo};

/// Settings of [`DetectLanguage`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Fewest letters the page text must have for a detection.
    pub min_letters: usize,
    /// Least detector confidence (0 to 1) to record the language; 0.9 is
    /// where whatlang itself calls a detection reliable.
    pub min_confidence: f32,
}

impl Default for Config {
    fn default() -> Self {
        Config { min_letters: 30, min_confidence: 0.9 }
    }
}

/// Step `detect_language`.
#[derive(Debug, Default)]
pub struct DetectLanguage {
    config: Config,
}

impl DetectLanguage {
    /// The step with its settings.
    pub fn new(config: Config) -> Self {
        DetectLanguage { config }
    }
}

/// Step `detect_language`.
pub const STEP: StepDef = StepDef {
    info: StepInfo {
        name: "detect_language",
        stage: "enrich",
        models: &[],
        reads_document: false,
        after: &[],
        settings: check_settings::<Config>,
        summary: "the page's language (ISO 639-3)",
    },
    defaults: defaults_of::<Config>,
    build: Some(|_, settings| {
        Ok(Box::new(DetectLanguage::new(super::super::settings_of(STEP.info.name, settings)?)))
    }),
};

impl StepSettings for Config {
    fn check(&self) -> Result<(), SettingsProblem> {
        super::super::fraction("min_confidence", self.min_confidence)
    }
}

impl Step for DetectLanguage {
    fn name(&self) -> &str {
        STEP.info.name
    }

    fn run(&self, page: &mut Page, _meter: &mut StepMeter) -> Result<(), StepError> {
        detect(&mut page.result, &self.config, self.name());
        Ok(())
    }
}

fn detect(result: &mut PageResult, config: &Config, step: &str) {
    let text = result.lines.iter().map(|line| line.text.as_str()).collect::<Vec<_>>().join("\n");
    let n_letters = text.chars().filter(|c| c.is_alphabetic()).count();
    let (code, message) = if n_letters < config.min_letters {
        (
            "language_too_little_text",
            format!("{n_letters} letters are too few to tell the language"),
        )
    } else {
        match whatlang::detect(&text) {
            Some(info) if info.confidence() as f32 >= config.min_confidence => {
                let code = info.lang().code().to_owned();
                result.language = Some(Language { code, confidence: info.confidence() as f32 });
                return;
            }
            Some(info) => (
                "language_uncertain",
                format!(
                    "best guess {} with confidence {:.2} is below {:.2}",
                    info.lang().code(),
                    info.confidence(),
                    config.min_confidence
                ),
            ),
            None => ("language_uncertain", "no language recognised".to_owned()),
        }
    };
    result.diagnostics.push(diagnostic(DiagnosticLevel::Info, step, code, message));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::steps::enrich::testing::{line, page};

    /// Runs the step on `text` (one line per `\n`) and returns the language
    /// code, or the diagnostic code where none was recorded.
    fn check(text: &str, expect: &str) {
        let mut page = page(1000, 1400);
        page.result.lines =
            text.lines().enumerate().map(|(i, t)| line(t, 50.0, 50.0 + 30.0 * i as f32)).collect();
        DetectLanguage::default().run(&mut page, &mut StepMeter::default()).unwrap();
        let got = match &page.result.language {
            Some(language) => {
                assert!(page.result.diagnostics.is_empty());
                assert!(language.confidence >= 0.9);
                language.code.clone()
            }
            None => page.result.diagnostics[0].code.clone(),
        };
        assert_eq!(got, expect, "{text}");
    }

    #[test]
    fn languages_of_business_letters() {
        check(
            "Dear Ms Smith,\nthank you for your order of last week. Please find the invoice\n\
             attached and let us know if anything is missing.",
            "eng",
        );
        check(
            "Sehr geehrte Damen und Herren,\nvielen Dank für Ihre Bestellung. Anbei erhalten Sie\n\
             die Rechnung für die gelieferten Waren.",
            "deu",
        );
        check(
            "Madame, Monsieur,\nnous vous remercions de votre commande et vous prions de \
             trouver ci-joint la facture correspondante.",
            "fra",
        );
    }

    #[test]
    fn too_little_text_is_a_diagnostic() {
        check("EUR 12,00\n2026-11-03", "language_too_little_text");
        check("", "language_too_little_text");
    }

    #[test]
    fn mixed_noise_is_not_reported_as_a_language() {
        check(
            "qx zvb kkw plm trr sdf ghj wqe rty uio pas dfg hjk lzx cvb nmq",
            "language_uncertain",
        );
    }
}
