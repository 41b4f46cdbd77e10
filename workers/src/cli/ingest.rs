//! `pagestream ingest SOURCE`: submit every document of a directory
//! (recursively) or of an object-store URL, resumably (see
//! [`runtime::client::ingest`]).
//!
//! On a terminal it shows a progress bar and ends with a summary; otherwise
//! it prints one JSON line per document and a last JSON line with the
//! totals, for scripts.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::worker::block_on;
use super::{Failure, GlobalArgs, check_tenant, connect_client};
use pages::home::Home;
use runtime::blobs::BlobStore;
use runtime::client::glob::{Filter, Glob};
use runtime::client::ingest::{self, Checkpoint, Options, Outcome, Source, Summary};
use runtime::jetstream::publish::Publisher;

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// A directory, or an object-store URL (file:///dir, s3://bucket/prefix)
    pub source: String,
    /// Tenant the documents belong to
    #[arg(long, env = "PAGESTREAM_TENANT", default_value = "default")]
    pub tenant: String,
    /// Only paths matching one of these patterns (`*.pdf`, `2024/**/*.png`)
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out paths matching one of these patterns
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Documents read, checked and submitted at once
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Most documents started per second
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Where accepted documents are recorded so that a rerun skips them
    /// [default: <home>/ingest/<tenant>-<hash of SOURCE>.jsonl]
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Largest document carried inside the message; larger ones are
    /// uploaded to the object store (--store) first
    #[arg(long, default_value_t = 256 * 1024, value_name = "BYTES")]
    pub inline_max_bytes: usize,
}

pub fn run(global: &GlobalArgs, args: IngestArgs) -> anyhow::Result<ExitCode> {
    let topology = super::load_topology(global)?;
    check_tenant(&topology, &args.tenant)?;
    let home = Home::locate(global.home.as_deref());
    pages::pdf::init(&home.pdfium_lib())?;
    let source = Source::parse(&args.source).map_err(|e| Failure::Unreadable(e.to_string()))?;
    let checkpoint_path = args.checkpoint.clone().unwrap_or_else(|| {
        Checkpoint::default_path(&home.root().join("ingest"), &args.tenant, &source)
    });
    let checkpoint = Checkpoint::open(&checkpoint_path)?;
    let filter = Filter {
        include: args.include.iter().map(|g| Glob::new(g)).collect(),
        exclude: args.exclude.iter().map(|g| Glob::new(g)).collect(),
    };
    let options = Options {
        tenant: args.tenant.clone(),
        concurrency: args.concurrency,
        rate: args.rate,
        limits: topology.limits().into(),
        inline_max_bytes: args.inline_max_bytes,
    };
    let blobs = BlobStore::open(&global.store)?;
    let interactive = std::io::stdout().is_terminal();

    block_on(async move {
        let items = source.list(&filter).await.map_err(|e| Failure::Unreadable(e.to_string()))?;
        let (_client, js) = connect_client(global, "pagestream-ingest").await?;
        // Backpressure can hold a publish back for long: keep trying rather
        // than give up on a busy pipeline.
        let publisher = Publisher::new(js).retry_for(Duration::from_secs(3600));
        if interactive {
            eprintln!(
                "ingesting {} file(s) from {} for tenant {} (checkpoint {}, {} recorded)",
                items.len(),
                source.name(),
                args.tenant,
                checkpoint.path().display(),
                checkpoint.len()
            );
        }
        let bar = progress_bar(items.len() as u64, interactive);
        let mut summary = Summary::default();
        let outcome =
            ingest::ingest(&source, items, checkpoint, &publisher, &blobs, &options, |report| {
                summary.add(&report);
                if interactive {
                    bar.inc(1);
                    bar.set_message(format!(
                        "{} pages accepted, {} skipped, {} rejected",
                        summary.pages, summary.skipped, summary.rejected
                    ));
                    if let Outcome::Rejected { reason, .. } = &report.outcome {
                        bar.println(format!("rejected {}: {reason}", report.key));
                    }
                } else {
                    print_json(&report);
                }
            })
            .await;
        bar.finish_and_clear();
        outcome?;
        if interactive {
            print_summary(&summary, bar.elapsed());
        } else {
            print_json(&serde_json::json!({ "summary": summary }));
        }
        Ok(if summary.rejected == 0 { ExitCode::SUCCESS } else { ExitCode::from(4) })
    })
}

fn progress_bar(files: u64, interactive: bool) -> ProgressBar {
    if !interactive || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(files);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} documents, {msg}, {per_sec} ({eta} left)",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message("0 pages accepted, 0 skipped, 0 rejected");
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string(value) {
        Ok(line) => println!("{line}"),
        Err(error) => tracing::warn!(%error, "cannot print a line as JSON"),
    }
}

fn print_summary(summary: &Summary, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64().max(1e-3);
    println!(
        "accepted {} document(s), {} page(s) in {:.1} s ({:.1} documents/s)",
        summary.accepted,
        summary.pages,
        seconds,
        summary.accepted as f64 / seconds
    );
    println!("skipped  {} (accepted before or same content)", summary.skipped);
    println!("rejected {}", summary.rejected);
    for (key, reason) in &summary.rejections {
        println!("  {key}: {reason}");
    }
}
