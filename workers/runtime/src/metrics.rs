//! Prometheus metrics of a worker process and the tiny HTTP server that
//! exposes them: `/metrics` (text format), `/healthz` (the process answers)
//! and `/readyz` (connected to NATS and serving its consumers).
//!
//! The server is a few lines on tokio's `TcpListener`: it reads one request
//! head, answers and closes the connection, which is all scrapers and
//! Kubernetes probes need.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder, exponential_buckets,
};
use schemas::PageResult;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Metric names, in one place.
pub mod names {
    pub const STEP_SECONDS: &str = "pagestream_step_duration_seconds";
    pub const STEP_INFERENCE_SECONDS: &str = "pagestream_step_inference_seconds";
    pub const STAGE_SECONDS: &str = "pagestream_stage_duration_seconds";
    pub const QUEUE_WAIT_SECONDS: &str = "pagestream_queue_wait_seconds";
    pub const IN_FLIGHT: &str = "pagestream_pages_in_flight";
    pub const PROCESSED: &str = "pagestream_pages_processed_total";
    pub const FAILED: &str = "pagestream_pages_failed_total";
    pub const REDELIVERED: &str = "pagestream_pages_redelivered_total";
    pub const DEAD_LETTERED: &str = "pagestream_pages_dead_lettered_total";
    pub const DOCUMENTS: &str = "pagestream_documents_finished_total";
    pub const CONSUMER_PENDING: &str = "pagestream_consumer_pending";
    pub const CONSUMER_ACK_PENDING: &str = "pagestream_consumer_ack_pending";
    pub const CONSUMER_LAG: &str = "pagestream_consumer_lag";
    pub const PUBLISH_RETRIES: &str = "pagestream_publish_retries_total";
    pub const MODEL_BATCH_SIZE: &str = pages::models::BATCH_SIZE_METRIC;
    pub const RESIDENT_BYTES: &str = "pagestream_process_resident_bytes";
    pub const CPU_SECONDS: &str = "pagestream_process_cpu_seconds_total";
    pub const DOCUMENT_SECONDS_PER_PAGE: &str = "pagestream_document_seconds_per_page";
    pub const HANDOFF_BYTES: &str = "pagestream_handoff_bytes_total";
    pub const HANDOFFS: &str = "pagestream_handoffs_total";
    pub const STAGE_LAG: &str = "pagestream_stage_lag";
    pub const STAGE_LAG_UP: &str = "pagestream_stage_lag_up";
    pub const STAGE_LAG_ERRORS: &str = "pagestream_stage_lag_errors_total";
    pub const STAGE_REPLICAS: &str = "pagestream_stage_replicas";
    pub const STAGE_DESIRED_REPLICAS: &str = "pagestream_stage_desired_replicas";
    pub const WORKER_RESTARTS: &str = "pagestream_worker_restarts_total";
}

/// The metrics of one worker process.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Wall time per step, labels `stage`, `step`.
    pub step_seconds: HistogramVec,
    /// Model inference time per step, labels `stage`, `step`.
    pub step_inference_seconds: HistogramVec,
    /// Wall time of a page in a stage (receive, steps, publish), label `stage`.
    pub stage_seconds: HistogramVec,
    /// Time a page waited in the stage's queue, label `stage`.
    pub queue_wait_seconds: HistogramVec,
    /// Pages being worked on, label `stage`.
    pub in_flight: IntGaugeVec,
    /// Pages a stage finished and handed on, label `stage`.
    pub processed: IntCounterVec,
    /// Step failures, labels `stage`, `kind`, `outcome` (`retry` or `dead_letter`).
    pub failed: IntCounterVec,
    /// Deliveries beyond the first, label `stage`.
    pub redelivered: IntCounterVec,
    /// Pages and documents sent to the dead-letter stream, label `stage`.
    pub dead_lettered: IntCounterVec,
    /// Documents whose result was published, label `status`.
    pub documents: IntCounterVec,
    /// Messages waiting for a consumer, label `stage` (polled from JetStream).
    pub consumer_pending: IntGaugeVec,
    /// Messages delivered and not yet acknowledged, label `stage`.
    pub consumer_ack_pending: IntGaugeVec,
    /// `pending + ack_pending`, the scaling signal, label `stage`.
    pub consumer_lag: IntGaugeVec,
    /// Publish attempts retried, label `reason` (`full` or `unavailable`).
    pub publish_retries: IntCounterVec,
    /// Inputs per model inference, label `model` (process-wide, see
    /// [`pages::models::BATCH_SIZES`]).
    pub model_batch_sizes: HistogramVec,
    /// Resident memory of the process, read when the metrics are rendered.
    pub resident_bytes: IntGauge,
    /// CPU time of the process (user + system), read when the metrics are rendered.
    pub cpu_seconds: Gauge,
    /// A document's time from submission to its result over its page count
    /// (observed where results are published).
    pub document_seconds_per_page: Histogram,
    /// Bytes of the page messages handed to a stage, labels `to_stage` and
    /// `via`: `message` (the message itself) or `store` (the objects it
    /// refers to, which the receiver fetches).
    pub handoff_bytes: IntCounterVec,
    /// Page messages handed to a stage, label `to_stage`.
    pub handoffs: IntCounterVec,
    /// A stage's consumer lag read once for the whole pool (by `pagestream
    /// up` or `pagestream metrics-exporter`, never by the workers), label
    /// `stage`; absent while it cannot be read.
    pub stage_lag: IntGaugeVec,
    /// Whether the last read of a stage's lag succeeded (1) or not (0).
    pub stage_lag_up: IntGaugeVec,
    /// Failed reads of a stage's lag, labels `stage`, `reason`.
    pub stage_lag_errors: IntCounterVec,
    /// Worker processes serving a stage (`pagestream up`), label `stage`.
    pub stage_replicas: IntGaugeVec,
    /// Worker processes a stage's lag asks for (`pagestream up`), label `stage`.
    pub stage_desired_replicas: IntGaugeVec,
    /// Worker processes restarted after they exited unasked, label `stage`.
    pub worker_restarts: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the metrics in a registry of their own.
    pub fn new() -> Self {
        let registry = Registry::new();
        // 1 ms to ~65 s.
        let buckets = exponential_buckets(0.001, 2.0, 17).unwrap_or_default();
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.clone());
            register(&registry, HistogramVec::new(opts, labels))
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntGaugeVec::new(Opts::new(name, help), labels))
        };
        use names::*;
        Metrics {
            step_seconds: histogram(
                STEP_SECONDS,
                "Wall time of a step on one page",
                &["stage", "step"],
            ),
            step_inference_seconds: histogram(
                STEP_INFERENCE_SECONDS,
                "Model inference time of a step on one page",
                &["stage", "step"],
            ),
            stage_seconds: histogram(STAGE_SECONDS, "Time a page spends in a stage", &["stage"]),
            queue_wait_seconds: histogram(
                QUEUE_WAIT_SECONDS,
                "Time a page waited for a stage",
                &["stage"],
            ),
            in_flight: gauge(IN_FLIGHT, "Pages being worked on", &["stage"]),
            processed: counter(PROCESSED, "Pages a stage finished", &["stage"]),
            failed: counter(FAILED, "Step failures", &["stage", "kind", "outcome"]),
            redelivered: counter(REDELIVERED, "Deliveries beyond the first", &["stage"]),
            dead_lettered: counter(
                DEAD_LETTERED,
                "Messages sent to the dead-letter stream",
                &["stage"],
            ),
            documents: counter(DOCUMENTS, "Documents whose result was published", &["status"]),
            consumer_pending: gauge(
                CONSUMER_PENDING,
                "Messages waiting for a consumer",
                &["stage"],
            ),
            consumer_ack_pending: gauge(
                CONSUMER_ACK_PENDING,
                "Messages delivered and not yet acknowledged",
                &["stage"],
            ),
            consumer_lag: gauge(
                CONSUMER_LAG,
                "Pending plus ack-pending messages of a consumer",
                &["stage"],
            ),
            publish_retries: counter(PUBLISH_RETRIES, "Publish attempts retried", &["reason"]),
            model_batch_sizes: register(&registry, Ok(pages::models::BATCH_SIZES.clone())),
            resident_bytes: register(
                &registry,
                IntGauge::new(RESIDENT_BYTES, "Resident memory of the process"),
            ),
            cpu_seconds: register(
                &registry,
                Gauge::new(CPU_SECONDS, "CPU time of the process, user and system, in seconds"),
            ),
            document_seconds_per_page: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        DOCUMENT_SECONDS_PER_PAGE,
                        "Time from submission to result of a document, per page",
                    )
                    .buckets(buckets.clone()),
                ),
            ),
            handoff_bytes: counter(
                HANDOFF_BYTES,
                "Bytes of page messages handed to a stage, and of the objects they refer to",
                &["to_stage", "via"],
            ),
            handoffs: counter(HANDOFFS, "Page messages handed to a stage", &["to_stage"]),
            stage_lag: gauge(
                STAGE_LAG,
                "Pending plus ack-pending messages of a stage's consumer, read from its leader",
                &["stage"],
            ),
            stage_lag_up: gauge(
                STAGE_LAG_UP,
                "Whether the last read of a stage's lag succeeded",
                &["stage"],
            ),
            stage_lag_errors: counter(
                STAGE_LAG_ERRORS,
                "Failed reads of a stage's lag",
                &["stage", "reason"],
            ),
            stage_replicas: gauge(STAGE_REPLICAS, "Worker processes serving a stage", &["stage"]),
            stage_desired_replicas: gauge(
                STAGE_DESIRED_REPLICAS,
                "Worker processes a stage's lag asks for",
                &["stage"],
            ),
            worker_restarts: counter(
                WORKER_RESTARTS,
                "Worker processes restarted after they exited unasked",
                &["stage"],
            ),
            registry,
        }
    }

    /// Exports the counters of `stage` at zero, so that an alert on their
    /// increase sees the first page too.
    pub fn start_stage(&self, stage: &str) {
        for counter in [&self.processed, &self.redelivered, &self.dead_lettered] {
            counter.with_label_values(&[stage]);
        }
    }

    /// Records the step timings of `stage` found in a page result.
    pub fn observe_steps(&self, stage: &str, result: &PageResult) {
        for timing in result.timings.iter().filter(|t| t.stage == stage) {
            let labels = [stage, timing.step.as_str()];
            self.step_seconds.with_label_values(&labels).observe(timing.duration_us as f64 / 1e6);
            if timing.inference_us > 0 {
                self.step_inference_seconds
                    .with_label_values(&labels)
                    .observe(timing.inference_us as f64 / 1e6);
            }
        }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        if let Some(bytes) = resident_bytes() {
            self.resident_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Some(seconds) = cpu_seconds() {
            self.cpu_seconds.set(seconds);
        }
        let mut text = String::new();
        if let Err(error) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut text) {
            tracing::warn!(%error, "cannot encode metrics");
        }
        text
    }
}

/// Resident memory of this process (`VmRSS` of `/proc/self/status`), where
/// the system tells it.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time of this process, user and system (`/proc/self/stat`, in ticks
/// of USER_HZ, which Linux fixes at 100 for this interface), where the
/// system tells it.
pub fn cpu_seconds() -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name, in parentheses, may hold spaces: count after it.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / USER_HZ)
}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: prometheus::Result<C>,
) -> C {
    // Names and labels are constants: an error here is a programming error
    // caught by the tests, so fall back to an unregistered collector.
    match collector {
        Ok(collector) => {
            if let Err(error) = registry.register(Box::new(collector.clone())) {
                tracing::error!(%error, "cannot register metric");
            }
            collector
        }
        Err(error) => panic!("invalid metric definition: {error}"),
    }
}

/// Whether the process is ready to serve (set by the worker once its
/// consumers are bound, cleared while disconnected or shutting down).
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, ready: Readiness) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let metrics = Arc::clone(&metrics);
        let ready = ready.clone();
        tokio::spawn(async move {
            if let Err(error) = answer(stream, &metrics, &ready).await {
                tracing::debug!(%error, "http request failed");
            }
        });
    }
}

async fn answer(
    mut stream: TcpStream,
    metrics: &Metrics,
    ready: &Readiness,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(5), read_head)
        .await
        .map_err(std::io::Error::other)??;
    let request = String::from_utf8_lossy(&head);
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", prometheus::TEXT_FORMAT, metrics.render()),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") if ready.get() => ("200 OK", "text/plain", "ready\n".to_string()),
        ("GET", "/readyz") => ("503 Service Unavailable", "text/plain", "not ready\n".to_string()),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "method not allowed\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// `GET /metrics` of another process at `address` (`host:port`); none when
/// it does not answer within 2 s.
pub async fn scrape(address: &str) -> Option<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(address).await.ok()?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: scraper\r\n\r\n").await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        Some(response)
    };
    tokio::time::timeout(Duration::from_secs(2), exchange).await.ok().flatten()
}

/// `(labels, value)` of every sample of `name` in Prometheus text
/// (`labels` as written between the braces, empty without them).
pub fn samples<'t>(text: &'t str, name: &'t str) -> impl Iterator<Item = (&'t str, f64)> + 't {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        Some((labels, value.trim().parse().ok()?))
    })
}

/// Sum of the samples of `name` whose labels include every pair of
/// `labels`; none when there is no such sample.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for (sample_labels, value) in samples(text, name) {
        let wanted = labels.iter().all(|(key, expected)| {
            sample_labels.split(',').any(|pair| pair == format!("{key}=\"{expected}\""))
        });
        if wanted {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// The cumulative buckets `(le, count)` of histogram `name` for `stage`, by `le`.
pub fn histogram(text: &str, name: &str, stage: &str) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let stage = format!("stage=\"{stage}\"");
    let mut buckets: Vec<(f64, f64)> = samples(text, &bucket)
        .filter(|(labels, _)| labels.split(',').any(|pair| pair == stage))
        .filter_map(|(labels, count)| {
            let le = labels.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use schemas::StepTiming;

    #[test]
    fn cpu_seconds_count_the_work_of_this_process() {
        let before = cpu_seconds().unwrap();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        // busy until 50 ms of CPU are counted; a reading that never moves fails
        while cpu_seconds().unwrap() - before < 0.05 {
            assert!(started.elapsed() < Duration::from_secs(10), "CPU time did not grow");
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
    }

    fn metric_value(body: &str, name: &str) -> f64 {
        let line = body.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let metrics = Arc::new(Metrics::new());
        let result = PageResult {
            timings: vec![StepTiming {
                stage: "ocr".into(),
                step: "recognize_text".into(),
                duration_us: 1_500_000,
                inference_us: 1_200_000,
                queue_wait_us: 0,
            }],
            ..PageResult::default()
        };
        metrics.observe_steps("ocr", &result);
        metrics.start_stage("ocr");
        metrics.processed.with_label_values(&["ocr"]).inc();
        pages::models::BATCH_SIZES.with_label_values(&["metrics-test"]).observe(6.0);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ready = Readiness::default();
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics), ready.clone()));

        let body = get(addr, "/metrics").await;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains(r#"pagestream_pages_processed_total{stage="ocr"} 1"#), "{body}");
        // a started stage exports its counters before anything happens to them
        assert!(body.contains(r#"pagestream_pages_dead_lettered_total{stage="ocr"} 0"#), "{body}");
        assert!(metric_value(&body, names::CPU_SECONDS).is_finite(), "{body}");
        assert!(body.contains(
            r#"pagestream_step_duration_seconds_count{stage="ocr",step="recognize_text"} 1"#
        ));
        assert!(
            body.contains(r#"pagestream_model_batch_size_bucket{model="metrics-test",le="8"} 1"#)
        );
        // This test process holds at least its own code in memory.
        let resident = metric_value(&body, names::RESIDENT_BYTES);
        assert!(resident > 1e6, "{body}");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        ready.set(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        server.abort();
    }
}
