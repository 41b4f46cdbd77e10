//! The pagestream load generator: offers the load of a scenario
//! (`loadtest/scenarios/*.toml`: steady Poisson arrivals, a burst, a bulk
//! batch, a soak) to a pipeline (JetStream, started locally with `--spawn`
//! or already running; or the embedded transport as a baseline), records
//! every submission, page and result, and reports latency percentiles,
//! throughput, per-stage times, consumer lag, worker memory and whether
//! every page came back exactly once, judged against the scenario's SLO.

pub mod analysis;
pub mod corpus;
pub mod drive;
pub mod record;
pub mod report;
pub mod scenario;
pub mod spawn;
