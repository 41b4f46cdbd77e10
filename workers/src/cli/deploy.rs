//! `pagestream deploy render`: the Kubernetes objects generated from the
//! topology (see `crate::deploy`), written to a folder or compared with it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::deploy::{self, File, Options, Scaler};

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(subcommand)]
    pub command: DeployCommand,
}

#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Write one Deployment, KEDA ScaledObject and PodDisruptionBudget per
    /// stage, the streams Job, the metrics exporter and their kustomization
    /// from the topology
    Render {
        /// Folder the files go to; other files in it are removed
        #[arg(long, default_value = deploy::DEFAULT_OUT, value_name = "DIR")]
        out: PathBuf,
        /// Change nothing: fail when the folder differs from what would be written
        #[arg(long)]
        check: bool,
        /// What KEDA scales on: `jetstream` (NATS' /jsz) or `prometheus`
        /// (`pagestream_stage_lag` of the metrics exporter)
        #[arg(long, value_enum, default_value_t = ScalerKind::Jetstream)]
        scaler: ScalerKind,
        /// With --scaler prometheus: Prometheus' address inside the cluster
        #[arg(long, default_value = deploy::PROMETHEUS_ADDRESS, value_name = "URL")]
        prometheus: String,
    },
}

/// `--scaler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScalerKind {
    Jetstream,
    Prometheus,
}

pub fn run(global: &GlobalArgs, args: DeployArgs) -> anyhow::Result<ExitCode> {
    let DeployCommand::Render { out, check, scaler, prometheus } = args.command;
    let scaler = match scaler {
        ScalerKind::Jetstream => Scaler::Jetstream,
        ScalerKind::Prometheus => Scaler::Prometheus { server_address: prometheus },
    };
    let topology = super::load_topology(global)?;
    let text = match &global.topology {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => topology::EMBEDDED.to_string(),
    };
    let files = deploy::render(&topology, &text, &Options { scaler, ..Options::default() });
    let stale = stale_files(&out, &files)?;
    if check {
        let differing: Vec<&str> = files
            .iter()
            .filter(|file| {
                std::fs::read_to_string(out.join(&file.name)).ok().as_ref() != Some(&file.text)
            })
            .map(|file| file.name.as_str())
            .chain(stale.iter().map(String::as_str))
            .collect();
        if differing.is_empty() {
            println!("{} is up to date", out.display());
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "{} differs from the topology in: {}\nrun `pagestream deploy render --out {}`",
            out.display(),
            differing.join(", "),
            out.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    for name in &stale {
        std::fs::remove_file(out.join(name))
            .with_context(|| format!("cannot remove {}", out.join(name).display()))?;
    }
    for file in &files {
        let path = out.join(&file.name);
        std::fs::write(&path, &file.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("wrote {} files to {}", files.len(), out.display());
    Ok(ExitCode::SUCCESS)
}

/// Files in `dir` that a render would not write (a removed stage's).
fn stale_files(dir: &Path, files: &[File]) -> anyhow::Result<Vec<String>> {
    let wanted: BTreeSet<&str> = files.iter().map(|file| file.name.as_str()).collect();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut stale = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && !wanted.contains(name.as_str()) {
            stale.push(name);
        }
    }
    stale.sort();
    Ok(stale)
}
