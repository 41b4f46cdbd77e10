//! `pagestream worker`: serve one stage (or several, or `all`) from NATS
//! JetStream until SIGTERM or ctrl-c, with Prometheus metrics and health
//! endpoints.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::GlobalArgs;
use pages::home::Home;
use pages::pipeline::Pipeline;
use pages::registry;
use runtime::blobs::BlobStore;
use runtime::jetstream::{self, ConnectConfig, Runtime, Settings};
use runtime::jetstream::{Role, worker};
use runtime::metrics::{self, Metrics, Readiness};
use runtime::shutdown::Shutdown;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Stage(s) to serve: a stage name, several separated by commas, or `all`
    #[arg(long, default_value = "all", value_name = "NAME|all")]
    pub stage: String,
    /// Pages worked on at once per stage [default: the stage's concurrency in the topology]
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Address of the /metrics, /healthz and /readyz endpoints (empty: none)
    #[arg(
        long,
        env = "PAGESTREAM_METRICS_ADDR",
        default_value = "0.0.0.0:9464",
        value_name = "ADDR"
    )]
    pub metrics_addr: String,
    /// On SIGTERM, how long in-flight pages may finish before they are handed back
    #[arg(long, default_value = "25s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_timeout: Duration,
    /// Largest image or document carried inside a message; larger ones go
    /// through the object store
    #[arg(long, default_value_t = 256 * 1024, value_name = "BYTES")]
    pub inline_max_bytes: usize,
    /// Largest document result published as it is; larger ones are stored
    /// in the object store and published as a claim check
    #[arg(long, default_value_t = 256 * 1024, value_name = "BYTES")]
    pub result_inline_max_bytes: usize,
    /// Drain and stop when the process that started this one exits
    /// (`pagestream up` passes it, so that no worker outlives a killed
    /// supervisor)
    #[arg(long)]
    pub stop_with_parent: bool,
}

/// Parses durations like `500ms`, `30s`, `5m`.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    topology::parse_duration(text)
        .ok_or_else(|| format!("bad duration `{text}`: expected e.g. 500ms, 30s, 5m"))
}

/// The connection settings of the global options.
pub(super) fn connect_config(
    global: &GlobalArgs,
    name: &str,
    retry_initial: bool,
) -> ConnectConfig {
    ConnectConfig {
        url: global.nats_url.clone(),
        creds: global.creds.clone(),
        user: global.user.clone(),
        password: global.password.clone(),
        tls_ca: global.tlsca.clone(),
        tls_cert: global.tlscert.clone(),
        tls_key: global.tlskey.clone(),
        inbox_prefix: global.inbox_prefix.clone(),
        name: name.to_string(),
        retry_initial,
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` in the background
/// (nothing when `addr` is empty).
pub(super) async fn serve_metrics(
    addr: &str,
    metrics: &Arc<Metrics>,
    ready: &Readiness,
) -> anyhow::Result<()> {
    if addr.is_empty() {
        return Ok(());
    }
    let addr: SocketAddr = addr.parse().context("invalid --metrics-addr")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tokio::spawn(metrics::serve(listener, Arc::clone(metrics), ready.clone()));
    Ok(())
}

/// Runs `future` on a multi-threaded tokio runtime.
pub(super) fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}

pub fn run(global: &GlobalArgs, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let topology = super::load_topology(global)?;
    let home = Home::locate(global.home.as_deref());
    let pipeline = build_pipeline(&topology, &home, &args.stage)?;
    let blobs = BlobStore::open(&global.store)?;
    let settings = Settings {
        concurrency: args.concurrency,
        shutdown_timeout: args.shutdown_timeout,
        images: jetstream::payload::ImagePolicy {
            inline_max_bytes: args.inline_max_bytes,
            max_pixels: topology.limits().max_page_pixels,
        },
        result_inline_max_bytes: args.result_inline_max_bytes,
        ..Settings::default()
    };
    block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let ready = Readiness::default();
        serve_metrics(&args.metrics_addr, &metrics, &ready).await?;
        let client = jetstream::connect(&connect_config(
            global,
            &format!("pagestream-worker-{}", args.stage),
            true,
        ))
        .await?;
        let runtime =
            Arc::new(Runtime::new(client, pipeline, &topology, blobs, settings, metrics).await?);
        let roles = Role::parse(&args.stage, &runtime)?;
        let (trigger, shutdown) = Shutdown::new();
        let stop_with_parent = args.stop_with_parent;
        tokio::spawn(async move {
            tokio::select! {
                _ = wait_for_signal() => tracing::info!("shutdown requested"),
                _ = parent_exit(), if stop_with_parent => {
                    tracing::warn!("the parent process exited: shutting down");
                }
            }
            trigger.trigger();
        });
        // The drain is bounded by itself; this bounds whatever it waits on
        // that it should not (a blocking step that never returns).
        let mut asked = shutdown.clone();
        let hard_limit = args.shutdown_timeout + Duration::from_secs(10);
        let overdue = async move {
            asked.wait().await;
            tokio::time::sleep(hard_limit).await;
        };
        tokio::select! {
            served = worker::run(runtime, roles, shutdown, ready) => served?,
            _ = overdue => {
                tracing::error!(?hard_limit, "drain not finished in time; exiting, in-flight pages are redelivered");
                // Dropping the runtime would wait for the blocking work.
                std::process::exit(1);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The pipeline a worker of `stages` (`all` or names separated by commas)
/// needs: the steps of those stages and the models they use, nothing else.
fn build_pipeline(
    topology: &topology::Pipeline,
    home: &Home,
    stages: &str,
) -> anyhow::Result<Pipeline> {
    let names: Vec<&str> = stages.split(',').map(str::trim).collect();
    let all = stages.trim() == "all";
    Ok(registry::build_stages(topology, home, |stage| all || names.contains(&stage))?)
}

/// Returns once this process's parent has exited (it is then adopted by
/// another process, so its parent id changes).
async fn parent_exit() {
    let parent = std::os::unix::process::parent_id();
    let mut ticks = tokio::time::interval(Duration::from_millis(500));
    loop {
        ticks.tick().await;
        if std::os::unix::process::parent_id() != parent {
            return;
        }
    }
}

/// SIGTERM or ctrl-c.
pub(super) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
