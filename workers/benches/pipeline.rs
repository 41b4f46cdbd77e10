//! End-to-end speed of the embedded pipeline on the sample pages:
//! seconds per scanned page (1 and 2 intra-op threads) and per digital
//! page, pages/s with both cores busy, pages/s for digital pages, and the
//! share of time spent in model inference. Run with `cargo bench --bench
//! pipeline`; `scripts/bench-vs-reference.sh` runs it beside the Python
//! reference pipeline (`scripts/reference/bench.py`).
//!
//! Environment: `PAGESTREAM_BENCH_PAGES` (pages per batch, default 8),
//! `PAGESTREAM_BENCH_TOPOLOGY` (the topology file to start from, default
//! the built-in `topology/pipeline.toml`), `PAGESTREAM_BENCH_MODELS=original`
//! (the float models instead of the int8 and fused ones setup derives).

use std::path::PathBuf;
use std::time::Instant;

use pages::home::Home;
use pages::pipeline::Pipeline;
use runtime::embedded::{self, InputDocument, Options};
use schemas::{DocumentResult, TextSource};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The models `./setup` derives (scripts/derive_models.py) and the float
/// originals they are made from.
const DERIVED: [(&str, &str); 3] = [
    ("PP-OCRv6_det_small.int8.onnx", "PP-OCRv6_det_small.onnx"),
    ("PP-OCRv6_rec_small.int8.onnx", "PP-OCRv6_rec_small.onnx"),
    ("layout_cdla.hardswish.onnx", "layout_cdla.onnx"),
];

/// The built-in topology with every stage's concurrency and every model's
/// intra-op threads set, and with `PAGESTREAM_BENCH_MODELS=original` the
/// float originals in place of the derived models.
fn pipeline(concurrency: u32, intra_threads: u32) -> Pipeline {
    let home = Home::new(repo().join(".pagestream"));
    let file = std::env::var_os("PAGESTREAM_BENCH_TOPOLOGY")
        .map_or_else(|| repo().join("topology/pipeline.toml"), PathBuf::from);
    let originals = std::env::var("PAGESTREAM_BENCH_MODELS").is_ok_and(|v| v == "original");
    let text = std::fs::read_to_string(&file).expect("topology");
    let mut checksum = None;
    let text: String = text
        .lines()
        .map(|line| {
            let original = DERIVED
                .iter()
                .find(|(derived, _)| originals && line == format!("path = \"{derived}\""));
            if let Some((_, original)) = original {
                let bytes = std::fs::read(home.models_dir().join(original)).expect("run ./setup");
                checksum = Some(runtime::blobs::sha256_hex(&bytes));
                format!("path = \"{original}\"")
            } else if line.starts_with("sha256 =") && checksum.is_some() {
                format!("sha256 = \"{}\"", checksum.take().unwrap_or_default())
            } else if line.starts_with("concurrency =") {
                format!("concurrency = {concurrency}")
            } else if line.starts_with("intra_threads =") {
                format!("intra_threads = {intra_threads}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let topology = topology::Pipeline::from_str(&text, "bench", pages::steps::catalogue())
        .expect("valid topology");
    pages::registry::build(&topology, &home).expect("run ./setup")
}

fn document(path: &str) -> InputDocument {
    let bytes = std::fs::read(repo().join(path)).expect("sample");
    InputDocument { name: path.into(), bytes }
}

/// Runs `documents` through `pipeline`; returns the results and wall seconds.
fn run(pipeline: &Pipeline, documents: Vec<InputDocument>) -> (Vec<DocumentResult>, f64) {
    let started = Instant::now();
    let mut results = Vec::new();
    embedded::run(
        pipeline,
        documents.into_iter(),
        &Options::default(),
        |_| {},
        |r| results.push(r),
    );
    (results, started.elapsed().as_secs_f64())
}

fn pages(results: &[DocumentResult]) -> usize {
    results.iter().map(|r| r.pages.len()).sum()
}

/// Seconds per page, one page at a time (the mean of `n` runs after a warm-up).
fn latency(pipeline: &Pipeline, path: &str, n: usize) -> f64 {
    run(pipeline, vec![document(path)]);
    (0..n).map(|_| run(pipeline, vec![document(path)]).1).sum::<f64>() / n as f64
}

/// Character error rate of `hypothesis` against `reference`, whitespace removed.
fn cer(reference: &str, hypothesis: &str) -> f64 {
    let r: Vec<char> = reference.chars().filter(|c| !c.is_whitespace()).collect();
    let h: Vec<char> = hypothesis.chars().filter(|c| !c.is_whitespace()).collect();
    let mut row: Vec<usize> = (0..=h.len()).collect();
    for (i, rc) in r.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, hc) in h.iter().enumerate() {
            let substitution = diagonal + usize::from(rc != hc);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[h.len()] as f64 / r.len().max(1) as f64
}

fn main() {
    let batch: usize =
        std::env::var("PAGESTREAM_BENCH_PAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let scanned = "samples/scan-letter.png";
    println!(
        "pagestream embedded pipeline, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let serial = pipeline(1, 1);
    let one_thread = latency(&serial, scanned, 3);
    println!("scanned page, 1 page at a time, 1 thread:  {one_thread:.2} s/page");
    let digital_one = latency(&serial, "samples/invoice.pdf", 3);
    println!("digital page, 1 page at a time, 1 thread:  {digital_one:.3} s/page");
    drop(serial);

    let serial_two_threads = pipeline(1, 2);
    let two_threads = latency(&serial_two_threads, scanned, 3);
    println!("scanned page, 1 page at a time, 2 threads: {two_threads:.2} s/page");
    drop(serial_two_threads);

    let parallel = pipeline(2, 1);
    run(&parallel, vec![document(scanned)]);
    let (results, seconds) = run(&parallel, (0..batch).map(|_| document(scanned)).collect());
    let n = pages(&results);
    println!("scanned pages, batch of {n}, 2 pages in flight: {:.3} pages/s", n as f64 / seconds);

    let timings = results.iter().flat_map(|r| &r.pages).flat_map(|p| &p.timings);
    let (mut total, mut inference, mut model_steps) = (0u64, 0u64, 0u64);
    for t in timings {
        total += t.duration_us;
        inference += t.inference_us;
        if t.inference_us > 0 {
            model_steps += t.duration_us;
        }
    }
    println!(
        "  time in model inference: {:.1}% of all step time; pre/post-processing of model steps: {:.1}% of inference",
        100.0 * inference as f64 / total.max(1) as f64,
        100.0 * (model_steps - inference) as f64 / inference.max(1) as f64
    );
    let truth = std::fs::read_to_string(repo().join("workers/tests/fixtures/scan-letter.txt"))
        .unwrap_or_default();
    let text: String =
        results[0].pages[0].lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join("\n");
    println!("  CER of the scanned letter against its ground truth: {:.4}", cer(&truth, &text));

    let digital: Vec<_> = (0..batch * 3)
        .map(|i| document(if i % 2 == 0 { "samples/invoice.pdf" } else { "samples/report.pdf" }))
        .collect();
    let (results, seconds) = run(&parallel, digital);
    let n = pages(&results);
    let layer = results
        .iter()
        .flat_map(|r| &r.pages)
        .filter(|p| p.lines.iter().all(|l| l.source == TextSource::TextLayer))
        .count();
    println!(
        "digital pages, batch of {n} ({layer} read from the text layer): {:.2} pages/s",
        n as f64 / seconds
    );
}
