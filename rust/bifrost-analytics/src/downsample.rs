//! Downsampling for display: LTTB (Steinarsson's largest triangle three buckets) and `MinMaxLTTB`
//! (min and max per bin first, then LTTB over those), returning the indices of the points kept.
//!
//! Buckets hold equal counts of points (as in the original LTTB): the first and last points are
//! always kept, and the `n_out - 2` buckets between split the rest. `x` is optional; without it the
//! index is the x axis. A NaN `y` is never chosen while its bucket has a number.

use argminmax::ArgMinMax;

use crate::{check, SpecError};

/// The x axis: given values, or the index.
trait Axis: Copy {
    fn at(self, i: usize) -> f64;
    /// The means of x and of `y` (NaN left out) over `start..end`.
    fn means(self, y: &[f64], start: usize, end: usize) -> (f64, f64);
}

impl Axis for &[f64] {
    fn at(self, i: usize) -> f64 {
        self[i]
    }
    fn means(self, y: &[f64], start: usize, end: usize) -> (f64, f64) {
        // Both sums in one loop: each is a chain of dependent additions (in order, as `sum` adds),
        // so two chains side by side take the time of one.
        let (mut sx, mut sy) = (-0.0, -0.0);
        for (&px, &py) in self[start..end].iter().zip(&y[start..end]) {
            sx += px;
            sy += py;
        }
        let count = (end - start) as f64;
        let my = if sy.is_nan() {
            mean_y(y, start, end)
        } else {
            sy / count
        };
        (sx / count, my)
    }
}

#[derive(Clone, Copy)]
struct Index;

impl Axis for Index {
    fn at(self, i: usize) -> f64 {
        // Through i64: one instruction on x86-64, where u64 to f64 takes several.
        i as i64 as f64
    }
    fn means(self, y: &[f64], start: usize, end: usize) -> (f64, f64) {
        ((start + end - 1) as f64 / 2.0, mean_y(y, start, end))
    }
}

fn check_inputs(x: Option<&[f64]>, y: &[f64], n_out: usize) -> Result<(), SpecError> {
    check(n_out >= 3, || format!("n_out must be >= 3, not {n_out}"))?;
    if let Some(x) = x {
        check(x.len() == y.len(), || {
            format!("x and y differ in length: {} and {}", x.len(), y.len())
        })?;
    }
    Ok(())
}

/// The indices LTTB keeps of `(x, y)`, `n_out` of them (all when there are no more).
///
/// # Errors
/// `n_out < 3`, or `x` and `y` of different lengths.
pub fn lttb(x: Option<&[f64]>, y: &[f64], n_out: usize) -> Result<Vec<usize>, SpecError> {
    check_inputs(x, y, n_out)?;
    if y.len() <= n_out {
        return Ok((0..y.len()).collect());
    }
    Ok(match x {
        Some(x) => lttb_on(x, y, n_out),
        None => lttb_on(Index, y, n_out),
    })
}

/// The mean of `y[start..end]`, leaving out NaN.
fn mean_y(y: &[f64], start: usize, end: usize) -> f64 {
    let plain = y[start..end].iter().sum::<f64>() / (end - start) as f64;
    if !plain.is_nan() {
        return plain;
    }
    let (sum, n) = y[start..end]
        .iter()
        .filter(|v| !v.is_nan())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n as f64
}

fn lttb_on<X: Axis>(x: X, y: &[f64], n_out: usize) -> Vec<usize> {
    let n = y.len();
    let every = (n - 2) as f64 / (n_out - 2) as f64;
    let bound = |i: usize| (((i as f64) * every) as usize + 1).min(n - 1);
    let mut kept = Vec::with_capacity(n_out);
    kept.push(0);
    let mut a = 0usize;
    for bucket in 0..n_out - 2 {
        let (start, end) = (bound(bucket), bound(bucket + 1));
        let (next_start, next_end) = (end, bound(bucket + 2).max(end + 1).min(n));
        let (cx, cy) = if bucket == n_out - 3 {
            (x.at(n - 1), y[n - 1])
        } else {
            x.means(y, next_start, next_end)
        };
        let (ax, ay) = (x.at(a), y[a]);
        // Twice the triangle's area is |(ax - cx)(py - ay) - (ax - px)(cy - ay)|, linear in p:
        // |k_y py + k_x px + k_0|, so the inner loop is two multiply-adds per point.
        let (ky, kx) = (ax - cx, cy - ay);
        let best = largest(x, y, start, end, (ky, kx, -ky * ay - kx * ax));
        kept.push(best);
        a = best;
    }
    kept.push(n - 1);
    kept
}

/// The first index in `start..end` of the largest `|k_y y + k_x x + k_0|` (twice the triangle's area,
/// linear in the point), over independent lanes that the compiler can vectorise; NaN never wins.
#[allow(clippy::float_cmp)] // equal areas: the earlier point wins, as in a plain scan
fn largest<X: Axis>(x: X, y: &[f64], start: usize, end: usize, k: (f64, f64, f64)) -> usize {
    const LANES: usize = 4;
    let (ky, kx, k0) = k;
    let ys = &y[start..end];
    let mut best = [f64::NEG_INFINITY; LANES];
    let mut at = [0usize; LANES];
    let chunks = ys.chunks_exact(LANES);
    let tail = chunks.remainder();
    for (c, chunk) in chunks.enumerate() {
        let first = c * LANES;
        for lane in 0..LANES {
            let a = (ky * chunk[lane] + kx * x.at(start + first + lane) + k0).abs();
            if a > best[lane] {
                best[lane] = a;
                at[lane] = first + lane;
            }
        }
    }
    let offset = ys.len() - tail.len();
    let (mut max, mut index) = (f64::NEG_INFINITY, 0);
    for lane in 0..LANES {
        // The larger area, and of equal ones the earlier point.
        if best[lane] > max || (best[lane] == max && at[lane] < index) {
            (max, index) = (best[lane], at[lane]);
        }
    }
    for (i, &py) in tail.iter().enumerate() {
        let a = (ky * py + kx * x.at(start + offset + i) + k0).abs();
        if a > max {
            (max, index) = (a, offset + i);
        }
    }
    start + index
}

/// The index of the minimum and of the maximum of `y[start..end]` (the first of equals), NaN
/// ignored: argminmax's SIMD kernels, or the plain scan when the bin holds no finite extreme (only
/// NaN, or an infinity, which those kernels leave unspecified).
fn bin_argminmax(y: &[f64], start: usize, end: usize) -> (usize, usize) {
    let bin = &y[start..end];
    let (low, high) = bin.argminmax();
    if bin[low].is_finite() && bin[high].is_finite() {
        (start + low, start + high)
    } else {
        argminmax(y, start, end)
    }
}

/// The index of the minimum and of the maximum of `y[start..end]` (the first of equals), skipping
/// NaN; the start for a bin of NaN only.
fn argminmax(y: &[f64], start: usize, end: usize) -> (usize, usize) {
    // Values first, over independent lanes so that the compiler can vectorise; then where they are.
    const LANES: usize = 8;
    let bin = &y[start..end];
    let mut low = [f64::INFINITY; LANES];
    let mut high = [f64::NEG_INFINITY; LANES];
    let chunks = bin.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for lane in 0..LANES {
            let v = chunk[lane];
            low[lane] = if v < low[lane] { v } else { low[lane] };
            high[lane] = if v > high[lane] { v } else { high[lane] };
        }
    }
    let mut min = low.iter().copied().fold(f64::INFINITY, f64::min);
    let mut max = high.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for &v in rest {
        min = if v < min { v } else { min };
        max = if v > max { v } else { max };
    }
    #[allow(clippy::float_cmp)] // looking for the very value found
    let find = |target: f64| {
        bin.iter()
            .position(|&v| v == target)
            .map_or(start, |i| start + i)
    };
    (find(min), find(max))
}

/// The indices `MinMaxLTTB` keeps: the min and max of `n_out * ratio / 2` equal-count bins of the
/// inner points, then LTTB over those (with the first and last points) to `n_out`.
///
/// # Errors
/// `n_out < 3`, `ratio < 2`, or `x` and `y` of different lengths.
pub fn minmax_lttb(
    x: Option<&[f64]>,
    y: &[f64],
    n_out: usize,
    ratio: usize,
) -> Result<Vec<usize>, SpecError> {
    check_inputs(x, y, n_out)?;
    check(ratio >= 2, || format!("ratio must be >= 2, not {ratio}"))?;
    let n = y.len();
    let bins = n_out * ratio / 2;
    if n <= n_out || n - 2 <= bins * 2 {
        return lttb(x, y, n_out);
    }
    let mut chosen = Vec::with_capacity(bins * 2 + 2);
    chosen.push(0);
    let every = (n - 2) as f64 / bins as f64;
    for bin in 0..bins {
        let start = ((bin as f64) * every) as usize + 1;
        let end = ((((bin + 1) as f64) * every) as usize + 1).min(n - 1);
        if start >= end {
            continue;
        }
        let (low, high) = bin_argminmax(y, start, end);
        chosen.push(low.min(high));
        if low != high {
            chosen.push(low.max(high));
        }
    }
    chosen.push(n - 1);
    let sub_y: Vec<f64> = chosen.iter().map(|&i| y[i]).collect();
    // Without x, the original index is the x axis.
    let sub_x: Vec<f64> = chosen
        .iter()
        .map(|&i| x.map_or(i as f64, |x| x[i]))
        .collect();
    let sub = lttb(Some(&sub_x), &sub_y, n_out)?;
    Ok(sub.into_iter().map(|i| chosen[i]).collect())
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // the expected values are exact
mod tests {
    use super::*;

    #[test]
    fn lttb_keeps_the_peak_and_the_ends() {
        let mut y = vec![0.0; 1000];
        y[437] = 100.0;
        let kept = lttb(None, &y, 10).unwrap();
        assert_eq!(kept.len(), 10);
        assert_eq!((kept[0], kept[9]), (0, 999));
        assert!(kept.contains(&437));
        let x: Vec<f64> = (0..1000).map(|i| f64::from(i) * 0.5).collect();
        assert_eq!(lttb(Some(&x), &y, 10).unwrap(), kept);
        assert!(lttb(None, &y, 2).is_err());
        assert_eq!(lttb(None, &y[..5], 10).unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn minmax_lttb_keeps_extremes() {
        let y: Vec<f64> = (0..100_000)
            .map(|i| (f64::from(i) / 1000.0).sin() + if i == 54_321 { -9.0 } else { 0.0 })
            .collect();
        let kept = minmax_lttb(None, &y, 100, 4).unwrap();
        assert_eq!(kept.len(), 100);
        assert!(kept.contains(&54_321));
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn argminmax_skips_nan() {
        let y = [
            f64::NAN,
            3.0,
            1.0,
            f64::NAN,
            5.0,
            1.0,
            5.0,
            2.0,
            0.5,
            9.0,
            f64::NAN,
        ];
        assert_eq!(argminmax(&y, 0, y.len()), (8, 9));
        assert_eq!(argminmax(&[f64::NAN; 3], 0, 3), (0, 0));
    }
}
