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

/// The median absolute deviation from `centre` of the sorted `values`. The deviations of the values
/// below the centre, read downwards, and of those above, read upwards, are two sorted runs; the
/// median of their union is the k-th smallest of two sorted runs, found by a binary search over how
/// many of the k come from the lower run (O(log n), no sort, no allocation). An order statistic of a
/// multiset does not depend on how ties are broken, so this is exactly the median of the deviations.
fn mad_of_sorted(sorted: &[f64], centre: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let split = sorted.partition_point(|&x| x < centre);
    let (below, above) = (split, n - split);
    let down = |i: usize| centre - sorted[split - 1 - i];
    let up = |j: usize| sorted[split + j] - centre;
    // The smallest `i` (taken from the lower run, `take - i` from the upper) such that the lower
    // run's next deviation is not below the last one taken from the upper: then the `take`
    // smallest are `down(..i)` and `up(..take - i)`.
    let take = n / 2 + usize::from(n % 2 == 1);
    // In `base..=base + size`; written so that the steps compile to conditional moves, not to
    // branches that the data would make unpredictable.
    let mut base = take.saturating_sub(above);
    let mut size = take.min(below) - base;
    while size > 0 {
        let half = size / 2;
        let i = base + half;
        // Inside, `i < below` and `1 <= take - i <= above`.
        let short = up(take - i - 1) > down(i);
        base = if short { i + 1 } else { base };
        size = if short { size - half - 1 } else { half };
    }
    let (taken_below, taken_above) = (base, take - base);
    let last = match (
        taken_below.checked_sub(1).map(down),
        taken_above.checked_sub(1).map(up),
    ) {
        (Some(d), Some(u)) => d.max(u),
        (Some(d), None) => d,
        (None, Some(u)) => u,
        (None, None) => f64::NAN,
    };
    if n % 2 == 1 {
        return last;
    }
    // Even: the mean of the last taken and the next one, the smaller of the two runs' next.
    let next = match (
        (taken_below < below).then(|| down(taken_below)),
        (taken_above < above).then(|| up(taken_above)),
    ) {
        (Some(d), Some(u)) => d.min(u),
        (Some(d), None) => d,
        (None, Some(u)) => u,
        (None, None) => f64::NAN,
    };
    f64::midpoint(last, next)
}

/// Replace `old` (held) by `new` in `sorted`, keeping it sorted: one shift of the values between
/// their places rather than a removal and an insertion that each move half the window.
fn replace_sorted(sorted: &mut [f64], old: f64, new: f64) {
    let from = sorted.partition_point(|x| x.total_cmp(&old).is_lt());
    let to = sorted.partition_point(|x| x.total_cmp(&new).is_lt());
    if to <= from {
        sorted.copy_within(to..from, to + 1);
        sorted[to] = new;
    } else {
        // `new` goes after `old`'s place, which its shift frees.
        sorted.copy_within(from + 1..to, from);
        sorted[to - 1] = new;
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
                replace_sorted(&mut self.sorted, old, v);
            }
            self.values.push_back(v);
            return;
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

    fn median_by_sorting(mut values: Vec<f64>) -> f64 {
        values.sort_by(f64::total_cmp);
        median_of_sorted(&values)
    }

    proptest::proptest! {
        #[test]
        fn mad_is_the_median_of_the_deviations(
            mut values in proptest::collection::vec(-4i8..4, 1..40),
            scale in proptest::sample::select(vec![1.0, 0.1, 1e300]),
            replace in (0usize..40, -4i8..4),
        ) {
            let mut sorted: Vec<f64> = values.iter().map(|&v| f64::from(v) * scale).collect();
            sorted.sort_by(f64::total_cmp);
            let centre = median_of_sorted(&sorted);
            let deviations = sorted.iter().map(|&x| (x - centre).abs()).collect();
            proptest::prop_assert_eq!(mad_of_sorted(&sorted, centre), median_by_sorting(deviations));
            // Replacing one value keeps the window sorted, as removing and inserting would.
            let at = replace.0 % values.len();
            let old = f64::from(values[at]) * scale;
            values[at] = replace.1;
            replace_sorted(&mut sorted, old, f64::from(replace.1) * scale);
            let mut expected: Vec<f64> = values.iter().map(|&v| f64::from(v) * scale).collect();
            expected.sort_by(f64::total_cmp);
            proptest::prop_assert_eq!(sorted, expected);
        }
    }
}
