//! `pagestream streams apply`: create or update the streams, consumers and
//! key-value bucket the topology asks for, printing what changes.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::GlobalArgs;
use super::worker::{block_on, connect_config};
use runtime::jetstream::provision::{self, Action};
use runtime::jetstream::{self, Route};

#[derive(Debug, Args)]
pub struct StreamsArgs {
    #[command(subcommand)]
    pub command: StreamsCommand,
}

#[derive(Debug, Subcommand)]
pub enum StreamsCommand {
    /// Create or update streams, consumers and the document bucket (idempotent)
    Apply {
        /// Only show what would change
        #[arg(long)]
        dry_run: bool,
        /// Copies of every stream on a NATS cluster, instead of each
        /// stream's `replicas` in the topology (e.g. 3 in production)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
        replicas: Option<u8>,
    },
}

pub fn run(global: &GlobalArgs, args: StreamsArgs) -> anyhow::Result<ExitCode> {
    let StreamsCommand::Apply { dry_run, replicas } = args.command;
    let topology = super::load_topology(global)?;
    let mut plan = provision::plan(&topology, &Route::from_topology(&topology));
    if let Some(replicas) = replicas {
        for stream in &mut plan.streams {
            stream.num_replicas = usize::from(replicas);
        }
    }
    block_on(async move {
        let client =
            jetstream::connect(&connect_config(global, "pagestream-streams", false)).await?;
        let js = jetstream::context(client);
        let changes = provision::apply(&js, &plan, dry_run).await?;
        for change in &changes {
            println!("{change}");
        }
        let pending = changes.iter().filter(|c| c.action != Action::Unchanged).count();
        match (dry_run, pending) {
            (_, 0) => println!("nothing to change"),
            (true, n) => println!("{n} change(s) would be applied (dry run)"),
            (false, n) => println!("{n} change(s) applied"),
        }
        Ok(ExitCode::SUCCESS)
    })
}
