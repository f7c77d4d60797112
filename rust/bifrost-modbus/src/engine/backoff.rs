//! Reconnect delays: exponential growth from `base` up to `max`, with jitter.
//!
//! The n-th delay after a failure (n = 0, 1, ...) is `min(max, base * factor^n)`, shortened by a
//! random fraction of at most `jitter` of itself: `delay * (1 - jitter * u)` with `u` uniform in
//! [0, 1). Jitter only ever shortens a delay, so `max` is a true ceiling, and a fleet of clients
//! that lost the same device spreads its reconnects instead of arriving at once.
//!
//! The random draw comes from a small seeded generator (`SplitMix64`), so a configured `seed` makes
//! the whole schedule reproducible in tests; without one, each `Backoff` is seeded at random.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// How reconnect delays grow.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffConfig {
    /// The first delay.
    pub base: Duration,
    /// The ceiling no delay exceeds.
    pub max: Duration,
    /// Growth per failed attempt (at least 1).
    pub factor: f64,
    /// The largest fraction of a delay that jitter may take off (0 = none, 1 = up to all of it).
    pub jitter: f64,
    /// Seed of the jitter source; `None` seeds at random.
    pub seed: Option<u64>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
            factor: 2.0,
            jitter: 0.2,
            seed: None,
        }
    }
}

/// A reconnect schedule: call `next_delay` after each failure, `reset` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// Out-of-range settings are clamped: `factor` to at least 1, `jitter` to 0..=1, `max` to at
    /// least `base`.
    #[must_use]
    pub fn new(mut config: BackoffConfig) -> Self {
        if config.factor.is_nan() || config.factor < 1.0 {
            config.factor = 1.0;
        }
        config.jitter = if config.jitter.is_nan() {
            0.0
        } else {
            config.jitter.clamp(0.0, 1.0)
        };
        config.max = config.max.max(config.base);
        let seed = config
            .seed
            .unwrap_or_else(|| RandomState::new().hash_one(0x00B1_F205_u64));
        Self {
            config,
            attempt: 0,
            rng: SplitMix64(seed),
        }
    }

    #[must_use]
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// How many delays were handed out since the last reset.
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The un-jittered delay of failure number `attempt` (0-based).
    #[must_use]
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.min(1024)).unwrap_or(1024);
        let seconds = self.config.base.as_secs_f64() * self.config.factor.powi(exponent);
        let max = self.config.max.as_secs_f64();
        if seconds.is_finite() && seconds < max {
            Duration::from_secs_f64(seconds)
        } else {
            self.config.max
        }
    }

    /// The delay to wait before the next attempt; each call moves one step up the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        if self.config.jitter == 0.0 {
            return ceiling;
        }
        let cut = self.config.jitter * self.rng.next_unit();
        ceiling.mul_f64(1.0 - cut)
    }

    /// Back to the first step (after a successful connect).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// `SplitMix64`: a tiny, well-mixed 64-bit generator; plenty for jitter, and seedable.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), from the top 53 bits.
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn config(jitter: f64, seed: Option<u64>) -> BackoffConfig {
        BackoffConfig {
            base: ms(100),
            max: ms(1_000),
            factor: 2.0,
            jitter,
            seed,
        }
    }

    #[test]
    fn without_jitter_the_schedule_doubles_up_to_the_ceiling() {
        let mut backoff = Backoff::new(config(0.0, None));
        let delays: Vec<Duration> = (0..7).map(|_| backoff.next_delay()).collect();
        assert_eq!(
            delays,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000),
                ms(1000)
            ]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), ms(100));
    }

    #[test]
    fn jitter_only_shortens_and_a_seed_repeats_the_schedule() {
        let mut first = Backoff::new(config(0.5, Some(42)));
        let mut second = Backoff::new(config(0.5, Some(42)));
        let mut other = Backoff::new(config(0.5, Some(43)));
        let a: Vec<Duration> = (0..20).map(|_| first.next_delay()).collect();
        let b: Vec<Duration> = (0..20).map(|_| second.next_delay()).collect();
        let c: Vec<Duration> = (0..20).map(|_| other.next_delay()).collect();
        assert_eq!(a, b, "the same seed gives the same schedule");
        assert_ne!(a, c, "another seed gives another schedule");
        let probe = Backoff::new(config(0.5, Some(42)));
        for (n, delay) in a.iter().enumerate() {
            let ceiling = probe.ceiling(n as u32);
            assert!(*delay <= ceiling, "attempt {n}: {delay:?} > {ceiling:?}");
            assert!(
                *delay >= ceiling / 2,
                "attempt {n}: {delay:?} < half of {ceiling:?}"
            );
        }
        assert!(a.iter().all(|d| *d <= ms(1_000)));
        assert!(
            a.windows(2).any(|w| w[0] != w[1]),
            "jitter varies the delays"
        );
    }

    #[test]
    fn huge_attempt_counts_stay_at_the_ceiling() {
        let backoff = Backoff::new(config(0.0, None));
        assert_eq!(backoff.ceiling(u32::MAX), ms(1_000));
        assert_eq!(backoff.ceiling(64), ms(1_000));
    }

    #[test]
    fn nonsense_settings_are_clamped() {
        let mut backoff = Backoff::new(BackoffConfig {
            base: ms(500),
            max: ms(10),
            factor: 0.5,
            jitter: 7.0,
            seed: Some(1),
        });
        assert_eq!(backoff.config().max, ms(500));
        assert!((backoff.config().factor - 1.0).abs() < f64::EPSILON);
        assert!((backoff.config().jitter - 1.0).abs() < f64::EPSILON);
        assert!(backoff.next_delay() <= ms(500));
    }

    #[test]
    fn unit_draws_are_in_range_and_spread() {
        let mut rng = SplitMix64(7);
        let draws: Vec<f64> = (0..10_000).map(|_| rng.next_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
    }
}
