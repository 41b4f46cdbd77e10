//! `pagestream webhooks`: deliver the document results of every tenant with
//! a webhook in the topology until SIGTERM (see [`runtime::jetstream::webhook`]).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::GlobalArgs;
use super::worker::{block_on, connect_config, parse_duration, serve_metrics, wait_for_signal};
use runtime::jetstream::publish::Publisher;
use runtime::jetstream::webhook::{Sink, targets};
use runtime::jetstream::{self};
use runtime::metrics::{Metrics, Readiness};
use runtime::shutdown::Shutdown;

#[derive(Debug, Args)]
pub struct WebhooksArgs {
    /// Deliveries open at once
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Address for /metrics, /healthz and /readyz (empty: none)
    #[arg(long, env = "PAGESTREAM_METRICS_ADDR", default_value = "0.0.0.0:9465")]
    pub metrics_addr: String,
    /// On SIGTERM, how long open deliveries may finish
    #[arg(long, default_value = "25s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_timeout: Duration,
}

pub fn run(global: &GlobalArgs, args: WebhooksArgs) -> anyhow::Result<ExitCode> {
    let topology = super::load_topology(global)?;
    let targets = targets(&topology)?;
    if targets.is_empty() {
        anyhow::bail!("no tenant of the topology has a webhook: nothing to deliver");
    }
    block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let ready = Readiness::default();
        serve_metrics(&args.metrics_addr, &metrics, &ready).await?;
        let client =
            jetstream::connect(&connect_config(global, "pagestream-webhooks", true)).await?;
        let js = jetstream::context(client);
        let consumer = Sink::bind(&js).await?;
        let publisher = Publisher::new(js).with_metrics(Arc::clone(&metrics));
        let tenants: Vec<&String> = targets.keys().collect();
        tracing::info!(?tenants, "delivering webhooks");
        let blobs = runtime::blobs::BlobStore::open(&global.store)?;
        let settings = topology.webhooks().clone();
        let sink = Arc::new(Sink::new(targets.clone(), settings, publisher, metrics, blobs)?);
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            trigger.trigger();
        });
        ready.set(true);
        sink.run(consumer, args.concurrency, shutdown, args.shutdown_timeout).await?;
        ready.set(false);
        Ok(ExitCode::SUCCESS)
    })
}
