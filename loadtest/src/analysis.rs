//! From a [`Recording`] to figures: latency percentiles (HDR histograms),
//! throughput, per-stage processing vs queue wait, and the delivery check
//! (every page exactly one result or one dead letter, no duplicates),
//! judged against the scenario's SLO.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::record::Recording;
use crate::scenario::Slo;

/// Percentiles of one latency distribution, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
        Latency {
            count: histogram.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: histogram.max() as f64 / 1000.0,
        }
    }
}

/// Mean time per page in one stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StageTime {
    pub stage: String,
    pub pages: u64,
    pub processing_ms: f64,
    pub queue_wait_ms: f64,
    pub inference_ms: f64,
}

/// Whether every page came back exactly once.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Delivery {
    pub documents_offered: u64,
    pub documents_accepted: u64,
    pub documents_answered: u64,
    pub pages_offered: u64,
    /// Pages analysed successfully.
    pub pages_ok: u64,
    /// Pages whose result carries a failure (their dead letters included).
    pub pages_failed: u64,
    /// Documents without a result, and the pages of those.
    pub documents_lost: u64,
    pub pages_lost: u64,
    /// Results beyond the first for a document.
    pub duplicate_results: u64,
    pub dead_letters: u64,
    pub redelivered: u64,
}

/// The figures of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub document_latency: Latency,
    pub page_latency: Latency,
    /// By document kind: `digital`, `scanned`.
    pub document_latency_by_kind: BTreeMap<String, Latency>,
    /// Pages answered per second, from the first due time to the last result.
    pub pages_per_second: f64,
    pub pages_per_second_per_core: f64,
    pub stages: Vec<StageTime>,
    pub delivery: Delivery,
    /// Resident memory per worker, MiB.
    pub rss_mib: BTreeMap<String, Memory>,
    /// CPU per worker, in cores.
    pub cpu_cores: BTreeMap<String, Cpu>,
    pub duration_s: f64,
    /// From the first due time to the last result: how long a burst takes
    /// to drain.
    pub drain_s: f64,
    /// Worker processes per stage over the run (runs under `pagestream up`).
    pub replicas: BTreeMap<String, Replicas>,
}

/// One stage's worker count over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Replicas {
    pub least: u64,
    pub most: u64,
    /// When it first ran `most` workers, seconds from the start.
    pub most_at_s: f64,
    /// When, after that, it was back at `least`.
    pub back_at_s: Option<f64>,
}

/// Least and most workers of each stage, when the most were first reached
/// and when the pool was back at its least afterwards.
fn replicas(samples: &[crate::record::Sample]) -> BTreeMap<String, Replicas> {
    let mut series: BTreeMap<&str, Vec<(f64, u64)>> = BTreeMap::new();
    for sample in samples {
        for (stage, count) in &sample.replicas {
            series.entry(stage).or_default().push((sample.at.as_secs_f64(), *count));
        }
    }
    series
        .into_iter()
        .map(|(stage, points)| {
            let least = points.iter().map(|p| p.1).min().unwrap_or(0);
            let most = points.iter().map(|p| p.1).max().unwrap_or(0);
            let peak = points.iter().position(|p| p.1 == most).unwrap_or(0);
            let most_at_s = points.get(peak).map_or(0.0, |p| p.0);
            let back_at_s = (most > least)
                .then(|| points[peak..].iter().find(|p| p.1 == least).map(|p| p.0))
                .flatten();
            (stage.to_string(), Replicas { least, most, most_at_s, back_at_s })
        })
        .collect()
}

/// CPU one worker used over a run, in cores (CPU seconds per second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Cpu {
    /// Over the whole run.
    pub mean: f64,
    /// The busiest window of [`CPU_WINDOW`].
    pub peak: f64,
}

/// The window the peak CPU is measured over: long enough to smooth a
/// sampling tick, short enough to see a burst.
pub const CPU_WINDOW: Duration = Duration::from_secs(10);

/// Resident memory of one worker over a run, MiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Memory {
    pub first: f64,
    /// At the end of the first tenth of the run: the model sessions have
    /// met their inputs by then, so growth after it is what a leak shows.
    pub warm: f64,
    pub peak: f64,
    pub last: f64,
}

impl Memory {
    /// Growth from the end of the warm-up to the last sample.
    pub fn growth_after_warmup(&self) -> f64 {
        self.last - self.warm
    }
}

/// The judgement against the SLO.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub passed: bool,
    pub line: String,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 hour at 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant, valid histogram bounds")
}

fn micros(duration: Duration) -> u64 {
    (duration.as_micros() as u64).clamp(1, 3_600_000_000)
}

/// Computes the figures of `recording`; `cores` for the per-core rate.
pub fn analyse(recording: &Recording, cores: usize) -> Figures {
    let mut figures = Figures::default();
    let mut documents = histogram();
    let mut pages = histogram();
    let mut by_kind: HashMap<&str, Histogram<u64>> = HashMap::new();
    let mut first_result: HashMap<&str, Duration> = HashMap::new();
    let mut delivery = Delivery::default();
    let mut stages: BTreeMap<String, (u64, u64, u64, u64, usize)> = BTreeMap::new();
    let mut stage_order: Vec<String> = Vec::new();

    for (at, result) in &recording.results {
        let Some(offered) = recording.offered.get(&result.doc_id) else { continue };
        if first_result.insert(result.doc_id.as_str(), *at).is_some() {
            delivery.duplicate_results += 1;
            continue;
        }
        let latency = micros(at.saturating_sub(offered.due));
        let _ = documents.record(latency);
        let kind = if offered.digital { "digital" } else { "scanned" };
        let _ = by_kind.entry(kind).or_insert_with(histogram).record(latency);
        for page in &result.pages {
            match page.failure {
                None => delivery.pages_ok += 1,
                Some(_) => delivery.pages_failed += 1,
            }
            for timing in &page.timings {
                if !stage_order.contains(&timing.stage) {
                    stage_order.push(timing.stage.clone());
                }
                let entry = stages.entry(timing.stage.clone()).or_default();
                entry.1 += timing.duration_us;
                entry.2 += timing.queue_wait_us;
                entry.3 += timing.inference_us;
            }
            // pages per stage: one per page that has any timing of the stage
            let seen: HashSet<&str> = page.timings.iter().map(|t| t.stage.as_str()).collect();
            for stage in seen {
                if let Some(entry) = stages.get_mut(stage) {
                    entry.0 += 1;
                }
            }
        }
        // a document that failed as a whole has no pages: count them lost
        // unless its failure says why (then they are failed, not lost)
        let missing = u64::from(offered.pages).saturating_sub(result.pages.len() as u64);
        if missing > 0 && !result.failures.is_empty() {
            delivery.pages_failed += missing;
        } else {
            delivery.pages_lost += missing;
        }
    }
    for ((doc_id, _), arrivals) in &recording.pages {
        if let Some(offered) = recording.offered.get(doc_id) {
            let _ = pages.record(micros(arrivals[0].saturating_sub(offered.due)));
        }
    }

    delivery.documents_offered = recording.offered.len() as u64;
    delivery.documents_accepted =
        recording.offered.values().filter(|o| o.accepted.is_some()).count() as u64;
    delivery.documents_answered = first_result.len() as u64;
    for (doc_id, offered) in &recording.offered {
        delivery.pages_offered += u64::from(offered.pages);
        if !first_result.contains_key(doc_id.as_str()) {
            delivery.documents_lost += 1;
            delivery.pages_lost += u64::from(offered.pages);
        }
    }
    delivery.dead_letters = recording.dead_letters.len() as u64;
    delivery.redelivered = recording.samples.iter().map(|s| s.redelivered).max().unwrap_or(0);

    let first_due = recording.offered.values().map(|o| o.due).min().unwrap_or_default();
    let last_answer = first_result.values().max().copied().unwrap_or(first_due);
    let span = last_answer.saturating_sub(first_due).as_secs_f64();
    let answered_pages = (delivery.pages_ok + delivery.pages_failed) as f64;
    figures.pages_per_second = if span > 0.0 { answered_pages / span } else { 0.0 };
    figures.drain_s = span;
    figures.pages_per_second_per_core = figures.pages_per_second / cores.max(1) as f64;

    figures.stages = stage_order
        .iter()
        .filter_map(|stage| {
            let (count, processing, wait, inference, _) = stages.get(stage)?;
            let per_page = |total: &u64| *total as f64 / (*count).max(1) as f64 / 1000.0;
            Some(StageTime {
                stage: stage.clone(),
                pages: *count,
                processing_ms: per_page(processing),
                queue_wait_ms: per_page(wait),
                inference_ms: per_page(inference),
            })
        })
        .collect();

    let warm_up_end = recording.ended / 10;
    for sample in &recording.samples {
        for (worker, bytes) in &sample.rss {
            let mib = *bytes as f64 / (1 << 20) as f64;
            let memory = figures.rss_mib.entry(worker.clone()).or_insert(Memory {
                first: mib,
                warm: mib,
                peak: mib,
                last: mib,
            });
            if sample.at <= warm_up_end {
                memory.warm = mib;
            }
            memory.peak = memory.peak.max(mib);
            memory.last = mib;
        }
    }

    figures.cpu_cores = cpu_cores(&recording.samples);
    figures.replicas = replicas(&recording.samples);
    figures.document_latency = Latency::of(&documents);
    figures.page_latency = Latency::of(&pages);
    figures.document_latency_by_kind =
        by_kind.iter().map(|(kind, h)| (kind.to_string(), Latency::of(h))).collect();
    figures.delivery = delivery;
    figures.duration_s = recording.ended.as_secs_f64();
    figures
}

/// `PASS`/`FAIL` against `slo`: the p99 document latency, loss, and no
/// duplicates.
pub fn judge(name: &str, figures: &Figures, slo: &Slo) -> Verdict {
    let p99 = figures.document_latency.p99_ms;
    let slo_ms = slo.p99.as_secs_f64() * 1000.0;
    let delivery = &figures.delivery;
    let lost = delivery.documents_lost.max(delivery.pages_lost);
    let latency_ok = delivery.documents_answered > 0 && p99 <= slo_ms;
    let loss_ok = lost <= slo.max_loss;
    let duplicates_ok = delivery.duplicate_results == 0;
    let passed = latency_ok && loss_ok && duplicates_ok;
    let line = format!(
        "{} {name}: p99 {} {} {}, loss {lost} {} {}, duplicates {}, {:.2} pages/s",
        if passed { "PASS" } else { "FAIL" },
        seconds(p99),
        if latency_ok { "<=" } else { ">" },
        seconds(slo_ms),
        if loss_ok { "<=" } else { ">" },
        slo.max_loss,
        delivery.duplicate_results,
        figures.pages_per_second,
    );
    Verdict { passed, line }
}

fn seconds(ms: f64) -> String {
    if ms >= 1000.0 { format!("{:.2}s", ms / 1000.0) } else { format!("{ms:.0}ms") }
}

/// Mean and peak cores per worker from its cumulative CPU seconds.
fn cpu_cores(samples: &[crate::record::Sample]) -> BTreeMap<String, Cpu> {
    let mut series: BTreeMap<&str, Vec<(Duration, f64)>> = BTreeMap::new();
    for sample in samples {
        for (worker, seconds) in &sample.cpu_seconds {
            series.entry(worker).or_default().push((sample.at, *seconds));
        }
    }
    let rate = |(t0, c0): (Duration, f64), (t1, c1): (Duration, f64)| {
        let elapsed = t1.saturating_sub(t0).as_secs_f64();
        if elapsed > 0.0 { (c1 - c0).max(0.0) / elapsed } else { 0.0 }
    };
    series
        .into_iter()
        .filter_map(|(worker, points)| {
            let (first, last) = (*points.first()?, *points.last()?);
            let mut peak: f64 = 0.0;
            let mut start = 0;
            for end in 0..points.len() {
                while points[end].0.saturating_sub(points[start].0) > CPU_WINDOW {
                    start += 1;
                }
                if points[end].0.saturating_sub(points[start].0) >= CPU_WINDOW / 2 {
                    peak = peak.max(rate(points[start], points[end]));
                }
            }
            Some((
                worker.to_string(),
                Cpu { mean: rate(first, last), peak: peak.max(rate(first, last)) },
            ))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::record::Offered;
    use schemas::{DocumentResult, PageResult};

    fn result(doc_id: &str, pages: u32) -> DocumentResult {
        DocumentResult {
            sha256: doc_id.into(),
            size: 1,
            page_count: pages,
            pages: (0..pages)
                .map(|i| PageResult { page_index: i, ..PageResult::default() })
                .collect(),
            ..DocumentResult::new(doc_id, "t", 0)
        }
    }

    fn offered(due_ms: u64, pages: u32) -> Offered {
        Offered {
            name: "d".into(),
            pages,
            digital: true,
            due: Duration::from_millis(due_ms),
            accepted: Some(Duration::ZERO),
        }
    }

    fn recording() -> Recording {
        let mut recording = Recording::default();
        // a: 1 page, answered after 100 ms; b: 2 pages after 300 ms; c: lost
        recording.offered.insert("a".into(), offered(0, 1));
        recording.offered.insert("b".into(), offered(100, 2));
        recording.offered.insert("c".into(), offered(200, 3));
        recording.results.push((Duration::from_millis(100), result("a", 1)));
        recording.results.push((Duration::from_millis(400), result("b", 2)));
        recording
    }

    #[test]
    fn latency_is_counted_from_the_due_time_and_losses_are_found() {
        let figures = analyse(&recording(), 2);
        assert_eq!(figures.document_latency.count, 2);
        assert!(
            (figures.document_latency.p50_ms - 100.0).abs() < 0.5,
            "{:?}",
            figures.document_latency
        );
        assert!((figures.document_latency.max_ms - 300.0).abs() < 0.5);
        let delivery = &figures.delivery;
        assert_eq!((delivery.documents_lost, delivery.pages_lost), (1, 3));
        assert_eq!((delivery.pages_ok, delivery.duplicate_results), (3, 0));
        // 3 pages between the first due time (0) and the last answer (400 ms)
        assert!((figures.pages_per_second - 7.5).abs() < 1e-9);
        assert!((figures.pages_per_second_per_core - 3.75).abs() < 1e-9);
    }

    #[test]
    fn cpu_is_the_mean_and_the_busiest_window_of_cpu_seconds() {
        let mut recording = recording();
        // idle for 20 s, 1.5 cores for 10 s, then 0.5 cores for 30 s
        for second in 0..=60u64 {
            let cpu = match second {
                0..=20 => 0.0,
                21..=30 => 1.5 * (second - 20) as f64,
                _ => 15.0 + 0.5 * (second - 30) as f64,
            };
            recording.samples.push(crate::record::Sample {
                at: Duration::from_secs(second),
                cpu_seconds: vec![("w".into(), cpu)],
                ..Default::default()
            });
        }
        let cpu = analyse(&recording, 1).cpu_cores["w"];
        assert!((cpu.mean - 30.0 / 60.0).abs() < 1e-9, "{cpu:?}");
        assert!((cpu.peak - 1.5).abs() < 1e-9, "{cpu:?}");
    }

    #[test]
    fn memory_growth_is_measured_after_the_warm_up() {
        let mut recording = recording();
        recording.ended = Duration::from_secs(100);
        for (second, mib) in [(1, 300), (5, 700), (10, 760), (50, 800), (99, 770)] {
            recording.samples.push(crate::record::Sample {
                at: Duration::from_secs(second),
                rss: vec![("w".into(), mib << 20)],
                ..Default::default()
            });
        }
        let memory = analyse(&recording, 1).rss_mib["w"];
        assert_eq!(
            (memory.first, memory.warm, memory.peak, memory.last),
            (300.0, 760.0, 800.0, 770.0)
        );
        assert_eq!(memory.growth_after_warmup(), 10.0);
    }

    #[test]
    fn duplicates_and_loss_fail_the_slo() {
        let slo = Slo { p99: Duration::from_secs(1), max_loss: 0 };
        let mut recording = recording();
        let verdict = judge("s", &analyse(&recording, 1), &slo);
        assert!(!verdict.passed && verdict.line.starts_with("FAIL s:"), "{}", verdict.line);
        recording.offered.remove("c");
        let verdict = judge("s", &analyse(&recording, 1), &slo);
        assert!(verdict.passed, "{}", verdict.line);
        assert!(verdict.line.contains("p99 300ms <= 1.00s, loss 0 <= 0"), "{}", verdict.line);
        recording.results.push((Duration::from_millis(500), result("a", 1)));
        let verdict = judge("s", &analyse(&recording, 1), &slo);
        assert!(!verdict.passed && verdict.line.contains("duplicates 1"), "{}", verdict.line);
        let tight = Slo { p99: Duration::from_millis(200), max_loss: 0 };
        recording.results.pop();
        assert!(!judge("s", &analyse(&recording, 1), &tight).passed);
    }
}
