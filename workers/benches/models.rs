//! Latency of the model steps on the sample pages, per model, with 1 and 2
//! intra-op threads, and how much of each step is pre/post-processing;
//! then the speed levers with their effect on accuracy.
//!
//!     cargo bench -p workers --bench models [-- REPS]
//!
//! Pages: `samples/scan-letter.png` (scanned A4 at 150 dpi, 33 lines) and
//! `samples/invoice.pdf` rendered at 150 dpi (78 lines, many short). A step
//! is timed REPS times (default 3) after a warm-up; the fastest run is
//! reported. Accuracy: character error rate against the letter's ground
//! truth and the invoice's text layer, and the share of the reference
//! pipeline's lines (`tests/golden/`) read identically.
//!
//! Other model files can be compared with `PAGESTREAM_BENCH_DET`,
//! `PAGESTREAM_BENCH_CLS` and `PAGESTREAM_BENCH_REC` (paths to ONNX files,
//! e.g. the float originals of the derived models, or older models): they
//! get a row of their own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pages::home::Home;
use pages::models::{ModelSpec, Models};
use pages::page::{Page, StepMeter};
use pages::steps::Step;
use pages::steps::layout::DetectRegions;
use pages::steps::ocr::{classify, detect, recognize};
use pages::steps::preprocess::orient::Orient;
use pages::steps::render::{ExtractText, Rasterize};
use pages::steps::split::Splitter;
use pages::steps::{MODEL_CLS, MODEL_DET, MODEL_LAYOUT, MODEL_ORIENTATION, MODEL_REC};
use schemas::{BBox, DocumentSource, DocumentSubmission, Line};
use serde::Deserialize;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn main() {
    let reps: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3);
    let home = Home::new(repo().join(".pagestream"));
    assert!(home.onnxruntime_lib().is_file(), "ONNX Runtime is missing: run ./setup");
    let letter = Sample::letter();
    let invoice = Sample::invoice(&home);

    println!(
        "model latency on {} ({}x{}), fastest of {reps}",
        letter.name,
        letter.width(),
        letter.height()
    );
    println!(
        "{:<12} {:>7} {:>10} {:>12} {:>10} {:>6}",
        "model", "threads", "step ms", "inference ms", "pre/post", "share"
    );
    for threads in [1, 2] {
        let models = load(&home, threads, &[]);
        for row in latency(&models, &letter, reps) {
            println!(
                "{:<12} {:>7} {:>10.1} {:>12.1} {:>10.1} {:>5.0}%",
                row.model,
                threads,
                ms(row.wall),
                ms(row.inference),
                ms(row.wall.saturating_sub(row.inference)),
                100.0 * row.wall.saturating_sub(row.inference).as_secs_f64()
                    / row.wall.as_secs_f64()
            );
        }
    }

    println!("\nOCR levers, 1 thread: det + cls + rec wall time, accuracy");
    println!(
        "{:<52} {:>9} {:>9} {:>10} {:>11} {:>9} {:>9}",
        "variant", "letter s", "invoice s", "letter CER", "invoice CER", "letter =", "invoice ="
    );
    let alternatives: Vec<(&str, PathBuf)> = [
        (MODEL_DET, "PAGESTREAM_BENCH_DET"),
        (MODEL_CLS, "PAGESTREAM_BENCH_CLS"),
        (MODEL_REC, "PAGESTREAM_BENCH_REC"),
    ]
    .into_iter()
    .filter_map(|(name, var)| std::env::var_os(var).map(|path| (name, PathBuf::from(path))))
    .collect();
    let models = load(&home, 1, &[]);
    let det_at = |side| detect::Config { det_max_side_len: side, ..Default::default() };
    let rec_with =
        |batch_size, min_width| recognize::Config { batch_size, min_width, ..Default::default() };
    let mut variants = vec![
        (
            "reference: det <= 2000 px, rec batch 6 padded to 320",
            det_at(2000),
            rec_with(6, 320),
            &models,
        ),
        ("det <= 2000 px, rec batch 6 unpadded", det_at(2000), rec_with(6, 8), &models),
        ("det <= 2000 px, rec batch 1 unpadded", det_at(2000), rec_with(1, 8), &models),
        ("det <= 1600 px, rec batch 1 unpadded", det_at(1600), rec_with(1, 8), &models),
        ("defaults: det <= 1280 px, rec batch 1 unpadded", det_at(1280), rec_with(1, 8), &models),
        ("det <= 960 px, rec batch 1 unpadded", det_at(960), rec_with(1, 8), &models),
    ];
    let alt_models = (!alternatives.is_empty()).then(|| load(&home, 1, &alternatives));
    if let Some(alt) = &alt_models {
        variants.push((
            "defaults, alternative model files",
            detect::Config::default(),
            recognize::Config::default(),
            alt,
        ));
    }
    for (name, det, rec, models) in variants {
        let steps = ocr_steps(models, det, rec);
        let (letter_time, letter_lines) = timed_ocr(&steps, &letter, reps);
        let (invoice_time, invoice_lines) = timed_ocr(&steps, &invoice, reps);
        println!(
            "{:<52} {:>9.2} {:>9.2} {:>10.4} {:>11.4} {:>8.0}% {:>8.0}%",
            name,
            letter_time.as_secs_f64(),
            invoice_time.as_secs_f64(),
            cer(&letter_lines, &letter.truth),
            cer(&invoice_lines, &invoice.truth),
            100.0 * letter.agreement(&letter_lines),
            100.0 * invoice.agreement(&invoice_lines),
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A page to run on, with its ground truth and the reference's lines.
struct Sample {
    name: &'static str,
    page: Page,
    truth: String,
    golden: Vec<GoldenLine>,
}

#[derive(Deserialize)]
struct Golden {
    lines: Vec<GoldenLine>,
}

#[derive(Deserialize)]
struct GoldenLine {
    quad: [[f32; 2]; 4],
    text: String,
}

fn golden(name: &str) -> Vec<GoldenLine> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str::<Golden>(&text).expect("golden file").lines
}

fn blank_page() -> Page {
    Page::new(schemas::PageTask {
        doc_id: "bench".into(),
        tenant: "bench".into(),
        page_index: 0,
        page_count: 1,
        kind: schemas::DocumentKind::Png,
        source: DocumentSource::Inline { bytes: Vec::new() },
        submitted_at_ms: 0,
    })
}

impl Sample {
    fn letter() -> Sample {
        let mut page = blank_page();
        page.image =
            Some(image::open(repo().join("samples/scan-letter.png")).expect("sample").to_rgb8());
        let truth = std::fs::read_to_string(repo().join("workers/tests/fixtures/scan-letter.txt"))
            .expect("ground truth");
        Sample {
            name: "scan-letter.png",
            page,
            truth: normalise(&truth),
            golden: golden("scan-letter.json"),
        }
    }

    fn invoice(home: &Home) -> Sample {
        pages::pdf::init(&home.pdfium_lib()).expect("PDFium is installed: run ./setup");
        let bytes = std::fs::read(repo().join("samples/invoice.pdf")).expect("sample");
        let submission = DocumentSubmission {
            doc_id: runtime::embedded::doc_id(&bytes),
            tenant: "bench".into(),
            file_name: None,
            source: DocumentSource::Inline { bytes: Vec::new() },
            submitted_at_ms: 0,
        };
        let split = Splitter::default()
            .split(&submission, &bytes, &DocumentSource::Inline { bytes: Vec::new() })
            .expect("split");
        let mut page = Page::new(split.tasks[0].clone());
        page.document = Some(Arc::new(bytes));
        let mut meter = StepMeter::default();
        Rasterize::default().run(&mut page, &mut meter).expect("rasterize");
        ExtractText.run(&mut page, &mut meter).expect("extract text");
        let truth = text_of(&page.text_layer);
        page.text_layer.clear();
        page.document = None;
        Sample { name: "invoice.pdf", page, truth, golden: golden("invoice.json") }
    }

    fn width(&self) -> u32 {
        self.page.image.as_ref().map_or(0, |i| i.width())
    }

    fn height(&self) -> u32 {
        self.page.image.as_ref().map_or(0, |i| i.height())
    }

    /// Share of the reference's lines read identically by a line at the
    /// same place.
    fn agreement(&self, lines: &[Line]) -> f64 {
        let same = self
            .golden
            .iter()
            .filter(|want| {
                let want_box = BBox::enclosing(&want.quad).unwrap_or_default();
                lines
                    .iter()
                    .max_by(|a, b| iou(&a.bbox, &want_box).total_cmp(&iou(&b.bbox, &want_box)))
                    .is_some_and(|l| iou(&l.bbox, &want_box) > 0.5 && l.text == want.text)
            })
            .count();
        same as f64 / self.golden.len().max(1) as f64
    }
}

fn iou(a: &BBox, b: &BBox) -> f32 {
    let inter = a.intersection_area(b);
    inter / (a.area() + b.area() - inter).max(1e-6)
}

fn load(home: &Home, threads: usize, replace: &[(&str, PathBuf)]) -> Models {
    let topology =
        topology::Pipeline::embedded(pages::steps::catalogue()).expect("embedded topology");
    let specs: Vec<ModelSpec> = [MODEL_ORIENTATION, MODEL_LAYOUT, MODEL_DET, MODEL_CLS, MODEL_REC]
        .into_iter()
        .map(|name| {
            let path = replace
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, p)| p.clone())
                .or_else(|| topology.model_path(name, &home.models_dir()))
                .expect("model in topology");
            let mut spec = ModelSpec::new(name, path);
            spec.intra_threads = threads;
            spec.pool_size = Some(1);
            spec
        })
        .collect();
    Models::load(&home.onnxruntime_lib(), &specs, 1).expect("models load")
}

fn ocr_steps(models: &Models, det: detect::Config, rec: recognize::Config) -> [Box<dyn Step>; 3] {
    let model = |name| models.get(name).expect("model");
    [
        Box::new(detect::DetectText::new(det, model(MODEL_DET))),
        Box::new(classify::ClassifyLines::new(classify::Config::default(), model(MODEL_CLS))),
        Box::new(recognize::RecognizeText::new(rec, model(MODEL_REC)).expect("dictionary")),
    ]
}

struct Row {
    model: &'static str,
    wall: Duration,
    inference: Duration,
}

/// Times `run` `reps` times; the fastest run's wall and inference time.
fn fastest(reps: usize, mut run: impl FnMut(&mut StepMeter)) -> (Duration, Duration) {
    (0..reps.max(1))
        .map(|_| {
            let mut meter = StepMeter::default();
            let started = Instant::now();
            run(&mut meter);
            (started.elapsed(), meter.inference)
        })
        .min()
        .unwrap_or_default()
}

fn latency(models: &Models, sample: &Sample, reps: usize) -> Vec<Row> {
    let image = sample.page.image.clone().expect("page image");
    let orient = Orient::new(Default::default(), models.get(MODEL_ORIENTATION).expect("model"))
        .expect("labels");
    let layout = DetectRegions::new(Default::default(), models.get(MODEL_LAYOUT).expect("model"))
        .expect("labels");
    let [det, cls, rec] = ocr_steps(models, Default::default(), Default::default());
    // warm-up, and the page state before each OCR step
    let mut before_cls = sample.page.clone();
    det.run(&mut before_cls, &mut StepMeter::default()).expect("detect");
    let mut before_rec = before_cls.clone();
    cls.run(&mut before_rec, &mut StepMeter::default()).expect("classify");
    rec.run(&mut before_rec.clone(), &mut StepMeter::default()).expect("recognize");
    let step = |step: &dyn Step, page: &Page| {
        fastest(reps, |meter| step.run(&mut page.clone(), meter).expect("step"))
    };
    let rows = [
        ("orientation", fastest(reps, |m| _ = orient.guess(&image, m).expect("orientation"))),
        ("layout", fastest(reps, |m| _ = layout.regions(&image, m).expect("layout"))),
        ("det", step(det.as_ref(), &sample.page)),
        ("cls", step(cls.as_ref(), &before_cls)),
        ("rec", step(rec.as_ref(), &before_rec)),
    ];
    rows.into_iter().map(|(model, (wall, inference))| Row { model, wall, inference }).collect()
}

/// Wall time of the three OCR steps (fastest of `reps`) and the lines read.
fn timed_ocr(steps: &[Box<dyn Step>; 3], sample: &Sample, reps: usize) -> (Duration, Vec<Line>) {
    let mut lines = Vec::new();
    let (wall, _) = fastest(reps, |meter| {
        let mut page = sample.page.clone();
        for step in steps {
            step.run(&mut page, meter).expect("ocr step");
        }
        lines = page.result.lines;
    });
    (wall, lines)
}

fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text of `lines` in reading order (rows top to bottom, each left to
/// right), whitespace collapsed.
fn text_of(lines: &[Line]) -> String {
    let mut lines: Vec<&Line> = lines.iter().collect();
    let mid = |l: &Line| (l.bbox.y0 + l.bbox.y1) / 2.0;
    lines.sort_by(|a, b| mid(a).total_cmp(&mid(b)));
    let mut rows: Vec<Vec<&Line>> = Vec::new();
    for line in lines {
        match rows.last_mut() {
            Some(row) if mid(line) - mid(row[0]) < 0.5 * row[0].bbox.height() => row.push(line),
            _ => rows.push(vec![line]),
        }
    }
    let text: Vec<&str> = rows
        .iter_mut()
        .flat_map(|row| {
            row.sort_by(|a, b| a.bbox.x0.total_cmp(&b.bbox.x0));
            row.iter().map(|l| l.text.as_str()).collect::<Vec<_>>()
        })
        .collect();
    normalise(&text.join(" "))
}

/// Character error rate of `lines` (in reading order) against `truth`.
fn cer(lines: &[Line], truth: &str) -> f64 {
    let read: Vec<char> = text_of(lines).chars().collect();
    let mut row: Vec<usize> = (0..=read.len()).collect();
    for (i, t) in truth.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, r) in read.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diag + usize::from(t != *r));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[read.len()] as f64 / truth.chars().count().max(1) as f64
}
