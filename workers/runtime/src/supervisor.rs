//! `pagestream up` on one host: one pool of `pagestream worker --stage <name>`
//! processes per stage, each scaled on its stage's lag with the arithmetic
//! KEDA and the HPA apply on Kubernetes ([`topology::scaling`]).
//!
//! Every tick the supervisor reads each stage's lag once from the consumer's
//! leader ([`crate::jetstream::lag`]), scrapes its workers' `/metrics`, and
//! then, per pool: reaps workers that exited (one that exited unasked is
//! restarted, after a backoff that grows while it keeps crashing), asks the
//! autoscaler for a count, and starts workers or stops the idlest ones.
//!
//! A worker holding unacknowledged pages is never killed by a scale-down:
//! it gets SIGTERM, stops fetching, and runs on, outside the count, until
//! every page it holds is finished and acknowledged. Only a drain overdue
//! by the drain limit is killed (its pages are then redelivered, not lost).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::process::{Child, Command};
use topology::ScalingPolicy;
use topology::scaling::Autoscaler;

use crate::jetstream::lag::{Lag, LagError, LagReader};
use crate::metrics::{Metrics, histogram, names, scrape, sum};

/// Window of the pages/s and latency figures of a pool.
const WINDOW: Duration = Duration::from_secs(30);
/// Consecutive failed lag reads after which a pool runs its fallback count
/// (KEDA's `fallback.failureThreshold`).
const LAG_FAILURES_BEFORE_FALLBACK: u32 = 3;
/// A worker that ran this long before it exited is not crashing in a loop:
/// its restart backoff starts over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How the supervisor starts workers.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `pagestream` binary.
    pub program: PathBuf,
    /// Options before the subcommand (server, credentials, topology, store, home).
    pub global_args: Vec<OsString>,
    /// Options after `worker --stage <name>` (e.g. `--shutdown-timeout`).
    pub worker_args: Vec<OsString>,
    /// Environment of the workers beyond this process's own: secrets that
    /// must not show in the process list.
    pub env: Vec<(OsString, OsString)>,
    /// How long a stopping worker may drain before it is killed.
    pub drain_limit: Duration,
    /// Where each worker's stderr goes, one file per worker.
    pub log_dir: PathBuf,
}

/// One stage's figures after a tick.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageStatus {
    pub stage: String,
    /// Workers running (not counting those draining).
    pub replicas: u32,
    /// What the lag asks for, within the policy.
    pub desired: u32,
    /// Workers stopping, finishing their pages.
    pub draining: u32,
    /// `pending + ack_pending`; none while it cannot be read.
    pub lag: Option<u64>,
    /// Pages finished per second over the last 30 s.
    pub pages_per_second: f64,
    /// Time in the stage per page over the last 30 s, seconds.
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    /// Process ids of the running workers.
    pub pids: Vec<u32>,
    /// Workers restarted after they exited unasked, since the start.
    pub restarts: u64,
}

/// A worker process of a pool.
struct Worker {
    child: Child,
    pid: u32,
    metrics_addr: String,
    started: Instant,
    /// Pages in flight at the last scrape.
    in_flight: u64,
    /// Cumulative figures at the last scrape, to take differences.
    processed: f64,
    buckets: Vec<(f64, f64)>,
}

/// One tick's worth of work done by a pool.
struct Sample {
    at: Instant,
    elapsed: Duration,
    processed: f64,
    /// Cumulative bucket counts `(le, count)` of the pages finished in it.
    buckets: Vec<(f64, f64)>,
}

struct Pool {
    stage: String,
    policy: ScalingPolicy,
    scaler: Autoscaler,
    workers: Vec<Worker>,
    draining: Vec<(Worker, Instant)>,
    /// Exits unasked in a row, and when the next start is allowed.
    crashes: u32,
    hold_until: Option<Instant>,
    lag_failures: u32,
    desired: u32,
    restarts: u64,
    samples: VecDeque<Sample>,
}

/// The pools of a pipeline on this host.
pub struct Supervisor {
    pools: Vec<Pool>,
    lag: LagReader,
    metrics: Arc<Metrics>,
    options: Options,
    last_tick: Instant,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").field("stages", &self.pools.len()).finish_non_exhaustive()
    }
}

/// Why a worker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("cannot start a worker of stage {stage}: {source}")]
    Spawn { stage: String, source: std::io::Error },
}

impl Supervisor {
    /// Pools for `stages` (name and policy), each starting empty: the first
    /// tick brings them to their minimum.
    pub fn new(
        stages: Vec<(String, ScalingPolicy)>,
        lag: LagReader,
        metrics: Arc<Metrics>,
        options: Options,
    ) -> Self {
        let pools = stages
            .into_iter()
            .map(|(stage, policy)| Pool {
                scaler: Autoscaler::new(policy.clone(), 0),
                stage,
                policy,
                workers: Vec::new(),
                draining: Vec::new(),
                crashes: 0,
                hold_until: None,
                lag_failures: 0,
                desired: 0,
                restarts: 0,
                samples: VecDeque::new(),
            })
            .collect();
        Supervisor { pools, lag, metrics, options, last_tick: Instant::now() }
    }

    /// One round: read the lags, reap, decide, start and stop workers.
    pub async fn tick(&mut self) -> Result<Vec<StageStatus>, SuperviseError> {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last_tick);
        self.last_tick = now;
        let lags = self.lag.export(&self.metrics).await;
        let mut statuses = Vec::with_capacity(self.pools.len());
        for pool in &mut self.pools {
            let lag = lags.iter().find(|(stage, _)| *stage == pool.stage).map(|(_, lag)| lag);
            pool.reap(now, &self.metrics);
            pool.observe(now, elapsed).await;
            pool.decide(lag, now);
            pool.scale(now, &self.options).await?;
            let labels = [pool.stage.as_str()];
            self.metrics.stage_replicas.with_label_values(&labels).set(pool.workers.len() as i64);
            self.metrics.stage_desired_replicas.with_label_values(&labels).set(pool.desired as i64);
            statuses.push(pool.status(lag));
        }
        Ok(statuses)
    }

    /// Stops every worker with SIGTERM and waits until each has drained
    /// (killing those that outlast the drain limit).
    pub async fn shutdown(mut self) {
        let now = Instant::now();
        for pool in &mut self.pools {
            for worker in pool.workers.drain(..) {
                terminate(&worker);
                pool.draining.push((worker, now));
            }
        }
        let deadline = now + self.options.drain_limit;
        for pool in &mut self.pools {
            for (worker, _) in &mut pool.draining {
                let left = deadline.saturating_duration_since(Instant::now());
                if tokio::time::timeout(left, worker.child.wait()).await.is_err() {
                    tracing::warn!(stage = pool.stage, pid = worker.pid, "drain overdue, killed");
                    let _ = worker.child.kill().await;
                }
            }
            pool.draining.clear();
        }
    }
}

impl Pool {
    /// Drops workers that exited; an unasked exit schedules a restart.
    fn reap(&mut self, now: Instant, metrics: &Metrics) {
        let stage = &self.stage;
        self.draining.retain_mut(|(worker, since)| match worker.child.try_wait() {
            Ok(Some(status)) => {
                tracing::info!(stage, pid = worker.pid, %status, drained_in = ?now.saturating_duration_since(*since), "worker stopped");
                false
            }
            _ => true,
        });
        let mut exited = Vec::new();
        self.workers.retain_mut(|worker| match worker.child.try_wait() {
            Ok(Some(status)) => {
                exited.push((worker.pid, status, now.saturating_duration_since(worker.started)));
                false
            }
            _ => true,
        });
        for (pid, status, ran) in exited {
            self.crashes = if ran >= HEALTHY_RUN { 1 } else { self.crashes + 1 };
            let backoff = backoff(self.crashes);
            self.hold_until = Some(now + backoff);
            self.restarts += 1;
            metrics.worker_restarts.with_label_values(&[stage]).inc();
            tracing::warn!(stage, pid, %status, ?backoff, "worker exited unasked; restarting it");
        }
    }

    /// Scrapes the workers: pages in flight, pages finished and their times.
    async fn observe(&mut self, now: Instant, elapsed: Duration) {
        let mut sample = Sample { at: now, elapsed, processed: 0.0, buckets: Vec::new() };
        for worker in &mut self.workers {
            let Some(text) = scrape(&worker.metrics_addr).await else { continue };
            let stage = [("stage", self.stage.as_str())];
            worker.in_flight = sum(&text, names::IN_FLIGHT, &stage).unwrap_or(0.0) as u64;
            let processed = sum(&text, names::PROCESSED, &stage).unwrap_or(0.0);
            sample.processed += (processed - worker.processed).max(0.0);
            worker.processed = processed;
            let buckets = histogram(&text, names::STAGE_SECONDS, &self.stage);
            for (i, (le, count)) in buckets.iter().enumerate() {
                let before = worker.buckets.get(i).map_or(0.0, |b| b.1);
                let delta = (count - before).max(0.0);
                match sample.buckets.get_mut(i) {
                    Some(bucket) => bucket.1 += delta,
                    None => sample.buckets.push((*le, delta)),
                }
            }
            worker.buckets = buckets;
        }
        self.samples.push_back(sample);
        while self.samples.front().is_some_and(|s| now.saturating_duration_since(s.at) > WINDOW) {
            self.samples.pop_front();
        }
    }

    /// The count to run now, and why it changes.
    fn decide(&mut self, lag: Option<&Result<Lag, LagError>>, now: Instant) {
        let before = self.desired;
        let asked = match lag {
            Some(Ok(lag)) => {
                self.lag_failures = 0;
                self.scaler.observe(lag.total(), now)
            }
            Some(Err(error)) => {
                self.lag_failures += 1;
                if self.lag_failures == LAG_FAILURES_BEFORE_FALLBACK {
                    tracing::error!(stage = self.stage, %error, fallback = self.policy.fallback(), "lag unreadable: running the fallback count");
                }
                if self.lag_failures >= LAG_FAILURES_BEFORE_FALLBACK {
                    self.policy.fallback()
                } else {
                    self.desired
                }
            }
            None => self.desired,
        };
        self.desired = asked;
        if self.desired != before {
            let lag = lag.and_then(|l| l.as_ref().ok()).map(|l| l.total());
            let reason = match (lag, self.desired > before) {
                (Some(lag), true) => format!(
                    "lag {lag} over {before} worker(s) of threshold {}",
                    self.policy.lag_threshold
                ),
                (Some(lag), false) => format!(
                    "lag {lag} has asked for fewer than {before} worker(s) for the cooldown ({:?})",
                    self.policy.cooldown
                ),
                (None, _) => "lag unreadable: fallback count".to_string(),
            };
            tracing::info!(stage = self.stage, from = before, to = self.desired, reason, "scaling");
        }
    }

    /// Starts or stops workers to reach the desired count.
    async fn scale(&mut self, now: Instant, options: &Options) -> Result<(), SuperviseError> {
        let running = self.workers.len() as u32;
        if running < self.desired {
            if self.hold_until.is_some_and(|until| now < until) {
                return Ok(());
            }
            self.hold_until = None;
            for _ in running..self.desired {
                let worker = spawn(&self.stage, options)?;
                tracing::info!(
                    stage = self.stage,
                    pid = worker.pid,
                    metrics = worker.metrics_addr,
                    "worker started"
                );
                self.workers.push(worker);
            }
        } else if running > self.desired {
            // Idle workers first, the newest first among equals.
            self.workers.sort_by_key(|w| (std::cmp::Reverse(w.in_flight), w.started));
            for worker in self.workers.split_off(self.desired as usize) {
                tracing::info!(
                    stage = self.stage,
                    pid = worker.pid,
                    in_flight = worker.in_flight,
                    "stopping worker"
                );
                terminate(&worker);
                self.draining.push((worker, now));
            }
        }
        for (worker, since) in &mut self.draining {
            if now.saturating_duration_since(*since) > options.drain_limit {
                tracing::warn!(stage = self.stage, pid = worker.pid, "drain overdue, killed");
                let _ = worker.child.start_kill();
            }
        }
        Ok(())
    }

    fn status(&self, lag: Option<&Result<Lag, LagError>>) -> StageStatus {
        let seconds: f64 = self.samples.iter().map(|s| s.elapsed.as_secs_f64()).sum();
        let processed: f64 = self.samples.iter().map(|s| s.processed).sum();
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for sample in &self.samples {
            for (i, (le, count)) in sample.buckets.iter().enumerate() {
                match buckets.get_mut(i) {
                    Some(bucket) => bucket.1 += count,
                    None => buckets.push((*le, *count)),
                }
            }
        }
        StageStatus {
            stage: self.stage.clone(),
            replicas: self.workers.len() as u32,
            desired: self.desired,
            draining: self.draining.len() as u32,
            lag: lag.and_then(|l| l.as_ref().ok()).map(|l| l.total()),
            pages_per_second: if seconds > 0.0 { processed / seconds } else { 0.0 },
            p50_seconds: quantile(&buckets, 0.5),
            p99_seconds: quantile(&buckets, 0.99),
            pids: self.workers.iter().map(|w| w.pid).collect(),
            restarts: self.restarts,
        }
    }
}

/// Backoff before the `crashes`-th restart in a row: 1 s, 2 s, 4 s, … 30 s.
fn backoff(crashes: u32) -> Duration {
    let exponent = crashes.saturating_sub(1).min(5);
    (Duration::from_secs(1) * 2u32.pow(exponent)).min(MAX_BACKOFF)
}

fn spawn(stage: &str, options: &Options) -> Result<Worker, SuperviseError> {
    let failed = |source| SuperviseError::Spawn { stage: stage.to_string(), source };
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(failed)?
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    std::fs::create_dir_all(&options.log_dir).map_err(failed)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(options.log_dir.join(format!("{stage}-{port}.log")))
        .map_err(failed)?;
    let child = Command::new(&options.program)
        .args(&options.global_args)
        .args(["worker", "--stage", stage, "--metrics-addr", &metrics_addr])
        .args(&options.worker_args)
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // Its own process group: a ctrl-c at the terminal reaches the
        // supervisor only, which then stops the workers in order.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(failed)?;
    let pid = child.id().unwrap_or(0);
    Ok(Worker {
        child,
        pid,
        metrics_addr,
        started: Instant::now(),
        in_flight: 0,
        processed: 0.0,
        buckets: Vec::new(),
    })
}

/// SIGTERM: the worker stops fetching, finishes its pages and exits.
fn terminate(worker: &Worker) {
    if let Ok(pid) = i32::try_from(worker.pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}

/// The `q` quantile of cumulative buckets, interpolated within the bucket
/// it falls in (as Prometheus' `histogram_quantile`); none without samples.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let within = if count > lower.1 { (rank - lower.1) / (count - lower.1) } else { 1.0 };
            return Some(lower.0 + (le - lower.0) * within);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP pagestream_pages_in_flight Pages being worked on
pagestream_pages_in_flight{stage=\"ocr\"} 2
pagestream_pages_in_flight{stage=\"layout\"} 1
pagestream_stage_duration_seconds_bucket{stage=\"ocr\",le=\"0.5\"} 10
pagestream_stage_duration_seconds_bucket{stage=\"ocr\",le=\"1\"} 90
pagestream_stage_duration_seconds_bucket{stage=\"ocr\",le=\"2\"} 100
pagestream_stage_duration_seconds_bucket{stage=\"ocr\",le=\"+Inf\"} 100
pagestream_stage_duration_seconds_sum{stage=\"ocr\"} 80
pagestream_process_resident_bytes 1000
";

    #[test]
    fn sums_samples_by_label() {
        assert_eq!(sum(TEXT, names::IN_FLIGHT, &[("stage", "ocr")]), Some(2.0));
        assert_eq!(sum(TEXT, names::IN_FLIGHT, &[]), Some(3.0));
        assert_eq!(sum(TEXT, names::RESIDENT_BYTES, &[]), Some(1000.0));
        assert_eq!(sum(TEXT, names::IN_FLIGHT, &[("stage", "split")]), None);
        assert_eq!(sum(TEXT, "pagestream_pages", &[]), None, "a prefix is not a name");
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let buckets = histogram(TEXT, names::STAGE_SECONDS, "ocr");
        assert_eq!(buckets.len(), 4);
        // rank 50 of 100: 40 of the 80 pages between 0.5 s and 1 s
        assert_eq!(quantile(&buckets, 0.5), Some(0.75));
        // rank 99: 9 of the 10 pages between 1 s and 2 s
        assert!((quantile(&buckets, 0.99).unwrap_or(0.0) - 1.9).abs() < 1e-9);
        assert_eq!(quantile(&histogram(TEXT, names::STAGE_SECONDS, "split"), 0.5), None);
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let seconds: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(seconds, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
