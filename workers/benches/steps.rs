//! The framework's cost per step at the scale of the system pagestream
//! replaces (about 400 steps a page): a topology of 400 steps, the 17
//! built-in ones and 383 rule steps in `enrich` (extractors by pattern and
//! by word list, some with checksums, lookups through a table file, flags),
//! checked and built as a worker would, then run over real pages.
//!
//! Reports:
//! - the time `topology check` (the loader) takes for that file;
//! - the framework's own cost per step and page, without the steps' work:
//!   a stage of 400 steps that do nothing, run through `Stage::run`
//!   (dispatch, timing, panic catching, the timing record), minus the same
//!   steps called directly;
//! - on real pages (the sample documents and 12 pages of a corpus PDF,
//!   analysed up to `enrich` with the real models), the enrich stage of 388
//!   steps: time per page, the steps' own time, and what lies outside it.
//!
//! `cargo bench --bench steps` (after `./setup`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use pages::error::StepError;
use pages::home::Home;
use pages::page::{Page, StepMeter};
use pages::pipeline::{Pipeline, Stage};
use pages::steps::Step;
use schemas::DocumentSubmission;

/// Steps in the benchmark's topology.
const STEPS: usize = 400;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Patterns of the extractors, cycled (what customer rules look like:
/// labelled numbers, codes, dates, references).
const PATTERNS: &[&str] = &[
    r"(?i)order\s*(?:no\.?|#)\s*(?P<value>[A-Z0-9-]{4,20})",
    r"\b\d{4}-\d{2}-\d{2}\b",
    r"(?i)customer\s*(?:id|no\.?)\s*:?\s*(?P<value>\w+)",
    r"\b[A-Z]{2,3}-\d{3,8}\b",
    r"(?i)\bpage\s+(?P<value>\d+)\b",
    r"(?i)ref(?:erence)?\.?\s*:?\s*(?P<value>[A-Z0-9/-]{3,})",
    r"\b\d+[.,]\d{2}\b",
    r"(?i)\b(?:total|sum|amount)\b",
];

/// The built-in topology with `rules` rule steps appended to `enrich`, and
/// the table file their lookups read.
fn topology_text(rules: usize, table: &std::path::Path) -> String {
    let mut names = Vec::new();
    let mut tables = String::new();
    for i in 0..rules {
        let name = format!("rule_{i:03}");
        let body = match i % 6 {
            0..=2 => format!(
                "kind = \"extract\"\npattern = '{}'\nnormalize = [\"trim\", \"uppercase\"]\n",
                PATTERNS[i % PATTERNS.len()]
            ),
            3 => "kind = \"extract\"\nwords = [\"invoice\", \"total\", \"GmbH\", \"Ltd\", \"page\"]\n"
                .to_owned(),
            4 => format!(
                "kind = \"lookup\"\nfield = \"rule_{:03}\"\ntable = \"{}\"\non_missing = \"ignore\"\n",
                i - 1,
                table.display()
            ),
            _ => format!(
                "kind = \"flag\"\nif_text = '(?i)\\b(?:urgent|overdue|reminder)\\b'\nunless_field = \"iban\"\ncode = \"flag_{i}\"\n"
            ),
        };
        tables.push_str(&format!("\n[steps.{name}]\n{body}"));
        names.push(format!("\"{name}\""));
    }
    let embedded = topology::EMBEDDED;
    let enrich_steps = "steps = [\"order_reading\", \"detect_language\", \"extract_fields\", \"build_tables\", \"classify_page\"";
    assert!(embedded.contains(enrich_steps), "the enrich stage's steps");
    let with_rules =
        embedded.replacen(enrich_steps, &format!("{enrich_steps}, {}", names.join(", ")), 1);
    format!("{with_rules}\n{tables}")
}

/// A step that does nothing: what is left is the framework.
struct Nothing;

impl Step for Nothing {
    fn name(&self) -> &str {
        "nothing"
    }

    fn run(&self, _: &mut Page, _: &mut StepMeter) -> Result<(), StepError> {
        Ok(())
    }
}

/// The pages of `paths` as they reach `enrich`: split, then every page
/// stage before it, with the real models.
fn pages_at_enrich(pipeline: &Pipeline, paths: &[(PathBuf, usize)]) -> Vec<Page> {
    let mut pages = Vec::new();
    for (path, most) in paths {
        let bytes = Arc::new(std::fs::read(path).expect("sample document"));
        let doc_id = runtime::blobs::sha256_hex(&bytes);
        let submission = DocumentSubmission {
            doc_id,
            tenant: "bench".into(),
            file_name: None,
            source: schemas::DocumentSource::Inline { bytes: Vec::new() },
            submitted_at_ms: 0,
        };
        let split = pipeline
            .splitter
            .split(&submission, &bytes, &submission.source)
            .unwrap_or_else(|e| panic!("{}: {:?}", path.display(), e.error));
        for task in split.tasks.into_iter().take(*most) {
            let mut page = Page::new(task);
            page.document = Some(Arc::clone(&bytes));
            for stage in pipeline.stages.iter().take_while(|stage| stage.name != "enrich") {
                stage.run(&mut page, 0).unwrap_or_else(|f| panic!("{}: {f:?}", path.display()));
            }
            page.document = None;
            pages.push(page);
        }
    }
    pages
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let table = dir.path().join("codes.csv");
    let rows: String = (0..5000).map(|i| format!("ORD-{i:05},customer {}\n", i % 97)).collect();
    std::fs::write(&table, rows).expect("table file");
    let builtin = pages::steps::BUILTIN.len();
    let text = topology_text(STEPS - builtin, &table);

    // the loader on the 400-step file, as `pagestream topology check` runs it
    let catalogue = pages::steps::catalogue();
    let checks = 20;
    let started = Instant::now();
    for _ in 0..checks {
        topology::Pipeline::from_str(&text, "steps.toml", catalogue).expect("valid topology");
    }
    let check_ms = started.elapsed().as_secs_f64() * 1e3 / checks as f64;
    let topology =
        topology::Pipeline::from_str(&text, "steps.toml", catalogue).expect("valid topology");
    let total: usize = topology.stages().iter().map(|stage| stage.steps().len()).sum();
    assert_eq!(total, STEPS);
    let started = Instant::now();
    for _ in 0..checks {
        topology::Pipeline::embedded(catalogue).expect("embedded topology");
    }
    let embedded_ms = started.elapsed().as_secs_f64() * 1e3 / checks as f64;

    // the framework alone: 400 steps that do nothing
    let noop: Vec<Box<dyn Step>> = (0..STEPS).map(|_| Box::new(Nothing) as Box<dyn Step>).collect();
    let mut stage = Stage::new("enrich", noop);
    stage.step_timeout = Some(topology.limits().step_timeout);
    let template = Page::new(schemas::PageTask {
        doc_id: "0".repeat(64),
        tenant: "bench".into(),
        page_index: 0,
        page_count: 1,
        kind: schemas::DocumentKind::Png,
        source: schemas::DocumentSource::Inline { bytes: Vec::new() },
        submitted_at_ms: 0,
    });
    let rounds = 2000;
    let started = Instant::now();
    for _ in 0..rounds {
        let mut page = template.clone();
        stage.run(&mut page, 0).expect("no-op steps");
        std::hint::black_box(&page);
    }
    let through_stage = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for _ in 0..rounds {
        let mut page = template.clone();
        let mut meter = StepMeter::default();
        for step in &stage.steps {
            step.run(&mut page, &mut meter).expect("no-op steps");
        }
        std::hint::black_box(&page);
    }
    let direct = started.elapsed().as_secs_f64();
    let per_step_us = (through_stage - direct) * 1e6 / (rounds * STEPS) as f64;

    // real pages through the 388-step enrich stage
    let home = Home::new(repo().join(".pagestream"));
    let pipeline = pages::registry::build(&topology, &home).expect("run ./setup");
    let samples = repo().join("samples");
    let corpus = repo().join(".pagestream/corpus/libtasn1.pdf");
    let inputs = [
        (samples.join("invoice.pdf"), 1),
        (samples.join("report.pdf"), 2),
        (samples.join("scan-letter.png"), 1),
        (samples.join("fax.tiff"), 1),
        (corpus, 12),
    ];
    let pages = pages_at_enrich(&pipeline, &inputs);
    let enrich = pipeline.stage("enrich").expect("enrich stage");
    let repeats = 10;
    let (mut wall, mut steps_own, mut rules_own) = (0.0, 0.0, 0.0);
    let mut fields = 0;
    let started = Instant::now();
    for _ in 0..repeats {
        for page in &pages {
            let mut page = page.clone();
            let before = page.result.timings.len();
            let one = Instant::now();
            enrich.run(&mut page, 0).expect("enrich");
            wall += one.elapsed().as_secs_f64();
            for timing in &page.result.timings[before..] {
                let us = timing.duration_us as f64;
                steps_own += us;
                if timing.step.starts_with("rule_") {
                    rules_own += us;
                }
            }
            fields += page.result.fields.iter().filter(|f| f.name.is_some()).count();
        }
    }
    let runs = (repeats * pages.len()) as f64;
    let elapsed = started.elapsed().as_secs_f64();
    let enrich_steps = enrich.steps.len();

    println!(
        "400-step topology ({builtin} built-in steps, {} rule steps in enrich):",
        STEPS - builtin
    );
    println!("  topology check: {check_ms:.2} ms (the built-in 17-step file: {embedded_ms:.2} ms)");
    println!(
        "  framework per step and page (400 no-op steps, {rounds} pages): {per_step_us:.3} us"
    );
    println!(
        "  enrich stage, {enrich_steps} steps, {} real pages x {repeats}: {:.2} ms per page, \
         steps' own time {:.2} ms (rule steps {:.2} ms), outside the steps {:.3} us per step; \
         {:.1} rule fields per page; {:.1} s in all",
        pages.len(),
        wall * 1e3 / runs,
        steps_own / 1e3 / runs,
        rules_own / 1e3 / runs,
        (wall * 1e6 - steps_own) / runs / enrich_steps as f64,
        fields as f64 / runs,
        elapsed,
    );
}
