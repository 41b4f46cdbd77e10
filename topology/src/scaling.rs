//! Replica counts from consumer lag: the KEDA/HPA formula and a cooldown
//! before scaling down. Pure functions of their inputs, for the local
//! autoscaler and for tests; Kubernetes applies the same policy through
//! KEDA ScaledObjects generated from the topology.

use std::collections::VecDeque;
use std::time::Instant;

use crate::settings::ScalingPolicy;

/// Lag within this many percent of what the current replicas are sized for
/// changes nothing (the HPA's default tolerance), so a pool does not flap.
const TOLERANCE_PERCENT: u128 = 10;

/// Replicas a pool should have for `lag` pending pages:
/// `ceil(lag / lag_threshold)` clamped to `[min_replicas, max_replicas]`.
///
/// Like the HPA, keeps `current` while the lag is within 10 % of
/// `current * lag_threshold`. Like KEDA, a pool that may scale to zero
/// (`min_replicas = 0`) has none while the lag is at most `activation_lag`.
pub fn desired_replicas(lag: u64, policy: &ScalingPolicy, current: u32) -> u32 {
    if policy.min_replicas == 0 && lag <= policy.activation_lag {
        return 0;
    }
    let threshold = policy.lag_threshold.max(1);
    let capacity = u128::from(current) * u128::from(threshold);
    let steady =
        current > 0 && u128::from(lag).abs_diff(capacity) * 100 <= capacity * TOLERANCE_PERCENT;
    let desired =
        if steady { current } else { u32::try_from(lag.div_ceil(threshold)).unwrap_or(u32::MAX) };
    desired.min(policy.max_replicas).max(policy.min_replicas)
}

/// A pool's replica count over time, as the HPA moves it: up at once to
/// what the lag asks for; down only to the most asked for during the last
/// `cooldown` (the HPA's scale-down stabilisation window), so a pool shrinks
/// once the lag has asked for fewer replicas for a whole cooldown.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    policy: ScalingPolicy,
    replicas: u32,
    /// What was asked for when, over the last cooldown; the starting count
    /// counts as asked for at the first observation.
    recent: VecDeque<(Instant, u32)>,
}

impl Autoscaler {
    /// Starts at `replicas`.
    pub fn new(policy: ScalingPolicy, replicas: u32) -> Self {
        Autoscaler { policy, replicas, recent: VecDeque::new() }
    }

    /// The current replica count.
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// Takes a lag observed at `now` and returns the replica count to run.
    pub fn observe(&mut self, lag: u64, now: Instant) -> u32 {
        if self.recent.is_empty() {
            self.recent.push_back((now, self.replicas));
        }
        let desired = desired_replicas(lag, &self.policy, self.replicas);
        self.recent.push_back((now, desired));
        let cooldown = self.policy.cooldown;
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > cooldown)
        {
            self.recent.pop_front();
        }
        let most_recently = self.recent.iter().map(|(_, asked)| *asked).max().unwrap_or(desired);
        self.replicas =
            if desired >= self.replicas { desired } else { most_recently.min(self.replicas) };
        self.replicas
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy(lag_threshold: u64, min_replicas: u32, max_replicas: u32) -> ScalingPolicy {
        ScalingPolicy {
            lag_threshold,
            min_replicas,
            max_replicas,
            cooldown: Duration::from_secs(60),
            ..ScalingPolicy::default()
        }
    }

    #[test]
    fn desired_is_lag_over_threshold_rounded_up() {
        let policy = policy(10, 0, 100);
        assert_eq!(desired_replicas(0, &policy, 0), 0);
        assert_eq!(desired_replicas(1, &policy, 0), 1);
        assert_eq!(desired_replicas(10, &policy, 0), 1);
        assert_eq!(desired_replicas(11, &policy, 0), 2);
        assert_eq!(desired_replicas(95, &policy, 1), 10);
    }

    #[test]
    fn desired_is_clamped_to_the_policy() {
        let policy = policy(10, 2, 5);
        assert_eq!(desired_replicas(0, &policy, 3), 2);
        assert_eq!(desired_replicas(1_000, &policy, 3), 5);
        assert_eq!(desired_replicas(u64::MAX, &policy, 3), 5);
        assert_eq!(desired_replicas(u64::MAX, &ScalingPolicy { lag_threshold: 1, ..policy }, 3), 5);
    }

    #[test]
    fn a_pool_that_may_scale_to_zero_wakes_above_the_activation_lag() {
        let policy = ScalingPolicy { activation_lag: 3, ..policy(10, 0, 5) };
        assert_eq!(desired_replicas(3, &policy, 0), 0);
        assert_eq!(desired_replicas(3, &policy, 2), 0);
        assert_eq!(desired_replicas(4, &policy, 0), 1);
        // with a minimum above zero the activation lag changes nothing
        let policy = ScalingPolicy { min_replicas: 1, ..policy };
        assert_eq!(desired_replicas(0, &policy, 0), 1);
        assert_eq!(desired_replicas(3, &policy, 2), 1);
    }

    #[test]
    fn lag_within_tolerance_keeps_the_current_count() {
        let policy = policy(10, 1, 100);
        // 4 replicas are sized for 40 pages; 36..=44 keeps them
        assert_eq!(desired_replicas(44, &policy, 4), 4);
        assert_eq!(desired_replicas(36, &policy, 4), 4);
        assert_eq!(desired_replicas(45, &policy, 4), 5);
        assert_eq!(desired_replicas(35, &policy, 4), 4);
        assert_eq!(desired_replicas(30, &policy, 4), 3);
    }

    #[test]
    fn scales_up_at_once_and_down_after_the_cooldown() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut scaler = Autoscaler::new(policy(10, 1, 10), 1);
        assert_eq!(scaler.observe(50, at(0)), 5);
        assert_eq!(scaler.observe(80, at(1)), 8);
        // the lag falls: nothing changes before the cooldown is over
        assert_eq!(scaler.observe(10, at(10)), 8);
        assert_eq!(scaler.observe(30, at(40)), 8);
        // after it, the pool shrinks to the most asked for during the last
        // cooldown (3, at second 40)
        assert_eq!(scaler.observe(10, at(70)), 3);
        assert_eq!(scaler.replicas(), 3);
        assert_eq!(scaler.observe(0, at(71)), 3);
        assert_eq!(scaler.observe(0, at(100)), 3);
        // and to 1 once nothing higher was asked for within a cooldown
        assert_eq!(scaler.observe(0, at(101)), 1);
    }

    #[test]
    fn a_rise_during_the_cooldown_holds_the_count_a_cooldown_longer() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut scaler = Autoscaler::new(policy(10, 1, 10), 6);
        // the starting count holds for a cooldown from the first observation
        assert_eq!(scaler.observe(10, at(0)), 6);
        assert_eq!(scaler.observe(60, at(50)), 6);
        assert_eq!(scaler.observe(10, at(70)), 6);
        assert_eq!(scaler.observe(10, at(110)), 6);
        assert_eq!(scaler.observe(10, at(111)), 1);
    }
}
