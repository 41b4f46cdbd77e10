//! The `pagestream` command line: global options, subcommands, logging.

mod analyze;
mod cancel;
mod deploy;
mod dlq;
mod exporter;
mod ingest;
mod result;
mod status;
mod streams;
mod submit;
mod topology_check;
mod up;
mod watch;
mod webhooks;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

pub use analyze::AnalyzeArgs;
pub use cancel::CancelArgs;
pub use deploy::DeployArgs;
pub use dlq::DlqArgs;
pub use exporter::ExporterArgs;
pub use ingest::IngestArgs;
pub use result::ResultArgs;
pub use status::StatusArgs;
pub use streams::StreamsArgs;
pub use submit::SubmitArgs;
pub use topology_check::TopologyArgs;
pub use up::UpArgs;
pub use watch::WatchArgs;
pub use webhooks::WebhooksArgs;
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
    /// Prefix of reply subjects; a tenant whose permissions allow only its
    /// own inbox sets it, e.g. `_INBOX_acme` (see deploy/nats/)
    #[arg(long, global = true, env = "NATS_INBOX_PREFIX", default_value = "_INBOX")]
    pub inbox_prefix: String,
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
    /// Run the whole pipeline on this host: one pool of workers per stage,
    /// each scaled on its stage's lag
    Up(UpArgs),
    /// Export each stage's lag, read from the consumers' leaders, for
    /// Prometheus (one replica per deployment)
    MetricsExporter(ExporterArgs),
    /// Show where a document stands
    Status(StatusArgs),
    /// Cancel a document: its remaining pages are skipped
    Cancel(CancelArgs),
    /// List or replay dead letters
    Dlq(DlqArgs),
    /// Submit documents to the pipeline, optionally waiting for their results
    Submit(SubmitArgs),
    /// Submit every document of a directory or object-store URL (resumable)
    Ingest(IngestArgs),
    /// Print the result of a finished document
    Result(ResultArgs),
    /// Stream document results or events as JSON lines
    Watch(WatchArgs),
    /// Deliver document results to the tenants' webhooks until SIGTERM
    Webhooks(WebhooksArgs),
    /// Generate the Kubernetes objects of the pipeline from the topology
    Deploy(DeployArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    init_logging(&cli.global);
    match cli.command {
        Command::Analyze(args) => analyze::run(&cli.global, args),
        Command::Topology(args) => topology_check::run(&cli.global, args),
        Command::Streams(args) => streams::run(&cli.global, args),
        Command::Worker(args) => worker::run(&cli.global, args),
        Command::Up(args) => up::run(&cli.global, args),
        Command::MetricsExporter(args) => exporter::run(&cli.global, args),
        Command::Status(args) => status::run(&cli.global, args),
        Command::Cancel(args) => cancel::run(&cli.global, args),
        Command::Dlq(args) => dlq::run(&cli.global, args),
        Command::Submit(args) => submit::run(&cli.global, args),
        Command::Ingest(args) => ingest::run(&cli.global, args),
        Command::Result(args) => result::run(&cli.global, args),
        Command::Watch(args) => watch::run(&cli.global, args),
        Command::Webhooks(args) => webhooks::run(&cli.global, args),
        Command::Deploy(args) => deploy::run(&cli.global, args),
    }
}

/// A failure of a command that scripts can tell apart by its exit code
/// (documented in README.md, "Exit codes"). Anything else exits with 1.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A file cannot be read.
    #[error("{0}")]
    Unreadable(String),
    /// A document breaks a limit of the topology or is not a document.
    #[error("{0}")]
    Rejected(String),
    /// The tenant is malformed or not declared in the topology.
    #[error("{0}")]
    Tenant(String),
    /// The NATS server cannot be reached.
    #[error(
        "cannot reach nats at {url}: {reason} (is the server running? set --nats-url or NATS_URL)"
    )]
    Unreachable { url: String, reason: String },
    /// Waiting for a result ran out of time; the work goes on.
    #[error("{0}")]
    TimedOut(String),
    /// The document or result does not exist.
    #[error("{0}")]
    NotFound(String),
}

impl Failure {
    /// The process exit code of this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Unreadable(_) => 3,
            Failure::Rejected(_) => 4,
            Failure::Tenant(_) => 5,
            Failure::Unreachable { .. } => 6,
            Failure::TimedOut(_) => 7,
            Failure::NotFound(_) => 8,
        }
    }
}

/// Checks that `tenant` is well-formed and accepted by the topology.
fn check_tenant(topology: &topology::Pipeline, tenant: &str) -> Result<(), Failure> {
    schemas::subjects::validate_tenant(tenant)
        .map_err(|e| Failure::Tenant(format!("invalid tenant `{tenant}`: {e}")))?;
    if !topology.accepts_tenant(tenant) {
        let known: Vec<&str> = topology.tenants().keys().map(String::as_str).collect();
        return Err(Failure::Tenant(format!(
            "unknown tenant `{tenant}` (the topology declares: {})",
            known.join(", ")
        )));
    }
    Ok(())
}

/// Connects a one-shot client command to NATS; an unreachable server is a
/// [`Failure::Unreachable`].
async fn connect_client(
    global: &GlobalArgs,
    name: &str,
) -> anyhow::Result<(async_nats::Client, async_nats::jetstream::Context)> {
    let config = worker::connect_config(global, name, false);
    let client = runtime::jetstream::connect(&config).await.map_err(|error| match error {
        runtime::jetstream::Error::Connect { url, reason } => Failure::Unreachable { url, reason },
        other => Failure::Unreachable { url: config.url.clone(), reason: other.to_string() },
    })?;
    let js = runtime::jetstream::context(client.clone());
    Ok((client, js))
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
    // Colour only for a person at a terminal, never in files or collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Loads the topology named on the command line, or the built-in one.
fn load_topology(global: &GlobalArgs) -> anyhow::Result<topology::Pipeline> {
    let loaded = match &global.topology {
        Some(path) => topology::Pipeline::load(path, pages::steps::catalogue()),
        None => topology::Pipeline::embedded(pages::steps::catalogue()),
    };
    loaded.map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("invalid topology:\n  {}", lines.join("\n  "))
    })
}
