//! The `pagestream` command line: global options, subcommands, logging.

mod analyze;
mod cancel;
mod dlq;
mod status;
mod streams;
mod topology_check;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

pub use analyze::AnalyzeArgs;
pub use cancel::CancelArgs;
pub use dlq::DlqArgs;
pub use status::StatusArgs;
pub use streams::StreamsArgs;
pub use topology_check::TopologyArgs;
pub use worker::WorkerArgs;

/// pagestream analyses document pages (PDF, PNG, JPEG, TIFF) with layout and
/// OCR models, in one process or as NATS JetStream worker pools.
#[derive(Debug, Parser)]
#[command(name = "pagestream", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand understands.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// NATS server URL(s), comma separated
    #[arg(long, global = true, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// NATS credentials file (JWT + NKey seed)
    #[arg(long, global = true, env = "NATS_CREDS", value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// NATS user name
    #[arg(long, global = true, env = "NATS_USER")]
    pub user: Option<String>,
    /// NATS password
    #[arg(long, global = true, env = "NATS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// CA certificate to verify the NATS server's TLS certificate
    #[arg(long, global = true, env = "NATS_CA", value_name = "FILE")]
    pub tlsca: Option<PathBuf>,
    /// Client certificate for TLS to NATS
    #[arg(long, global = true, env = "NATS_CERT", value_name = "FILE")]
    pub tlscert: Option<PathBuf>,
    /// Client key for TLS to NATS
    #[arg(long, global = true, env = "NATS_KEY", value_name = "FILE")]
    pub tlskey: Option<PathBuf>,
    /// Pipeline definition [default: the built-in topology/pipeline.toml]
    #[arg(long, global = true, env = "PAGESTREAM_TOPOLOGY", value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// Object store for blobs and exports: file:///path or s3://bucket/prefix
    #[arg(
        long,
        global = true,
        env = "PAGESTREAM_STORE",
        value_name = "URL",
        default_value = "file://.pagestream/store"
    )]
    pub store: String,
    /// Directory with the runtime libraries and models installed by ./setup
    /// [default: .pagestream]
    #[arg(long, global = true, env = "PAGESTREAM_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (-q errors only, -qq nothing)
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
    /// Log line format
    #[arg(long, global = true, env = "PAGESTREAM_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyse documents in this process (no server needed) and write
    /// JSON/Markdown results
    Analyze(AnalyzeArgs),
    /// Inspect the pipeline definition
    Topology(TopologyArgs),
    /// Create or update the JetStream streams, consumers and bucket
    Streams(StreamsArgs),
    /// Serve stages from NATS JetStream until SIGTERM
    Worker(WorkerArgs),
    /// Show where a document stands
    Status(StatusArgs),
    /// Cancel a document: its remaining pages are skipped
    Cancel(CancelArgs),
    /// List or replay dead letters
    Dlq(DlqArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    init_logging(&cli.global);
    match cli.command {
        Command::Analyze(args) => analyze::run(&cli.global, args),
        Command::Topology(args) => topology_check::run(&cli.global, args),
        Command::Streams(args) => streams::run(&cli.global, args),
        Command::Worker(args) => worker::run(&cli.global, args),
        Command::Status(args) => status::run(&cli.global, args),
        Command::Cancel(args) => cancel::run(&cli.global, args),
        Command::Dlq(args) => dlq::run(&cli.global, args),
    }
}

fn init_logging(global: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let level = match (global.verbose, global.quiet) {
        (0, 0) => "warn",
        (0, 1) => "error",
        (0, _) => "off",
        (1, _) => "info",
        (2, _) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Loads the topology named on the command line, or the built-in one.
fn load_topology(global: &GlobalArgs) -> anyhow::Result<topology::Pipeline> {
    let loaded = match &global.topology {
        Some(path) => topology::Pipeline::load(path),
        None => topology::Pipeline::embedded(),
    };
    loaded.map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("invalid topology:\n  {}", lines.join("\n  "))
    })
}
