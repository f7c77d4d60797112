//! Windows: sliding over a count or a duration, tumbling intervals (with the time-weighted average),
//! and the batch rolling statistic.
//!
//! `std` is the sample standard deviation (n - 1 in the denominator, as polars and pandas), NaN for
//! fewer than two points. Means and variances are kept by Welford's updates and recomputed from the
//! window once as many points have left it as it holds, so rounding cannot build up without bound.

use std::collections::VecDeque;

use crate::{check, Operator, Sample, SpecError};

/// What a window reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Mean,
    Min,
    Max,
    Std,
    Sum,
    Count,
    /// Time-weighted average; intervals only ([`Aggregate`]).
    Twa,
}

impl Stat {
    /// The statistic named `name` (`mean`, `min`, `max`, `std`, `sum`, `count`, `twa`).
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(name: &str) -> Result<Self, SpecError> {
        Ok(match name {
            "mean" => Stat::Mean,
            "min" => Stat::Min,
            "max" => Stat::Max,
            "std" => Stat::Std,
            "sum" => Stat::Sum,
            "count" => Stat::Count,
            "twa" => Stat::Twa,
            other => {
                return Err(SpecError(format!(
                    "stat must be one of mean, min, max, std, sum, count, twa; not {other:?}"
                )))
            }
        })
    }
}

/// How much a sliding window holds: the last `n` good points, or the points of the last `d` seconds
/// (`(t - d, t]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    Count(usize),
    Duration(f64),
}

/// Running count, mean and sum of squared deviations (Welford), with add and remove.
#[derive(Debug, Clone, Default)]
pub(crate) struct Moments {
    pub(crate) n: usize,
    pub(crate) mean: f64,
    m2: f64,
    removed: usize,
}

impl Moments {
    pub(crate) fn add(&mut self, v: f64) {
        self.n += 1;
        let delta = v - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (v - self.mean);
    }

    pub(crate) fn remove(&mut self, v: f64) {
        if self.n <= 1 {
            *self = Self::default();
            return;
        }
        let delta = v - self.mean;
        self.mean -= delta / (self.n - 1) as f64;
        self.m2 -= delta * (v - self.mean);
        self.n -= 1;
        self.removed += 1;
    }

    /// Recompute from the values held, once as many have left as are held.
    pub(crate) fn refresh(&mut self, values: impl Iterator<Item = f64> + Clone) {
        if self.removed < self.n.max(16) {
            return;
        }
        let n = self.n;
        let mean = values.clone().sum::<f64>() / n as f64;
        let m2 = values.map(|v| (v - mean) * (v - mean)).sum();
        *self = Self {
            n,
            mean,
            m2,
            removed: 0,
        };
    }

    pub(crate) fn std(&self) -> f64 {
        if self.n < 2 {
            f64::NAN
        } else {
            (self.m2.max(0.0) / (self.n - 1) as f64).sqrt()
        }
    }
}

/// The minimum (or maximum) of a sliding window: a monotonic queue, O(1) amortised per point.
#[derive(Debug, Clone, Default)]
struct Extreme {
    queue: VecDeque<Sample>,
}

impl Extreme {
    fn add(&mut self, s: Sample, beats: fn(f64, f64) -> bool) {
        while self.queue.back().is_some_and(|b| !beats(b.v, s.v)) {
            self.queue.pop_back();
        }
        self.queue.push_back(s);
    }

    fn evict_through(&mut self, t: f64) {
        while self.queue.front().is_some_and(|f| f.t <= t) {
            self.queue.pop_front();
        }
    }

    fn value(&self) -> f64 {
        self.queue.front().map_or(f64::NAN, |s| s.v)
    }
}

/// A sliding window over the last `n` good points or the last `d` seconds, reporting one statistic
/// after every good point. A count window reports once it is full (as polars' `rolling_*` with
/// `min_periods` equal to the window); a time window reports from its first point.
#[derive(Debug, Clone)]
pub struct Rolling {
    size: Size,
    stat: Stat,
    points: VecDeque<Sample>,
    moments: Moments,
    min: Extreme,
    max: Extreme,
}

impl Rolling {
    /// # Errors
    /// A zero count, a non-positive duration, or the `twa` statistic.
    pub fn new(size: Size, stat: Stat) -> Result<Self, SpecError> {
        match size {
            Size::Count(n) => check(n >= 1, || "rolling: count must be >= 1".to_owned())?,
            Size::Duration(d) => check(d > 0.0 && d.is_finite(), || {
                format!("rolling: duration must be > 0 seconds, not {d}")
            })?,
        }
        check(stat != Stat::Twa, || {
            "rolling: twa is an interval statistic; use aggregate(interval, 'twa')".to_owned()
        })?;
        Ok(Self {
            size,
            stat,
            points: VecDeque::new(),
            moments: Moments::default(),
            min: Extreme::default(),
            max: Extreme::default(),
        })
    }

    fn evict_one(&mut self) {
        if let Some(old) = self.points.pop_front() {
            self.moments.remove(old.v);
            self.min.evict_through(old.t);
            self.max.evict_through(old.t);
        }
    }

    /// Add a good point and return the statistic, or None while a count window fills.
    pub fn add(&mut self, t: f64, v: f64) -> Option<f64> {
        let sample = Sample::new(t, v);
        self.points.push_back(sample);
        self.moments.add(v);
        if self.stat == Stat::Min {
            self.min.add(sample, |held, new| held < new);
        }
        if self.stat == Stat::Max {
            self.max.add(sample, |held, new| held > new);
        }
        match self.size {
            Size::Count(n) => {
                if self.points.len() > n {
                    self.evict_one();
                }
                if self.points.len() < n {
                    return None;
                }
            }
            Size::Duration(d) => {
                while self.points.front().is_some_and(|f| f.t <= t - d) {
                    self.evict_one();
                }
            }
        }
        self.moments.refresh(self.points.iter().map(|s| s.v));
        Some(self.value())
    }

    fn value(&self) -> f64 {
        match self.stat {
            Stat::Mean => self.moments.mean,
            Stat::Min => self.min.value(),
            Stat::Max => self.max.value(),
            Stat::Std => self.moments.std(),
            Stat::Sum => self.moments.mean * self.moments.n as f64,
            Stat::Count => self.moments.n as f64,
            Stat::Twa => f64::NAN,
        }
    }
}

impl Operator for Rolling {
    fn push(&mut self, t: f64, v: f64, good: bool, out: &mut Vec<Sample>) {
        if !good {
            return;
        }
        if let Some(value) = self.add(t, v) {
            out.push(Sample::new(t, value));
        }
    }
}

/// Tumbling intervals `[k I, (k + 1) I)` on the epoch, one sample per interval stamped with its
/// start. An interval is released when a point (of any quality) arrives after it, or by `flush`.
///
/// For `mean`, `min`, `max`, `std`, `sum`, `count`, the interval's good points; an interval with
/// none releases nothing. For `twa`, the historian resample: each good value holds from its timestamp
/// until the next point's, and the interval's value is the integral of the held value over the part
/// of the interval that a value covered, divided by that time. A value holds across interval
/// boundaries, so an interval with no points of its own still gets the value held through it; a Bad
/// point ends the hold (its time is not weighted), and `flush` covers the open interval up to the
/// last point.
#[derive(Debug, Clone)]
pub struct Aggregate {
    interval: f64,
    stat: Stat,
    bin: Option<f64>,
    /// `bin + 1`, in units of the interval (-inf while no interval is open): a point with
    /// `t / interval` below it is in the open interval, without a `floor` (a libm call on baseline
    /// x86-64). Timestamps increase, so `t / interval` never falls below `bin`.
    bin_end: f64,
    /// Good points in the open interval; the moments are kept only for `mean` and `std`.
    count: usize,
    moments: Moments,
    sum: f64,
    min: f64,
    max: f64,
    /// The time-weighted average: the value being held and since when; the integral and the time
    /// covered in the open interval.
    hold: Option<Sample>,
    area: f64,
    covered: f64,
}

impl Aggregate {
    /// # Errors
    /// A non-positive interval.
    pub fn new(interval: f64, stat: Stat) -> Result<Self, SpecError> {
        check(interval > 0.0 && interval.is_finite(), || {
            format!("aggregate: interval must be > 0 seconds, not {interval}")
        })?;
        Ok(Self {
            interval,
            stat,
            bin: None,
            bin_end: f64::NEG_INFINITY,
            count: 0,
            moments: Moments::default(),
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            hold: None,
            area: 0.0,
            covered: 0.0,
        })
    }

    /// Extend the held value up to `until` within the open interval.
    fn hold_until(&mut self, until: f64) {
        if let Some(hold) = self.hold {
            let dt = until - hold.t;
            if dt > 0.0 {
                self.area += hold.v * dt;
                self.covered += dt;
                self.hold = Some(Sample::new(until, hold.v));
            }
        }
    }

    /// Release the open interval `bin` and reset the accumulators.
    fn release(&mut self, bin: f64, out: &mut Vec<Sample>) {
        let start = bin * self.interval;
        let value = match self.stat {
            Stat::Twa => (self.covered > 0.0).then(|| self.area / self.covered),
            _ if self.count == 0 => None,
            Stat::Mean => Some(self.moments.mean),
            Stat::Std => Some(self.moments.std()),
            Stat::Sum => Some(self.sum),
            Stat::Count => Some(self.count as f64),
            Stat::Min => Some(self.min),
            Stat::Max => Some(self.max),
        };
        if let Some(value) = value {
            out.push(Sample::new(start, value));
        }
        self.count = 0;
        self.moments = Moments::default();
        self.sum = 0.0;
        self.min = f64::INFINITY;
        self.max = f64::NEG_INFINITY;
        self.area = 0.0;
        self.covered = 0.0;
    }

    /// Close every interval before `bin`, holding the value through the empty ones.
    fn advance_to(&mut self, bin: f64, out: &mut Vec<Sample>) {
        let Some(mut open) = self.bin else {
            self.bin = Some(bin);
            return;
        };
        while open < bin {
            if self.stat == Stat::Twa {
                self.hold_until((open + 1.0) * self.interval);
            }
            self.release(open, out);
            open += 1.0;
            // Empty intervals: only a held value fills them; jump over the rest of a gap.
            if self.stat != Stat::Twa || self.hold.is_none() {
                open = bin;
            }
        }
        self.bin = Some(bin);
    }
}

impl Operator for Aggregate {
    fn push(&mut self, t: f64, v: f64, good: bool, out: &mut Vec<Sample>) {
        let q = t / self.interval;
        // Neither is NaN: `t` is a number (the chain rejects NaN), the interval finite.
        if q >= self.bin_end {
            let bin = q.floor();
            self.advance_to(bin, out);
            self.bin_end = bin + 1.0;
        }
        if self.stat == Stat::Twa {
            self.hold_until(t);
            self.hold = good.then_some(Sample::new(t, v));
            return;
        }
        if good {
            // Only the statistic asked for: Welford's update divides, a chain of latency that
            // `max` has no use for.
            self.count += 1;
            match self.stat {
                Stat::Mean | Stat::Std => self.moments.add(v),
                Stat::Sum => self.sum += v,
                Stat::Min => self.min = self.min.min(v),
                Stat::Max => self.max = self.max.max(v),
                Stat::Count | Stat::Twa => {}
            }
        }
    }

    fn flush(&mut self, out: &mut Vec<Sample>) {
        if let Some(bin) = self.bin.take() {
            self.release(bin, out);
        }
        self.bin_end = f64::NEG_INFINITY;
        self.hold = None;
    }
}

/// The rolling statistic of `values` over windows of the last `window` non-NaN values, one output
/// per input: NaN where the input is NaN or the window is not yet full (polars' `rolling_*` with
/// `min_periods = window`, where NaN is a missing value).
///
/// # Errors
/// A zero window or the `twa` statistic.
pub fn rolling(values: &[f64], window: usize, stat: Stat) -> Result<Vec<f64>, SpecError> {
    let mut op = Rolling::new(Size::Count(window), stat)?;
    if matches!(stat, Stat::Mean | Stat::Sum) {
        if let Some(out) = rolling_sum(values, window, stat == Stat::Mean) {
            return Ok(out);
        }
    }
    Ok(values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.is_nan() {
                f64::NAN
            } else {
                op.add(i as f64, v).unwrap_or(f64::NAN)
            }
        })
        .collect())
}

/// Rolling sum (or mean): a running sum, recomputed exactly at every multiple of the window so that
/// the rounding of the subtractions stays within one window's worth. None when a NaN shows (the
/// running sum turns NaN at the latest when the NaN enters it), for the general path to handle.
fn rolling_sum(values: &[f64], window: usize, mean: bool) -> Option<Vec<f64>> {
    let mut out = vec![f64::NAN; values.len()];
    if values.len() < window {
        return Some(out);
    }
    let scale = if mean { 1.0 / window as f64 } else { 1.0 };
    let mut sum: f64 = values[..window].iter().sum();
    let mut poisoned = sum.is_nan();
    out[window - 1] = sum * scale;
    let mut until_exact = window;
    for i in window..values.len() {
        until_exact -= 1;
        if until_exact == 0 {
            sum = values[i + 1 - window..=i].iter().sum();
            until_exact = window;
        } else {
            sum += values[i] - values[i - window];
        }
        poisoned |= sum.is_nan();
        out[i] = sum * scale;
    }
    (!poisoned).then_some(out)
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // the expected values are exact
mod tests {
    use super::*;

    fn feed(op: &mut dyn Operator, points: &[(f64, f64, bool)]) -> Vec<Sample> {
        let mut out = Vec::new();
        for &(t, v, good) in points {
            op.push(t, v, good, &mut out);
        }
        op.flush(&mut out);
        out
    }

    #[test]
    fn count_window_skips_bad_points() {
        let mut op = Rolling::new(Size::Count(2), Stat::Mean).unwrap();
        let out = feed(
            &mut op,
            &[
                (0.0, 1.0, true),
                (1.0, 1e9, false),
                (2.0, 3.0, true),
                (3.0, 5.0, true),
            ],
        );
        assert_eq!(out, vec![Sample::new(2.0, 2.0), Sample::new(3.0, 4.0)]);
    }

    #[test]
    fn time_window_min_max_evict() {
        let mut op = Rolling::new(Size::Duration(2.0), Stat::Max).unwrap();
        let points = [
            (0.0, 5.0, true),
            (1.0, 1.0, true),
            (2.0, 2.0, true),
            (3.0, 0.0, true),
        ];
        let values: Vec<f64> = feed(&mut op, &points).iter().map(|s| s.v).collect();
        assert_eq!(values, vec![5.0, 5.0, 2.0, 2.0]);
    }

    #[test]
    fn twa_weights_by_hold_time() {
        // 0 held for 9 s, 10 held for 1 s: the average over [0, 10) is 1.
        let mut op = Aggregate::new(10.0, Stat::Twa).unwrap();
        let out = feed(
            &mut op,
            &[(0.0, 0.0, true), (9.0, 10.0, true), (25.0, 0.0, true)],
        );
        assert_eq!(
            out,
            vec![
                Sample::new(0.0, 1.0),
                Sample::new(10.0, 10.0),
                Sample::new(20.0, 10.0)
            ]
        );
    }

    #[test]
    fn twa_bad_point_ends_the_hold() {
        let mut op = Aggregate::new(10.0, Stat::Twa).unwrap();
        let out = feed(
            &mut op,
            &[(0.0, 4.0, true), (5.0, 0.0, false), (20.0, 1.0, true)],
        );
        assert_eq!(out, vec![Sample::new(0.0, 4.0)]);
    }

    #[test]
    fn aggregate_stats_per_interval() {
        let mut op = Aggregate::new(60.0, Stat::Max).unwrap();
        let out = feed(
            &mut op,
            &[
                (0.0, 1.0, true),
                (30.0, 7.0, true),
                (61.0, 2.0, true),
                (200.0, 3.0, false),
            ],
        );
        assert_eq!(out, vec![Sample::new(0.0, 7.0), Sample::new(60.0, 2.0)]);
    }

    #[test]
    fn rolling_batch_matches_the_operator() {
        let values: Vec<f64> = (0..1000).map(|i| f64::from(i % 17) * 1.5 - 3.0).collect();
        let fast = rolling(&values, 10, Stat::Mean).unwrap();
        let mut with_nan = values.clone();
        with_nan[500] = f64::NAN;
        let slow = rolling(&with_nan, 10, Stat::Mean).unwrap();
        assert!(fast[..9].iter().all(|v| v.is_nan()));
        for i in 9..500 {
            assert!((fast[i] - slow[i]).abs() < 1e-9, "{i}");
        }
        assert!(slow[500].is_nan());
    }
}
