//! Step `build_tables`: table cells from the ruling lines of the page image,
//! filled with the words whose centre falls in each cell.
//!
//! The page is binarised (Otsu) once; horizontal and vertical runs of dark
//! pixels long enough to be rules are merged into ruling lines (thick and
//! double lines become one, filled areas are dropped), and rules that cross
//! each other form grids. A table region takes the grid lying in it; a
//! missing separator inside a grid makes a spanning cell. A table region
//! without a grid gets columns inferred from the gaps between its words,
//! which a diagnostic says. A ruled grid with text outside every table
//! region is built too (layout models miss tables), at most
//! [`Config::max_unlabelled`] of them.

use image::RgbImage;
use schemas::{BBox, DiagnosticLevel, Line, PageResult, RegionKind, Table, TableCell};
use serde::{Deserialize, Serialize};

use super::{centre, contains, diagnostic, ink_level, median, rows};
use crate::error::StepError;
use crate::page::{Page, StepMeter};
use crate::steps::{Step, StepDef, StepSettings, check_settings, defaults_of};
use topology::catalogue::StepInfo;

/// Settings of [`BuildTables`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Shortest ruling line, as a share of the page's shorter side.
    pub min_rule_share: f32,
    /// Longest break in a ruling line, pixels (scanned lines are broken).
    pub max_rule_gap_px: u32,
    /// Rules closer than this share of the page's shorter side are one
    /// (thick or double lines).
    pub merge_share: f32,
    /// Thicker "rules" than this share of the page's shorter side are filled
    /// areas, not rules.
    pub max_thickness_share: f32,
    /// Narrowest gap between inferred columns, in median word heights.
    pub column_gap_words: f32,
    /// Most tables built from ruled grids outside table regions.
    pub max_unlabelled: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_rule_share: 0.02,
            max_rule_gap_px: 2,
            merge_share: 0.004,
            max_thickness_share: 0.01,
            column_gap_words: 1.0,
            max_unlabelled: 4,
        }
    }
}

/// Step `build_tables`.
#[derive(Debug, Default)]
pub struct BuildTables {
    config: Config,
}

impl BuildTables {
    /// The step with its settings.
    pub fn new(config: Config) -> Self {
        BuildTables { config }
    }
}

/// Step `build_tables`.
pub const STEP: StepDef = StepDef {
    info: StepInfo {
        name: "build_tables",
        stage: "enrich",
        models: &[],
        reads_document: false,
        after: &[],
        settings: check_settings::<Config>,
        summary: "tables with cells, from ruling lines or word columns",
    },
    defaults: defaults_of::<Config>,
    build: Some(|_, settings| {
        Ok(Box::new(BuildTables::new(super::super::settings_of(STEP.info.name, settings)?)))
    }),
};

impl StepSettings for Config {}

impl Step for BuildTables {
    fn name(&self) -> &str {
        STEP.info.name
    }

    fn run(&self, page: &mut Page, _meter: &mut StepMeter) -> Result<(), StepError> {
        let grids = page.image.as_ref().map(|image| grids(image, &self.config)).unwrap_or_default();
        build(&mut page.result, grids, &self.config, self.name());
        Ok(())
    }
}

/// A ruling line: its position across, and its extent along it, pixels.
#[derive(Debug, Clone, Copy)]
struct Rule {
    at: f32,
    from: f32,
    to: f32,
}

impl Rule {
    /// Whether this rule and the perpendicular `other` cross (within `tol`).
    fn crosses(&self, other: &Rule, tol: f32) -> bool {
        (self.from - tol..=self.to + tol).contains(&other.at)
            && (other.from - tol..=other.to + tol).contains(&self.at)
    }
}

/// A grid of ruling lines and its (possibly spanning) cells, text empty.
#[derive(Debug)]
struct Grid {
    bbox: BBox,
    n_rows: u32,
    n_cols: u32,
    cells: Vec<TableCell>,
}

/// The ruled grids of a page image.
fn grids(image: &RgbImage, config: &Config) -> Vec<Grid> {
    let gray = image::imageops::grayscale(image);
    let level = ink_level(&gray);
    let (width, height) = (gray.width() as usize, gray.height() as usize);
    let dark: Vec<bool> = gray.pixels().map(|p| p.0[0] <= level).collect();
    let short = width.min(height) as f32;
    let scan = Scan {
        min_len: ((config.min_rule_share * short) as usize).max(8),
        max_gap: config.max_rule_gap_px as usize,
        merge: (config.merge_share * short).max(2.0),
        max_thickness: (config.max_thickness_share * short).max(3.0),
    };
    let horizontal = scan.rules(height, width, |y, x| dark[y * width + x]);
    let vertical = scan.rules(width, height, |x, y| dark[y * width + x]);
    connected(&horizontal, &vertical, scan.merge)
        .into_iter()
        .filter_map(|(h, v)| grid(&h, &v, scan.merge))
        .collect()
}

/// How ruling lines are found.
struct Scan {
    min_len: usize,
    max_gap: usize,
    merge: f32,
    max_thickness: f32,
}

impl Scan {
    /// The rules along the inner axis: `dark(outer, inner)` says whether a
    /// pixel is dark.
    fn rules(
        &self,
        n_outer: usize,
        n_inner: usize,
        dark: impl Fn(usize, usize) -> bool,
    ) -> Vec<Rule> {
        // Rules being built: first and last line across, extent along.
        let mut open: Vec<(usize, usize, usize, usize)> = Vec::new();
        let mut done = Vec::new();
        for o in 0..n_outer {
            let mut runs = Vec::new();
            let mut run: Option<(usize, usize)> = None;
            for i in 0..n_inner {
                if !dark(o, i) {
                    continue;
                }
                run = match run {
                    Some((start, last)) if i - last <= self.max_gap + 1 => Some((start, i)),
                    Some(ended) => {
                        runs.push(ended);
                        Some((i, i))
                    }
                    None => Some((i, i)),
                };
            }
            runs.extend(run);
            for (from, to) in runs.into_iter().filter(|(f, t)| t - f + 1 >= self.min_len) {
                let joined = open.iter_mut().find(|(_, last, f, t)| {
                    let overlap = to.min(*t) as f32 - from.max(*f) as f32;
                    (o - *last) as f32 <= self.merge
                        && overlap >= 0.5 * (to - from).min(t - f) as f32
                });
                match joined {
                    Some(rule) => *rule = (rule.0, o, rule.2.min(from), rule.3.max(to)),
                    None => open.push((o, o, from, to)),
                }
            }
            let (closed, still): (Vec<_>, Vec<_>) =
                open.into_iter().partition(|(_, last, _, _)| (o - last) as f32 > self.merge);
            done.extend(closed);
            open = still;
        }
        done.extend(open);
        done.into_iter()
            .filter(|(first, last, _, _)| (last - first + 1) as f32 <= self.max_thickness)
            .map(|(first, last, from, to)| Rule {
                at: (first + last) as f32 / 2.0,
                from: from as f32,
                to: to as f32,
            })
            .collect()
    }
}

/// Groups of horizontal and vertical rules connected by crossings.
fn connected(horizontal: &[Rule], vertical: &[Rule], tol: f32) -> Vec<(Vec<Rule>, Vec<Rule>)> {
    let n_h = horizontal.len();
    let mut parent: Vec<usize> = (0..n_h + vertical.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (h, hr) in horizontal.iter().enumerate() {
        for (v, vr) in vertical.iter().enumerate() {
            if hr.crosses(vr, tol) {
                let (a, b) = (root(&mut parent, h), root(&mut parent, n_h + v));
                parent[a] = b;
            }
        }
    }
    let mut groups: Vec<(usize, Vec<Rule>, Vec<Rule>)> = Vec::new();
    for i in 0..parent.len() {
        let r = root(&mut parent, i);
        let at = match groups.iter().position(|g| g.0 == r) {
            Some(at) => at,
            None => {
                groups.push((r, Vec::new(), Vec::new()));
                groups.len() - 1
            }
        };
        match horizontal.get(i) {
            Some(rule) => groups[at].1.push(*rule),
            None => groups[at].2.push(vertical[i - n_h]),
        }
    }
    groups
        .into_iter()
        .map(|(_, h, v)| (h, v))
        .filter(|(h, v)| h.len() >= 2 && v.len() >= 2)
        .collect()
}

/// The grid of a connected group of rules: row and column boundaries at the
/// rules that cross at least two others (plus the ends of the outer rules
/// of open tables), cells merged where a separator is missing.
fn grid(horizontal: &[Rule], vertical: &[Rule], tol: f32) -> Option<Grid> {
    let crossing = |rules: &[Rule], others: &[Rule]| -> Vec<Rule> {
        rules
            .iter()
            .filter(|r| others.iter().filter(|o| r.crosses(o, tol)).count() >= 2)
            .copied()
            .collect()
    };
    let h = crossing(horizontal, vertical);
    let v = crossing(vertical, &h);
    let h = crossing(&h, &v);
    let mut ys: Vec<f32> = h.iter().map(|r| r.at).collect();
    let mut xs: Vec<f32> = v.iter().map(|r| r.at).collect();
    // Open tables: horizontal rules reach past the outermost vertical ones.
    xs.extend(h.iter().map(|r| r.from).reduce(f32::min));
    xs.extend(h.iter().map(|r| r.to).reduce(f32::max));
    ys.extend(v.iter().map(|r| r.from).reduce(f32::min));
    ys.extend(v.iter().map(|r| r.to).reduce(f32::max));
    let (xs, ys) = (positions(xs, 2.0 * tol), positions(ys, 2.0 * tol));
    if xs.len() < 2 || ys.len() < 2 {
        return None;
    }
    let (n_rows, n_cols) = (ys.len() - 1, xs.len() - 1);
    let slot = |r: usize, c: usize| r * n_cols + c;
    let mut group: Vec<usize> = (0..n_rows * n_cols).collect();
    let merge = |a: usize, b: usize, group: &mut [usize]| {
        let (ga, gb) = (group[a], group[b]);
        group.iter_mut().filter(|g| **g == gb).for_each(|g| *g = ga);
    };
    for r in 0..n_rows {
        for c in 0..n_cols {
            if c + 1 < n_cols && covered(&v, xs[c + 1], ys[r], ys[r + 1], tol) < 0.5 {
                merge(slot(r, c), slot(r, c + 1), &mut group);
            }
            if r + 1 < n_rows && covered(&h, ys[r + 1], xs[c], xs[c + 1], tol) < 0.5 {
                merge(slot(r, c), slot(r + 1, c), &mut group);
            }
        }
    }
    let mut cells = Vec::new();
    for r in 0..n_rows {
        for c in 0..n_cols {
            let g = group[slot(r, c)];
            let members: Vec<(usize, usize)> = (0..group.len())
                .filter(|&s| group[s] == g)
                .map(|s| (s / n_cols, s % n_cols))
                .collect();
            let (r0, c0) = (members.iter().map(|m| m.0).min(), members.iter().map(|m| m.1).min());
            let (r1, c1) = (members.iter().map(|m| m.0).max(), members.iter().map(|m| m.1).max());
            let (Some(r0), Some(c0), Some(r1), Some(c1)) = (r0, c0, r1, c1) else { continue };
            let rectangle = members.len() == (r1 - r0 + 1) * (c1 - c0 + 1);
            let (r1, c1) = if rectangle { (r1, c1) } else { (r, c) };
            if rectangle && (r, c) != (r0, c0) {
                continue;
            }
            cells.push(TableCell {
                row: r as u32,
                col: c as u32,
                row_span: (r1 - r + 1) as u32,
                col_span: (c1 - c + 1) as u32,
                bbox: BBox { x0: xs[c], y0: ys[r], x1: xs[c1 + 1], y1: ys[r1 + 1] },
                text: String::new(),
            });
        }
    }
    let bbox = BBox { x0: xs[0], y0: ys[0], x1: xs[n_cols], y1: ys[n_rows] };
    Some(Grid { bbox, n_rows: n_rows as u32, n_cols: n_cols as u32, cells })
}

/// Sorted positions, those closer than `tol` merged into their mean.
fn positions(mut values: Vec<f32>, tol: f32) -> Vec<f32> {
    values.sort_by(f32::total_cmp);
    let mut clusters: Vec<(f32, f32, usize)> = Vec::new();
    for v in values {
        match clusters.last_mut() {
            Some((last, sum, n)) if v - *last <= tol => {
                *last = v;
                *sum += v;
                *n += 1;
            }
            _ => clusters.push((v, v, 1)),
        }
    }
    clusters.into_iter().map(|(_, sum, n)| sum / n as f32).collect()
}

/// The share of the interior of `from..to` covered by rules at `at`.
fn covered(rules: &[Rule], at: f32, from: f32, to: f32, tol: f32) -> f32 {
    let (from, to) = (from + tol, to - tol);
    if to <= from {
        return 1.0;
    }
    let mut spans: Vec<(f32, f32)> = rules
        .iter()
        .filter(|r| (r.at - at).abs() <= tol)
        .map(|r| (r.from.max(from), r.to.min(to)))
        .filter(|(f, t)| t > f)
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut total, mut cursor) = (0.0, from);
    for (f, t) in spans {
        total += (t - f.max(cursor)).max(0.0);
        cursor = cursor.max(t);
    }
    total / (to - from)
}

/// A word (or a line without words) of the page: line index, text, box.
type Piece<'a> = (usize, &'a str, BBox);

fn pieces(lines: &[Line]) -> Vec<Piece<'_>> {
    lines
        .iter()
        .enumerate()
        .flat_map(|(i, line)| {
            let words: Vec<Piece> = if line.words.is_empty() {
                vec![(i, line.text.as_str(), line.bbox)]
            } else {
                line.words.iter().map(|w| (i, w.text.as_str(), w.bbox)).collect()
            };
            words
        })
        .collect()
}

/// Fills each cell with the words whose centre falls in it, in reading
/// order: words of one line joined by spaces, lines by line breaks.
fn fill(cells: &mut [TableCell], pieces: &[Piece]) -> usize {
    let mut last_line: Vec<Option<usize>> = vec![None; cells.len()];
    for &(line, text, bbox) in pieces {
        let Some(c) = cells.iter().position(|cell| contains(&cell.bbox, centre(&bbox))) else {
            continue;
        };
        let cell = &mut cells[c];
        if !cell.text.is_empty() {
            cell.text.push(if last_line[c] == Some(line) { ' ' } else { '\n' });
        }
        cell.text.push_str(text);
        last_line[c] = Some(line);
    }
    cells.iter().filter(|cell| !cell.text.is_empty()).count()
}

/// A table from the words of `area` where they line up in at least two
/// columns (gaps wider than `gap`) and two rows.
fn infer_columns(area: &BBox, pieces: &[Piece], gap: f32) -> Option<Table> {
    let inside: Vec<&Piece> = pieces.iter().filter(|p| contains(area, centre(&p.2))).collect();
    let boxes: Vec<BBox> = inside.iter().map(|p| p.2).collect();
    let mut spans: Vec<(f32, f32)> = boxes.iter().map(|b| (b.x0, b.x1)).collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut columns: Vec<(f32, f32)> = Vec::new();
    for (from, to) in spans {
        match columns.last_mut() {
            Some(col) if from - col.1 <= gap => col.1 = col.1.max(to),
            _ => columns.push((from, to)),
        }
    }
    let rows = rows(&boxes);
    if columns.len() < 2 || rows.len() < 2 {
        return None;
    }
    let mut cells = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        let y0 = row.iter().map(|&i| boxes[i].y0).fold(f32::INFINITY, f32::min);
        let y1 = row.iter().map(|&i| boxes[i].y1).fold(f32::NEG_INFINITY, f32::max);
        for (c, &(x0, x1)) in columns.iter().enumerate() {
            let words: Vec<&str> = row
                .iter()
                .filter(|&&i| (x0..=x1).contains(&centre(&boxes[i])[0]))
                .map(|&i| inside[i].1)
                .collect();
            cells.push(TableCell {
                row: r as u32,
                col: c as u32,
                row_span: 1,
                col_span: 1,
                bbox: BBox { x0, y0, x1, y1 },
                text: words.join(" "),
            });
        }
    }
    let bbox = boxes.iter().copied().reduce(|a, b| super::union(&a, &b))?;
    Some(Table {
        bbox,
        region: None,
        n_rows: rows.len() as u32,
        n_cols: columns.len() as u32,
        cells,
    })
}

fn build(result: &mut PageResult, grids: Vec<Grid>, config: &Config, step: &str) {
    let pieces = pieces(&result.lines);
    let heights: Vec<f32> = pieces.iter().map(|p| p.2.height()).collect();
    let gap = (config.column_gap_words * median(heights)).max(1.0);
    let mut used = vec![false; grids.len()];
    let mut tables = Vec::new();
    let mut notes = Vec::new();
    for (r, region) in
        result.regions.iter().enumerate().filter(|(_, r)| r.kind == RegionKind::Table)
    {
        let best = grids
            .iter()
            .enumerate()
            .filter(|(g, _)| !used[*g])
            .map(|(g, grid)| (g, grid.bbox.intersection_area(&region.bbox)))
            .filter(|&(g, inter)| inter >= 0.5 * grids[g].bbox.area().min(region.bbox.area()))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((g, _)) = best {
            used[g] = true;
            if grids[g].cells.len() > 1 {
                tables.push(table(&grids[g], Some(r as u32), &pieces));
                continue;
            }
        }
        match infer_columns(&region.bbox, &pieces, gap) {
            Some(mut table) => {
                let message = format!(
                    "table region {r} has no ruling grid: {} columns inferred from word gaps",
                    table.n_cols
                );
                notes.push(diagnostic(
                    DiagnosticLevel::Info,
                    step,
                    "table_columns_inferred",
                    message,
                ));
                table.region = Some(r as u32);
                tables.push(table);
            }
            None => {
                let message =
                    format!("table region {r} has neither a ruling grid nor aligned columns");
                notes.push(diagnostic(DiagnosticLevel::Info, step, "table_not_built", message));
            }
        }
    }
    let mut unlabelled: Vec<Table> = grids
        .iter()
        .zip(&used)
        .filter(|(grid, used)| {
            !**used
                && grid.cells.len() > 1
                && !result.regions.iter().any(|r| {
                    r.kind == RegionKind::Table && r.bbox.intersection_area(&grid.bbox) > 0.0
                })
        })
        .map(|(grid, _)| table(grid, None, &pieces))
        .filter(|table| table.cells.iter().filter(|c| !c.text.is_empty()).count() >= 2)
        .collect();
    unlabelled.sort_by(|a, b| b.bbox.area().total_cmp(&a.bbox.area()));
    unlabelled.truncate(config.max_unlabelled);
    for table in &unlabelled {
        let b = table.bbox;
        let message = format!(
            "ruled {}x{} grid at ({:.0}, {:.0})-({:.0}, {:.0}) built as a table outside any table region",
            table.n_rows, table.n_cols, b.x0, b.y0, b.x1, b.y1
        );
        notes.push(diagnostic(DiagnosticLevel::Info, step, "table_without_region", message));
    }
    tables.extend(unlabelled);
    result.tables.extend(tables);
    result.diagnostics.extend(notes);
}

/// The table of a grid, cells filled.
fn table(grid: &Grid, region: Option<u32>, pieces: &[Piece]) -> Table {
    let mut cells = grid.cells.clone();
    fill(&mut cells, pieces);
    Table { bbox: grid.bbox, region, n_rows: grid.n_rows, n_cols: grid.n_cols, cells }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use schemas::Region;

    use super::*;
    use crate::steps::enrich::testing::{bar, bbox, blank, line, page};

    /// A page of 900 x 700 with a ruled grid: rows at `ys`, columns at
    /// `xs`, 2 px lines; `skip` leaves out vertical separators as
    /// (row, column boundary index), to make spanning cells.
    fn ruled(xs: &[u32], ys: &[u32], skip: &[(usize, usize)]) -> RgbImage {
        let mut image = blank(900, 700);
        let (x0, x1) = (xs[0], xs[xs.len() - 1]);
        for &y in ys {
            bar(&mut image, x0, y, x1 - x0 + 2, 2);
        }
        for (c, &x) in xs.iter().enumerate() {
            for r in 0..ys.len() - 1 {
                if !skip.contains(&(r, c)) {
                    bar(&mut image, x, ys[r], 2, ys[r + 1] - ys[r] + 2);
                }
            }
        }
        image
    }

    /// Lines of text on the page, drawn as word-like bars too.
    fn write(image: &mut RgbImage, lines: &[Line]) {
        for word in lines.iter().flat_map(|l| &l.words) {
            let b = word.bbox;
            bar(image, b.x0 as u32 + 1, b.y0 as u32 + 5, (b.width() - 2.0) as u32, 10);
        }
    }

    fn run(image: RgbImage, lines: Vec<Line>, regions: Vec<Region>) -> PageResult {
        let mut page = page(image.width(), image.height());
        page.image = Some(image);
        page.result.lines = lines;
        page.result.regions = regions;
        BuildTables::default().run(&mut page, &mut StepMeter::default()).unwrap();
        page.result
    }

    fn texts(table: &Table) -> Vec<(u32, u32, u32, u32, &str)> {
        table
            .cells
            .iter()
            .map(|c| (c.row, c.col, c.row_span, c.col_span, c.text.as_str()))
            .collect()
    }

    fn table_region(x0: f32, y0: f32, x1: f32, y1: f32) -> Region {
        Region {
            kind: RegionKind::Table,
            bbox: bbox(x0, y0, x1, y1),
            score: 0.9,
            reading_order: None,
        }
    }

    fn codes(result: &PageResult) -> Vec<&str> {
        result.diagnostics.iter().map(|d| d.code.as_str()).collect()
    }

    fn invoice_lines() -> Vec<Line> {
        vec![
            line("Description", 110.0, 110.0),
            line("Qty", 410.0, 110.0),
            line("Amount", 610.0, 110.0),
            line("Consulting work", 110.0, 160.0),
            line("in November", 110.0, 185.0),
            line("12", 410.0, 160.0),
            line("EUR 1,440.00", 610.0, 160.0),
            line("Travel", 110.0, 230.0),
            line("1", 410.0, 230.0),
            line("EUR 120.00", 610.0, 230.0),
        ]
    }

    #[test]
    fn ruled_grid_in_a_table_region() {
        let lines = invoice_lines();
        let mut image = ruled(&[100, 400, 600, 800], &[100, 140, 215, 260], &[]);
        write(&mut image, &lines);
        let result = run(image, lines, vec![table_region(90.0, 90.0, 810.0, 270.0)]);
        assert_eq!(result.tables.len(), 1, "{:?}", result.diagnostics);
        let table = &result.tables[0];
        assert_eq!((table.n_rows, table.n_cols, table.region), (3, 3, Some(0)));
        assert_eq!(
            texts(table),
            [
                (0, 0, 1, 1, "Description"),
                (0, 1, 1, 1, "Qty"),
                (0, 2, 1, 1, "Amount"),
                (1, 0, 1, 1, "Consulting work\nin November"),
                (1, 1, 1, 1, "12"),
                (1, 2, 1, 1, "EUR 1,440.00"),
                (2, 0, 1, 1, "Travel"),
                (2, 1, 1, 1, "1"),
                (2, 2, 1, 1, "EUR 120.00"),
            ]
        );
        assert!((table.cells[4].bbox.x0 - 401.0).abs() < 2.0, "{:?}", table.cells[4].bbox);
        assert!(result.diagnostics.is_empty());
    }

    #[test]
    fn missing_separator_makes_a_spanning_cell_and_no_region_is_needed() {
        let lines = vec![
            line("Quarterly figures", 110.0, 110.0),
            line("Q1", 110.0, 160.0),
            line("Q2", 410.0, 160.0),
            line("Q3", 610.0, 160.0),
        ];
        let mut image = ruled(&[100, 400, 600, 800], &[100, 140, 200], &[(0, 1), (0, 2)]);
        write(&mut image, &lines);
        let result = run(image, lines, vec![]);
        assert_eq!(codes(&result), ["table_without_region"]);
        let table = &result.tables[0];
        assert_eq!((table.n_rows, table.n_cols, table.region), (2, 3, None));
        assert_eq!(
            texts(table),
            [
                (0, 0, 1, 3, "Quarterly figures"),
                (1, 0, 1, 1, "Q1"),
                (1, 1, 1, 1, "Q2"),
                (1, 2, 1, 1, "Q3")
            ]
        );
    }

    #[test]
    fn text_and_frames_are_not_tables() {
        // A framed address block (one cell) and plain text lines.
        let lines = vec![
            line("ACME GmbH", 110.0, 110.0),
            line("Hauptstr. 1", 110.0, 135.0),
            line("Dear customer, thank you for your order.", 100.0, 300.0),
            line("Items are listed on the next page ok.", 100.0, 325.0),
        ];
        let mut image = ruled(&[100, 400], &[100, 170], &[]);
        write(&mut image, &lines);
        let result = run(image, lines, vec![]);
        assert!(result.tables.is_empty(), "{:?}", result.tables);
        assert!(result.diagnostics.is_empty());

        let result = run(blank(900, 700), vec![], vec![]);
        assert!(result.tables.is_empty() && result.diagnostics.is_empty());
    }

    #[test]
    fn unruled_table_region_gets_inferred_columns() {
        let lines = vec![
            line("Item", 110.0, 110.0),
            line("Qty", 410.0, 110.0),
            line("Price", 610.0, 110.0),
            line("Blue widget", 110.0, 140.0),
            line("2", 410.0, 142.0),
            line("EUR 10.00", 610.0, 139.0),
        ];
        let mut image = blank(900, 700);
        write(&mut image, &lines);
        let result = run(image, lines.clone(), vec![table_region(100.0, 100.0, 800.0, 170.0)]);
        assert_eq!(codes(&result), ["table_columns_inferred"]);
        let table = &result.tables[0];
        assert_eq!((table.n_rows, table.n_cols, table.region), (2, 3, Some(0)));
        let cells: Vec<&str> = table.cells.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(cells, ["Item", "Qty", "Price", "Blue widget", "2", "EUR 10.00"]);

        // A table region holding a single paragraph is not a table.
        let prose = vec![line("Just one sentence here.", 110.0, 110.0)];
        let result = run(blank(900, 700), prose, vec![table_region(100.0, 100.0, 800.0, 170.0)]);
        assert!(result.tables.is_empty());
        assert_eq!(codes(&result), ["table_not_built"]);
    }

    #[test]
    fn thick_double_and_broken_rules_are_one_line_filled_areas_none() {
        let scan = Scan { min_len: 50, max_gap: 2, merge: 4.0, max_thickness: 10.0 };
        let (w, h) = (200, 100);
        let mut dark = vec![false; w * h];
        let mut paint = |x0: usize, x1: usize, y0: usize, y1: usize| {
            for y in y0..y1 {
                for x in x0..x1 {
                    dark[y * w + x] = true;
                }
            }
        };
        paint(10, 190, 10, 13); // thick
        paint(10, 190, 30, 31); // double: two thin lines 3 px apart
        paint(10, 190, 33, 34);
        paint(10, 100, 50, 51); // broken by a 2 px gap
        paint(102, 190, 50, 51);
        paint(10, 190, 70, 95); // filled area
        paint(10, 40, 97, 98); // too short
        let rules = scan.rules(h, w, |y, x| dark[y * w + x]);
        let found: Vec<(f32, f32, f32)> = rules.iter().map(|r| (r.at, r.from, r.to)).collect();
        assert_eq!(found, [(11.0, 10.0, 189.0), (31.5, 10.0, 189.0), (50.0, 10.0, 189.0)]);
    }
}
