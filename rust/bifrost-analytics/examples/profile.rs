//! Time the operators the bench found slow, without Python: `cargo run --release --example profile`.
//! Best of five, on the bench's shape (200,000 points in chunks of 10,000; 10M points to 1,000).

use std::time::Instant;

use bifrost_analytics::window::Stat;
use bifrost_analytics::{downsample, Chain, Spec};

/// `profile NAME` runs only the case named NAME, once (for callgrind, whose counts are stable on
/// a loaded machine); without an argument, every case, best of five.
fn best(mut f: impl FnMut()) -> f64 {
    let runs = if std::env::args().nth(1).is_some() {
        1
    } else {
        5
    };
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// A random walk plus a sine, from a small xorshift (no dependency for an example).
fn walk(n: usize) -> Vec<f64> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut level = 0.0;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            level += (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            level + 5.0 * (i as f64 / 500.0).sin()
        })
        .collect()
}

#[allow(clippy::many_single_char_names)] // t, v, x, y: the names of the series
fn main() {
    let n = 200_000;
    let t: Vec<f64> = (0..n).map(|i| 1.7e9 + i as f64).collect();
    let v = walk(n);
    let good: Vec<bool> = (0..n).map(|i| i % 100 != 7).collect();
    let specs = [
        (
            "mad 60",
            Spec::Mad {
                window: 60,
                threshold: Some(3.5),
            },
        ),
        (
            "aggregate max 60 s",
            Spec::Aggregate {
                interval: 60.0,
                stat: Stat::Max,
            },
        ),
    ];
    let only = std::env::args().nth(1);
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    for (name, spec) in &specs {
        if !wanted(name) {
            continue;
        }
        let mut digest = 0u64;
        let seconds = best(|| {
            let mut chain = Chain::new(std::slice::from_ref(spec)).unwrap();
            let mut out = Vec::new();
            for start in (0..n).step_by(10_000) {
                let end = start + 10_000;
                chain.push_many(
                    &t[start..end],
                    &v[start..end],
                    Some(&good[start..end]),
                    &mut out,
                );
            }
            chain.flush(&mut out);
            digest = out.iter().fold(out.len() as u64, |h, s| {
                h.rotate_left(5) ^ s.t.to_bits() ^ s.v.to_bits().rotate_left(17)
            });
        });
        println!(
            "{name:<24}{:>10.2} ns/point  digest {digest:016x}",
            seconds * 1e9 / n as f64
        );
    }
    let big = if only
        .as_deref()
        .is_some_and(|o| o.starts_with("lttb") || o.starts_with("minmax"))
        || only.is_none()
    {
        10_000_000
    } else {
        3
    };
    let y = walk(big);
    let x: Vec<f64> = (0..big).map(|i| i as f64 * 0.1).collect();
    let cases: [(&str, Option<&[f64]>, bool); 4] = [
        ("lttb y", None, false),
        ("lttb x y", Some(&x), false),
        ("minmax y", None, true),
        ("minmax x y", Some(&x), true),
    ];
    for (name, x, minmax) in cases {
        if !wanted(name) {
            continue;
        }
        let mut digest = 0u64;
        let seconds = best(|| {
            let kept = if minmax {
                downsample::minmax_lttb(x, &y, 1000, 4)
            } else {
                downsample::lttb(x, &y, 1000)
            };
            digest = kept
                .unwrap()
                .iter()
                .fold(0, |h, &i| h.rotate_left(5) ^ i as u64);
        });
        println!(
            "{name:<24}{:>10.2} ms        digest {digest:016x}",
            seconds * 1e3
        );
    }
}
