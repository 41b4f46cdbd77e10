//! Each stage's queue lag, the signal every scaling decision reads:
//! `pending + ack_pending` of the stage's durable consumer.
//!
//! Read through the JetStream API (`$JS.API.CONSUMER.INFO.<stream>.<consumer>`),
//! which on a cluster the consumer's leader answers, whichever server the
//! client is connected to. A server's monitoring endpoint (`/jsz`) reports
//! its own replica's view instead, and on a follower that view can be stale.
//! A consumer that does not exist is an error, never a lag: a scaler that
//! took it for a large lag would scale the stage to its maximum.

use async_nats::jetstream::consumer;
use async_nats::jetstream::context::Context;
use async_nats::jetstream::response::Response;
use async_nats::jetstream::{Error as ApiError, ErrorCode};

use crate::jetstream::Route;
use crate::metrics::Metrics;

/// A consumer's backlog at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    /// Messages not yet delivered.
    pub pending: u64,
    /// Messages delivered and not yet acknowledged.
    pub ack_pending: u64,
}

impl Lag {
    /// The scaling signal: everything not yet done.
    pub fn total(&self) -> u64 {
        self.pending.saturating_add(self.ack_pending)
    }
}

/// Why a stage's lag could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LagError {
    #[error("consumer {stream}/{consumer} does not exist (run `pagestream streams apply`)")]
    MissingConsumer { stream: String, consumer: String },
    #[error("cannot read consumer {stream}/{consumer}: {reason}")]
    Unavailable { stream: String, consumer: String, reason: String },
}

impl LagError {
    /// Label value of the error metric.
    pub fn reason(&self) -> &'static str {
        match self {
            LagError::MissingConsumer { .. } => "missing_consumer",
            LagError::Unavailable { .. } => "unavailable",
        }
    }
}

/// Reads the lag of every stage of a route.
#[derive(Debug, Clone)]
pub struct LagReader {
    js: Context,
    /// `(stage, stream, consumer)`.
    consumers: Vec<(String, String, String)>,
}

impl LagReader {
    pub fn new(js: Context, route: &Route) -> Self {
        let consumers = route
            .stages()
            .iter()
            .map(|stage| {
                let (stream, consumer, _) = route.consumer(&stage.name);
                (stage.name.clone(), stream, consumer)
            })
            .collect();
        LagReader { js, consumers }
    }

    /// The stages read, in route order.
    pub fn stages(&self) -> impl Iterator<Item = &str> {
        self.consumers.iter().map(|(stage, _, _)| stage.as_str())
    }

    /// The lag of every stage, in route order.
    pub async fn read(&self) -> Vec<(String, Result<Lag, LagError>)> {
        let mut lags = Vec::with_capacity(self.consumers.len());
        for (stage, stream, consumer) in &self.consumers {
            lags.push((stage.clone(), read(&self.js, stream, consumer).await));
        }
        lags
    }

    /// Reads every stage and exports the result: `pagestream_stage_lag`
    /// where it was read, an error counted and the stage's lag withdrawn
    /// where it was not (so that no stale value is scaled on).
    pub async fn export(&self, metrics: &Metrics) -> Vec<(String, Result<Lag, LagError>)> {
        let lags = self.read().await;
        for (stage, lag) in &lags {
            match lag {
                Ok(lag) => {
                    let value = i64::try_from(lag.total()).unwrap_or(i64::MAX);
                    metrics.stage_lag.with_label_values(&[stage]).set(value);
                    metrics.stage_lag_up.with_label_values(&[stage]).set(1);
                }
                Err(error) => {
                    let _ = metrics.stage_lag.remove_label_values(&[stage]);
                    metrics.stage_lag_up.with_label_values(&[stage]).set(0);
                    metrics.stage_lag_errors.with_label_values(&[stage, error.reason()]).inc();
                }
            }
        }
        lags
    }
}

/// The lag of `stream`/`consumer`, from the consumer's leader.
pub async fn read(js: &Context, stream: &str, consumer: &str) -> Result<Lag, LagError> {
    let unavailable = |reason: String| LagError::Unavailable {
        stream: stream.to_string(),
        consumer: consumer.to_string(),
        reason,
    };
    let subject = format!("CONSUMER.INFO.{stream}.{consumer}");
    let response: Response<consumer::Info> = js
        .request(subject, &serde_json::json!({}))
        .await
        .map_err(|error| unavailable(error.to_string()))?;
    match response {
        Response::Ok(info) => Ok(Lag {
            pending: info.num_pending,
            ack_pending: u64::try_from(info.num_ack_pending).unwrap_or(0),
        }),
        Response::Err { error } if is_missing(&error) => Err(LagError::MissingConsumer {
            stream: stream.to_string(),
            consumer: consumer.to_string(),
        }),
        Response::Err { error } => Err(unavailable(error.to_string())),
    }
}

fn is_missing(error: &ApiError) -> bool {
    matches!(error.error_code(), ErrorCode::CONSUMER_NOT_FOUND | ErrorCode::STREAM_NOT_FOUND)
}
