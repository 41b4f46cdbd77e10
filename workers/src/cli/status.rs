//! `pagestream status DOC_ID`: where a document stands, from the document
//! bucket (any replica of any worker can answer; no worker is asked).

use std::process::ExitCode;

use clap::Args;

use super::GlobalArgs;
use super::worker::{block_on, connect_config};
use runtime::jetstream::state::Documents;
use runtime::jetstream::{self, Error};
use schemas::PageState;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Document id (the sha256 of its bytes)
    pub doc_id: String,
    /// Tenant the document belongs to
    #[arg(long, env = "PAGESTREAM_TENANT", default_value = "default")]
    pub tenant: String,
    /// Print the state as JSON
    #[arg(long)]
    pub json: bool,
}

/// The document bucket of the server named by the global options.
pub(super) async fn documents(global: &GlobalArgs, name: &str) -> anyhow::Result<Documents> {
    let client = jetstream::connect(&connect_config(global, name, false)).await?;
    let js = jetstream::context(client);
    let kv = js.get_key_value(schemas::subjects::KV_DOCUMENTS).await.map_err(|e| {
        Error::jetstream("cannot open the document bucket (run `pagestream streams apply`)", e)
    })?;
    Ok(Documents::new(kv))
}

pub fn run(global: &GlobalArgs, args: StatusArgs) -> anyhow::Result<ExitCode> {
    block_on(async move {
        let documents = documents(global, "pagestream-status").await?;
        let Some(state) = documents.get(&args.tenant, &args.doc_id).await? else {
            eprintln!("document {} of tenant {} is not known", args.doc_id, args.tenant);
            return Ok(ExitCode::FAILURE);
        };
        let cancelled = documents.is_cancelled(&args.tenant, &args.doc_id).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&state)?);
            return Ok(ExitCode::SUCCESS);
        }
        let count = |wanted: PageState| state.pages.iter().filter(|p| **p == wanted).count();
        println!("document  {}", state.doc_id);
        println!("tenant    {}", state.tenant);
        if let Some(name) = &state.file_name {
            println!("file      {name}");
        }
        println!(
            "pages     {} expected, {} done, {} failed, {} pending",
            state.pages.len(),
            count(PageState::Done),
            count(PageState::Failed),
            count(PageState::Pending)
        );
        let status = match (&state.finished, cancelled) {
            (Some(finished), _) => format!("finished: {:?}", finished.status).to_lowercase(),
            (None, true) => "cancelled, remaining pages are skipped".into(),
            (None, false) => "in progress".into(),
        };
        println!("status    {status}");
        for failure in &state.failures {
            println!(
                "failure   {:?} in {}/{}: {}",
                failure.kind, failure.stage, failure.step, failure.message
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
