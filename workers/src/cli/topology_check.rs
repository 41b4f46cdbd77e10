//! `pagestream topology check`: validate a pipeline file and its models;
//! `pagestream topology steps`: the steps and rule kinds a file may use.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::GlobalArgs;
use pages::home::Home;

#[derive(Debug, Args)]
pub struct TopologyArgs {
    #[command(subcommand)]
    pub command: TopologyCommand,
}

#[derive(Debug, Subcommand)]
pub enum TopologyCommand {
    /// Validate a pipeline file (default: the one in use) and the model files
    /// it names; reports every problem with its file:line:col
    Check {
        /// Pipeline file [default: --topology, else the built-in one]
        file: Option<PathBuf>,
        /// Only check the file, not the model files' presence and checksums
        #[arg(long)]
        no_models: bool,
    },
    /// Print the built-in steps (stage, models, settings with their
    /// defaults) and the rule kinds, as Markdown
    Steps,
}

pub fn run(global: &GlobalArgs, args: TopologyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TopologyCommand::Check { file, no_models } => {
            let file = file.or_else(|| global.topology.clone());
            let model_dir = Home::locate(global.home.as_deref()).models_dir();
            let report = topology::check(
                file.as_deref(),
                (!no_models).then_some(model_dir.as_path()),
                pages::steps::catalogue(),
            );
            print!("{report}");
            // What only building shows: the rule steps' files (lookup tables).
            let unbuildable =
                report.pipeline().map(pages::registry::check_rule_steps).unwrap_or_default();
            for error in &unbuildable {
                println!("  {error}");
            }
            let ok = report.is_ok() && unbuildable.is_empty();
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        TopologyCommand::Steps => {
            print!("{}", pages::steps::reference::markdown());
            Ok(ExitCode::SUCCESS)
        }
    }
}
