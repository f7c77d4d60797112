//! Edge analytics: stateful, per-tag streaming operators over `(timestamp, value, good)` points,
//! and downsampling for display. Pure Rust; `bifrost-py` binds it as `bifrost._native`.
//!
//! * [`report`]: report by exception (deadband with a heartbeat), swinging door, boxcar/backslope.
//! * [`window`]: sliding windows over a count or a duration, tumbling intervals (aggregates and the
//!   time-weighted average), and the batch rolling statistic.
//! * [`signal`]: rate of change, counter delta with rollover, EWMA.
//! * [`anomaly`]: rolling z-score and MAD scores, with a threshold that keeps only the events.
//! * [`downsample`]: LTTB and `MinMaxLTTB`.
//!
//! The rules every streaming operator shares, enforced by [`Chain`]:
//!
//! * Timestamps are seconds and must strictly increase. A point whose timestamp is not after the last
//!   accepted one (or is NaN) is **rejected**, never reordered: it is dropped and counted in
//!   [`Chain::rejected`]. Reordering would need a buffer and a latency at ingest, which a poll loop
//!   does not want; a late point is a fault to see, not to hide.
//! * A point that is not good, or whose value is NaN or infinite, is **skipped**: it never enters a
//!   window, a door or a band, so one Bad read cannot poison a mean. (Time-based operators still see
//!   its timestamp: it closes intervals, and it ends the hold of the time-weighted average.)

pub mod anomaly;
pub mod downsample;
pub mod report;
pub mod signal;
pub mod window;

use std::fmt;

/// One output point: a timestamp (seconds) and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub v: f64,
}

impl Sample {
    #[must_use]
    pub fn new(t: f64, v: f64) -> Self {
        Self { t, v }
    }
}

/// A streaming operator: points in, zero or more samples out, state kept between calls.
///
/// Callers guarantee strictly increasing timestamps (as [`Chain`] does); `good` is false for a
/// point to skip (Bad quality, NaN).
pub trait Operator: Send + Sync {
    /// Take one point; append what it releases to `out`.
    fn push(&mut self, t: f64, v: f64, good: bool, out: &mut Vec<Sample>);
    /// Release what is held back (the swinging door's pending point, an open interval).
    fn flush(&mut self, _out: &mut Vec<Sample>) {}
    /// Take many points (t, v, good), already in order. The default body is compiled for each
    /// operator, so its calls to `push` are direct and inlined: one virtual call per run of points
    /// rather than per point.
    fn push_all(&mut self, points: &[(f64, f64, bool)], out: &mut Vec<Sample>) {
        for &(t, v, good) in points {
            self.push(t, v, good, out);
        }
    }
}

/// A parameter that cannot build an operator, naming the operator and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

pub(crate) fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), SpecError> {
    if ok {
        Ok(())
    } else {
        Err(SpecError(what()))
    }
}

/// What to build: the parameters of one operator, validated by [`Spec::build`].
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    Deadband {
        band: report::Band,
        max_silence: Option<f64>,
    },
    SwingingDoor {
        deviation: f64,
        max_interval: Option<f64>,
    },
    BoxcarBackslope {
        deviation: f64,
    },
    Rolling {
        size: window::Size,
        stat: window::Stat,
    },
    Aggregate {
        interval: f64,
        stat: window::Stat,
    },
    RateOfChange {
        per: f64,
    },
    CounterDelta {
        bits: u32,
        max_delta: Option<u64>,
    },
    Ewma {
        smoothing: signal::Smoothing,
    },
    ZScore {
        window: usize,
        threshold: Option<f64>,
    },
    Mad {
        window: usize,
        threshold: Option<f64>,
    },
}

impl Spec {
    /// A fresh operator with these parameters.
    ///
    /// # Errors
    /// A parameter out of range, named with its operator.
    pub fn build(&self) -> Result<Box<dyn Operator>, SpecError> {
        Ok(match *self {
            Spec::Deadband { band, max_silence } => {
                Box::new(report::Deadband::new(band, max_silence)?)
            }
            Spec::SwingingDoor {
                deviation,
                max_interval,
            } => Box::new(report::SwingingDoor::new(deviation, max_interval)?),
            Spec::BoxcarBackslope { deviation } => {
                Box::new(report::BoxcarBackslope::new(deviation)?)
            }
            Spec::Rolling { size, stat } => Box::new(window::Rolling::new(size, stat)?),
            Spec::Aggregate { interval, stat } => Box::new(window::Aggregate::new(interval, stat)?),
            Spec::RateOfChange { per } => Box::new(signal::RateOfChange::new(per)?),
            Spec::CounterDelta { bits, max_delta } => {
                Box::new(signal::CounterDelta::new(bits, max_delta)?)
            }
            Spec::Ewma { smoothing } => Box::new(signal::Ewma::new(smoothing)?),
            Spec::ZScore { window, threshold } => {
                Box::new(anomaly::ZScore::new(window, threshold)?)
            }
            Spec::Mad { window, threshold } => Box::new(anomaly::Mad::new(window, threshold)?),
        })
    }
}

/// Operators in series for one tag: each stage's output is the next stage's input. Enforces the
/// ordering and quality rules of the crate (see the crate docs).
pub struct Chain {
    stages: Vec<Box<dyn Operator>>,
    last_t: f64,
    rejected: u64,
    skipped: u64,
    scratch: Vec<Sample>,
    next: Vec<Sample>,
    /// The points of a `push_many` that pass the rules, kept between calls so that each call does
    /// not allocate (and fault in) a fresh buffer.
    run: Vec<(f64, f64, bool)>,
}

impl Chain {
    /// A chain of fresh operators built from `specs`.
    ///
    /// # Errors
    /// The first spec that does not build.
    pub fn new(specs: &[Spec]) -> Result<Self, SpecError> {
        let stages = specs.iter().map(Spec::build).collect::<Result<_, _>>()?;
        Ok(Self {
            stages,
            last_t: f64::NEG_INFINITY,
            rejected: 0,
            skipped: 0,
            scratch: Vec::new(),
            next: Vec::new(),
            run: Vec::new(),
        })
    }

    /// Points rejected for a timestamp not after the last accepted one.
    #[must_use]
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Points accepted but skipped for quality (not good, NaN or infinite value).
    #[must_use]
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Take one point; append the last stage's output to `out`. False when it was rejected.
    pub fn push(&mut self, t: f64, v: f64, good: bool, out: &mut Vec<Sample>) -> bool {
        // Not after the last one, or NaN (which compares as no ordering at all).
        if t.partial_cmp(&self.last_t) != Some(std::cmp::Ordering::Greater) {
            self.rejected += 1;
            return false;
        }
        self.last_t = t;
        let good = good && v.is_finite();
        if !good {
            self.skipped += 1;
        }
        let Some((first, rest)) = self.stages.split_first_mut() else {
            if good {
                out.push(Sample::new(t, v));
            }
            return true;
        };
        if rest.is_empty() {
            first.push(t, v, good, out);
            return true;
        }
        self.scratch.clear();
        first.push(t, v, good, &mut self.scratch);
        Self::cascade(rest, &mut self.scratch, &mut self.next, out);
        true
    }

    /// Take arrays of points (`good` None: all good); append the last stage's output to `out`. The
    /// same as `push` on each point in turn, with the rules applied to the run first.
    ///
    /// # Panics
    /// If `v` (or `good`) is shorter than `t`.
    pub fn push_many(
        &mut self,
        t: &[f64],
        v: &[f64],
        good: Option<&[bool]>,
        out: &mut Vec<Sample>,
    ) {
        let mut run = std::mem::take(&mut self.run);
        run.clear();
        run.reserve(t.len());
        // Lengths checked once, then zipped: no bounds check (or `good` test) per point.
        let v = &v[..t.len()];
        let (mut last_t, mut rejected, mut skipped) = (self.last_t, 0, 0);
        let mut accept = |ti: f64, vi: f64, gi: bool| {
            // Not after the last one, or NaN (which compares as no ordering at all).
            if ti.partial_cmp(&last_t) != Some(std::cmp::Ordering::Greater) {
                rejected += 1;
                return;
            }
            last_t = ti;
            let ok = gi && vi.is_finite();
            skipped += u64::from(!ok);
            run.push((ti, vi, ok));
        };
        match good {
            Some(g) => {
                for ((&ti, &vi), &gi) in t.iter().zip(v).zip(&g[..t.len()]) {
                    accept(ti, vi, gi);
                }
            }
            None => {
                for (&ti, &vi) in t.iter().zip(v) {
                    accept(ti, vi, true);
                }
            }
        }
        (self.last_t, self.rejected, self.skipped) =
            (last_t, self.rejected + rejected, self.skipped + skipped);
        match self.stages.split_first_mut() {
            None => out.extend(run.iter().filter(|p| p.2).map(|p| Sample::new(p.0, p.1))),
            Some((first, [])) => first.push_all(&run, out),
            Some((first, rest)) => {
                self.scratch.clear();
                first.push_all(&run, &mut self.scratch);
                Self::cascade(rest, &mut self.scratch, &mut self.next, out);
            }
        }
        self.run = run;
    }

    /// Flush every stage in order, each flush feeding the stages after it.
    pub fn flush(&mut self, out: &mut Vec<Sample>) {
        for index in 0..self.stages.len() {
            self.scratch.clear();
            let (head, rest) = self.stages.split_at_mut(index + 1);
            head[index].flush(&mut self.scratch);
            if rest.is_empty() {
                out.append(&mut self.scratch);
            } else {
                Self::cascade(rest, &mut self.scratch, &mut self.next, out);
            }
        }
    }

    fn cascade(
        stages: &mut [Box<dyn Operator>],
        input: &mut Vec<Sample>,
        next: &mut Vec<Sample>,
        out: &mut Vec<Sample>,
    ) {
        let last = stages.len() - 1;
        for (index, stage) in stages.iter_mut().enumerate() {
            let sink: &mut Vec<Sample> = if index == last { out } else { next };
            let run: Vec<(f64, f64, bool)> =
                input.iter().map(|s| (s.t, s.v, s.v.is_finite())).collect();
            stage.push_all(&run, sink);
            if index != last {
                input.clear();
                std::mem::swap(input, next);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // the expected values are exact
mod tests {
    use super::*;

    #[test]
    fn chain_rejects_out_of_order_and_skips_bad() {
        let mut chain = Chain::new(&[]).unwrap();
        let mut out = Vec::new();
        assert!(chain.push(1.0, 1.0, true, &mut out));
        assert!(!chain.push(1.0, 2.0, true, &mut out));
        assert!(!chain.push(0.5, 2.0, true, &mut out));
        assert!(!chain.push(f64::NAN, 2.0, true, &mut out));
        assert!(chain.push(2.0, f64::NAN, true, &mut out));
        assert!(chain.push(3.0, 5.0, false, &mut out));
        assert_eq!(out, vec![Sample::new(1.0, 1.0)]);
        assert_eq!((chain.rejected(), chain.skipped()), (3, 2));
    }

    #[test]
    fn stages_feed_each_other_and_flush_cascades() {
        let specs = [
            Spec::SwingingDoor {
                deviation: 0.1,
                max_interval: None,
            },
            Spec::RateOfChange { per: 1.0 },
        ];
        let mut chain = Chain::new(&specs).unwrap();
        let mut out = Vec::new();
        for (t, v) in [(0.0, 0.0), (1.0, 1.0), (2.0, 2.0), (3.0, 0.0)] {
            chain.push(t, v, true, &mut out);
        }
        // Archived so far: (0,0), (2,2); the rate between them is 1.
        assert_eq!(out, vec![Sample::new(2.0, 1.0)]);
        chain.flush(&mut out);
        assert_eq!(out, vec![Sample::new(2.0, 1.0), Sample::new(3.0, -2.0)]);
    }

    #[test]
    fn push_many_is_push_point_by_point() {
        let specs = [
            Spec::Rolling {
                size: window::Size::Count(3),
                stat: window::Stat::Mean,
            },
            Spec::Deadband {
                band: report::Band::Absolute(0.2),
                max_silence: None,
            },
        ];
        let t: Vec<f64> = (0..200)
            .map(|i| f64::from(i) - if i % 17 == 0 { 3.0 } else { 0.0 })
            .collect();
        let v: Vec<f64> = (0..200)
            .map(|i| {
                if i % 23 == 0 {
                    f64::NAN
                } else {
                    f64::from(i % 11) * 0.7
                }
            })
            .collect();
        let good: Vec<bool> = (0..200).map(|i| i % 13 != 0).collect();
        let (mut one, mut many) = (Chain::new(&specs).unwrap(), Chain::new(&specs).unwrap());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..200 {
            one.push(t[i], v[i], good[i], &mut a);
        }
        many.push_many(&t[..90], &v[..90], Some(&good[..90]), &mut b);
        many.push_many(&t[90..], &v[90..], Some(&good[90..]), &mut b);
        assert_eq!(a, b);
        assert_eq!(
            (one.rejected(), one.skipped()),
            (many.rejected(), many.skipped())
        );
    }

    #[test]
    fn a_bad_spec_names_its_field() {
        let error = Chain::new(&[Spec::Ewma {
            smoothing: signal::Smoothing::Alpha(1.5),
        }])
        .err()
        .unwrap();
        assert!(error.0.contains("alpha"), "{error}");
    }
}
