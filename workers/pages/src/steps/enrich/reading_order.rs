//! Step `order_reading`: puts the page's lines in reading order and numbers
//! the layout regions in that order.
//!
//! Headers come first and footers last. The rest of the page is cut
//! recursively (XY-cut) into blocks, each a layout region or a line outside
//! every region: first into columns at vertical gutters, else into bands at
//! horizontal gaps, where consecutive bands that share a gutter are kept
//! together so that a two-column body whose paragraph breaks happen to line
//! up is still read column by column. Lines inside a region are read top to
//! bottom, and left to right within a row of text.

use schemas::{BBox, PageResult, RegionKind};
use serde::{Deserialize, Serialize};

use super::{median, rows, union};
use crate::error::StepError;
use crate::page::{Page, StepMeter};
use crate::steps::{Step, StepDef, StepSettings, check_settings, defaults_of};
use topology::catalogue::{SettingsProblem, StepInfo};

/// Settings of [`OrderReading`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Narrowest gutter between two columns, in median line heights.
    pub column_gap_lines: f32,
    /// Widest vertical gap inside a column, in median line heights; a wider
    /// one starts a new section of the page.
    pub max_column_gap_lines: f32,
    /// Least share of a line's box a region must cover to hold the line.
    pub min_line_overlap: f32,
}

impl Default for Config {
    fn default() -> Self {
        Config { column_gap_lines: 0.5, max_column_gap_lines: 2.0, min_line_overlap: 0.5 }
    }
}

/// Step `order_reading`.
#[derive(Debug, Default)]
pub struct OrderReading {
    config: Config,
}

impl OrderReading {
    /// The step with its settings.
    pub fn new(config: Config) -> Self {
        OrderReading { config }
    }
}

/// Step `order_reading`.
pub const STEP: StepDef = StepDef {
    info: StepInfo {
        name: "order_reading",
        stage: "enrich",
        models: &[],
        reads_document: false,
        after: &[],
        settings: check_settings::<Config>,
        summary: "lines in reading order: regions, then columns, top to bottom",
    },
    defaults: defaults_of::<Config>,
    build: Some(|_, settings| {
        Ok(Box::new(OrderReading::new(super::super::settings_of(STEP.info.name, settings)?)))
    }),
};

impl StepSettings for Config {
    fn check(&self) -> Result<(), SettingsProblem> {
        super::super::fraction("min_line_overlap", self.min_line_overlap)
    }
}

impl Step for OrderReading {
    fn name(&self) -> &str {
        STEP.info.name
    }

    fn run(&self, page: &mut Page, _meter: &mut StepMeter) -> Result<(), StepError> {
        order(&mut page.result, &self.config);
        Ok(())
    }
}

/// A unit of the page that is read as a whole.
#[derive(Debug, Clone, Copy)]
enum Block {
    /// A layout region with the lines it holds.
    Region(usize),
    /// A line outside every region.
    Line(usize),
}

/// Reorders `result.lines`, sets `Line::region` where missing and
/// `Region::reading_order`.
fn order(result: &mut PageResult, config: &Config) {
    assign_regions(result, config.min_line_overlap);

    let n_regions = result.regions.len();
    let mut region_lines = vec![Vec::new(); n_regions];
    let mut blocks: Vec<(Block, BBox)> = Vec::new();
    for (i, line) in result.lines.iter().enumerate() {
        match line.region {
            Some(r) => region_lines[r as usize].push(i),
            None => blocks.push((Block::Line(i), line.bbox)),
        }
    }
    let kind_of = |block: &Block| match block {
        Block::Region(r) => Some(result.regions[*r].kind),
        Block::Line(_) => None,
    };
    blocks.extend(
        result.regions.iter().enumerate().map(|(r, region)| (Block::Region(r), region.bbox)),
    );

    let (header, rest): (Vec<_>, Vec<_>) =
        blocks.iter().partition(|(block, _)| kind_of(block) == Some(RegionKind::Header));
    let (footer, body): (Vec<_>, Vec<_>) =
        rest.into_iter().partition(|(block, _)| kind_of(block) == Some(RegionKind::Footer));

    let heights: Vec<f32> = result.lines.iter().map(|line| line.bbox.height()).collect();
    let line_height = median(heights).max(1.0);
    let spacing = Spacing {
        column_gap: config.column_gap_lines * line_height,
        band_gap: config.max_column_gap_lines * line_height,
    };
    let mut ordered: Vec<Block> = Vec::with_capacity(blocks.len());
    for (part, cut) in [(header, false), (body, true), (footer, false)] {
        let boxes: Vec<BBox> = part.iter().map(|(_, bbox)| *bbox).collect();
        let mut sequence = Vec::with_capacity(boxes.len());
        if cut {
            xy_cut(&boxes, (0..boxes.len()).collect(), spacing, &mut sequence);
        } else {
            sequence.extend(rows(&boxes).into_iter().flatten());
        }
        ordered.extend(sequence.into_iter().map(|i| part[i].0));
    }

    let mut old: Vec<Option<schemas::Line>> =
        std::mem::take(&mut result.lines).into_iter().map(Some).collect();
    let mut next_region = 0;
    for block in ordered {
        let indices = match block {
            Block::Line(i) => vec![i],
            Block::Region(r) => {
                result.regions[r].reading_order = Some(next_region);
                next_region += 1;
                let members = &region_lines[r];
                let boxes: Vec<BBox> =
                    members.iter().filter_map(|&i| old[i].as_ref().map(|l| l.bbox)).collect();
                rows(&boxes).into_iter().flatten().map(|k| members[k]).collect()
            }
        };
        result.lines.extend(indices.into_iter().filter_map(|i| old[i].take()));
    }
}

/// Sets `Line::region` of lines without a (valid) one to the region covering
/// the largest share of the line's box, if that share is at least
/// `min_overlap`.
fn assign_regions(result: &mut PageResult, min_overlap: f32) {
    let regions = &result.regions;
    for line in &mut result.lines {
        if line.region.is_some_and(|r| (r as usize) < regions.len()) {
            continue;
        }
        let area = line.bbox.area();
        line.region = regions
            .iter()
            .enumerate()
            .map(|(r, region)| (r, region.bbox.intersection_area(&line.bbox)))
            .filter(|&(_, inter)| area > 0.0 && inter >= min_overlap * area)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(r, _)| r as u32);
    }
}

/// How far apart blocks must be to be cut apart, pixels.
#[derive(Debug, Clone, Copy)]
struct Spacing {
    /// Narrowest gutter between columns.
    column_gap: f32,
    /// Widest vertical gap between bands of the same columns.
    band_gap: f32,
}

/// Appends `idx` (indices into `boxes`) to `out` in reading order.
fn xy_cut(boxes: &[BBox], idx: Vec<usize>, spacing: Spacing, out: &mut Vec<usize>) {
    if idx.len() <= 1 {
        out.extend(idx);
        return;
    }
    let columns = split(boxes, &idx, Axis::X, spacing.column_gap);
    if columns.len() > 1 {
        for column in columns {
            xy_cut(boxes, column, spacing, out);
        }
        return;
    }
    let bands = split(boxes, &idx, Axis::Y, 0.0);
    if bands.len() > 1 {
        let groups = keep_columns_together(boxes, bands, spacing);
        if groups.len() > 1 {
            for group in groups {
                xy_cut(boxes, group, spacing, out);
            }
            return;
        }
    }
    let sub: Vec<BBox> = idx.iter().map(|&i| boxes[i]).collect();
    out.extend(rows(&sub).into_iter().flatten().map(|k| idx[k]));
}

#[derive(Debug, Clone, Copy)]
enum Axis {
    X,
    Y,
}

fn span(b: &BBox, axis: Axis) -> (f32, f32) {
    match axis {
        Axis::X => (b.x0, b.x1),
        Axis::Y => (b.y0, b.y1),
    }
}

/// Splits `idx` at every gap wider than `gap` between the boxes' extents
/// along `axis`, in increasing coordinate order.
fn split(boxes: &[BBox], idx: &[usize], axis: Axis, gap: f32) -> Vec<Vec<usize>> {
    let mut sorted = idx.to_vec();
    sorted.sort_by(|&a, &b| span(&boxes[a], axis).0.total_cmp(&span(&boxes[b], axis).0));
    let mut parts: Vec<Vec<usize>> = Vec::new();
    let mut end = f32::NEG_INFINITY;
    for i in sorted {
        let (start, stop) = span(&boxes[i], axis);
        match parts.last_mut() {
            Some(part) if start - end <= gap => part.push(i),
            _ => parts.push(vec![i]),
        }
        end = end.max(stop);
    }
    parts
}

/// Merges consecutive horizontal bands that belong to the same columns, so
/// that they are cut vertically together: a band with text on both sides of
/// a gutter starts or continues a run of bands sharing that gutter; a band
/// with text on one side only joins a run whose gutter it leaves free. Runs
/// break at wide vertical gaps (a new section) and runs without any
/// two-sided band fall apart into their bands.
fn keep_columns_together(
    boxes: &[BBox],
    bands: Vec<Vec<usize>>,
    spacing: Spacing,
) -> Vec<Vec<usize>> {
    let reach = |band: &[usize]| band.iter().map(|&i| boxes[i]).reduce(|a, b| union(&a, &b));
    let Some(extent) = bands.iter().flatten().map(|&i| boxes[i]).reduce(|a, b| union(&a, &b))
    else {
        return bands;
    };
    let gap = spacing.column_gap;
    struct Run {
        bands: Vec<Vec<usize>>,
        /// The gutters every band of the run leaves free.
        common: Intervals,
        two_sided: bool,
        bottom: f32,
    }
    let mut runs: Vec<Run> = Vec::new();
    for band in bands {
        let Some(own) = reach(&band) else { continue };
        let free = free_intervals(boxes, &band, (extent.x0, extent.x1), gap);
        let gutters: Intervals =
            free.iter().copied().filter(|&(s, e)| s > own.x0 && e < own.x1).collect();
        let two_sided = !gutters.is_empty();
        let candidates = if two_sided { gutters } else { free };
        if let Some(run) = runs.last_mut() {
            let shared = intersect(&run.common, &candidates, gap);
            if !shared.is_empty() && own.y0 - run.bottom <= spacing.band_gap {
                run.bands.push(band);
                run.common = shared;
                run.two_sided |= two_sided;
                run.bottom = run.bottom.max(own.y1);
                continue;
            }
        }
        runs.push(Run { bands: vec![band], common: candidates, two_sided, bottom: own.y1 });
    }
    let mut out = Vec::new();
    for run in runs {
        if run.two_sided && run.bands.len() > 1 {
            out.push(run.bands.into_iter().flatten().collect());
        } else {
            out.extend(run.bands);
        }
    }
    out
}

/// Intervals of a coordinate, start and end.
type Intervals = Vec<(f32, f32)>;

/// The x-intervals of `within` wider than `gap` that no box of `band` covers.
fn free_intervals(boxes: &[BBox], band: &[usize], within: (f32, f32), gap: f32) -> Intervals {
    let mut spans: Vec<(f32, f32)> = band.iter().map(|&i| (boxes[i].x0, boxes[i].x1)).collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut free = Vec::new();
    let mut cursor = within.0;
    for (start, stop) in spans {
        if start - cursor > gap {
            free.push((cursor, start));
        }
        cursor = cursor.max(stop);
    }
    if within.1 - cursor > gap {
        free.push((cursor, within.1));
    }
    free
}

/// The pairwise intersections of two sorted interval lists wider than `gap`.
fn intersect(a: &[(f32, f32)], b: &[(f32, f32)], gap: f32) -> Intervals {
    let mut out = Vec::new();
    for &(a0, a1) in a {
        for &(b0, b1) in b {
            let (s, e) = (a0.max(b0), a1.min(b1));
            if e - s > gap {
                out.push((s, e));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use schemas::{Line, Region, RegionKind};

    use super::*;
    use crate::steps::enrich::testing::{bbox, line, page};

    fn region(kind: RegionKind, x0: f32, y0: f32, x1: f32, y1: f32) -> Region {
        Region { kind, bbox: bbox(x0, y0, x1, y1), score: 0.9, reading_order: None }
    }

    /// Runs the step on `lines` and `regions` and checks the texts in
    /// reading order.
    fn check(lines: Vec<Line>, regions: Vec<Region>, expect: &[&str]) -> PageResult {
        let mut page = page(1000, 1400);
        page.result.lines = lines;
        page.result.regions = regions;
        OrderReading::default().run(&mut page, &mut StepMeter::default()).unwrap();
        let texts: Vec<&str> = page.result.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, expect);
        page.result
    }

    /// A two-column article without layout regions: full-width title, two
    /// columns whose paragraph breaks line up (the left one a line longer),
    /// a full-width closing line.
    #[test]
    fn two_columns_read_column_by_column() {
        let title = "A study of page streams across two columns of text";
        let mut lines = vec![line(title, 100.0, 60.0)];
        for (col, x, n_rows) in [("L", 100.0, 3), ("R", 520.0, 2)] {
            for (para, y0) in [(1, 150.0), (2, 260.0)] {
                for row in 0..n_rows {
                    let y = y0 + row as f32 * 28.0;
                    lines.push(line(&format!("{col}{para}.{row} text of the column"), x, y));
                }
            }
        }
        lines.push(line("Closing remarks across the whole page width ok", 100.0, 400.0));
        lines.reverse();
        check(
            lines,
            vec![],
            &[
                title,
                "L1.0 text of the column",
                "L1.1 text of the column",
                "L1.2 text of the column",
                "L2.0 text of the column",
                "L2.1 text of the column",
                "L2.2 text of the column",
                "R1.0 text of the column",
                "R1.1 text of the column",
                "R2.0 text of the column",
                "R2.1 text of the column",
                "Closing remarks across the whole page width ok",
            ],
        );
    }

    /// Regions from a layout model, listed out of order; the header comes
    /// first and the footer last, and lines take the region holding them.
    #[test]
    fn regions_are_numbered_headers_first_footers_last() {
        let regions = vec![
            region(RegionKind::Footer, 90.0, 1300.0, 900.0, 1340.0),
            region(RegionKind::Text, 510.0, 140.0, 900.0, 400.0),
            region(RegionKind::Text, 90.0, 140.0, 480.0, 400.0),
            region(RegionKind::Title, 90.0, 80.0, 900.0, 120.0),
            region(RegionKind::Header, 90.0, 10.0, 900.0, 50.0),
            region(RegionKind::Figure, 90.0, 420.0, 900.0, 800.0),
        ];
        let lines = vec![
            line("Page 1 of 2", 100.0, 1310.0),
            line("right column", 520.0, 150.0),
            line("left column first", 100.0, 150.0),
            line("left column second", 100.0, 180.0),
            line("Title", 100.0, 90.0),
            line("ACME Quarterly", 100.0, 20.0),
        ];
        let result = check(
            lines,
            regions,
            &[
                "ACME Quarterly",
                "Title",
                "left column first",
                "left column second",
                "right column",
                "Page 1 of 2",
            ],
        );
        let order: Vec<Option<u32>> = result.regions.iter().map(|r| r.reading_order).collect();
        assert_eq!(order, [Some(5), Some(3), Some(2), Some(1), Some(0), Some(4)]);
        let held: Vec<Option<u32>> = result.lines.iter().map(|l| l.region).collect();
        assert_eq!(held, [Some(4), Some(3), Some(2), Some(2), Some(1), Some(0)]);
    }

    /// An invoice head: sender and recipient on the left, the invoice data on
    /// the right, then a full-width table whose cells sit in rows that are
    /// not perfectly level.
    #[test]
    fn invoice_head_and_table_rows() {
        let lines = vec![
            line("ACME GmbH", 100.0, 50.0),
            line("Hauptstr. 1, Berlin", 100.0, 78.0),
            line("Invoice No. 2026-117", 650.0, 60.0),
            line("Date 2026-11-03", 650.0, 88.0),
            line("Item", 100.0, 300.0),
            line("Qty", 500.0, 302.0),
            line("Price", 700.0, 298.0),
            line("Widget", 100.0, 330.0),
            line("2", 500.0, 333.0),
            line("EUR 10.00", 700.0, 329.0),
        ];
        let table = region(RegionKind::Table, 90.0, 290.0, 900.0, 360.0);
        check(
            lines.into_iter().rev().collect(),
            vec![table],
            &[
                "ACME GmbH",
                "Hauptstr. 1, Berlin",
                "Invoice No. 2026-117",
                "Date 2026-11-03",
                "Item",
                "Qty",
                "Price",
                "Widget",
                "2",
                "EUR 10.00",
            ],
        );
    }

    #[test]
    fn empty_page_is_fine() {
        check(vec![], vec![region(RegionKind::Figure, 0.0, 0.0, 10.0, 10.0)], &[]);
    }
}
