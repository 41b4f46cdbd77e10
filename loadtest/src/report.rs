//! The report of a run: `report.md` with the tables, `summary.json` with
//! every figure, and SVG charts (latency over time, throughput, consumer
//! lag per stage, worker memory) with the points behind each as CSV, in a
//! directory named after the scenario and the time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::analysis::{Figures, Latency, Verdict};
use crate::record::Recording;
use crate::scenario::{Kind, Scenario};

/// One line of a chart: `(seconds since the start, value)` points.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

fn write_error(path: &Path, reason: impl ToString) -> ReportError {
    ReportError::Write { path: path.display().to_string(), reason: reason.to_string() }
}

/// Draws `series` as lines into the SVG file `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[Series],
) -> Result<(), ReportError> {
    let failed = |e: &dyn std::fmt::Display| write_error(path, e);
    let points = series.iter().flat_map(|s| s.points.iter());
    let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points.map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc(y_label)
        .draw()
        .map_err(|e| failed(&e))?;
    for (i, line) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), color.stroke_width(2)))
            .map_err(|e| failed(&e))?
            .label(line.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| failed(&e))?;
    }
    root.present().map_err(|e| failed(&e))
}

/// The charts of a recording.
pub fn charts(
    recording: &Recording,
) -> Vec<(&'static str, &'static str, &'static str, Vec<Series>)> {
    // document latency against completion time
    let mut latency: Vec<(f64, f64)> = recording
        .results
        .iter()
        .filter_map(|(at, result)| {
            let due = recording.offered.get(&result.doc_id)?.due;
            Some((at.as_secs_f64(), at.saturating_sub(due).as_secs_f64()))
        })
        .collect();
    latency.sort_by(|a, b| a.0.total_cmp(&b.0));

    // pages answered per second
    let mut per_second: BTreeMap<u64, f64> = BTreeMap::new();
    for (at, result) in &recording.results {
        *per_second.entry(at.as_secs()).or_default() += result.pages.len() as f64;
    }
    let seconds = recording.ended.as_secs();
    let throughput: Vec<(f64, f64)> =
        (0..=seconds).map(|s| (s as f64, per_second.get(&s).copied().unwrap_or(0.0))).collect();

    let mut lag: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut rss: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut replicas: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for sample in &recording.samples {
        let at = sample.at.as_secs_f64();
        for (stage, value) in &sample.lag {
            lag.entry(stage.clone()).or_default().push((at, *value as f64));
        }
        for (worker, bytes) in &sample.rss {
            rss.entry(worker.clone()).or_default().push((at, *bytes as f64 / (1 << 20) as f64));
        }
        for (stage, count) in &sample.replicas {
            replicas.entry(stage.clone()).or_default().push((at, *count as f64));
        }
    }
    let named = |map: BTreeMap<String, Vec<(f64, f64)>>| -> Vec<Series> {
        map.into_iter().map(|(name, points)| Series { name, points }).collect()
    };
    let mut charts = vec![
        (
            "latency.svg",
            "Document latency (due to result)",
            "seconds",
            vec![Series { name: "document".into(), points: latency }],
        ),
        (
            "throughput.svg",
            "Pages answered per second",
            "pages/s",
            vec![Series { name: "pages".into(), points: throughput }],
        ),
        ("lag.svg", "Consumer lag per stage", "messages", named(lag)),
        ("rss.svg", "Worker resident memory", "MiB", named(rss)),
    ];
    // Only runs under `pagestream up` have replica counts to show.
    if !replicas.is_empty() {
        charts.push(("replicas.svg", "Worker processes per stage", "workers", named(replicas)));
    }
    charts
}

/// `<out>/<scenario>-<UTC time>/`.
pub fn directory(out: &Path, scenario: &str, unix_seconds: u64) -> PathBuf {
    out.join(format!("{scenario}-{}", utc_stamp(unix_seconds)))
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time (proleptic Gregorian calendar).
pub fn utc_stamp(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

fn latency_row(name: &str, l: &Latency) -> String {
    format!(
        "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
        l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
    )
}

/// The Markdown report.
pub fn markdown(
    scenario: &Scenario,
    target: &str,
    machine: &str,
    figures: &Figures,
    verdict: &Verdict,
    charts: &[&str],
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Load test `{}`\n", scenario.name);
    if !scenario.description.is_empty() {
        let _ = writeln!(md, "{}\n", scenario.description);
    }
    let _ = writeln!(md, "**{}**\n", verdict.line);
    let _ = writeln!(md, "- target: {target}\n- machine: {machine}");
    let load = match scenario.kind {
        Kind::Steady | Kind::Soak => format!(
            "{:?}: Poisson arrivals at {} documents/s for {:?}",
            scenario.kind, scenario.rate, scenario.duration
        ),
        Kind::Burst => format!("burst of {} documents at once", scenario.documents),
        Kind::Bulk => format!("bulk of {} documents, as fast as admitted", scenario.documents),
    };
    let _ = writeln!(
        md,
        "- load: {load}; digital share {}, seed {}",
        scenario.mix.digital, scenario.seed
    );
    let _ = writeln!(md, "- run time {:.1} s\n", figures.duration_s);

    md.push_str("## Latency (ms, from due time)\n\n| what | count | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|\n");
    md.push_str(&latency_row("document", &figures.document_latency));
    for (kind, latency) in &figures.document_latency_by_kind {
        md.push_str(&latency_row(&format!("document ({kind})"), latency));
    }
    md.push_str(&latency_row("page", &figures.page_latency));

    let _ = writeln!(
        md,
        "\n## Throughput\n\n{:.2} pages/s, {:.2} pages/s per core; {:.1} s from the first due time to the last result.\n",
        figures.pages_per_second, figures.pages_per_second_per_core, figures.drain_s
    );
    if !figures.replicas.is_empty() {
        md.push_str("## Worker processes per stage\n\n| stage | least | most | most first at | back to least at |\n|---|---|---|---|---|\n");
        for (stage, r) in &figures.replicas {
            let back = r.back_at_s.map_or("-".to_string(), |s| format!("{s:.0} s"));
            let _ = writeln!(
                md,
                "| {stage} | {} | {} | {:.0} s | {back} |",
                r.least, r.most, r.most_at_s
            );
        }
        md.push('\n');
    }

    md.push_str("## Time per page and stage (ms, mean)\n\n| stage | pages | processing | of it inference | queue wait |\n|---|---|---|---|---|\n");
    for stage in &figures.stages {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            stage.stage, stage.pages, stage.processing_ms, stage.inference_ms, stage.queue_wait_ms
        );
    }

    let d = &figures.delivery;
    md.push_str("\n## Delivery\n\n| | documents | pages |\n|---|---|---|\n");
    let _ = writeln!(md, "| offered | {} | {} |", d.documents_offered, d.pages_offered);
    let _ = writeln!(md, "| accepted | {} | |", d.documents_accepted);
    let _ = writeln!(
        md,
        "| answered | {} | {} ok, {} failed |",
        d.documents_answered, d.pages_ok, d.pages_failed
    );
    let _ = writeln!(md, "| lost | {} | {} |", d.documents_lost, d.pages_lost);
    let _ = writeln!(md, "| duplicate results | {} | |", d.duplicate_results);
    let _ = writeln!(md, "| dead letters | {} | |", d.dead_letters);
    let _ = writeln!(md, "| redeliveries | | {} |", d.redelivered);

    if !figures.rss_mib.is_empty() {
        md.push_str("\n## Worker memory (MiB)\n\nWarm: at the end of the first tenth of the run, once the model sessions have met their inputs.\n\n| worker | first | warm | peak | last | growth after warm-up |\n|---|---|---|---|---|---|\n");
        for (worker, memory) in &figures.rss_mib {
            let _ = writeln!(
                md,
                "| {worker} | {:.0} | {:.0} | {:.0} | {:.0} | {:+.0} |",
                memory.first,
                memory.warm,
                memory.peak,
                memory.last,
                memory.growth_after_warmup()
            );
        }
    }
    if !figures.cpu_cores.is_empty() {
        md.push_str("\n## Worker CPU (cores)\n\nCPU seconds per second of each worker process: over the whole run, and in its busiest 10 s.\n\n| worker | mean | peak |\n|---|---|---|\n");
        for (worker, cpu) in &figures.cpu_cores {
            let _ = writeln!(md, "| {worker} | {:.2} | {:.2} |", cpu.mean, cpu.peak);
        }
    }
    md.push('\n');
    for chart in charts {
        let _ = writeln!(md, "![{chart}]({chart})");
    }
    md
}

/// The points behind a chart: `seconds,series,value`, one line per point.
fn csv(series: &[Series]) -> String {
    let mut text = String::from("seconds,series,value\n");
    for Series { name, points } in series {
        for (at, value) in points {
            let _ = writeln!(text, "{at:.3},{name},{value}");
        }
    }
    text
}

/// Writes the report of a run into `dir`.
pub fn write(
    dir: &Path,
    scenario: &Scenario,
    target: &str,
    machine: &str,
    recording: &Recording,
    figures: &Figures,
    verdict: &Verdict,
) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    let mut written = Vec::new();
    for (file, title, unit, series) in charts(recording) {
        if series.iter().all(|s| s.points.is_empty()) {
            continue;
        }
        line_chart(&dir.join(file), title, unit, &series)?;
        let data = dir.join(file).with_extension("csv");
        std::fs::write(&data, csv(&series)).map_err(|e| write_error(&data, e))?;
        written.push(file);
    }
    let report = markdown(scenario, target, machine, figures, verdict, &written);
    let path = dir.join("report.md");
    std::fs::write(&path, report).map_err(|e| write_error(&path, e))?;
    let summary = serde_json::json!({ "scenario": scenario.name, "target": target, "verdict": verdict, "figures": figures });
    let path = dir.join("summary.json");
    let text = serde_json::to_string_pretty(&summary).map_err(|e| write_error(&path, e))?;
    std::fs::write(&path, text).map_err(|e| write_error(&path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_name_the_day_and_time() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_795_646_096), "20261125T223456Z");
    }

    #[test]
    fn a_chart_is_an_svg_with_its_title_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.svg");
        let series = [
            Series { name: "render".into(), points: vec![(0.0, 1.0), (1.0, 4.0), (2.0, 2.0)] },
            Series { name: "ocr".into(), points: vec![(0.0, 0.0), (2.0, 9.0)] },
        ];
        line_chart(&path, "Consumer lag per stage", "messages", &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(
            svg.contains("Consumer lag per stage") && svg.contains("render") && svg.contains("ocr")
        );
        assert!(svg.matches("<polyline").count() >= 2, "{svg}");
        assert_eq!(
            csv(&series),
            "seconds,series,value\n0.000,render,1\n1.000,render,4\n2.000,render,2\n0.000,ocr,0\n2.000,ocr,9\n"
        );
    }
}
