//! Step `extract_fields`: key fields of business documents (IBANs, VAT ids,
//! invoice numbers, e-mail addresses, dates, amounts), validated and
//! normalised, each with its line and the box of the words it spans.
//!
//! Patterns run per line in order of specificity (IBAN, e-mail, VAT id,
//! invoice number, date, amount); a span taken by one is not read again by
//! the next, so the digits of an IBAN never turn up as a date or an amount.
//! An IBAN or VAT id with a wrong checksum is not a field; it leaves a
//! diagnostic instead.
//!
//! Numeric dates are read day first (`03.12.2026`, `03/12/2026` and
//! `03-12-2026` are 3 December 2026), as everywhere in Europe, where the
//! documents this product reads (IBAN, VAT ids, EUR/CHF amounts) come from;
//! US documents set [`Config::slash_dates_month_first`]. A slashed or dashed
//! date that is impossible in the assumed order but valid in the other
//! (`12/31/2026`) is read in the other order with a lower confidence; dotted
//! dates are always day first. Impossible dates (`31.02.2026`) are dropped.

use std::ops::Range;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use schemas::{BBox, Diagnostic, DiagnosticLevel, Field, FieldKind, Line, PageResult};
use serde::{Deserialize, Serialize};

use super::{diagnostic, union};
use crate::error::StepError;
use crate::page::{Page, StepMeter};
use crate::steps::{Step, StepDef, StepSettings, check_settings, defaults_of};
use topology::catalogue::StepInfo;

/// Settings of [`ExtractFields`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Read numeric dates with slashes or dashes month first (`12/03/2026`
    /// is 3 December 2026), as in the United States.
    pub slash_dates_month_first: bool,
}

/// Step `extract_fields`.
#[derive(Debug, Default)]
pub struct ExtractFields {
    config: Config,
}

impl ExtractFields {
    /// The step with its settings.
    pub fn new(config: Config) -> Self {
        ExtractFields { config }
    }
}

/// Step `extract_fields`.
pub const STEP: StepDef = StepDef {
    info: StepInfo {
        name: "extract_fields",
        stage: "enrich",
        models: &[],
        reads_document: false,
        after: &[],
        settings: check_settings::<Config>,
        summary: "IBANs, VAT ids, invoice numbers, e-mail addresses, dates, amounts; checksums verified",
    },
    defaults: defaults_of::<Config>,
    build: Some(|_, settings| {
        Ok(Box::new(ExtractFields::new(super::super::settings_of(STEP.info.name, settings)?)))
    }),
};

impl StepSettings for Config {}

impl Step for ExtractFields {
    fn name(&self) -> &str {
        STEP.info.name
    }

    fn run(&self, page: &mut Page, _meter: &mut StepMeter) -> Result<(), StepError> {
        extract(&mut page.result, &self.config, self.name());
        Ok(())
    }
}

/// A field found in the text of a line.
#[derive(Debug)]
struct Hit {
    kind: FieldKind,
    /// Index of the line the field is on.
    line: usize,
    /// Byte range of the field in the line's text.
    span: Range<usize>,
    normalized: String,
    /// How sure the pattern is, before the line's own confidence.
    certainty: f32,
}

/// The fields of one line, and the spans already taken.
struct Scan<'a> {
    line: usize,
    text: &'a str,
    taken: Vec<Range<usize>>,
    hits: Vec<Hit>,
    diagnostics: Vec<Diagnostic>,
    step: &'a str,
}

impl Scan<'_> {
    fn is_free(&self, span: &Range<usize>) -> bool {
        self.taken.iter().all(|t| t.end <= span.start || span.end <= t.start)
    }

    /// Records a field on this line unless its span is taken.
    fn add(&mut self, kind: FieldKind, span: Range<usize>, normalized: String, certainty: f32) {
        if self.is_free(&span) {
            self.taken.push(span.clone());
            self.hits.push(Hit { kind, line: self.line, span, normalized, certainty });
        }
    }

    /// Takes a span holding a `what` whose checksum is wrong, with a
    /// diagnostic of `code`.
    fn reject(&mut self, span: Range<usize>, code: &str, what: &str) {
        if self.is_free(&span) {
            let value = &self.text[span.clone()];
            let message = format!("{what} {value} on line {} fails its checksum", self.line);
            self.taken.push(span);
            self.diagnostics.push(diagnostic(DiagnosticLevel::Warning, self.step, code, message));
        }
    }
}

fn extract(result: &mut PageResult, config: &Config, step: &str) {
    let lines = &result.lines;
    let mut hits = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let mut scan = Scan {
            line: i,
            text: &line.text,
            taken: Vec::new(),
            hits: Vec::new(),
            diagnostics: Vec::new(),
            step,
        };
        ibans(&mut scan);
        emails(&mut scan);
        vat_ids(&mut scan);
        invoice_numbers(&mut scan, lines.get(i + 1).map(|next| next.text.as_str()));
        dates(&mut scan, config);
        amounts(&mut scan);
        hits.append(&mut scan.hits);
        result.diagnostics.append(&mut scan.diagnostics);
    }
    hits.sort_by_key(|hit| (hit.line, hit.span.start));
    result.fields.extend(hits.into_iter().map(|hit| {
        let line = &lines[hit.line];
        Field {
            kind: hit.kind,
            value: line.text[hit.span.clone()].to_owned(),
            normalized: Some(hit.normalized),
            line: Some(hit.line as u32),
            bbox: Some(span_bbox(line, hit.span)),
            confidence: line.confidence * hit.certainty,
            name: None,
        }
    }));
}

/// The box of a byte span of a line's text: the part of each word box the
/// span covers (by character share), or that part of the line box where the
/// words are missing or do not match the text.
pub(crate) fn span_bbox(line: &Line, span: Range<usize>) -> BBox {
    let part = |bbox: &BBox, text: &str, at: usize| -> Option<BBox> {
        let (start, end) = (span.start.max(at), span.end.min(at + text.len()));
        if start >= end {
            return None;
        }
        let n = text.chars().count().max(1) as f32;
        let share = |byte: usize| text[..byte - at].chars().count() as f32 / n;
        let (x0, x1) = (share(start), share(end));
        Some(BBox { x0: bbox.x0 + x0 * bbox.width(), x1: bbox.x0 + x1 * bbox.width(), ..*bbox })
    };
    let mut cursor = 0;
    let mut found: Option<BBox> = None;
    for word in &line.words {
        let Some(offset) = line.text.get(cursor..).and_then(|rest| rest.find(word.text.as_str()))
        else {
            return part(&line.bbox, &line.text, 0).unwrap_or(line.bbox);
        };
        let at = cursor + offset;
        cursor = at + word.text.len();
        if let Some(b) = part(&word.bbox, &word.text, at) {
            found = Some(found.map_or(b, |f| union(&f, &b)));
        }
    }
    found.or_else(|| part(&line.bbox, &line.text, 0)).unwrap_or(line.bbox)
}

/// A regex that is known to be valid.
fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("invalid built-in pattern {pattern}: {e}"))
}

/// Whether the characters around `span` of `text` leave it a token of its
/// own (no letter or digit glued to either end).
fn stands_alone(text: &str, span: &Range<usize>) -> bool {
    let before = text[..span.start].chars().next_back();
    let after = text[span.end..].chars().next();
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}

// ---------------------------------------------------------------- IBAN --

/// IBAN length per country (SWIFT IBAN registry).
#[rustfmt::skip]
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16),
    ("BG", 22), ("BH", 22), ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22), ("CY", 28),
    ("CZ", 24), ("DE", 22), ("DK", 18), ("DO", 28), ("EE", 20), ("EG", 29), ("ES", 24),
    ("FI", 18), ("FO", 18), ("FR", 27), ("GB", 22), ("GE", 22), ("GI", 23), ("GL", 18),
    ("GR", 27), ("GT", 28), ("HR", 21), ("HU", 28), ("IE", 22), ("IL", 23), ("IQ", 23),
    ("IS", 26), ("IT", 27), ("JO", 30), ("KW", 30), ("KZ", 20), ("LB", 28), ("LC", 32),
    ("LI", 21), ("LT", 20), ("LU", 20), ("LV", 21), ("MC", 27), ("MD", 24), ("ME", 22),
    ("MK", 19), ("MR", 27), ("MT", 31), ("MU", 30), ("NL", 18), ("NO", 15), ("PK", 24),
    ("PL", 28), ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22), ("SA", 24),
    ("SC", 31), ("SE", 24), ("SI", 19), ("SK", 24), ("SM", 27), ("ST", 25), ("SV", 28),
    ("TL", 23), ("TN", 24), ("TR", 26), ("UA", 29), ("VA", 22), ("VG", 24), ("XK", 20),
];

static IBAN: LazyLock<Regex> = LazyLock::new(|| regex(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){10,32}"));

fn ibans(scan: &mut Scan) {
    let mut from = 0;
    while let Some(m) = IBAN.find_at(scan.text, from) {
        // The pattern is ASCII: the next candidate may start one byte on.
        from = m.start() + 1;
        let Some(&(_, length)) = IBAN_LENGTHS.iter().find(|(cc, _)| m.as_str().starts_with(cc))
        else {
            continue;
        };
        let chars: Vec<(usize, char)> =
            m.as_str().char_indices().filter(|(_, c)| *c != ' ').take(length).collect();
        let Some(&(last, _)) = chars.get(length - 1) else { continue };
        let span = m.start()..m.start() + last + 1;
        if !stands_alone(scan.text, &span) {
            continue;
        }
        from = span.end;
        let compact: String = chars.iter().map(|&(_, c)| c).collect();
        if mod97(compact[4..].chars().chain(compact[..4].chars())) == Some(1) {
            scan.add(FieldKind::Iban, span, compact, 1.0);
        } else {
            scan.reject(span, "iban_checksum_invalid", "IBAN");
        }
    }
}

/// The ISO 7064 MOD 97-10 remainder of digits and letters (A = 10 ... Z = 35).
fn mod97(chars: impl Iterator<Item = char>) -> Option<u32> {
    chars.map(|c| c.to_digit(36)).try_fold(0u32, |acc, d| {
        let d = d?;
        Some(if d < 10 { (acc * 10 + d) % 97 } else { (acc * 100 + d) % 97 })
    })
}

// -------------------------------------------------------------- e-mail --

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
});

fn emails(scan: &mut Scan) {
    for m in EMAIL.find_iter(scan.text) {
        scan.add(FieldKind::Email, m.range(), m.as_str().to_lowercase(), 0.95);
    }
}

// -------------------------------------------------------------- VAT id --

/// A VAT id checksum over the characters after the prefix.
type Checksum = fn(&[u32]) -> bool;

/// VAT id formats: prefix, body pattern (`9` a digit, `A` a letter, `X` a
/// letter or digit, `?` makes the atom before it optional, anything else is
/// literal) and the checksum where it is simple.
const VAT_FORMATS: &[(&str, &str, Option<Checksum>)] = &[
    ("ATU", "99999999", Some(vat_at)),
    ("BE", "9999999999", Some(vat_be)),
    ("BG", "9999999999?", None),
    ("CHE", "999999999", None),
    ("CY", "99999999A", None),
    ("CZ", "999999999?9?", None),
    ("DE", "999999999", Some(vat_de)),
    ("DK", "99999999", None),
    ("EE", "999999999", None),
    ("EL", "999999999", None),
    ("ES", "X9999999X", None),
    ("FI", "99999999", None),
    ("FR", "XX999999999", Some(vat_fr)),
    ("GB", "9999999999?9?9?", None),
    ("HR", "99999999999", None),
    ("HU", "99999999", None),
    ("IE", "9X99999AA?", None),
    ("IT", "99999999999", Some(luhn)),
    ("LT", "9999999999?9?9?", None),
    ("LU", "99999999", None),
    ("LV", "99999999999", None),
    ("MT", "99999999", None),
    ("NL", "999999999B99", None),
    ("PL", "9999999999", Some(vat_pl)),
    ("PT", "999999999", None),
    ("RO", "999?9?9?9?9?9?9?9?", None),
    ("SE", "999999999999", None),
    ("SI", "99999999", None),
    ("SK", "9999999999", None),
    ("XI", "9999999999?9?9?", None),
];

/// One regex per VAT format; the body may be grouped by spaces, dots or
/// dashes (`DE 123 456 789`, `CHE-123.456.789`).
static VAT: LazyLock<Vec<(Regex, &'static str, Option<Checksum>)>> = LazyLock::new(|| {
    VAT_FORMATS
        .iter()
        .map(|&(prefix, body, checksum)| {
            let mut pattern = format!(r"\b{prefix}[ .\-]?");
            let mut atoms = body.chars().peekable();
            let mut first = true;
            while let Some(c) = atoms.next() {
                let class = match c {
                    '9' => r"\d".to_owned(),
                    'A' => "[A-Z]".to_owned(),
                    'X' => "[A-Z0-9]".to_owned(),
                    _ => regex::escape(&c.to_string()),
                };
                let sep = if first { "" } else { r"[ .\-]?" };
                first = false;
                if atoms.next_if_eq(&'?').is_some() {
                    pattern.push_str(&format!("(?:{sep}{class})?"));
                } else {
                    pattern.push_str(&format!("{sep}{class}"));
                }
            }
            pattern.push_str(r"\b");
            (regex(&pattern), prefix, checksum)
        })
        .collect()
});

/// Words that say a number nearby is a VAT or tax id.
const VAT_LABELS: &[&str] =
    &["vat", "ust", "uid", "tva", "iva", "btw", "mwst", "tax", "steuer", "moms", "nip", "dph"];

fn vat_ids(scan: &mut Scan) {
    let lower = scan.text.to_lowercase();
    let labelled = VAT_LABELS.iter().any(|label| lower.contains(label));
    for (re, prefix, checksum) in VAT.iter() {
        for m in re.find_iter(scan.text) {
            let body: String =
                m.as_str()[prefix.len()..].chars().filter(char::is_ascii_alphanumeric).collect();
            let digits: Option<Vec<u32>> = body.chars().map(|c| c.to_digit(10)).collect();
            let certainty = match (checksum, digits) {
                (Some(check), Some(digits)) if !check(&digits) => {
                    scan.reject(m.range(), "vat_id_checksum_invalid", "VAT id");
                    continue;
                }
                (Some(_), Some(_)) => 1.0,
                _ => 0.9,
            };
            let certainty = if labelled { certainty } else { certainty * 0.8 };
            scan.add(FieldKind::VatId, m.range(), format!("{prefix}{body}"), certainty);
        }
    }
}

/// Whether `text` (spaces allowed) is an IBAN: a known country, its
/// length, and the MOD 97-10 checksum.
pub(crate) fn is_valid_iban(text: &str) -> bool {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let known_length = IBAN_LENGTHS
        .iter()
        .find(|(cc, _)| compact.starts_with(cc))
        .is_some_and(|&(_, length)| compact.len() == length);
    known_length
        && compact.is_ascii()
        && mod97(compact[4..].chars().chain(compact[..4].chars())) == Some(1)
}

/// Whether `text` is a VAT id of a known format whose checksum, where this
/// module knows it, holds.
pub(crate) fn is_valid_vat_id(text: &str) -> bool {
    VAT.iter().any(|(re, prefix, checksum)| {
        let Some(m) = re.find(text).filter(|m| m.range() == (0..text.len())) else {
            return false;
        };
        let body: String =
            m.as_str()[prefix.len()..].chars().filter(char::is_ascii_alphanumeric).collect();
        let digits: Option<Vec<u32>> = body.chars().map(|c| c.to_digit(10)).collect();
        match (checksum, digits) {
            (Some(check), Some(digits)) => check(&digits),
            _ => true,
        }
    })
}

/// Whether the digits of `text` (anything else ignored, at least two)
/// pass the Luhn check (card numbers, many national ids).
pub(crate) fn is_valid_luhn(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    digits.len() >= 2 && luhn(&digits)
}

/// Germany: ISO 7064 MOD 11,10 over 9 digits.
fn vat_de(d: &[u32]) -> bool {
    let product = d[..8].iter().fold(10, |product, &digit| {
        let sum = match (digit + product) % 10 {
            0 => 10,
            s => s,
        };
        (2 * sum) % 11
    });
    (11 - product) % 10 == d[8]
}

/// Austria (digits after `ATU`): Luhn-like sum with offset 4.
fn vat_at(d: &[u32]) -> bool {
    let sum: u32 = d[..7]
        .iter()
        .enumerate()
        .map(|(i, &x)| if i % 2 == 1 { (2 * x) / 10 + (2 * x) % 10 } else { x })
        .sum();
    (10 - (sum + 4) % 10) % 10 == d[7]
}

/// Belgium: the last two digits are 97 minus the first eight modulo 97.
fn vat_be(d: &[u32]) -> bool {
    let head = d[..8].iter().fold(0, |n, &x| n * 10 + x);
    97 - head % 97 == d[8] * 10 + d[9]
}

/// France: a numeric key is (12 + 3 × (SIREN mod 97)) mod 97.
fn vat_fr(d: &[u32]) -> bool {
    let siren = d[2..].iter().fold(0, |n, &x| n * 10 + x);
    (12 + 3 * (siren % 97)) % 97 == d[0] * 10 + d[1]
}

/// Poland: weighted sum modulo 11.
fn vat_pl(d: &[u32]) -> bool {
    const WEIGHTS: [u32; 9] = [6, 5, 7, 2, 3, 4, 5, 6, 7];
    d.iter().zip(WEIGHTS).map(|(x, w)| x * w).sum::<u32>() % 11 == d[9]
}

/// The Luhn check (Italy).
fn luhn(d: &[u32]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| if i % 2 == 1 { (2 * x) % 10 + (2 * x) / 10 } else { x })
        .sum();
    sum.is_multiple_of(10)
}

// ------------------------------------------------------ invoice number --

/// `Invoice No.`, `Invoice #`, `Rechnungsnummer`, `Rechnung Nr.`,
/// `Facture N°`... then the id, on the same line or first on the next.
static INVOICE_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)\b(?:invoice\s*(?:no\b\.?|nr\b\.?|number|num\b\.?|#|n[°º])|inv\.?\s*(?:no\b\.?|#)|rechnungs-?\s*(?:nummer|nr\b\.?)|rechnung\s*(?:nr\b\.?|nummer|#)|factur[ae]\s*(?:n[°º]\.?|no\b\.?|nr\b\.?|num[ée]ro))\s*[:#.]?\s*",
    )
});

static INVOICE_ID: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^[A-Za-z0-9](?:[A-Za-z0-9/_.\-]*[A-Za-z0-9])?"));

fn invoice_numbers(scan: &mut Scan, next_line: Option<&str>) {
    let is_id = |id: &str| id.chars().any(|c| c.is_ascii_digit()) && id.len() <= 32;
    for label in INVOICE_LABEL.find_iter(scan.text) {
        let rest = &scan.text[label.end()..];
        match INVOICE_ID.find(rest) {
            Some(id) if is_id(id.as_str()) => {
                let span = label.end() + id.start()..label.end() + id.end();
                if stands_alone(scan.text, &span) {
                    scan.add(FieldKind::InvoiceNumber, span, id.as_str().to_owned(), 0.95);
                }
            }
            _ if rest.trim().is_empty() => {
                let Some(next) = next_line else { continue };
                let start = next.len() - next.trim_start().len();
                if let Some(id) = INVOICE_ID.find(&next[start..]).filter(|id| is_id(id.as_str())) {
                    let span = start + id.start()..start + id.end();
                    if stands_alone(next, &span) {
                        let normalized = id.as_str().to_owned();
                        scan.hits.push(Hit {
                            kind: FieldKind::InvoiceNumber,
                            line: scan.line + 1,
                            span,
                            normalized,
                            certainty: 0.75,
                        });
                    }
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------- dates --

/// Month names (English, German, French) and abbreviations.
#[rustfmt::skip]
const MONTHS: &[(&str, u32)] = &[
    ("january", 1), ("januar", 1), ("jänner", 1), ("janvier", 1), ("jan", 1),
    ("february", 2), ("februar", 2), ("février", 2), ("fevrier", 2), ("feb", 2), ("févr", 2),
    ("march", 3), ("märz", 3), ("maerz", 3), ("mars", 3), ("mar", 3), ("mär", 3), ("mrz", 3),
    ("april", 4), ("avril", 4), ("apr", 4), ("avr", 4),
    ("may", 5), ("mai", 5),
    ("june", 6), ("juni", 6), ("juin", 6), ("jun", 6),
    ("july", 7), ("juli", 7), ("juillet", 7), ("jul", 7), ("juil", 7),
    ("august", 8), ("août", 8), ("aout", 8), ("aug", 8),
    ("september", 9), ("septembre", 9), ("sept", 9), ("sep", 9),
    ("october", 10), ("oktober", 10), ("octobre", 10), ("oct", 10), ("okt", 10),
    ("november", 11), ("novembre", 11), ("nov", 11),
    ("december", 12), ("dezember", 12), ("décembre", 12), ("decembre", 12), ("dec", 12),
    ("dez", 12), ("déc", 12),
];

/// The month names as a regex alternation, longest first.
fn month_names() -> String {
    let mut names: Vec<&str> = MONTHS.iter().map(|(name, _)| *name).collect();
    names.sort_by_key(|name| std::cmp::Reverse(name.chars().count()));
    names.join("|")
}

/// The number of a month name (any case).
fn month_number(name: &str) -> Option<u32> {
    let name = name.to_lowercase();
    MONTHS.iter().find(|(n, _)| *n == name).map(|&(_, m)| m)
}

static ISO_DATE: LazyLock<Regex> = LazyLock::new(|| regex(r"\b(\d{4})-(\d{2})-(\d{2})\b"));
static NUMERIC_DATE: LazyLock<Regex> =
    LazyLock::new(|| regex(r"\b(\d{1,2})([./\-])(\d{1,2})([./\-])(\d{4}|\d{2})\b"));
static DAY_MONTH_YEAR: LazyLock<Regex> = LazyLock::new(|| {
    regex(&format!(
        r"(?i)\b(\d{{1,2}})(?:st|nd|rd|th)?\.?\s*(?:of\s+)?({})\b\.?,?\s*(\d{{4}})\b",
        month_names()
    ))
});
static MONTH_DAY_YEAR: LazyLock<Regex> = LazyLock::new(|| {
    regex(&format!(r"(?i)\b({})\b\.?\s*(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", month_names()))
});

fn dates(scan: &mut Scan, config: &Config) {
    let number = |caps: &Captures, i: usize| caps.get(i).and_then(|m| m.as_str().parse().ok());
    let mut found: Vec<(Range<usize>, Option<String>, f32)> = Vec::new();
    for caps in ISO_DATE.captures_iter(scan.text) {
        if let (Some(whole), Some(year), Some(month), Some(day)) =
            (caps.get(0), number(&caps, 1), number(&caps, 2), number(&caps, 3))
        {
            found.push((whole.range(), iso_date(year, month, day), 0.98));
        }
    }
    for caps in NUMERIC_DATE.captures_iter(scan.text) {
        let Some(whole) = caps.get(0) else { continue };
        if caps[2] != caps[4] {
            continue;
        }
        let (Some(a), Some(b), Some(year)) = (number(&caps, 1), number(&caps, 3), number(&caps, 5))
        else {
            continue;
        };
        let (year, short) = if caps[5].len() == 2 {
            (if year < 70 { 2000 + year } else { 1900 + year }, 0.85)
        } else {
            (year, 1.0)
        };
        let month_first = config.slash_dates_month_first && &caps[2] != ".";
        let (day, month) = if month_first { (b, a) } else { (a, b) };
        let read = if let Some(date) = iso_date(year, month, day) {
            // Both orders valid: the assumed one, less sure.
            let certainty =
                if a == b || iso_date(year, day, month).is_none() { 0.95 } else { 0.85 };
            Some((date, certainty))
        } else if &caps[2] != "." {
            iso_date(year, day, month).map(|date| (date, 0.75))
        } else {
            None
        };
        let (date, certainty) = read.unzip();
        found.push((whole.range(), date, certainty.unwrap_or(0.0) * short));
    }
    for (re, day_at, month_at) in [(&*DAY_MONTH_YEAR, 1, 2), (&*MONTH_DAY_YEAR, 2, 1)] {
        for caps in re.captures_iter(scan.text) {
            let month = caps.get(month_at).and_then(|m| month_number(m.as_str()));
            if let (Some(whole), Some(year), Some(month), Some(day)) =
                (caps.get(0), number(&caps, 3), month, number(&caps, day_at))
            {
                found.push((whole.range(), iso_date(year, month, day), 0.95));
            }
        }
    }
    for (span, date, certainty) in found {
        if let Some(date) = date {
            scan.add(FieldKind::Date, span, date, certainty);
        }
    }
}

/// `YYYY-MM-DD` of a date that exists, between 1900 and 2100.
fn iso_date(year: u32, month: u32, day: u32) -> Option<String> {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    ((1900..=2100).contains(&year) && (1..=days).contains(&day))
        .then(|| format!("{year:04}-{month:02}-{day:02}"))
}

// -------------------------------------------------------------- amounts --

const NUMBER: &str = r"-?(?:\d{1,3}(?:[.,'’]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?)";
const CURRENCY: &str = r"US\$|EUR|Euro|USD|CHF|GBP|€|\$|£";

static AMOUNT: LazyLock<Regex> =
    LazyLock::new(|| regex(&format!(r"(?:({CURRENCY})\s?({NUMBER})|({NUMBER})\s?({CURRENCY}))")));

fn amounts(scan: &mut Scan) {
    for caps in AMOUNT.captures_iter(scan.text) {
        let (Some(whole), Some(currency), Some(number)) =
            (caps.get(0), caps.get(1).or_else(|| caps.get(4)), caps.get(2).or_else(|| caps.get(3)))
        else {
            continue;
        };
        if !stands_alone(scan.text, &whole.range()) || spaced_group(scan.text, &number.range()) {
            continue;
        }
        let (code, certainty) = match currency.as_str() {
            "€" => ("EUR", 0.9),
            "$" | "US$" => ("USD", 0.9),
            "£" => ("GBP", 0.9),
            "Euro" => ("EUR", 0.95),
            code => (code, 0.95),
        };
        if let Some(value) = decimal(number.as_str()) {
            scan.add(FieldKind::Amount, whole.range(), format!("{value} {code}"), certainty);
        }
    }
}

/// Whether the number at `span` may be only part of a number grouped by
/// spaces (`1 234,50`): a short number followed by a space and three digits,
/// or one starting with three digits after a digit and a space. Such amounts
/// are ambiguous and skipped rather than misread.
fn spaced_group(text: &str, span: &Range<usize>) -> bool {
    static LEADS: LazyLock<Regex> = LazyLock::new(|| regex(r"^-?\d{1,3}$"));
    static FOLLOWS: LazyLock<Regex> = LazyLock::new(|| regex(r"^ \d{3}\b"));
    static TRAILS: LazyLock<Regex> = LazyLock::new(|| regex(r"^\d{3}(?:\D|$)"));
    static PRECEDES: LazyLock<Regex> = LazyLock::new(|| regex(r"\d $"));
    let (before, number, after) = (&text[..span.start], &text[span.clone()], &text[span.end..]);
    (LEADS.is_match(number) && FOLLOWS.is_match(after))
        || (TRAILS.is_match(number) && PRECEDES.is_match(before))
}

/// A number written with either decimal convention (`1,234.50`,
/// `1.234,50`, `1'234.50`, `12,5`) as `1234.50`. The last `.` or `,` is the
/// decimal separator when one or two digits follow it; every other
/// separator groups thousands and must differ from the decimal one.
fn decimal(text: &str) -> Option<String> {
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let last_sep = digits.rfind(|c: char| !c.is_ascii_digit());
    let (int, frac, decimal_sep) = match last_sep {
        Some(at) if digits.len() - at - 1 <= 2 => {
            let sep = digits[at..].chars().next()?;
            (&digits[..at], &digits[at + sep.len_utf8()..], Some(sep))
        }
        _ => (digits, "", None),
    };
    let mut thousands = int.chars().filter(|c| !c.is_ascii_digit());
    let group_sep = thousands.next();
    if thousands.any(|c| Some(c) != group_sep) || (group_sep.is_some() && group_sep == decimal_sep)
    {
        return None;
    }
    let int: String = int.chars().filter(char::is_ascii_digit).collect();
    if group_sep.is_some() && int.starts_with('0') {
        return None;
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    Some(format!("{sign}{int}.{frac:0<2}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::steps::enrich::testing::{line, page};

    /// Extracts the fields of `text` (one line per `\n`) and compares them
    /// with `expect`: `kind value => normalized` per field, in line order.
    fn check(text: &str, expect: &[&str]) -> PageResult {
        let mut page = page(1000, 1400);
        page.result.lines =
            text.lines().enumerate().map(|(i, t)| line(t, 50.0, 50.0 + 30.0 * i as f32)).collect();
        ExtractFields::default().run(&mut page, &mut StepMeter::default()).unwrap();
        let got: Vec<String> = page
            .result
            .fields
            .iter()
            .map(|f| {
                let kind = serde_json::to_value(f.kind).unwrap();
                let normalized = f.normalized.as_deref().unwrap_or("");
                format!("{} {} => {}", kind.as_str().unwrap(), f.value, normalized)
            })
            .collect();
        assert_eq!(got, expect, "{text}");
        page.result
    }

    fn codes(result: &PageResult) -> Vec<&str> {
        result.diagnostics.iter().map(|d| d.code.as_str()).collect()
    }

    #[test]
    fn dates() {
        check("Date: 2026-11-03", &["date 2026-11-03 => 2026-11-03"]);
        check("Datum: 03.12.2026", &["date 03.12.2026 => 2026-12-03"]);
        check("Issued 03/12/2026", &["date 03/12/2026 => 2026-12-03"]);
        check("due 12/31/2026", &["date 12/31/2026 => 2026-12-31"]);
        check("Berlin, 3 December 2026", &["date 3 December 2026 => 2026-12-03"]);
        check("on Dec 3, 2026 we", &["date Dec 3, 2026 => 2026-12-03"]);
        check("am 3. Dezember 2026", &["date 3. Dezember 2026 => 2026-12-03"]);
        check("Lieferung 17. März 2026", &["date 17. März 2026 => 2026-03-17"]);
        check("29.02.2028 ok", &["date 29.02.2028 => 2028-02-29"]);
        check("Kassenbon 24.12.26", &["date 24.12.26 => 2026-12-24"]);
    }

    #[test]
    fn impossible_dates_are_not_fields() {
        check("31.02.2026 2026-13-01 2026-04-31 29.02.2027 31/31/2026 40 May 2026", &[]);
        check("03.12-2026 version 1.2.3", &[]);
    }

    #[test]
    fn month_first_slash_dates_by_config() {
        let mut page = page(1000, 1400);
        page.result.lines = vec![line("Date 03/12/2026 and 03.12.2026", 0.0, 0.0)];
        let step = ExtractFields::new(Config { slash_dates_month_first: true });
        step.run(&mut page, &mut StepMeter::default()).unwrap();
        let dates: Vec<_> =
            page.result.fields.iter().filter_map(|f| f.normalized.clone()).collect();
        assert_eq!(dates, ["2026-03-12", "2026-12-03"]);
    }

    #[test]
    fn amounts_in_both_decimal_conventions() {
        check("Total EUR 1,234.50", &["amount EUR 1,234.50 => 1234.50 EUR"]);
        check("Summe 1.234,50 €", &["amount 1.234,50 € => 1234.50 EUR"]);
        check("Price $12.00", &["amount $12.00 => 12.00 USD"]);
        check("Gebühr CHF 99", &["amount CHF 99 => 99.00 CHF"]);
        check("CHF 1'250.5 net", &["amount CHF 1'250.5 => 1250.50 CHF"]);
        check("12,5 EUR", &["amount 12,5 EUR => 12.50 EUR"]);
        check("EUR 1.234", &["amount EUR 1.234 => 1234.00 EUR"]);
        check("£1,000,000", &["amount £1,000,000 => 1000000.00 GBP"]);
        check("Credit € -5,00", &["amount € -5,00 => -5.00 EUR"]);
        check("TEUR 500 and 1,234,50 EUR and 12.50", &[]);
        // Grouped by spaces: ambiguous, so not read as 234.50 or 1.00.
        check("Summe 1 234,50 € / EUR 1 234,50", &[]);
        check("2 x EUR 12.00", &["amount EUR 12.00 => 12.00 EUR"]);
    }

    #[test]
    fn ibans_with_and_without_valid_checksums() {
        check(
            "IBAN: DE89 3704 0044 0532 0130 00 BIC: COBADEFFXXX",
            &["iban DE89 3704 0044 0532 0130 00 => DE89370400440532013000"],
        );
        check("GB82WEST12345698765432", &["iban GB82WEST12345698765432 => GB82WEST12345698765432"]);
        check(
            "CH93 0076 2011 6238 5295 7",
            &["iban CH93 0076 2011 6238 5295 7 => CH9300762011623852957"],
        );
        let result = check("IBAN DE89 3704 0044 0532 0130 01", &[]);
        assert_eq!(codes(&result), ["iban_checksum_invalid"]);
        let result = check("IBAN DE89 3704 0044 0532 0130", &[]);
        assert!(codes(&result).is_empty());
    }

    #[test]
    fn vat_ids_by_country_format_and_checksum() {
        check("USt-IdNr.: DE136695976", &["vat_id DE136695976 => DE136695976"]);
        check("UID ATU13585627", &["vat_id ATU13585627 => ATU13585627"]);
        check("TVA FR 40 303 265 045", &["vat_id FR 40 303 265 045 => FR40303265045"]);
        check("BTW NL123456789B01", &["vat_id NL123456789B01 => NL123456789B01"]);
        check("VAT GB 123 4567 89", &["vat_id GB 123 4567 89 => GB123456789"]);
        check("BE0428.759.497", &["vat_id BE0428.759.497 => BE0428759497"]);
        check("IVA IT00743110157", &["vat_id IT00743110157 => IT00743110157"]);
        check("NIP PL5260250274", &["vat_id PL5260250274 => PL5260250274"]);
        let result = check("USt-IdNr. DE123456789", &[]);
        assert_eq!(codes(&result), ["vat_id_checksum_invalid"]);
        check("AT12345678 DE12345 NL123456789", &[]);
    }

    #[test]
    fn invoice_numbers_and_emails() {
        check("Invoice No. INV-2026-0117", &["invoice_number INV-2026-0117 => INV-2026-0117"]);
        check("Invoice #4711", &["invoice_number 4711 => 4711"]);
        check("Rechnungsnummer: RE/2026/88", &["invoice_number RE/2026/88 => RE/2026/88"]);
        check("Rechnung Nr. 2026-5.", &["invoice_number 2026-5 => 2026-5"]);
        check("Invoice Number:\nA-17 dated", &["invoice_number A-17 => A-17"]);
        check("Invoice number pending", &[]);
        check(
            "Contact: Billing@Example.COM or x@y",
            &["email Billing@Example.COM => billing@example.com"],
        );
    }

    #[test]
    fn fields_take_line_confidence_and_word_boxes() {
        let result = check(
            "Total due EUR 1,234.50 by 2026-11-03",
            &["amount EUR 1,234.50 => 1234.50 EUR", "date 2026-11-03 => 2026-11-03"],
        );
        let amount = &result.fields[0];
        assert_eq!(amount.line, Some(0));
        assert!((amount.confidence - 0.95 * 0.95).abs() < 1e-6);
        // "EUR 1,234.50" spans the words at characters 10..22, 10 px each.
        let bbox = amount.bbox.unwrap();
        assert!((bbox.x0 - 150.0).abs() < 0.01 && (bbox.x1 - 270.0).abs() < 0.01, "{bbox:?}");
    }

    #[test]
    fn spans_inside_a_word_narrow_the_box() {
        let mut line = line("Datum:03.12.2026", 0.0, 0.0);
        line.words.clear();
        let bbox = span_bbox(&line, 6..16);
        assert!((bbox.x0 - 60.0).abs() < 0.01 && (bbox.x1 - 160.0).abs() < 0.01, "{bbox:?}");
    }
}
