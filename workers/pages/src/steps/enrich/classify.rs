//! Step `classify_page`: the page class (`invoice`, `receipt`, `letter`,
//! `form`, `article`, else `other`).
//!
//! The classifier is rule-based because no page classification model ships
//! with the product: each class scores points for keywords in the page text
//! (English, German, French), for the key fields found on the page and for
//! layout cues (a till-roll page shape, label-like lines, checkboxes,
//! article regions). The score is `points / (points + 1)`, in [0, 1); the
//! best class wins when its score reaches [`Config::min_score`]. The winner,
//! its score and the evidence are recorded in a `page_class` diagnostic,
//! since the page result has no field for them.

use schemas::{DiagnosticLevel, FieldKind, PageResult, RegionKind};
use serde::{Deserialize, Serialize};

use super::diagnostic;
use crate::error::StepError;
use crate::page::{Page, StepMeter};
use crate::steps::{Step, StepDef, StepSettings, check_settings, defaults_of};
use topology::catalogue::{SettingsProblem, StepInfo};

/// Settings of [`ClassifyPage`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Least score (0 to 1) for a class; below it the page is `other`.
    pub min_score: f32,
}

impl Default for Config {
    fn default() -> Self {
        Config { min_score: 0.5 }
    }
}

/// Step `classify_page`.
#[derive(Debug, Default)]
pub struct ClassifyPage {
    config: Config,
}

impl ClassifyPage {
    /// The step with its settings.
    pub fn new(config: Config) -> Self {
        ClassifyPage { config }
    }
}

/// Step `classify_page`.
pub const STEP: StepDef = StepDef {
    info: StepInfo {
        name: "classify_page",
        stage: "enrich",
        models: &[],
        reads_document: false,
        after: &[],
        settings: check_settings::<Config>,
        summary: "the page class (invoice, letter, form, article...) from its fields, regions and words",
    },
    defaults: defaults_of::<Config>,
    build: Some(|_, settings| {
        Ok(Box::new(ClassifyPage::new(super::super::settings_of(STEP.info.name, settings)?)))
    }),
};

impl StepSettings for Config {
    fn check(&self) -> Result<(), SettingsProblem> {
        super::super::fraction("min_score", self.min_score)
    }
}

impl Step for ClassifyPage {
    fn name(&self) -> &str {
        STEP.info.name
    }

    fn run(&self, page: &mut Page, _meter: &mut StepMeter) -> Result<(), StepError> {
        classify(&mut page.result, &self.config, self.name());
        Ok(())
    }
}

/// The keyword and field evidence for one class.
struct Rule {
    class: &'static str,
    /// Phrases (lower case, words separated by single spaces) and points.
    keywords: &'static [(&'static str, f32)],
    /// Field kinds, how many of them are needed, and points.
    fields: &'static [(FieldKind, usize, f32)],
}

const RULES: &[Rule] = &[
    Rule {
        class: "invoice",
        keywords: &[
            ("invoice", 1.5),
            ("rechnung", 1.5),
            ("facture", 1.5),
            ("tax invoice", 0.5),
            ("bill to", 0.5),
            ("amount due", 0.7),
            ("due date", 0.5),
            ("payment terms", 0.5),
            ("zahlbar", 0.5),
            ("zahlungsziel", 0.5),
            ("subtotal", 0.5),
            ("zwischensumme", 0.5),
            ("net amount", 0.3),
            ("nettobetrag", 0.3),
        ],
        fields: &[
            (FieldKind::InvoiceNumber, 1, 1.5),
            (FieldKind::Iban, 1, 0.7),
            (FieldKind::VatId, 1, 0.7),
            (FieldKind::Amount, 2, 0.5),
        ],
    },
    Rule {
        class: "receipt",
        keywords: &[
            ("receipt", 1.5),
            ("quittung", 1.5),
            ("kassenbon", 1.5),
            ("kassenbeleg", 1.5),
            ("cash", 0.5),
            ("change", 0.5),
            ("rückgeld", 0.7),
            ("gegeben", 0.5),
            ("card payment", 0.5),
            ("kartenzahlung", 0.5),
            ("thank you for your purchase", 0.7),
            ("vielen dank für ihren einkauf", 0.7),
            ("tse", 0.5),
        ],
        fields: &[(FieldKind::Amount, 3, 0.5)],
    },
    Rule {
        class: "letter",
        keywords: &[
            ("dear", 1.0),
            ("sehr geehrte", 1.2),
            ("sehr geehrter", 1.2),
            ("madame monsieur", 1.2),
            ("sincerely", 1.0),
            ("yours faithfully", 1.0),
            ("kind regards", 1.0),
            ("best regards", 1.0),
            ("mit freundlichen grüßen", 1.2),
            ("mit freundlichen grüssen", 1.2),
            ("freundliche grüße", 1.0),
            ("cordialement", 1.0),
            ("betreff", 0.5),
            ("subject", 0.3),
        ],
        fields: &[(FieldKind::Date, 1, 0.3)],
    },
    Rule {
        class: "form",
        keywords: &[
            ("form", 0.5),
            ("formular", 1.0),
            ("antrag", 1.0),
            ("application", 0.5),
            ("signature", 0.7),
            ("unterschrift", 0.7),
            ("please fill", 0.7),
            ("bitte ausfüllen", 0.7),
            ("date of birth", 0.5),
            ("geburtsdatum", 0.5),
            ("place date", 0.5),
            ("ort datum", 0.5),
        ],
        fields: &[],
    },
    Rule {
        class: "article",
        keywords: &[
            ("abstract", 1.0),
            ("introduction", 0.7),
            ("conclusion", 0.7),
            ("conclusions", 0.7),
            ("references", 0.7),
            ("einleitung", 0.7),
            ("zusammenfassung", 0.5),
            ("summary", 0.3),
            ("chapter", 0.5),
            ("report", 0.7),
            ("bericht", 0.7),
            ("et al", 0.7),
        ],
        fields: &[],
    },
];

fn classify(result: &mut PageResult, config: &Config, step: &str) {
    let text = result.lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join("\n");
    let words = normalise(&text);
    let mut best: Option<(&str, f32, Vec<String>)> = None;
    for rule in RULES {
        let mut points = 0.0;
        let mut evidence = Vec::new();
        for &(phrase, p) in rule.keywords {
            if words.contains(&format!(" {phrase} ")) {
                points += p;
                evidence.push(format!("keyword \"{phrase}\""));
            }
        }
        for &(kind, n, p) in rule.fields {
            if result.fields.iter().filter(|f| f.kind == kind).count() >= n {
                points += p;
                evidence.push(format!("{n}+ {kind:?} field"));
            }
        }
        for (cue, p) in layout(rule.class, result, &text) {
            points += p;
            evidence.push(cue.to_owned());
        }
        let score = points / (points + 1.0);
        if best.as_ref().is_none_or(|(_, s, _)| score > *s) {
            best = Some((rule.class, score, evidence));
        }
    }
    let Some((class, score, evidence)) = best else { return };
    let message = if score >= config.min_score {
        result.class = Some(class.to_owned());
        format!("{class} with score {score:.2} from {}", evidence.join(", "))
    } else {
        result.class = Some("other".to_owned());
        format!(
            "other: no class reached {:.2}; best {class} with score {score:.2}",
            config.min_score
        )
    };
    result.diagnostics.push(diagnostic(DiagnosticLevel::Info, step, "page_class", message));
}

/// Layout cues for `class`: what they are and their points.
fn layout(class: &str, result: &PageResult, text: &str) -> Vec<(&'static str, f32)> {
    let mut cues = Vec::new();
    let n_lines = result.lines.len();
    match class {
        "invoice" if !result.tables.is_empty() => cues.push(("a table", 0.3)),
        "receipt" if result.width > 0 && result.height as f32 / result.width as f32 > 2.0 => {
            cues.push(("a till-roll page shape", 1.0))
        }
        "form" => {
            let labels = result.lines.iter().filter(|l| l.text.trim_end().ends_with(':')).count();
            if n_lines >= 5 && labels as f32 >= 0.3 * n_lines as f32 {
                cues.push(("label-like lines", 1.0));
            }
            if text.contains(['☐', '☑', '☒', '□']) {
                cues.push(("checkboxes", 1.0));
            }
        }
        "article" => {
            let count = |kind| result.regions.iter().filter(|r| r.kind == kind).count();
            if count(RegionKind::Title) >= 1 && count(RegionKind::Text) >= 3 {
                cues.push(("title and text regions", 0.7));
            }
            if count(RegionKind::Reference) + count(RegionKind::Equation) > 0 {
                cues.push(("reference or equation regions", 0.5));
            }
            let long = result.lines.iter().filter(|l| l.text.chars().count() >= 40).count();
            if long >= 15 {
                cues.push(("many long lines", 0.7));
            }
        }
        _ => {}
    }
    cues
}

/// Lower-case words separated by single spaces, with a space at both ends,
/// so that phrases match whole words only.
fn normalise(text: &str) -> String {
    let mut out = String::from(" ");
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        out.push_str(&word.to_lowercase());
        out.push(' ');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use schemas::Region;

    use super::*;
    use crate::steps::enrich::ExtractFields;
    use crate::steps::enrich::testing::{bbox, line, page};

    /// Classifies a page of `text` (one line per `\n`, fields extracted
    /// first) with the given size and regions; checks the class.
    fn check(text: &str, size: (u32, u32), regions: Vec<Region>, expect: &str) -> PageResult {
        let mut page = page(size.0, size.1);
        page.result.lines =
            text.lines().enumerate().map(|(i, t)| line(t, 50.0, 50.0 + 30.0 * i as f32)).collect();
        page.result.regions = regions;
        let mut meter = StepMeter::default();
        ExtractFields::default().run(&mut page, &mut meter).unwrap();
        ClassifyPage::default().run(&mut page, &mut meter).unwrap();
        assert_eq!(page.result.class.as_deref(), Some(expect), "{:?}", page.result.diagnostics);
        let note = page.result.diagnostics.iter().find(|d| d.code == "page_class").unwrap();
        assert!(note.message.starts_with(expect), "{}", note.message);
        page.result
    }

    #[test]
    fn invoice() {
        check(
            "ACME GmbH, Hauptstr. 1, 10115 Berlin\nInvoice No. INV-2026-00417\n\
             Date: 2026-11-03\nConsulting EUR 1,200.00\nSubtotal EUR 1,200.00\n\
             VAT 19% EUR 228.00\nIBAN DE89 3704 0044 0532 0130 00",
            (1240, 1754),
            vec![],
            "invoice",
        );
    }

    #[test]
    fn letter_mentioning_an_invoice_is_a_letter() {
        check(
            "Berlin, 3 December 2026\nDear Ms Smith,\nplease find attached the invoice for\n\
             the work done in November.\nKind regards\nJohn Doe",
            (1240, 1754),
            vec![],
            "letter",
        );
    }

    #[test]
    fn receipt_on_a_till_roll() {
        check(
            "Bäckerei Müller\nBrötchen EUR 2,40\nKaffee EUR 3,10\nSumme EUR 5,50\n\
             Gegeben EUR 10,00\nRückgeld EUR 4,50",
            (400, 1400),
            vec![],
            "receipt",
        );
    }

    #[test]
    fn form_with_labels_and_checkboxes() {
        check(
            "Antrag auf Mitgliedschaft\nName:\nVorname:\nGeburtsdatum:\nAnschrift:\n\
             ☐ Einzelmitglied ☐ Familie\nOrt, Datum:\nUnterschrift:",
            (1240, 1754),
            vec![],
            "form",
        );
    }

    #[test]
    fn article_from_regions_and_keywords() {
        let regions = vec![
            Region {
                kind: RegionKind::Title,
                bbox: bbox(0.0, 0.0, 1.0, 1.0),
                score: 0.9,
                reading_order: None,
            },
            Region {
                kind: RegionKind::Text,
                bbox: bbox(0.0, 0.0, 1.0, 1.0),
                score: 0.9,
                reading_order: None,
            },
            Region {
                kind: RegionKind::Text,
                bbox: bbox(0.0, 0.0, 1.0, 1.0),
                score: 0.9,
                reading_order: None,
            },
            Region {
                kind: RegionKind::Text,
                bbox: bbox(0.0, 0.0, 1.0, 1.0),
                score: 0.9,
                reading_order: None,
            },
        ];
        check(
            "Streaming page analysis\nAbstract\nWe describe a pipeline.\n1 Introduction\nPages flow.",
            (1240, 1754),
            regions,
            "article",
        );
    }

    #[test]
    fn nothing_recognisable_is_other() {
        let result = check("Lorem ipsum dolor\nsit amet", (1240, 1754), vec![], "other");
        assert!(result.fields.is_empty());
    }
}
