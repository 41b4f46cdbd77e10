//! `pagestream watch`: document results (or, with `--events`, events) as
//! they are published, one JSON object per line, for scripts and
//! integrations (`pagestream watch | jq ...`).
//!
//! A plain subscription: what is published while watching is printed; for a
//! result published earlier, use `pagestream result`.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use futures::StreamExt;
use schemas::Event;
use schemas::subjects::{PREFIX, tenant_of};

use super::worker::block_on;
use super::{Failure, GlobalArgs, connect_client};
use runtime::blobs::BlobStore;
use runtime::jetstream::Error;
use runtime::jetstream::claim_check::read_result;

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Tenant whose documents are watched
    #[arg(
        long,
        env = "PAGESTREAM_TENANT",
        default_value = "default",
        conflicts_with = "all_tenants"
    )]
    pub tenant: String,
    /// Watch every tenant (needs permission to read them all)
    #[arg(long)]
    pub all_tenants: bool,
    /// Print events (page.done, document.done, document.failed) instead of
    /// document results
    #[arg(long)]
    pub events: bool,
    /// Stop after this many lines
    #[arg(long, value_name = "N")]
    pub count: Option<usize>,
}

pub fn run(global: &GlobalArgs, args: WatchArgs) -> anyhow::Result<ExitCode> {
    let tenant = if args.all_tenants { "*".to_string() } else { args.tenant.clone() };
    if !args.all_tenants {
        schemas::subjects::validate_tenant(&tenant)
            .map_err(|e| Failure::Tenant(format!("invalid tenant `{tenant}`: {e}")))?;
    }
    let subject = match args.events {
        true => format!("{PREFIX}.{tenant}.events.>"),
        false => format!("{PREFIX}.{tenant}.results.*"),
    };
    block_on(async move {
        let (client, _js) = connect_client(global, "pagestream-watch").await?;
        let blobs = BlobStore::open(&global.store)?;
        let mut messages = client.subscribe(subject.clone()).await?;
        // Make sure the server has the subscription before saying so.
        client.flush().await?;
        eprintln!("watching {subject}");
        let mut printed = 0;
        let mut stdout = std::io::stdout().lock();
        while args.count.is_none_or(|count| printed < count) {
            let Some(message) = messages.next().await else { break };
            let line = match args.events {
                true => schemas::decode::<Event>(&message.payload)
                    .map(|e| serde_json::to_string(&e))
                    .map_err(Error::from),
                // A claim-checked result is printed whole.
                false => {
                    let sender = tenant_of(&message.subject).unwrap_or_default();
                    read_result(&blobs, sender, &message.payload)
                        .await
                        .map(|r| serde_json::to_string(&r))
                        .map_err(Error::from)
                }
            };
            match line {
                Ok(Ok(line)) => {
                    writeln!(stdout, "{line}")?;
                    stdout.flush()?;
                    printed += 1;
                }
                Ok(Err(error)) => tracing::warn!(%error, "cannot print a message as JSON"),
                // A message of a newer schema or a stray publish: say so, go on.
                Err(error) => {
                    tracing::warn!(subject = %message.subject, %error, "skipped a message")
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
