//! `pagestream submit FILE...`: publish documents to the pipeline, inline
//! when small, else through the object store; with `--wait`, print each
//! document's result when it arrives.
//!
//! Every file is read and checked against the topology's limits before the
//! first one is published, so a bad file leaves nothing half-submitted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use schemas::{DocumentResult, DocumentStatus};

use super::worker::{block_on, parse_duration};
use super::{Failure, GlobalArgs, check_tenant, connect_client};
use pages::home::Home;
use runtime::blobs::BlobStore;
use runtime::client::{PrepareError, Prepared, ResultWaiter, prepare_file};
use runtime::jetstream::publish::Publisher;
use runtime::jetstream::submit::submit;
use runtime::output;

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Documents to submit (PDF, PNG, JPEG, TIFF)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Tenant the documents belong to
    #[arg(long, env = "PAGESTREAM_TENANT", default_value = "default")]
    pub tenant: String,
    /// Wait for each document's result and print it
    #[arg(long)]
    pub wait: bool,
    /// With --wait, how long to wait for all results before leaving the
    /// work running and printing the document ids to check later
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION", requires = "wait")]
    pub timeout: Duration,
    /// With --wait, how results are printed
    #[arg(long, value_enum, default_value = "json")]
    pub format: ResultFormat,
    /// Largest document carried inside the message; larger ones are
    /// uploaded to the object store (--store) first
    #[arg(long, default_value_t = 256 * 1024, value_name = "BYTES")]
    pub inline_max_bytes: usize,
    /// How long one document may be held back (a full pipeline pushing
    /// back, no acknowledgement) before submit gives up
    #[arg(long, default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    pub publish_timeout: Duration,
}

/// How a document result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResultFormat {
    /// The result as pretty JSON
    Json,
    /// The result as Markdown
    Md,
}

/// Prints `result` to stdout in `format`.
pub(super) fn print_result(result: &DocumentResult, format: ResultFormat) -> anyhow::Result<()> {
    match format {
        ResultFormat::Json => println!("{}", serde_json::to_string_pretty(result)?),
        ResultFormat::Md => print!("{}", output::markdown(result)),
    }
    Ok(())
}

pub fn run(global: &GlobalArgs, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let topology = super::load_topology(global)?;
    check_tenant(&topology, &args.tenant)?;
    pages::pdf::init(&Home::locate(global.home.as_deref()).pdfium_lib())?;
    let limits = topology.limits().into();
    let prepared = args
        .files
        .iter()
        .map(|path| {
            prepare_file(path, &limits).map_err(|error| match error {
                PrepareError::Unreadable { .. } => Failure::Unreadable(error.to_string()),
                PrepareError::Rejected { .. } => {
                    Failure::Rejected(format!("{error}; nothing was submitted"))
                }
            })
        })
        .collect::<Result<Vec<Prepared>, Failure>>()?;
    let blobs = BlobStore::open(&global.store)?;

    block_on(async move {
        let (client, js) = connect_client(global, "pagestream-submit").await?;
        let publisher = Publisher::new(js.clone()).retry_for(args.publish_timeout);
        let mut waiting = Vec::new();
        for document in prepared {
            let waiter = match args.wait {
                true => {
                    Some(ResultWaiter::subscribe(&client, &args.tenant, &document.doc_id).await?)
                }
                false => None,
            };
            let submitted = submit(
                &publisher,
                &blobs,
                &args.tenant,
                Some(&document.name),
                document.bytes,
                args.inline_max_bytes,
            )
            .await
            .with_context(|| {
                format!(
                    "cannot submit {} (a busy pipeline pushes back: try a longer \
                     --publish-timeout; credentials confined to a tenant need --inbox-prefix \
                     and permission to publish to pagestream.{}.submit)",
                    document.name, args.tenant
                )
            })?;
            let note = if submitted.duplicate { "already submitted" } else { "submitted" };
            let line = format!(
                "{}  {}  {} page(s)  {note}",
                document.doc_id, document.name, document.pages
            );
            // Without --wait the ids are the output; with it the results are.
            if args.wait {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
            if let Some(waiter) = waiter {
                let run = (!submitted.duplicate).then_some(submitted.submission.submitted_at_ms);
                waiting.push((document.doc_id, waiter, run));
            }
        }
        if !args.wait {
            return Ok(ExitCode::SUCCESS);
        }

        let deadline = tokio::time::Instant::now() + args.timeout;
        let mut all_complete = true;
        let mut pending = Vec::new();
        for (doc_id, waiter, run) in waiting {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match waiter.wait(&js, &blobs, run, left).await? {
                Some(result) => {
                    all_complete &= result.status == DocumentStatus::Complete;
                    print_result(&result, args.format)?;
                }
                None => pending.push(doc_id),
            }
        }
        if !pending.is_empty() {
            let tenant = &args.tenant;
            let hints: Vec<String> = pending
                .iter()
                .map(|id| format!("`pagestream result {id} --tenant {tenant}`"))
                .collect();
            return Err(Failure::TimedOut(format!(
                "no result within {:?} for {} document(s), still being analysed; check later with {}",
                args.timeout,
                pending.len(),
                hints.join(", ")
            ))
            .into());
        }
        Ok(if all_complete { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}
