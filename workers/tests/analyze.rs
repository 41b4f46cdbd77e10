//! `pagestream analyze` end to end on the embedded transport: the real
//! binary, the built-in topology, real models and real documents.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use schemas::{DocumentKind, DocumentResult, DocumentStatus, ErrorKind, FieldKind, TextSource};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn analyze(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pagestream"))
        .current_dir(repo())
        .arg("analyze")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("pagestream runs")
}

/// Every `*.json` result in `out`, keyed by file name.
fn results(out: &Path) -> Vec<DocumentResult> {
    let mut results: Vec<DocumentResult> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap())
        .collect();
    results.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    results
}

fn find<'a>(results: &'a [DocumentResult], name: &str) -> &'a DocumentResult {
    results
        .iter()
        .find(|r| r.file_name.as_deref().is_some_and(|f| f.ends_with(name)))
        .unwrap_or_else(|| panic!("no result for {name}"))
}

#[test]
fn samples_are_analysed_completely() {
    let out = tempfile::tempdir().unwrap();
    let output = analyze(&["samples/", "--overlay"], out.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("4 documents, 7 pages"), "{stdout}");

    let results = results(out.path());
    assert_eq!(results.len(), 4);
    for result in &results {
        assert_eq!(result.status, DocumentStatus::Complete, "{:?}", result.file_name);
        assert_eq!(result.pages.len() as u32, result.page_count);
        for page in &result.pages {
            assert!(page.failure.is_none());
            assert!(!page.lines.is_empty(), "{:?} page {}", result.file_name, page.page_index);
            // Every step of every page stage left its timing.
            let stages: std::collections::BTreeSet<_> =
                page.timings.iter().map(|t| t.stage.as_str()).collect();
            for stage in ["render", "preprocess", "layout", "ocr", "enrich"] {
                assert!(stages.contains(stage), "{stage} missing in {:?}", page.timings);
            }
        }
        // A Markdown file and one overlay per page were written too.
        let stem = runtime::output::stem(result);
        assert!(out.path().join(format!("{stem}.md")).is_file());
        for page in 1..=result.page_count {
            let overlay = format!("{}-p{page}.png", &result.doc_id[..8]);
            assert!(out.path().join("overlays").join(overlay).is_file());
        }
    }

    // The digital invoice is read from its text layer, not by OCR, and its
    // key fields are found.
    let invoice = find(&results, "invoice.pdf");
    assert_eq!(invoice.kind, Some(DocumentKind::Pdf));
    let page = &invoice.pages[0];
    assert!(page.lines.iter().all(|l| l.source == TextSource::TextLayer));
    let field = |kind| page.fields.iter().find(|f| f.kind == kind).map(|f| f.normalized.clone());
    assert_eq!(field(FieldKind::Iban), Some(Some("DE89370400440532013000".into())));
    assert_eq!(field(FieldKind::InvoiceNumber).flatten().as_deref(), Some("INV-2026-00417"));
    assert!(
        page.fields
            .iter()
            .any(|f| f.kind == FieldKind::Amount && f.normalized.as_deref() == Some("3589.99 EUR"))
    );

    // The scanned letter and the fax are read by OCR.
    let letter = find(&results, "scan-letter.png");
    assert!(letter.pages[0].lines.iter().all(|l| l.source == TextSource::Ocr));
    let fax = find(&results, "fax.tiff");
    assert_eq!(fax.page_count, 3);
}

#[test]
fn bad_documents_fail_alone_with_their_reason() {
    let inputs = tempfile::tempdir().unwrap();
    let fixtures = repo().join("workers/tests/fixtures");
    for name in
        ["encrypted.pdf", "truncated.pdf", "garbage.png", "huge-dimensions.png", "empty.pdf"]
    {
        std::fs::copy(fixtures.join(name), inputs.path().join(name)).unwrap();
    }
    std::fs::copy(repo().join("samples/report.pdf"), inputs.path().join("report.pdf")).unwrap();
    let text_file = fixtures.join("not-a-document.txt");

    let out = tempfile::tempdir().unwrap();
    let output =
        analyze(&[inputs.path().to_str().unwrap(), text_file.to_str().unwrap()], out.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("failed:"), "{stdout}");

    let results = results(out.path());
    assert_eq!(results.len(), 7, "{stdout}");
    // The good document in the same run is unaffected.
    assert_eq!(find(&results, "report.pdf").status, DocumentStatus::Complete);

    let document_failure = |name: &str| {
        let result = find(&results, name);
        assert_eq!(result.status, DocumentStatus::Failed, "{name}");
        result.failures[0].kind
    };
    assert_eq!(document_failure("encrypted.pdf"), ErrorKind::Encrypted);
    assert_eq!(document_failure("truncated.pdf"), ErrorKind::Corrupt);
    assert_eq!(document_failure("empty.pdf"), ErrorKind::UnsupportedFormat);
    assert_eq!(document_failure("not-a-document.txt"), ErrorKind::UnsupportedFormat);

    // Images whose header is fine fail on their page, which says where and why.
    let page_failure = |name: &str| {
        let result = find(&results, name);
        assert_eq!(result.status, DocumentStatus::Failed, "{name}");
        let failure = result.pages[0].failure.clone().unwrap();
        (failure.stage, failure.step, failure.kind)
    };
    assert_eq!(
        page_failure("garbage.png"),
        ("render".into(), "rasterize".into(), ErrorKind::Corrupt)
    );
    assert_eq!(
        page_failure("huge-dimensions.png"),
        ("render".into(), "rasterize".into(), ErrorKind::TooManyPixels)
    );
}

#[test]
fn missing_runtime_files_say_to_run_setup() {
    let out = tempfile::tempdir().unwrap();
    let empty_home = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_pagestream"))
        .current_dir(repo())
        .args(["--home", empty_home.path().to_str().unwrap(), "analyze", "samples/invoice.pdf"])
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("./setup"), "{stderr}");
}

#[test]
fn topology_check_names_line_and_reason() {
    let output = Command::new(env!("CARGO_BIN_EXE_pagestream"))
        .current_dir(repo())
        .args(["topology", "check"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));

    let broken = tempfile::NamedTempFile::new().unwrap();
    let text = std::fs::read_to_string(repo().join("topology/pipeline.toml"))
        .unwrap()
        .replace("\"rasterize\"", "\"rasterise\"");
    std::fs::write(broken.path(), &text).unwrap();
    let line = text.lines().position(|l| l.contains("\"rasterise\"")).unwrap() + 1;
    let output = Command::new(env!("CARGO_BIN_EXE_pagestream"))
        .args(["topology", "check", "--no-models", broken.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!(":{line}:")), "{stdout}");
    assert!(stdout.contains("rasterise"), "{stdout}");
}
