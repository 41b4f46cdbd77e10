//! Exports of a document result: JSON, Markdown, and overlay images of what
//! was found on each page.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_hollow_rect_mut, draw_line_segment_mut};
use imageproc::rect::Rect;
use schemas::{BBox, DocumentResult, PageResult, RegionKind, Table, TextSource};

/// Output formats of `analyze`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Md,
    Both,
}

impl Format {
    pub fn json(self) -> bool {
        matches!(self, Format::Json | Format::Both)
    }

    pub fn markdown(self) -> bool {
        matches!(self, Format::Md | Format::Both)
    }
}

/// File stem for a document's outputs: its file name without directories or
/// extension, made safe, plus a short id so equal names do not collide.
pub fn stem(result: &DocumentResult) -> String {
    let name = result
        .file_name
        .as_deref()
        .and_then(|n| Path::new(n).file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "document".into());
    let safe: String = name
        .chars()
        .map(|c| if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .collect();
    let short_id = result.doc_id.get(..8).unwrap_or(&result.doc_id);
    format!("{safe}-{short_id}")
}

/// Writes `<out>/<stem>.json` and/or `.md`; returns the paths written.
pub fn write_document(
    result: &DocumentResult,
    out_dir: &Path,
    format: Format,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out_dir)?;
    let stem = stem(result);
    let mut written = Vec::new();
    if format.json() {
        let path = out_dir.join(format!("{stem}.json"));
        let json = serde_json::to_vec_pretty(result).map_err(std::io::Error::other)?;
        std::fs::write(&path, json)?;
        written.push(path);
    }
    if format.markdown() {
        let path = out_dir.join(format!("{stem}.md"));
        std::fs::write(&path, markdown(result))?;
        written.push(path);
    }
    Ok(written)
}

/// A Markdown rendering of the result, for people.
pub fn markdown(result: &DocumentResult) -> String {
    let mut md = String::new();
    let name = result.file_name.as_deref().unwrap_or(&result.doc_id);
    let _ = writeln!(md, "# {name}\n");
    let kind =
        result.kind.map(|k| format!("{k:?}").to_lowercase()).unwrap_or_else(|| "unknown".into());
    let _ = writeln!(md, "- document id: `{}`", result.doc_id);
    let _ = writeln!(md, "- type: {kind}, {} bytes, {} page(s)", result.size, result.page_count);
    let _ = writeln!(md, "- status: {:?}", result.status);
    if let Some(class) = &result.class {
        let _ = writeln!(md, "- class: {class}");
    }
    for failure in &result.failures {
        let _ = writeln!(
            md,
            "- **failed** in {}/{}: {:?}: {}",
            failure.stage, failure.step, failure.kind, failure.message
        );
    }
    for page in &result.pages {
        page_markdown(&mut md, page);
    }
    md
}

fn page_markdown(md: &mut String, page: &PageResult) {
    let _ = writeln!(md, "\n## Page {}\n", page.page_index + 1);
    let mut facts = vec![format!("{}x{} px", page.width, page.height)];
    if let Some(dpi) = page.dpi {
        facts.push(format!("{dpi} dpi"));
    }
    if page.rotation_deg != 0 {
        facts.push(format!("rotated {}°", page.rotation_deg));
    }
    if page.skew_deg.abs() > 0.0 {
        facts.push(format!("deskewed {:.1}°", page.skew_deg));
    }
    if let Some(language) = &page.language {
        facts.push(format!("language {}", language.code));
    }
    if let Some(class) = &page.class {
        facts.push(format!("class {class}"));
    }
    let ocr_lines = page.lines.iter().filter(|l| l.source == TextSource::Ocr).count();
    facts.push(format!("{} lines ({} by OCR)", page.lines.len(), ocr_lines));
    let _ = writeln!(md, "{}\n", facts.join(" · "));

    if let Some(failure) = &page.failure {
        let _ = writeln!(
            md,
            "**Page failed** in {}/{}: {:?}: {}\n",
            failure.stage, failure.step, failure.kind, failure.message
        );
    }

    if !page.lines.is_empty() {
        let _ = writeln!(md, "### Text\n");
        let mut last_region = None;
        for line in &page.lines {
            if line.region != last_region && last_region.is_some() {
                md.push('\n');
            }
            last_region = line.region;
            let is_title = line
                .region
                .and_then(|r| page.regions.get(r as usize))
                .is_some_and(|r| r.kind == RegionKind::Title);
            let text = escape(&line.text);
            if is_title {
                let _ = writeln!(md, "**{text}**  ");
            } else {
                let _ = writeln!(md, "{text}  ");
            }
        }
    }

    if !page.fields.is_empty() {
        let _ = writeln!(md, "\n### Fields\n\n| field | value | normalised | confidence |");
        let _ = writeln!(md, "|---|---|---|---|");
        for field in &page.fields {
            let _ = writeln!(
                md,
                "| {:?} | {} | {} | {:.2} |",
                field.kind,
                escape(&field.value),
                escape(field.normalized.as_deref().unwrap_or("")),
                field.confidence
            );
        }
    }

    for (i, table) in page.tables.iter().enumerate() {
        let _ = writeln!(md, "\n### Table {}\n", i + 1);
        table_markdown(md, table);
    }

    if !page.diagnostics.is_empty() {
        let _ = writeln!(md, "\n### Diagnostics\n");
        for d in &page.diagnostics {
            let _ = writeln!(md, "- {:?} {}/{}: {}", d.level, d.step, d.code, d.message);
        }
    }
}

fn table_markdown(md: &mut String, table: &Table) {
    let (rows, cols) = (table.n_rows as usize, table.n_cols as usize);
    if rows == 0 || cols == 0 {
        return;
    }
    let mut grid = vec![vec![String::new(); cols]; rows];
    for cell in &table.cells {
        if let Some(slot) =
            grid.get_mut(cell.row as usize).and_then(|r| r.get_mut(cell.col as usize))
        {
            *slot = escape(&cell.text);
        }
    }
    for (r, row) in grid.iter().enumerate() {
        let _ = writeln!(md, "| {} |", row.join(" | "));
        if r == 0 {
            let _ = writeln!(md, "|{}", "---|".repeat(cols));
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn region_colour(kind: RegionKind) -> Rgb<u8> {
    match kind {
        RegionKind::Text => Rgb([0, 120, 255]),
        RegionKind::Title => Rgb([220, 0, 120]),
        RegionKind::Table => Rgb([0, 170, 0]),
        RegionKind::Figure => Rgb([255, 140, 0]),
        RegionKind::Header | RegionKind::Footer => Rgb([128, 128, 128]),
        _ => Rgb([150, 0, 200]),
    }
}

/// The page image with regions (thick, coloured by class) and text lines
/// (thin red quads; text-layer lines in green) drawn on it.
pub fn overlay(image: &RgbImage, page: &PageResult) -> RgbImage {
    let mut canvas = image.clone();
    for region in &page.regions {
        let colour = region_colour(region.kind);
        for inset in 0..3 {
            if let Some(rect) = rect(&region.bbox, inset as f32) {
                draw_hollow_rect_mut(&mut canvas, rect, colour);
            }
        }
    }
    for line in &page.lines {
        let colour =
            if line.source == TextSource::Ocr { Rgb([230, 0, 0]) } else { Rgb([0, 160, 60]) };
        let b = &line.bbox;
        let quad = line.quad.unwrap_or([[b.x0, b.y0], [b.x1, b.y0], [b.x1, b.y1], [b.x0, b.y1]]);
        for i in 0..4 {
            let (p, q) = (quad[i], quad[(i + 1) % 4]);
            draw_line_segment_mut(&mut canvas, (p[0], p[1]), (q[0], q[1]), colour);
        }
    }
    canvas
}

fn rect(bbox: &BBox, inset: f32) -> Option<Rect> {
    let width = (bbox.width() - 2.0 * inset).round();
    let height = (bbox.height() - 2.0 * inset).round();
    if width < 1.0 || height < 1.0 {
        return None;
    }
    Some(
        Rect::at((bbox.x0 + inset) as i32, (bbox.y0 + inset) as i32)
            .of_size(width as u32, height as u32),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{DocumentKind, Line, Region, TableCell};

    fn result() -> DocumentResult {
        let line = |text: &str, region| Line {
            text: text.into(),
            bbox: BBox { x0: 10.0, y0: 10.0, x1: 90.0, y1: 30.0 },
            quad: None,
            confidence: 0.9,
            source: TextSource::Ocr,
            region,
            words: vec![],
        };
        let page = PageResult {
            page_index: 0,
            width: 100,
            height: 100,
            regions: vec![Region {
                kind: RegionKind::Title,
                bbox: BBox { x0: 5.0, y0: 5.0, x1: 95.0, y1: 35.0 },
                score: 0.9,
                reading_order: Some(0),
            }],
            lines: vec![line("Invoice | 42", Some(0)), line("body", None)],
            tables: vec![Table {
                bbox: BBox::default(),
                region: None,
                n_rows: 2,
                n_cols: 2,
                cells: vec![
                    TableCell {
                        row: 0,
                        col: 0,
                        row_span: 1,
                        col_span: 1,
                        bbox: BBox::default(),
                        text: "a".into(),
                    },
                    TableCell {
                        row: 1,
                        col: 1,
                        row_span: 1,
                        col_span: 1,
                        bbox: BBox::default(),
                        text: "d".into(),
                    },
                ],
            }],
            ..PageResult::default()
        };
        DocumentResult {
            file_name: Some("dir/My Invoice.pdf".into()),
            kind: Some(DocumentKind::Pdf),
            sha256: "0123456789abcdef".into(),
            size: 10,
            page_count: 1,
            pages: vec![page],
            class: Some("invoice".into()),
            ..DocumentResult::new("0123456789abcdef", "local", 0)
        }
    }

    #[test]
    fn markdown_has_title_text_and_table() {
        let md = markdown(&result());
        assert!(md.starts_with("# dir/My Invoice.pdf\n"));
        assert!(md.contains("**Invoice \\| 42**"), "{md}");
        assert!(md.contains("| a |  |\n|---|---|\n|  | d |"), "{md}");
    }

    #[test]
    fn stem_is_safe_and_unique() {
        assert_eq!(stem(&result()), "My_Invoice-01234567");
    }

    #[test]
    fn overlay_draws_on_a_copy() {
        let image = RgbImage::from_pixel(100, 100, Rgb([255, 255, 255]));
        let drawn = overlay(&image, &result().pages[0]);
        assert_eq!(image.get_pixel(5, 20).0, [255, 255, 255]);
        assert_eq!(drawn.get_pixel(5, 20).0, [220, 0, 120]);
        assert_eq!(drawn.get_pixel(50, 10).0, [230, 0, 0]);
    }
}
