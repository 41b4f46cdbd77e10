//! The model steps (orient, detect_regions, detect_text, classify_lines,
//! recognize_text) with the real models on the sample pages: against the
//! reference pipeline's output (`tests/golden/`, made by
//! `scripts/reference/golden.py`) and against a PDF's own text layer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use image::RgbImage;
use pages::home::Home;
use pages::models::{ModelError, ModelSpec, Models};
use pages::page::{Page, StepMeter};
use pages::steps::Step;
use pages::steps::layout::DetectRegions;
use pages::steps::ocr::classify::ClassifyLines;
use pages::steps::ocr::detect::{self, DetectText};
use pages::steps::ocr::recognize::{self, RecognizeText};
use pages::steps::preprocess::orient::Orient;
use pages::steps::render::{ExtractText, Rasterize};
use pages::steps::split::Splitter;
use pages::steps::{MODEL_CLS, MODEL_DET, MODEL_LAYOUT, MODEL_ORIENTATION, MODEL_REC};
use schemas::{BBox, DocumentSource, DocumentSubmission, Line, RegionKind, TextSource};
use serde::Deserialize;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The installed runtime and models; a clear failure when they are not.
fn home() -> Home {
    let home = Home::new(repo().join(".pagestream"));
    let lib = home.onnxruntime_lib();
    assert!(lib.is_file(), "{} is missing: run ./setup", lib.display());
    home
}

fn specs(home: &Home, names: &[&str]) -> Vec<ModelSpec> {
    let topology =
        topology::Pipeline::embedded(pages::steps::catalogue()).expect("embedded topology");
    names
        .iter()
        .map(|name| {
            let path = topology.model_path(name, &home.models_dir()).expect("model in topology");
            assert!(path.is_file(), "{} is missing: run ./setup", path.display());
            ModelSpec::new(name, path)
        })
        .collect()
}

/// All five models, two sessions each (tests run on two threads).
fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(|| {
        let home = home();
        let names = [MODEL_ORIENTATION, MODEL_LAYOUT, MODEL_DET, MODEL_CLS, MODEL_REC];
        Models::load(&home.onnxruntime_lib(), &specs(&home, &names), 2).expect("models load")
    })
}

/// The OCR steps with their default settings.
fn ocr_steps() -> Vec<Box<dyn Step>> {
    ocr_steps_with(Default::default(), Default::default())
}

/// The OCR steps set up exactly as the reference pipeline: its float
/// models, detection at up to 2000 pixels, lines read six at a time, padded
/// to 320 pixels. (The derived models are compared with the float ones in
/// `derived_models_read_as_the_float_originals`.)
fn reference_ocr_steps() -> Vec<Box<dyn Step>> {
    ocr_steps_of(
        float_models(),
        detect::Config { det_max_side_len: 2000, ..Default::default() },
        recognize::Config { batch_size: 6, min_width: 320, ..Default::default() },
    )
}

fn ocr_steps_with(det: detect::Config, rec: recognize::Config) -> Vec<Box<dyn Step>> {
    ocr_steps_of(models(), det, rec)
}

/// The float originals of the models `./setup` derives for the topology
/// (scripts/derive_models.py): detection, line angle, recognition.
fn float_models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(|| {
        let home = home();
        let mut specs = specs(&home, &[MODEL_CLS]);
        for (name, file) in
            [(MODEL_DET, "PP-OCRv6_det_small.onnx"), (MODEL_REC, "PP-OCRv6_rec_small.onnx")]
        {
            let path = home.models_dir().join(file);
            assert!(path.is_file(), "{} is missing: run ./setup", path.display());
            specs.push(ModelSpec::new(name, path));
        }
        Models::load(&home.onnxruntime_lib(), &specs, 2).expect("models load")
    })
}

fn ocr_steps_of(m: &Models, det: detect::Config, rec: recognize::Config) -> Vec<Box<dyn Step>> {
    vec![
        Box::new(DetectText::new(det, m.get(MODEL_DET).expect("det"))),
        Box::new(ClassifyLines::new(Default::default(), m.get(MODEL_CLS).expect("cls"))),
        Box::new(RecognizeText::new(rec, m.get(MODEL_REC).expect("rec")).expect("dictionary")),
    ]
}

fn run(steps: &[Box<dyn Step>], page: &mut Page) -> StepMeter {
    let mut meter = StepMeter::default();
    for step in steps {
        step.run(page, &mut meter).unwrap_or_else(|e| panic!("{}: {e}", step.name()));
    }
    meter
}

/// Page `index` of the document at `path` (relative to the repository),
/// split and rendered by the render stage: image and text layer.
fn render(path: &str) -> Page {
    let home = home();
    pages::pdf::init(&home.pdfium_lib()).expect("PDFium is installed: run ./setup");
    let bytes = std::fs::read(repo().join(path)).expect("sample document");
    let submission = DocumentSubmission {
        doc_id: runtime::embedded::doc_id(&bytes),
        tenant: "test".into(),
        file_name: None,
        source: DocumentSource::Inline { bytes: Vec::new() },
        submitted_at_ms: 0,
    };
    let split = Splitter::default()
        .split(&submission, &bytes, &DocumentSource::Inline { bytes: Vec::new() })
        .expect("split");
    let mut page = Page::new(split.tasks[0].clone());
    page.document = Some(Arc::new(bytes));
    run(&[Box::new(Rasterize::default()), Box::new(ExtractText)], &mut page);
    page
}

fn image(path: &str) -> RgbImage {
    image::open(repo().join(path)).expect("sample image").to_rgb8()
}

#[derive(Deserialize)]
struct Golden {
    lines: Vec<GoldenLine>,
    regions: Vec<GoldenRegion>,
}

#[derive(Deserialize)]
struct GoldenLine {
    quad: [[f32; 2]; 4],
    text: String,
}

#[derive(Deserialize)]
struct GoldenRegion {
    label: String,
    bbox: [f32; 4],
}

fn golden(name: &str) -> Golden {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    let text = std::fs::read_to_string(&path).expect("golden file");
    serde_json::from_str(&text).expect("golden JSON")
}

fn iou(a: &BBox, b: &BBox) -> f32 {
    let inter = a.intersection_area(b);
    inter / (a.area() + b.area() - inter)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diag + usize::from(ca != *cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The text of `lines` in reading order (rows top to bottom, each left to
/// right), whitespace collapsed.
fn page_text(lines: &[Line]) -> String {
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
    let words: Vec<&str> = rows
        .iter_mut()
        .flat_map(|row| {
            row.sort_by(|a, b| a.bbox.x0.total_cmp(&b.bbox.x0));
            row.iter().flat_map(|l| l.text.split_whitespace()).collect::<Vec<_>>()
        })
        .collect();
    words.join(" ")
}

#[test]
fn detection_and_recognition_match_the_reference() {
    let golden = golden("scan-letter.json");
    let mut page = render("samples/scan-letter.png");
    let rec_batches = pages::models::BATCH_SIZES.with_label_values(&[MODEL_REC]);
    let inputs_before = rec_batches.get_sample_sum();
    let meter = run(&reference_ocr_steps(), &mut page);
    assert!(!meter.inference.is_zero());
    let lines = &page.result.lines;
    assert_eq!(lines.len(), golden.lines.len(), "{lines:#?}");
    // Every line went through recognition, in batches the metric counts
    // (other tests share the process-wide histogram, hence "at least").
    assert!(rec_batches.get_sample_sum() - inputs_before >= lines.len() as f64);
    let mut same_text = 0;
    for want in &golden.lines {
        let want_box = BBox::enclosing(&want.quad).unwrap();
        let (best, overlap) = lines
            .iter()
            .map(|l| (l, iou(&l.bbox, &want_box)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert!(overlap > 0.9, "{:?}: best match {:?} at IoU {overlap}", want.text, best.text);
        assert_eq!(best.source, TextSource::Ocr);
        same_text += usize::from(best.text == want.text);
        // words lie inside their line and spell it
        let words: Vec<&str> = best.words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(words.join(" "), best.text.split_whitespace().collect::<Vec<_>>().join(" "));
        for w in &best.words {
            assert!(w.bbox.x0 >= best.bbox.x0 - 1.0 && w.bbox.x1 <= best.bbox.x1 + 1.0, "{w:?}");
        }
    }
    let share = same_text as f32 / golden.lines.len() as f32;
    assert!(
        share >= 0.95,
        "only {same_text} of {} lines read as the reference",
        golden.lines.len()
    );
}

#[test]
fn words_are_placed_where_they_are_printed() {
    // the invoice's text layer gives word boxes to compare with
    let mut page = render("samples/invoice.pdf");
    let layer = std::mem::take(&mut page.text_layer);
    run(&ocr_steps(), &mut page);
    let truth: Vec<_> = layer.iter().flat_map(|l| &l.words).collect();
    let (mut total, mut misplaced) = (0, Vec::new());
    let centre = |b: &BBox| [(b.x0 + b.x1) / 2.0, (b.y0 + b.y1) / 2.0];
    for word in page.result.lines.iter().flat_map(|l| &l.words).filter(|w| w.text.len() >= 4) {
        let c = centre(&word.bbox);
        let dist = |t: &&&schemas::Word| {
            let tc = centre(&t.bbox);
            (tc[0] - c[0]).hypot(tc[1] - c[1])
        };
        let same = truth.iter().filter(|t| t.text == word.text);
        let Some(nearest) = same.min_by(|a, b| dist(a).total_cmp(&dist(b))) else { continue };
        total += 1;
        if dist(&nearest) >= nearest.bbox.width().max(20.0) / 2.0 {
            misplaced
                .push(format!("{:?} at {:?}, printed at {:?}", word.text, word.bbox, nearest.bbox));
        }
    }
    assert!(total > 50, "only {total} words to compare");
    assert!(misplaced.len() * 10 <= total, "of {total} words misplaced: {misplaced:#?}");
}

#[test]
fn ocr_of_a_rendered_pdf_page_agrees_with_its_text_layer() {
    let mut page = render("samples/invoice.pdf");
    let truth = page_text(&page.text_layer);
    page.text_layer.clear();
    run(&ocr_steps(), &mut page);
    let read = page_text(&page.result.lines);
    let cer = edit_distance(&read, &truth) as f32 / truth.chars().count() as f32;
    assert!(cer <= 0.05, "character error rate {cer:.3}\nread:  {read}\ntruth: {truth}");
}

#[test]
fn derived_models_read_as_the_float_originals() {
    // The int8 detection and recognition models against the float models
    // they are derived from, on pages outside their calibration set.
    for path in ["samples/scan-letter.png", "samples/invoice.pdf"] {
        let read = |models: &Models| {
            let mut page = render(path);
            page.text_layer.clear();
            run(&ocr_steps_of(models, Default::default(), Default::default()), &mut page);
            page.result.lines
        };
        let (derived, float) = (read(models()), read(float_models()));
        assert_eq!(derived.len(), float.len(), "{path}: lines found");
        for (a, b) in derived.iter().zip(&float) {
            let overlap = iou(&a.bbox, &b.bbox);
            assert!(overlap > 0.8, "{path}: {:?} at IoU {overlap} with {:?}", a.text, b.text);
        }
        let same = derived.iter().zip(&float).filter(|(a, b)| a.text == b.text).count();
        assert!(same * 10 >= float.len() * 9, "{path}: {same} of {} lines read alike", float.len());
        let (derived, float) = (page_text(&derived), page_text(&float));
        let cer = edit_distance(&derived, &float) as f32 / float.chars().count() as f32;
        assert!(cer <= 0.01, "{path}: {cer:.4} apart\nint8:  {derived}\nfloat: {float}");
    }
}

#[test]
fn a_covering_text_layer_replaces_ocr() {
    let mut page = render("samples/invoice.pdf");
    let layer = page.text_layer.clone();
    run(&[Box::new(layout_step())], &mut page);
    let meter = run(&ocr_steps(), &mut page);
    assert!(meter.inference.is_zero(), "no OCR model runs: {meter:?}");
    assert_eq!(page.result.lines.len(), layer.len());
    assert!(page.result.lines.iter().all(|l| l.source == TextSource::TextLayer));
}

#[test]
fn only_what_the_text_layer_misses_is_read() {
    // the invoice with the text layer of its table missing, as if the table
    // were a scanned image pasted into a digital page
    let mut page = render("samples/invoice.pdf");
    run(&[Box::new(layout_step())], &mut page);
    let table = page.result.regions.iter().find(|r| r.kind == RegionKind::Table).expect("table");
    let inside = |b: &BBox| {
        let (x, y) = ((b.x0 + b.x1) / 2.0, (b.y0 + b.y1) / 2.0);
        x >= table.bbox.x0 && x <= table.bbox.x1 && y >= table.bbox.y0 && y <= table.bbox.y1
    };
    let table_box = table.bbox;
    page.text_layer.retain(|l| !inside(&l.bbox));
    let kept = page.text_layer.len();
    let meter = run(&ocr_steps(), &mut page);
    assert!(!meter.inference.is_zero());
    let (ocr, layer): (Vec<&Line>, Vec<&Line>) =
        page.result.lines.iter().partition(|l| l.source == TextSource::Ocr);
    assert_eq!(layer.len(), kept);
    assert!(ocr.len() >= 20, "the table's cells are read: {ocr:#?}");
    for line in &ocr {
        assert!(table_box.intersection_area(&line.bbox) > 0.5 * line.bbox.area(), "{line:?}");
    }
    assert!(ocr.iter().any(|l| l.text.contains("Ergonomic office chair")));
}

fn layout_step() -> DetectRegions {
    let model = models().get(MODEL_LAYOUT).expect("layout");
    DetectRegions::new(Default::default(), model).expect("labels")
}

#[test]
fn layout_finds_the_invoice_table_and_matches_the_reference() {
    let step = layout_step();
    let regions = step
        .regions(render("samples/invoice.pdf").image.as_ref().unwrap(), &mut StepMeter::default());
    let regions = regions.unwrap();
    assert!(regions.iter().any(|r| r.kind == RegionKind::Table), "{regions:?}");

    let golden = golden("scan-letter.json");
    let regions =
        step.regions(&image("samples/scan-letter.png"), &mut StepMeter::default()).unwrap();
    assert_eq!(regions.len(), golden.regions.len());
    for (got, want) in regions.iter().zip(&golden.regions) {
        let [x0, y0, x1, y1] = want.bbox;
        let overlap = iou(&got.bbox, &BBox { x0, y0, x1, y1 });
        assert!(overlap > 0.95, "{got:?} vs {:?} {:?}: IoU {overlap}", want.label, want.bbox);
        assert_eq!(serde_json::to_value(got.kind).unwrap(), want.label.as_str());
    }
}

#[test]
fn turned_pages_are_set_upright_and_upright_pages_left_alone() {
    let orient = Orient::new(Default::default(), models().get(MODEL_ORIENTATION).unwrap()).unwrap();
    let mut upright = Vec::new();
    for angle in [90u16, 180, 270] {
        let mut page = Page::new(render("samples/scan-letter.png").task);
        page.image = Some(image(&format!("workers/tests/fixtures/rotated-{angle}.png")));
        orient.run(&mut page, &mut StepMeter::default()).unwrap();
        assert_eq!(page.result.rotation_deg, 360 - angle, "page turned {angle}");
        assert!(page.result.diagnostics.is_empty());
        upright.push(page.image.unwrap());
    }
    // the three corrected pages are the same portrait page, and it reads
    assert!(upright.iter().all(|img| *img == upright[0]));
    let (w, h) = upright[0].dimensions();
    assert!(h > w);
    let mut page = render("samples/scan-letter.png");
    page.image = Some(upright[0].clone());
    run(&ocr_steps(), &mut page);
    assert!(page.result.lines.first().is_some_and(|l| l.text.contains("Garden Design")));

    // upright pages, scanned or digital, are never turned
    for path in ["samples/scan-letter.png", "samples/invoice.pdf"] {
        let mut page = render(path);
        page.text_layer.clear();
        let before = page.image.clone();
        orient.run(&mut page, &mut StepMeter::default()).unwrap();
        assert_eq!(page.result.rotation_deg, 0, "{path}");
        assert_eq!(page.image, before);
    }
}

#[test]
fn a_pool_serves_several_threads_at_once() {
    let home = home();
    let mut spec = specs(&home, &[MODEL_ORIENTATION]).remove(0);
    spec.pool_size = Some(2);
    let models = Models::load(&home.onnxruntime_lib(), &[spec], 1).unwrap();
    let step = Orient::new(Default::default(), models.get(MODEL_ORIENTATION).unwrap()).unwrap();
    let img = image("workers/tests/fixtures/rotated-90.png");
    let guesses: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| step.guess(&img, &mut StepMeter::default()).unwrap().unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(guesses.iter().all(|g| *g == guesses[0] && g.angle == 90));
}

#[test]
fn a_missing_or_broken_runtime_is_a_typed_error() {
    let specs = specs(&home(), &[MODEL_CLS]);
    let missing = Models::load(Path::new("/nonexistent/libonnxruntime.so"), &specs, 1);
    assert!(matches!(missing, Err(ModelError::RuntimeMissing { .. })), "{missing:?}");

    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so.1.32.0");
    std::fs::write(&fake, b"not a shared library").unwrap();
    let broken = Models::load(&fake, &specs, 1);
    assert!(matches!(broken, Err(ModelError::Runtime { .. })), "{broken:?}");

    let gone = ModelSpec::new(MODEL_CLS, dir.path().join("missing.onnx"));
    let missing_model = Models::load(&home().onnxruntime_lib(), &[gone], 1);
    assert!(matches!(missing_model, Err(ModelError::ModelMissing { .. })), "{missing_model:?}");
}
