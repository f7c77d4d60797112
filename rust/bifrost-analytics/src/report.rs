//! Report by exception and compression: the deadband, the swinging door, boxcar/backslope.
//!
//! ## The swinging door's error bound
//!
//! Let `A` be the last archived point and `E` the deviation. For a later point `i`, the slopes of
//! the lines from `A` that pass within `E` of it form the interval
//! `I_i = [(v_i - E - v_A) / (t_i - t_A), (v_i + E - v_A) / (t_i - t_A)]`; the "door" is the
//! intersection of the `I_i` of the points received since `A` (the historians' two pivoting doors
//! are its two ends, and the door closes when the intersection becomes empty).
//!
//! A new point `p` may *end* the segment only if the slope of `A -> p` lies inside the door of the
//! points strictly between `A` and `p`. When it does, `p` becomes the held point; when it does not
//! (the door has closed, or `p` falls outside it), the held point `H` is archived, becomes `A`, and
//! `p` starts a new segment after it.
//!
//! **Bound.** For two consecutive archived points `A`, `B` and every good point `i` received
//! between them, `|v_A + (v_B - v_A) (t_i - t_A) / (t_B - t_A) - v_i| <= E`.
//!
//! *Proof.* `B` was held, so the slope `s = (v_B - v_A) / (t_B - t_A)` lay in `I_i` for every `i`
//! between `A` and `B` when `B` arrived. `s` in `I_i` is, multiplying by `t_i - t_A > 0`,
//! `v_i - E <= v_A + s (t_i - t_A) <= v_i + E`, which is the claim. `flush` archives the held
//! point, so the last segment is covered too. (In floating point the bound holds up to the
//! rounding of the slopes: a few ulps of `|v|`.)
//!
//! Classic descriptions archive the held point only when the door closes; the extra check that the
//! line to the candidate end point stays inside the door is what makes the bound exact rather than
//! "within about E". The archived points are a subset of the input, first and last included.

use crate::{check, Operator, Sample, SpecError};

/// The width of a deadband: absolute, or a percentage of the tag's span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Band {
    Absolute(f64),
    Percent { percent: f64, low: f64, high: f64 },
}

impl Band {
    /// The band as an absolute width.
    ///
    /// # Errors
    /// A negative or NaN width, or an empty span.
    pub fn width(self) -> Result<f64, SpecError> {
        match self {
            Band::Absolute(width) => {
                check(width >= 0.0 && width.is_finite(), || {
                    format!("deadband: absolute must be a finite number >= 0, not {width}")
                })?;
                Ok(width)
            }
            Band::Percent { percent, low, high } => {
                check(percent >= 0.0 && percent.is_finite(), || {
                    format!("deadband: percent must be a finite number >= 0, not {percent}")
                })?;
                check(high > low && (high - low).is_finite(), || {
                    format!("deadband: span needs low < high, not low={low} high={high}")
                })?;
                Ok(percent / 100.0 * (high - low))
            }
        }
    }
}

fn check_silence(what: &str, field: &str, value: Option<f64>) -> Result<(), SpecError> {
    check(value.is_none_or(|m| m > 0.0 && !m.is_nan()), || {
        format!("{what}: {field} must be > 0 seconds, not {value:?}")
    })
}

/// Report a value when it moves more than the band from the last reported one, or when nothing has
/// been reported for `max_silence` seconds (a heartbeat: the next point is reported as it is).
#[derive(Debug, Clone)]
pub struct Deadband {
    width: f64,
    max_silence: Option<f64>,
    last: Option<Sample>,
}

impl Deadband {
    /// # Errors
    /// A bad band or a non-positive `max_silence`.
    pub fn new(band: Band, max_silence: Option<f64>) -> Result<Self, SpecError> {
        check_silence("deadband", "max_silence", max_silence)?;
        Ok(Self {
            width: band.width()?,
            max_silence,
            last: None,
        })
    }
}

impl Operator for Deadband {
    fn push(&mut self, t: f64, v: f64, good: bool, out: &mut Vec<Sample>) {
        if !good {
            return;
        }
        let report = match self.last {
            None => true,
            Some(last) => {
                (v - last.v).abs() > self.width || self.max_silence.is_some_and(|m| t - last.t >= m)
            }
        };
        if report {
            let sample = Sample::new(t, v);
            self.last = Some(sample);
            out.push(sample);
        }
    }
}

/// Swinging door compression with deviation `E` (see the module docs for the bound), and
/// optionally a longest segment of `max_interval` seconds.
#[derive(Debug, Clone)]
pub struct SwingingDoor {
    deviation: f64,
    max_interval: Option<f64>,
    anchor: Option<Sample>,
    held: Option<Sample>,
    /// The door: the intersection of the slope intervals of the points after the anchor.
    low: f64,
    high: f64,
}

impl SwingingDoor {
    /// # Errors
    /// A negative deviation or a non-positive `max_interval`.
    pub fn new(deviation: f64, max_interval: Option<f64>) -> Result<Self, SpecError> {
        check(deviation >= 0.0 && deviation.is_finite(), || {
            format!("swinging_door: deviation must be a finite number >= 0, not {deviation}")
        })?;
        check_silence("swinging_door", "max_interval", max_interval)?;
        Ok(Self {
            deviation,
            max_interval,
            anchor: None,
            held: None,
            low: f64::NEG_INFINITY,
            high: f64::INFINITY,
        })
    }

    fn open_door(&mut self, anchor: Sample, p: Sample) {
        let dt = p.t - anchor.t;
        self.low = (p.v - self.deviation - anchor.v) / dt;
        self.high = (p.v + self.deviation - anchor.v) / dt;
        self.held = Some(p);
    }
}

impl Operator for SwingingDoor {
    fn push(&mut self, t: f64, v: f64, good: bool, out: &mut Vec<Sample>) {
        if !good {
            return;
        }
        let p = Sample::new(t, v);
        let Some(anchor) = self.anchor else {
            self.anchor = Some(p);
            out.push(p);
            return;
        };
        let Some(held) = self.held else {
            self.open_door(anchor, p);
            return;
        };
        let dt = p.t - anchor.t;
        let slope = (p.v - anchor.v) / dt;
        let inside = slope >= self.low && slope <= self.high;
        let too_long = self.max_interval.is_some_and(|m| dt > m);
        if inside && !too_long {
            self.low = self.low.max((p.v - self.deviation - anchor.v) / dt);
            self.high = self.high.min((p.v + self.deviation - anchor.v) / dt);
            self.held = Some(p);
        } else {
            out.push(held);
            self.anchor = Some(held);
            self.open_door(held, p);
        }
    }

    fn flush(&mut self, out: &mut Vec<Sample>) {
        if let Some(held) = self.held.take() {
            out.push(held);
            self.anchor = Some(held);
        }
    }
}

/// Boxcar/backslope compression (Hale and Sellars): a point is archived when its value leaves both
/// the boxcar (within `E` of the last archived value) and the backslope (within `E` of the line
/// through the last two archived points). As in the original, the point archived is the one before
/// it; the point is then tested again against the new archive, and archived too if it still leaves
/// both. So every point not archived is within `E` of the boxcar value or of the backslope line of
/// the archive before it.
#[derive(Debug, Clone)]
pub struct BoxcarBackslope {
    deviation: f64,
    before: Option<Sample>,
    last: Option<Sample>,
    held: Option<Sample>,
}

impl BoxcarBackslope {
    /// # Errors
    /// A negative deviation.
    pub fn new(deviation: f64) -> Result<Self, SpecError> {
        check(deviation >= 0.0 && deviation.is_finite(), || {
            format!("boxcar_backslope: deviation must be a finite number >= 0, not {deviation}")
        })?;
        Ok(Self {
            deviation,
            before: None,
            last: None,
            held: None,
        })
    }

    /// Whether `p` leaves both the boxcar and the backslope of the archive `(before, last)`.
    fn leaves(&self, last: Sample, p: Sample) -> bool {
        let boxcar = (p.v - last.v).abs() > self.deviation;
        let backslope = match self.before {
            Some(before) => {
                let slope = (last.v - before.v) / (last.t - before.t);
                (p.v - (last.v + slope * (p.t - last.t))).abs() > self.deviation
            }
            None => boxcar,
        };
        boxcar && backslope
    }

    fn archive(&mut self, sample: Sample, out: &mut Vec<Sample>) {
        self.before = self.last;
        self.last = Some(sample);
        out.push(sample);
    }
}

impl Operator for BoxcarBackslope {
    fn push(&mut self, t: f64, v: f64, good: bool, out: &mut Vec<Sample>) {
        if !good {
            return;
        }
        let p = Sample::new(t, v);
        let Some(last) = self.last else {
            self.archive(p, out);
            return;
        };
        if !self.leaves(last, p) {
            self.held = Some(p);
            return;
        }
        if let Some(held) = self.held.take() {
            self.archive(held, out);
            if !self.leaves(held, p) {
                self.held = Some(p);
                return;
            }
        }
        self.archive(p, out);
    }

    fn flush(&mut self, out: &mut Vec<Sample>) {
        if let Some(held) = self.held.take() {
            self.archive(held, out);
        }
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // the expected values are exact
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(op: &mut dyn Operator, points: &[(f64, f64)]) -> Vec<Sample> {
        let mut out = Vec::new();
        for &(t, v) in points {
            op.push(t, v, true, &mut out);
        }
        op.flush(&mut out);
        out
    }

    #[test]
    fn deadband_reports_moves_and_heartbeats() {
        let mut op = Deadband::new(Band::Absolute(1.0), Some(10.0)).unwrap();
        let out = run(
            &mut op,
            &[(0.0, 0.0), (1.0, 0.5), (2.0, 1.5), (3.0, 1.0), (12.0, 1.0)],
        );
        assert_eq!(
            out,
            vec![
                Sample::new(0.0, 0.0),
                Sample::new(2.0, 1.5),
                Sample::new(12.0, 1.0)
            ]
        );
    }

    #[test]
    fn percent_band_is_of_the_span() {
        let band = Band::Percent {
            percent: 1.0,
            low: 0.0,
            high: 200.0,
        };
        assert!((band.width().unwrap() - 2.0).abs() < 1e-12);
        let empty = Band::Percent {
            percent: 1.0,
            low: 5.0,
            high: 5.0,
        };
        assert!(empty.width().unwrap_err().0.contains("span"));
    }

    #[test]
    fn swinging_door_keeps_the_corners_of_a_ramp() {
        let points: Vec<(f64, f64)> = (0..=20)
            .map(|i| {
                let t = f64::from(i);
                (t, if i <= 10 { t } else { 20.0 - t })
            })
            .collect();
        let mut op = SwingingDoor::new(0.01, None).unwrap();
        let kept: Vec<f64> = run(&mut op, &points).iter().map(|s| s.t).collect();
        assert_eq!(kept, vec![0.0, 10.0, 20.0]);
    }

    #[test]
    fn swinging_door_max_interval_archives() {
        let points: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), 1.0)).collect();
        let mut op = SwingingDoor::new(0.5, Some(3.0)).unwrap();
        let kept: Vec<f64> = run(&mut op, &points).iter().map(|s| s.t).collect();
        assert_eq!(kept, vec![0.0, 3.0, 6.0, 9.0]);
    }

    fn interpolate(a: Sample, b: Sample, t: f64) -> f64 {
        a.v + (b.v - a.v) * (t - a.t) / (b.t - a.t)
    }

    proptest! {
        /// The bound of the module docs: every point is within E of the line between the archived
        /// points around it.
        #[test]
        fn swinging_door_error_is_at_most_the_deviation(
            steps in prop::collection::vec((0.001f64..10.0, -100.0f64..100.0), 1..200),
            deviation in 0.0f64..20.0,
        ) {
            let mut t = 0.0;
            let points: Vec<(f64, f64)> = steps.iter().map(|&(dt, v)| { t += dt; (t, v) }).collect();
            let mut op = SwingingDoor::new(deviation, None).unwrap();
            let kept = run(&mut op, &points);
            prop_assert_eq!(kept[0].t, points[0].0);
            prop_assert_eq!(kept[kept.len() - 1].t, points[points.len() - 1].0);
            let mut segment = 0;
            for &(t, v) in &points {
                while kept[segment + 1..].first().is_some_and(|next| next.t < t) {
                    segment += 1;
                }
                if let Some(&b) = kept.get(segment + 1) {
                    let error = (interpolate(kept[segment], b, t) - v).abs();
                    prop_assert!(error <= deviation + 1e-9 * (1.0 + v.abs()), "error {} at t={}", error, t);
                }
            }
        }

        #[test]
        fn boxcar_backslope_keeps_every_point_near_its_archive(
            steps in prop::collection::vec((0.001f64..10.0, -100.0f64..100.0), 1..200),
            deviation in 0.0f64..20.0,
        ) {
            let mut t = 0.0;
            let points: Vec<(f64, f64)> = steps.iter().map(|&(dt, v)| { t += dt; (t, v) }).collect();
            let mut op = BoxcarBackslope::new(deviation).unwrap();
            let kept = run(&mut op, &points);
            prop_assert_eq!(kept[kept.len() - 1].t, points[points.len() - 1].0);
            for &(t, v) in &points {
                if kept.iter().any(|k| k.t == t) { continue; }
                let before: Vec<&Sample> = kept.iter().filter(|k| k.t < t).collect();
                let last = before[before.len() - 1];
                let boxcar = (v - last.v).abs() <= deviation;
                let backslope = before.len() >= 2 && {
                    let prev = before[before.len() - 2];
                    let slope = (last.v - prev.v) / (last.t - prev.t);
                    (v - (last.v + slope * (t - last.t))).abs() <= deviation + 1e-9 * (1.0 + v.abs())
                };
                prop_assert!(boxcar || backslope, "t={} v={}", t, v);
            }
        }
    }
}
