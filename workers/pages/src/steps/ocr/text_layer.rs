//! Where a PDF's own text layer can stand in for OCR: per layout text
//! region (or for the whole page when there are none), enough readable
//! characters inside means the region is covered and is not read again.

use schemas::{BBox, Line, Region, RegionKind};
use serde::{Deserialize, Serialize};

use crate::steps::enrich::{centre, contains};

/// When the text layer covers an area.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Least non-blank text-layer characters inside an area for it to be
    /// covered.
    pub min_chars: usize,
    /// Least share of those characters that are readable (not U+FFFD,
    /// control or private-use characters, which broken font encodings give).
    pub min_readable: f32,
    /// A detected line with at least this share of its box in covered areas
    /// is not read again.
    pub max_overlap: f32,
}

impl Default for Config {
    fn default() -> Self {
        Config { min_chars: 3, min_readable: 0.9, max_overlap: 0.5 }
    }
}

/// What the text layer covers on a page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    /// Covered areas: covered regions and the text-layer lines used.
    pub covered: Vec<BBox>,
    /// Every area is covered: nothing is left for OCR.
    pub complete: bool,
    /// The text-layer lines to keep (those not in an uncovered area).
    pub lines: Vec<Line>,
}

impl Coverage {
    /// Decides per text region of `regions` (or for `page` as a whole when
    /// there are none) whether `text_layer` covers it.
    pub fn of(text_layer: &[Line], regions: &[Region], page: BBox, config: &Config) -> Coverage {
        let mut areas: Vec<BBox> =
            regions.iter().filter(|r| r.kind != RegionKind::Figure).map(|r| r.bbox).collect();
        if areas.is_empty() {
            areas.push(page);
        }
        let covered_areas: Vec<bool> = areas
            .iter()
            .map(|area| {
                let (mut chars, mut readable) = (0usize, 0usize);
                // Words, not lines: PDFium may join text on one baseline
                // across regions (a footer's left and right parts).
                let words = text_layer.iter().flat_map(|l| &l.words);
                let text = words.filter(|w| contains(area, centre(&w.bbox)));
                for c in text.flat_map(|w| w.text.chars()).filter(|c| !c.is_whitespace()) {
                    chars += 1;
                    readable += usize::from(is_readable(c));
                }
                chars >= config.min_chars && readable as f32 >= config.min_readable * chars as f32
            })
            .collect();
        let lines: Vec<Line> = text_layer
            .iter()
            .filter(|l| {
                let c = centre(&l.bbox);
                let mut holders =
                    areas.iter().zip(&covered_areas).filter(|(a, _)| contains(a, c)).peekable();
                holders.peek().is_none() || holders.any(|(_, covered)| *covered)
            })
            .cloned()
            .collect();
        let covered = areas
            .iter()
            .zip(&covered_areas)
            .filter(|(_, c)| **c)
            .map(|(a, _)| *a)
            .chain(lines.iter().map(|l| l.bbox))
            .collect();
        let complete = covered_areas.iter().all(|c| *c);
        Coverage { covered, complete, lines }
    }

    /// Whether at least `max_overlap` of `bbox` lies in covered areas.
    pub fn covers(&self, bbox: &BBox, max_overlap: f32) -> bool {
        let area = bbox.area();
        if area <= 0.0 {
            return self.covered.iter().any(|c| contains(c, centre(bbox)));
        }
        let inside: f32 = self.covered.iter().map(|c| c.intersection_area(bbox)).sum();
        inside.min(area) >= max_overlap * area
    }
}

fn is_readable(c: char) -> bool {
    let private_use = matches!(c, '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..);
    !(c == char::REPLACEMENT_CHARACTER || c.is_control() || private_use)
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{TextSource, Word};

    /// A text-layer line of one word (text-layer lines always have words).
    fn line(text: &str, x0: f32, y0: f32, x1: f32, y1: f32) -> Line {
        let bbox = BBox { x0, y0, x1, y1 };
        Line {
            text: text.into(),
            bbox,
            quad: None,
            confidence: 1.0,
            source: TextSource::TextLayer,
            region: None,
            words: vec![Word { text: text.into(), bbox, confidence: 1.0 }],
        }
    }

    fn region(kind: RegionKind, x0: f32, y0: f32, x1: f32, y1: f32) -> Region {
        Region { kind, bbox: BBox { x0, y0, x1, y1 }, score: 0.9, reading_order: None }
    }

    const PAGE: BBox = BBox { x0: 0.0, y0: 0.0, x1: 1000.0, y1: 1400.0 };

    #[test]
    fn a_page_without_regions_is_covered_by_enough_text() {
        let layer = vec![line("Invoice 2024-17", 100.0, 100.0, 400.0, 130.0)];
        let cover = Coverage::of(&layer, &[], PAGE, &Config::default());
        assert!(cover.complete);
        assert_eq!(cover.lines.len(), 1);
        let cover = Coverage::of(&[line("a", 0.0, 0.0, 9.0, 9.0)], &[], PAGE, &Config::default());
        assert!(!cover.complete);
        assert!(cover.lines.is_empty());
    }

    #[test]
    fn words_count_where_they_are_not_where_their_line_is() {
        // One baseline across two footer regions, as PDFium may join it.
        let left = Word {
            text: "Northern".into(),
            bbox: BBox { x0: 100.0, y0: 1300.0, x1: 300.0, y1: 1320.0 },
            confidence: 1.0,
        };
        let right = Word {
            text: "Page 1".into(),
            bbox: BBox { x0: 800.0, y0: 1300.0, x1: 900.0, y1: 1320.0 },
            confidence: 1.0,
        };
        let mut joined = line("Northern Page 1", 100.0, 1300.0, 900.0, 1320.0);
        joined.words = vec![left, right];
        let regions = [
            region(RegionKind::Footer, 90.0, 1290.0, 320.0, 1330.0),
            region(RegionKind::Footer, 790.0, 1290.0, 910.0, 1330.0),
        ];
        let cover = Coverage::of(&[joined], &regions, PAGE, &Config::default());
        assert!(cover.complete);
    }

    #[test]
    fn regions_are_decided_one_by_one() {
        let regions = [
            region(RegionKind::Text, 50.0, 50.0, 600.0, 300.0),
            region(RegionKind::Table, 50.0, 400.0, 900.0, 800.0),
            region(RegionKind::Figure, 700.0, 20.0, 950.0, 200.0),
        ];
        let layer = vec![
            line("Dear customer, thank you", 60.0, 60.0, 500.0, 90.0),
            line("\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}", 60.0, 420.0, 500.0, 450.0),
            line("Page 1 of 2", 400.0, 1300.0, 600.0, 1330.0),
        ];
        let cover = Coverage::of(&layer, &regions, PAGE, &Config::default());
        assert!(!cover.complete, "the table's text layer is unreadable");
        let texts: Vec<&str> = cover.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["Dear customer, thank you", "Page 1 of 2"]);
        let config = Config::default();
        assert!(
            cover.covers(&BBox { x0: 70.0, y0: 100.0, x1: 300.0, y1: 130.0 }, config.max_overlap)
        );
        assert!(
            !cover.covers(&BBox { x0: 70.0, y0: 500.0, x1: 300.0, y1: 530.0 }, config.max_overlap)
        );
        assert!(
            !cover.covers(&BBox { x0: 720.0, y0: 50.0, x1: 900.0, y1: 80.0 }, config.max_overlap)
        );
    }
}
