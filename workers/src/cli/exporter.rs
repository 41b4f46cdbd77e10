//! `pagestream metrics-exporter`: each stage's lag as `pagestream_stage_lag`,
//! read once for the whole deployment from the consumers' leaders (see
//! `runtime::jetstream::lag`), for a Prometheus-based scaler and the alerts.
//! Runs as one replica; the workers do not export this metric.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::GlobalArgs;
use super::worker::{block_on, connect_config, parse_duration, serve_metrics, wait_for_signal};
use runtime::jetstream::lag::LagReader;
use runtime::jetstream::{self, Route};
use runtime::metrics::{Metrics, Readiness};

#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// Address of /metrics, /healthz and /readyz
    #[arg(
        long,
        env = "PAGESTREAM_METRICS_ADDR",
        default_value = "0.0.0.0:9464",
        value_name = "ADDR"
    )]
    pub metrics_addr: String,
    /// How often the lags are read
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,
}

pub fn run(global: &GlobalArgs, args: ExporterArgs) -> anyhow::Result<ExitCode> {
    let topology = super::load_topology(global)?;
    block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let ready = Readiness::default();
        serve_metrics(&args.metrics_addr, &metrics, &ready).await?;
        let client =
            jetstream::connect(&connect_config(global, "pagestream-metrics-exporter", true))
                .await?;
        let js = jetstream::context(client.clone());
        let reader = LagReader::new(js, &Route::from_topology(&topology));
        let stop = wait_for_signal();
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(args.interval);
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(ExitCode::SUCCESS),
                _ = ticks.tick() => {
                    let lags = reader.export(&metrics).await;
                    for (stage, lag) in &lags {
                        if let Err(error) = lag {
                            tracing::warn!(stage, %error, "lag not read");
                        }
                    }
                    let connected = client.connection_state() == async_nats::connection::State::Connected;
                    ready.set(connected);
                }
            }
        }
    })
}
