//! Rate of change, counter delta with rollover, and the exponentially weighted moving average.

use crate::{check, Operator, Sample, SpecError};

/// The slope between consecutive good points, in units per `per` seconds (1: per second, 60: per
/// minute). A gap or skipped Bad points in between are spanned: the slope is over the whole gap.
#[derive(Debug, Clone)]
pub struct RateOfChange {
    per: f64,
    last: Option<Sample>,
}

impl RateOfChange {
    /// # Errors
    /// A non-positive `per`.
    pub fn new(per: f64) -> Result<Self, SpecError> {
        check(per > 0.0 && per.is_finite(), || {
            format!("rate_of_change: per must be > 0 seconds, not {per}")
        })?;
        Ok(Self { per, last: None })
    }
}

impl Operator for RateOfChange {
    fn push(&mut self, t: f64, v: f64, good: bool, out: &mut Vec<Sample>) {
        if !good {
            return;
        }
        if let Some(last) = self.last {
            out.push(Sample::new(t, (v - last.v) / (t - last.t) * self.per));
        }
        self.last = Some(Sample::new(t, v));
    }
}

/// The increase of an unsigned counter of `bits` (16, 32 or 64) between consecutive good readings,
/// modulo `2^bits`: a reading below the previous one is a rollover. With `max_delta`, a wrapped
/// increase larger than it is read as a reset (the device restarted counting from 0), and the delta
/// is the new reading itself.
#[derive(Debug, Clone)]
pub struct CounterDelta {
    mask: u64,
    max_delta: Option<u64>,
    last: Option<u64>,
}

impl CounterDelta {
    /// # Errors
    /// `bits` other than 16, 32, 64.
    pub fn new(bits: u32, max_delta: Option<u64>) -> Result<Self, SpecError> {
        check(matches!(bits, 16 | 32 | 64), || {
            format!("counter_delta: bits must be 16, 32 or 64, not {bits}")
        })?;
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        Ok(Self {
            mask,
            max_delta,
            last: None,
        })
    }

    /// The delta since the last reading, None for the first one or a reading beyond the counter's
    /// width (skipped).
    pub fn add(&mut self, reading: u64) -> Option<u64> {
        if reading > self.mask {
            return None;
        }
        let last = self.last.replace(reading)?;
        let delta = reading.wrapping_sub(last) & self.mask;
        Some(match self.max_delta {
            Some(max) if delta > max => reading,
            _ => delta,
        })
    }
}

impl Operator for CounterDelta {
    fn push(&mut self, t: f64, v: f64, good: bool, out: &mut Vec<Sample>) {
        // A float reading is a counter value only if it is a whole number >= 0 (exact to 2^53).
        if !good || v < 0.0 || v.fract() != 0.0 || v >= 18_446_744_073_709_551_616.0 {
            return;
        }
        if let Some(delta) = self.add(v as u64) {
            out.push(Sample::new(t, delta as f64));
        }
    }
}

/// How fast an EWMA forgets: a fixed weight per point, or a time constant in seconds for irregular
/// sampling (the weight of a point `dt` after the last is `1 - exp(-dt / tau)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Smoothing {
    Alpha(f64),
    Tau(f64),
}

/// The exponentially weighted moving average of the good points, from the first one.
#[derive(Debug, Clone)]
pub struct Ewma {
    smoothing: Smoothing,
    last: Option<Sample>,
}

impl Ewma {
    /// # Errors
    /// `alpha` outside (0, 1] or a non-positive `tau`.
    pub fn new(smoothing: Smoothing) -> Result<Self, SpecError> {
        match smoothing {
            Smoothing::Alpha(a) => check(a > 0.0 && a <= 1.0, || {
                format!("ewma: alpha must be in (0, 1], not {a}")
            })?,
            Smoothing::Tau(tau) => check(tau > 0.0 && tau.is_finite(), || {
                format!("ewma: tau must be > 0 seconds, not {tau}")
            })?,
        }
        Ok(Self {
            smoothing,
            last: None,
        })
    }
}

impl Operator for Ewma {
    fn push(&mut self, t: f64, v: f64, good: bool, out: &mut Vec<Sample>) {
        if !good {
            return;
        }
        let value = match self.last {
            None => v,
            Some(last) => {
                let alpha = match self.smoothing {
                    Smoothing::Alpha(a) => a,
                    Smoothing::Tau(tau) => -(-(t - last.t) / tau).exp_m1(),
                };
                last.v + alpha * (v - last.v)
            }
        };
        self.last = Some(Sample::new(t, value));
        out.push(Sample::new(t, value));
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // the expected values are exact
mod tests {
    use super::*;

    #[test]
    fn counter_rolls_over_at_its_width() {
        let mut c16 = CounterDelta::new(16, None).unwrap();
        assert_eq!(c16.add(65_530), None);
        assert_eq!(c16.add(4), Some(10));
        assert_eq!(c16.add(70_000), None);
        let mut c64 = CounterDelta::new(64, None).unwrap();
        c64.add(u64::MAX - 1);
        assert_eq!(c64.add(3), Some(5));
        let mut c32 = CounterDelta::new(32, Some(1000)).unwrap();
        c32.add(50_000);
        assert_eq!(c32.add(7), Some(7), "a reset, not a rollover");
        assert!(CounterDelta::new(8, None).is_err());
    }

    #[test]
    fn rate_and_ewma() {
        let mut out = Vec::new();
        let mut rate = RateOfChange::new(60.0).unwrap();
        for (t, v) in [(0.0, 0.0), (30.0, 1.0), (90.0, 4.0)] {
            rate.push(t, v, true, &mut out);
        }
        assert_eq!(out, vec![Sample::new(30.0, 2.0), Sample::new(90.0, 3.0)]);
        out.clear();
        let mut ewma = Ewma::new(Smoothing::Alpha(0.5)).unwrap();
        for (t, v) in [(0.0, 4.0), (1.0, 0.0), (2.0, 8.0), (3.0, f64::NAN)] {
            ewma.push(t, v, v.is_finite(), &mut out);
        }
        let values: Vec<f64> = out.iter().map(|s| s.v).collect();
        assert_eq!(values, vec![4.0, 2.0, 5.0]);
    }
}
