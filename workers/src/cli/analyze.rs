//! `pagestream analyze`: the whole pipeline in this process on local files.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use topology::catalogue::ENTRY_STAGE;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use schemas::{DocumentResult, DocumentStatus, ErrorKind, FailureRecord};

use super::GlobalArgs;
use pages::home::Home;
use pages::registry;
use runtime::embedded::{self, InputDocument};
use runtime::output::{self, Format};
use schemas::now_ms;

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Files or directories (searched recursively) to analyse
    #[arg(required = true, value_name = "FILE|DIR")]
    pub inputs: Vec<PathBuf>,
    /// Directory the results are written to
    #[arg(long, short, default_value = "out", value_name = "DIR")]
    pub out: PathBuf,
    /// Result files to write per document
    #[arg(long, value_enum, default_value = "both")]
    pub format: Format,
    /// Also write a PNG per page with the regions and lines found drawn on it
    #[arg(long)]
    pub overlay: bool,
    /// Tenant written into the results
    #[arg(long, default_value = "local")]
    pub tenant: String,
}

/// A file to analyse, or why it cannot be.
enum Input {
    Document(InputDocument),
    Unreadable(Box<DocumentResult>),
}

pub fn run(global: &GlobalArgs, args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let topology = super::load_topology(global)?;
    let home = Home::locate(global.home.as_deref());
    let files = collect_files(&args.inputs)?;
    if files.is_empty() {
        anyhow::bail!("no files found in {}", display_paths(&args.inputs));
    }
    let started = Instant::now();
    let pipeline = registry::build(&topology, &home)?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "pipeline ready");

    let progress = progress_bar(files.len() as u64);
    let max_bytes = pipeline.splitter.config.max_document_bytes;
    let options = embedded::Options { tenant: args.tenant.clone(), ..Default::default() };
    let mut results: Vec<DocumentResult> = Vec::new();
    let mut write_errors = Vec::new();
    let out_dir = args.out.clone();
    let started = Instant::now();

    let mut finish = |result: DocumentResult| {
        match output::write_document(&result, &out_dir, args.format) {
            Ok(_) => {}
            Err(error) => write_errors.push(format!("{}: {error}", output::stem(&result))),
        }
        progress.inc(1);
        progress.set_message(format!(
            "{} pages",
            results.iter().map(|r| r.pages.len()).sum::<usize>() + result.pages.len()
        ));
        results.push(result);
    };

    // Files that cannot be read become failed results right away; the rest
    // stream through the pipeline as they are read.
    let mut unreadable = Vec::new();
    let documents =
        files.iter().filter_map(|path| match read_input(path, max_bytes, &args.tenant) {
            Input::Document(document) => Some(document),
            Input::Unreadable(result) => {
                unreadable.push(*result);
                None
            }
        });
    let overlay_dir = args.overlay.then(|| args.out.join("overlays"));
    let on_page = |page: &pages::page::Page| {
        if let (Some(dir), Some(image)) = (&overlay_dir, &page.image) {
            let path = dir.join(format!(
                "{}-p{}.png",
                page.task.doc_id.get(..8).unwrap_or(&page.task.doc_id),
                page.task.page_index + 1
            ));
            let drawn = output::overlay(image, &page.result);
            if let Err(error) = std::fs::create_dir_all(dir)
                .and_then(|_| drawn.save(&path).map_err(std::io::Error::other))
            {
                tracing::warn!(%error, path = %path.display(), "cannot write overlay");
            }
        }
    };
    embedded::run(&pipeline, documents, &options, on_page, &mut finish);
    for result in unreadable {
        finish(result);
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed();

    results.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    print_summary(&results, elapsed, &args.out);
    for error in &write_errors {
        eprintln!("error: cannot write results for {error}");
    }
    let failed = results.iter().filter(|r| r.status != DocumentStatus::Complete).count();
    Ok(if failed > 0 || !write_errors.is_empty() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// File extensions picked up when a directory is searched; files named
/// explicitly are always tried (their type is sniffed from their bytes).
const DOCUMENT_EXTENSIONS: &[&str] = &["pdf", "png", "jpg", "jpeg", "tif", "tiff"];

/// Files named, and the documents below directories named (sorted, hidden
/// entries skipped, only [`DOCUMENT_EXTENSIONS`]).
fn collect_files(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let metadata =
            std::fs::metadata(input).with_context(|| format!("cannot open {}", input.display()))?;
        if metadata.is_dir() {
            walk(input, &mut files).with_context(|| format!("cannot list {}", input.display()))?;
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            walk(&path, files)?;
        } else if (file_type.is_file() || path.is_file()) && is_document(&path) {
            files.push(path);
        }
    }
    Ok(())
}

fn is_document(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| DOCUMENT_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn read_input(path: &Path, max_bytes: u64, tenant: &str) -> Input {
    let name = path.display().to_string();
    let failed = |kind: ErrorKind, message: String| {
        let now = now_ms();
        Input::Unreadable(Box::new(DocumentResult {
            file_name: Some(name.clone()),
            status: DocumentStatus::Failed,
            failures: vec![FailureRecord::new("", ENTRY_STAGE, "validate", kind, message)],
            completed_at_ms: now,
            ..DocumentResult::new("", tenant, now)
        }))
    };
    // Refuse oversized files before reading them into memory.
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.len() > max_bytes => {
            return failed(
                ErrorKind::TooLarge,
                format!("document is {} bytes, the limit is {max_bytes}", metadata.len()),
            );
        }
        Ok(_) => {}
        Err(error) => return failed(ErrorKind::Unavailable, format!("cannot read file: {error}")),
    }
    match std::fs::read(path) {
        Ok(bytes) => Input::Document(InputDocument { name, bytes }),
        Err(error) => failed(ErrorKind::Unavailable, format!("cannot read file: {error}")),
    }
}

fn progress_bar(documents: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(documents);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} documents, {msg} ({eta} left)",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn print_summary(results: &[DocumentResult], elapsed: std::time::Duration, out: &Path) {
    println!(
        "{:<40} {:>8} {:>5} {:>6} {:>6} {:>9}  class",
        "document", "status", "pages", "lines", "fields", "ms/page"
    );
    let mut total_pages = 0;
    for result in results {
        let name = result.file_name.as_deref().unwrap_or(&result.doc_id);
        let lines: usize = result.pages.iter().map(|p| p.lines.len()).sum();
        let fields: usize = result.pages.iter().map(|p| p.fields.len()).sum();
        let busy_us: u64 =
            result.pages.iter().flat_map(|p| &p.timings).map(|t| t.duration_us).sum();
        let per_page = busy_us as f64 / 1000.0 / result.pages.len().max(1) as f64;
        total_pages += result.pages.len();
        println!(
            "{:<40} {:>8} {:>5} {:>6} {:>6} {:>9.0}  {}",
            ellipsize(name, 40),
            format!("{:?}", result.status).to_lowercase(),
            result.pages.len(),
            lines,
            fields,
            per_page,
            result.class.as_deref().unwrap_or("-"),
        );
    }
    let seconds = elapsed.as_secs_f64();
    println!(
        "\n{} documents, {} pages in {:.2} s ({:.2} pages/s); results in {}",
        results.len(),
        total_pages,
        seconds,
        total_pages as f64 / seconds.max(1e-9),
        out.display()
    );
    let failures: Vec<_> =
        results.iter().filter(|r| r.status != DocumentStatus::Complete).collect();
    if !failures.is_empty() {
        println!("\nfailed:");
        for result in failures {
            let name = result.file_name.as_deref().unwrap_or(&result.doc_id);
            let reasons = result
                .failures
                .iter()
                .chain(result.pages.iter().filter_map(|p| p.failure.as_ref()))
                .map(|f| {
                    let page =
                        f.page_index.map(|p| format!("page {}: ", p + 1)).unwrap_or_default();
                    format!("{page}{:?} in {}/{}: {}", f.kind, f.stage, f.step, f.message)
                })
                .collect::<Vec<_>>()
                .join("; ");
            println!("  {name}: {reasons}");
        }
    }
}

fn ellipsize(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_string();
    }
    let tail: String = text.chars().skip(count - (width - 1)).collect();
    format!("…{tail}")
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
