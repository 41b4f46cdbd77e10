//! Scenarios: what load to offer, read from `loadtest/scenarios/*.toml`.
//!
//! ```toml
//! name = "steady"
//! kind = "steady"          # steady | burst | bulk | soak
//! rate = 2.0               # documents per second (steady, soak): Poisson arrivals
//! duration = "60s"         # how long arrivals go on (steady, soak)
//! documents = 50           # how many documents (burst, bulk)
//! seed = 7                 # of the arrival times and the document draw
//! drain_timeout = "5m"     # how long to wait for the last results
//! quiet_before = "0s"      # idle time before the first arrival
//! quiet_after = "0s"       # idle time kept after the last result (scale-down)
//! [mix]
//! digital = 0.5            # share of digital documents, the rest scanned
//! [slo]
//! p99 = "2s"               # document latency, submit to result
//! max_loss = 0
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Why a scenario file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The shape of the offered load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Open-loop Poisson arrivals at `rate` for `duration`.
    Steady,
    /// `documents` at once, then nothing: how fast a spike drains.
    Burst,
    /// `documents` submitted as fast as backpressure lets them in.
    Bulk,
    /// Like steady, for long, watching worker memory.
    Soak,
}

/// Documents drawn for the load.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    /// Share of digital documents (PDFs); the rest are scanned (images).
    pub digital: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { digital: 0.5 }
    }
}

/// The service level the run is judged against.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Highest acceptable 99th percentile of document latency.
    #[serde(deserialize_with = "duration")]
    pub p99: Duration,
    /// Most documents or pages allowed without a result or dead letter.
    #[serde(default)]
    pub max_loss: u64,
}

/// A load scenario.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub kind: Kind,
    /// Documents per second (steady, soak).
    #[serde(default)]
    pub rate: f64,
    /// How long arrivals go on (steady, soak).
    #[serde(default, deserialize_with = "duration")]
    pub duration: Duration,
    /// How many documents (burst, bulk).
    #[serde(default)]
    pub documents: usize,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// How long to wait for outstanding results after the last arrival.
    #[serde(default = "default_drain", deserialize_with = "duration")]
    pub drain_timeout: Duration,
    /// Idle time before the first arrival (every arrival moves by it).
    #[serde(default, deserialize_with = "duration")]
    pub quiet_before: Duration,
    /// Idle time after the last result, still sampled: what an autoscaler
    /// does once the load is gone.
    #[serde(default, deserialize_with = "duration")]
    pub quiet_after: Duration,
    #[serde(default)]
    pub mix: Mix,
    pub slo: Slo,
}

fn default_seed() -> u64 {
    1
}

fn default_drain() -> Duration {
    Duration::from_secs(300)
}

fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    topology::parse_duration(&text).ok_or_else(|| {
        serde::de::Error::custom(format!("bad duration `{text}` (e.g. 500ms, 30s, 5m)"))
    })
}

impl Scenario {
    /// Reads and checks the scenario file at `path`.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Read { path: shown.clone(), source })?;
        Scenario::parse(&text, &shown)
    }

    /// Parses and checks a scenario; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let invalid = |message: String| ScenarioError::Invalid { path: origin.into(), message };
        let scenario: Scenario = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        match scenario.kind {
            Kind::Steady | Kind::Soak if !(scenario.rate > 0.0 && scenario.rate.is_finite()) => {
                return Err(invalid(
                    "`rate` must be a positive number of documents per second".into(),
                ));
            }
            Kind::Steady | Kind::Soak if scenario.duration.is_zero() => {
                return Err(invalid("`duration` must be longer than zero".into()));
            }
            Kind::Burst | Kind::Bulk if scenario.documents == 0 => {
                return Err(invalid("`documents` must be at least 1".into()));
            }
            _ => {}
        }
        if !(0.0..=1.0).contains(&scenario.mix.digital) {
            return Err(invalid("`mix.digital` must be between 0 and 1".into()));
        }
        Ok(scenario)
    }

    /// When each document is due, from the start of the run. Steady and
    /// soak: Poisson arrivals (exponential gaps) at `rate`, open loop, so a
    /// slow pipeline cannot slow the arrivals down; burst and bulk: all at
    /// zero (bulk is then paced by backpressure alone). All of them after
    /// `quiet_before`.
    pub fn arrivals(&self) -> Vec<Duration> {
        let mut arrivals = self.arrivals_from_zero();
        for arrival in &mut arrivals {
            *arrival += self.quiet_before;
        }
        arrivals
    }

    fn arrivals_from_zero(&self) -> Vec<Duration> {
        match self.kind {
            Kind::Burst | Kind::Bulk => vec![Duration::ZERO; self.documents],
            Kind::Steady | Kind::Soak => {
                let mut random = Random::new(self.seed);
                let mut at = 0.0;
                let mut arrivals = Vec::new();
                loop {
                    at += -(1.0 - random.next_f64()).ln() / self.rate;
                    if at >= self.duration.as_secs_f64() {
                        return arrivals;
                    }
                    arrivals.push(Duration::from_secs_f64(at));
                }
            }
        }
    }
}

/// A small deterministic generator (xorshift64*), so that a scenario and
/// its seed always offer the same load.
#[derive(Debug, Clone)]
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Self {
        Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let value = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (value >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const STEADY: &str = r#"
        name = "steady"
        kind = "steady"
        rate = 20.0
        duration = "100s"
        [slo]
        p99 = "2s"
    "#;

    #[test]
    fn steady_arrivals_are_poisson_at_the_rate() {
        let scenario = Scenario::parse(STEADY, "steady.toml").unwrap();
        let arrivals = scenario.arrivals();
        // 2000 expected; a Poisson count has a standard deviation of ~45.
        assert!((1800..2200).contains(&arrivals.len()), "{}", arrivals.len());
        assert!(arrivals.windows(2).all(|w| w[0] <= w[1]));
        let gaps: Vec<f64> = arrivals.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.05).abs() < 0.005, "mean gap {mean}");
        // Exponential gaps: about 1/e of them are longer than the mean.
        let long = gaps.iter().filter(|g| **g > 0.05).count() as f64 / gaps.len() as f64;
        assert!((long - (-1.0f64).exp()).abs() < 0.05, "{long}");
        assert_eq!(arrivals, scenario.arrivals(), "the same seed offers the same load");
    }

    #[test]
    fn burst_and_bulk_arrive_at_once() {
        let text = STEADY.replace("kind = \"steady\"", "kind = \"burst\"\ndocuments = 7");
        let scenario = Scenario::parse(&text, "burst.toml").unwrap();
        assert_eq!(scenario.arrivals(), vec![Duration::ZERO; 7]);
        let quiet = text.replace("documents = 7", "documents = 2\nquiet_before = \"20s\"");
        let scenario = Scenario::parse(&quiet, "burst.toml").unwrap();
        assert_eq!(scenario.arrivals(), vec![Duration::from_secs(20); 2]);
    }

    #[test]
    fn bad_scenarios_say_what_is_wrong() {
        let no_rate = STEADY.replace("rate = 20.0", "rate = 0.0");
        let error = Scenario::parse(&no_rate, "s.toml").unwrap_err().to_string();
        assert!(error.contains("`rate` must be"), "{error}");
        let bad_duration = STEADY.replace("\"100s\"", "\"soon\"");
        let error = Scenario::parse(&bad_duration, "s.toml").unwrap_err().to_string();
        assert!(error.contains("bad duration `soon`"), "{error}");
        let no_documents = STEADY.replace("kind = \"steady\"", "kind = \"bulk\"");
        let error = Scenario::parse(&no_documents, "s.toml").unwrap_err().to_string();
        assert!(error.contains("`documents` must be"), "{error}");
    }
}
