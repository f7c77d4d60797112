//! Anomaly scores over a rolling window of the points *before* each one: the z-score (distance from
//! the mean in standard deviations) and the MAD score (Iglewicz and Hoaglin's modified z-score,
//! `0.6745 (v - median) / MAD`, robust to the outliers it looks for). A point is scored once the
//! window is full, then joins it. With a threshold, only the events (`|score| > threshold`) are
//! released; without, every score. A window with no spread scores 0 for a point equal to its centre
//! and +-inf for any other.

use std::collections::VecDeque;

use crate::window::Moments;
use crate::{check, Operator, Sample, SpecError};

fn check_params(what: &str, window: usize, threshold: Option<f64>) -> Result<(), SpecError> {
    check(window >= 2, || {
        format!("{what}: window must be >= 2, not {window}")
    })?;
    check(threshold.is_none_or(|x| x >= 0.0), || {
        format!("{what}: threshold must be >= 0, not {threshold:?}")
    })
}

fn score(distance: f64, spread: f64) -> f64 {
    if spread > 0.0 {
        distance / spread
    } else if distance == 0.0 {
        0.0
    } else {
        distance.signum() * f64::INFINITY
    }
}

fn release(threshold: Option<f64>, t: f64, score: f64, out: &mut Vec<Sample>) {
    if threshold.is_none_or(|x| score.abs() > x) {
        out.push(Sample::new(t, score));
    }
}

/// Rolling z-score against the last `window` good points.
#[derive(Debug, Clone)]
pub struct ZScore {
    window: usize,
    threshold: Option<f64>,
    values: VecDeque<f64>,
    moments: Moments,
}

impl ZScore {
    /// # Errors
    /// A window under 2 or a negative threshold.
    pub fn new(window: usize, threshold: Option<f64>) -> Result<Self, SpecError> {
        check_params("zscore", window, threshold)?;
        Ok(Self {
            window,
            threshold,
            values: VecDeque::with_capacity(window + 1),
            moments: Moments::default(),
        })
    }
}

impl Operator for ZScore {
    fn push(&mut self, t: f64, v: f64, good: bool, out: &mut Vec<Sample>) {
        if !good {
            return;
        }
        if self.values.len() == self.window {
            let z = score(v - self.moments.mean, self.moments.std());
            release(self.threshold, t, z, out);
            if let Some(old) = self.values.pop_front() {
                self.moments.remove(old);
            }
        }
        self.values.push_back(v);
        self.moments.add(v);
        self.moments.refresh(self.values.iter().copied());
    }
}

/// Rolling MAD score against the last `window` good points.
#[derive(Debug, Clone)]
pub struct Mad {
    window: usize,
    threshold: Option<f64>,
    values: VecDeque<f64>,
    /// The window's values, sorted (for the median).
    sorted: Vec<f64>,
}

fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        f64::midpoint(sorted[n / 2 - 1], sorted[n / 2])
    }
}

/// The median absolute deviation from `centre` of the sorted `values`: the deviations of the values
/// below the centre, read downwards, and of those above, read upwards, are two sorted runs, so their
/// median is found by merging the two runs halfway (O(n), no sort, no allocation).
fn mad_of_sorted(sorted: &[f64], centre: f64) -> f64 {
    let n = sorted.len();
    let split = sorted.partition_point(|&x| x < centre);
    let (mut below, mut above) = (split, split);
    let mut next = || {
        let down = below.checked_sub(1).map(|i| centre - sorted[i]);
        let up = (above < n).then(|| sorted[above] - centre);
        match (down, up) {
            (Some(d), Some(u)) if d <= u => {
                below -= 1;
                d
            }
            (Some(d), None) => {
                below -= 1;
                d
            }
            (_, Some(u)) => {
                above += 1;
                u
            }
            (None, None) => f64::NAN,
        }
    };
    let mut previous = f64::NAN;
    for _ in 0..n / 2 {
        previous = next();
    }
    let middle = next();
    if n % 2 == 1 {
        middle
    } else {
        f64::midpoint(previous, middle)
    }
}

impl Mad {
    /// # Errors
    /// A window under 2 or a negative threshold.
    pub fn new(window: usize, threshold: Option<f64>) -> Result<Self, SpecError> {
        check_params("mad", window, threshold)?;
        Ok(Self {
            window,
            threshold,
            values: VecDeque::with_capacity(window + 1),
            sorted: Vec::with_capacity(window + 1),
        })
    }
}

impl Operator for Mad {
    fn push(&mut self, t: f64, v: f64, good: bool, out: &mut Vec<Sample>) {
        if !good {
            return;
        }
        if self.values.len() == self.window {
            let centre = median_of_sorted(&self.sorted);
            let mad = mad_of_sorted(&self.sorted, centre);
            release(self.threshold, t, score(0.6745 * (v - centre), mad), out);
            if let Some(old) = self.values.pop_front() {
                let at = self.sorted.partition_point(|x| x.total_cmp(&old).is_lt());
                self.sorted.remove(at);
            }
        }
        self.values.push_back(v);
        let at = self.sorted.partition_point(|x| x.total_cmp(&v).is_lt());
        self.sorted.insert(at, v);
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // the expected values are exact
mod tests {
    use super::*;

    #[test]
    fn zscore_flags_the_spike_only() {
        let mut op = ZScore::new(4, Some(3.0)).unwrap();
        let mut out = Vec::new();
        for (i, v) in [1.0, 2.0, 1.0, 2.0, 1.5, 50.0, 1.0].iter().enumerate() {
            op.push(i as f64, *v, true, &mut out);
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].t, 5.0);
    }

    #[test]
    fn mad_is_robust_and_handles_no_spread() {
        let mut op = Mad::new(5, None).unwrap();
        let mut out = Vec::new();
        for (i, v) in [3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 4.0].iter().enumerate() {
            op.push(i as f64, *v, true, &mut out);
        }
        assert_eq!(out[0].v, 0.0);
        assert_eq!(out[1].v, f64::INFINITY);
        // Deviations from 3 of [1, 2, 4, 5, 9]: 2, 1, 1, 2, 6 -> median 2; of [1, 2, 4, 9]: 2, 1, 1, 6 -> 1.5.
        assert_eq!(mad_of_sorted(&[1.0, 2.0, 4.0, 5.0, 9.0], 3.0), 2.0);
        assert_eq!(mad_of_sorted(&[1.0, 2.0, 4.0, 9.0], 3.0), 1.5);
    }
}
