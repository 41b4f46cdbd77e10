//! `pagestream dlq list|replay`: inspect and replay the dead-letter stream.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::GlobalArgs;
use super::worker::{block_on, connect_config};
use runtime::jetstream::{self, dlq};

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first
    List {
        /// Start at this stream sequence
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Most entries listed
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Publish dead letters again to where they failed, and remove them
    Replay {
        /// Sequences of the dead letters to replay
        #[arg(required_unless_present = "all")]
        sequences: Vec<u64>,
        /// Replay every dead letter
        #[arg(long, conflicts_with = "sequences")]
        all: bool,
    },
}

pub fn run(global: &GlobalArgs, args: DlqArgs) -> anyhow::Result<ExitCode> {
    block_on(async move {
        let client = jetstream::connect(&connect_config(global, "pagestream-dlq", false)).await?;
        let js = jetstream::context(client);
        match args.command {
            DlqCommand::List { from, limit } => {
                let entries = dlq::list(&js, from, limit).await?;
                if entries.is_empty() {
                    println!("no dead letters");
                }
                for entry in entries {
                    match entry.letter {
                        Ok(letter) => {
                            let failure = &letter.failure;
                            let page = failure
                                .page_index
                                .map(|p| format!(" page {p}"))
                                .unwrap_or_default();
                            println!(
                                "{:>6}  {}  {}{}  {:?} in {}/{} after {} attempt(s): {}",
                                entry.sequence,
                                letter.tenant,
                                failure.doc_id,
                                page,
                                failure.kind,
                                failure.stage,
                                failure.step,
                                failure.attempts,
                                failure.message
                            );
                        }
                        Err(error) => println!(
                            "{:>6}  {}  unreadable: {error}",
                            entry.sequence, entry.subject
                        ),
                    }
                }
            }
            DlqCommand::Replay { sequences, all } => {
                let sequences = if all {
                    dlq::list(&js, 0, usize::MAX).await?.into_iter().map(|e| e.sequence).collect()
                } else {
                    sequences
                };
                let blobs = runtime::blobs::BlobStore::open(&global.store)?;
                let replayed = dlq::replay(&js, &blobs, &sequences).await?;
                println!("{} dead letter(s) replayed", replayed.len());
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
