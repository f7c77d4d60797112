//! `bifrost-analytics` for Python: operator chains (`NativeChain` for one series, `NativePipeline`
//! keyed by tag, fed `DataPoint`s or numpy arrays) and the batch functions over numpy arrays.
//!
//! Arrays go through rust-numpy: a contiguous float64 (or uint64) array is read in place, and every
//! array returned is a Rust `Vec` handed to numpy as it is, so neither way copies. (The buffer
//! protocol itself is not in the limited API of abi3-py310; numpy's own C API is, through rust-numpy.)

use std::collections::HashMap;

use bifrost_analytics::report::Band;
use bifrost_analytics::signal::Smoothing;
use bifrost_analytics::window::{Size, Stat};
use bifrost_analytics::{downsample, window, Chain, Sample, Spec, SpecError};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyString, PyTuple};

use crate::errors::config_error;
use crate::point::{qualities, DataPoint};

fn number(params: &Bound<'_, PyDict>, name: &str) -> PyResult<Option<f64>> {
    match params.get_item(name)? {
        Some(value) if !value.is_none() => Ok(Some(value.extract()?)),
        _ => Ok(None),
    }
}

fn count(params: &Bound<'_, PyDict>, name: &str) -> PyResult<Option<usize>> {
    match params.get_item(name)? {
        Some(value) if !value.is_none() => Ok(Some(value.extract()?)),
        _ => Ok(None),
    }
}

fn text(params: &Bound<'_, PyDict>, name: &str) -> PyResult<Option<String>> {
    match params.get_item(name)? {
        Some(value) if !value.is_none() => Ok(Some(value.extract()?)),
        _ => Ok(None),
    }
}

/// One stage's `(kind, params)` as a checked `Spec`; errors name the stage, the kind and the field.
fn spec_of(py: Python<'_>, index: usize, kind: &str, p: &Bound<'_, PyDict>) -> PyResult<Spec> {
    let fail = |message: String| config_error(py, format!("stage {index}: {message}"));
    let needed = |name: &str| -> PyResult<f64> {
        number(p, name)?.ok_or_else(|| fail(format!("{kind}: {name} is required")))
    };
    let window = |name: &str| -> PyResult<usize> {
        count(p, name)?.ok_or_else(|| fail(format!("{kind}: {name} is required")))
    };
    let stat = || -> PyResult<Stat> {
        let name = text(p, "stat")?.unwrap_or_else(|| "mean".to_owned());
        Stat::parse(&name).map_err(|e| fail(format!("{kind}: {e}")))
    };
    let either = |message: &str| fail(format!("{kind}: give exactly one of {message}"));
    let spec = match kind {
        "deadband" => Spec::Deadband {
            band: match (number(p, "absolute")?, number(p, "percent")?) {
                (Some(width), None) => Band::Absolute(width),
                (None, Some(percent)) => Band::Percent {
                    percent,
                    low: number(p, "low")?.unwrap_or(f64::NAN),
                    high: number(p, "high")?.unwrap_or(f64::NAN),
                },
                _ => return Err(either("absolute, percent (with low and high)")),
            },
            max_silence: number(p, "max_silence")?,
        },
        "swinging_door" => Spec::SwingingDoor {
            deviation: needed("deviation")?,
            max_interval: number(p, "max_interval")?,
        },
        "boxcar_backslope" => Spec::BoxcarBackslope {
            deviation: needed("deviation")?,
        },
        "rolling" => Spec::Rolling {
            size: match (count(p, "count")?, number(p, "duration")?) {
                (Some(n), None) => Size::Count(n),
                (None, Some(d)) => Size::Duration(d),
                _ => return Err(either("count, duration")),
            },
            stat: stat()?,
        },
        "aggregate" => Spec::Aggregate {
            interval: needed("interval")?,
            stat: stat()?,
        },
        "rate_of_change" => Spec::RateOfChange {
            per: number(p, "per")?.unwrap_or(1.0),
        },
        "counter_delta" => Spec::CounterDelta {
            bits: p.get_item("bits")?.map_or(Ok(64), |bits| bits.extract())?,
            max_delta: match p.get_item("max_delta")? {
                Some(value) if !value.is_none() => Some(value.extract()?),
                _ => None,
            },
        },
        "ewma" => Spec::Ewma {
            smoothing: match (number(p, "alpha")?, number(p, "tau")?) {
                (Some(alpha), None) => Smoothing::Alpha(alpha),
                (None, Some(tau)) => Smoothing::Tau(tau),
                _ => return Err(either("alpha, tau")),
            },
        },
        "zscore" => Spec::ZScore {
            window: window("window")?,
            threshold: number(p, "threshold")?,
        },
        "mad" => Spec::Mad {
            window: window("window")?,
            threshold: number(p, "threshold")?,
        },
        other => {
            return Err(fail(format!(
                "unknown operator {other:?}: expected deadband, swinging_door, boxcar_backslope, \
                 rolling, aggregate, rate_of_change, counter_delta, ewma, zscore, mad"
            )))
        }
    };
    spec.build().map_err(|e| fail(e.0))?;
    Ok(spec)
}

/// The specs of `stages` (a sequence of `(kind, params)`), each built once to check it.
fn specs_of(py: Python<'_>, stages: &Bound<'_, PyAny>) -> PyResult<Vec<Spec>> {
    let mut specs = Vec::new();
    for (index, stage) in stages.try_iter()?.enumerate() {
        let (kind, params): (String, Bound<'_, PyDict>) = stage?.extract()?;
        specs.push(spec_of(py, index, &kind, &params)?);
    }
    Ok(specs)
}

fn slice<'a, T: numpy::Element>(
    py: Python<'_>,
    array: &'a PyReadonlyArray1<'_, T>,
    name: &str,
) -> PyResult<&'a [T]> {
    array
        .as_slice()
        .map_err(|_| config_error(py, format!("{name} must be a contiguous 1-d array")))
}

type U64Array<'py> = Bound<'py, PyArray1<u64>>;
type Arrays<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>);

fn arrays(py: Python<'_>, samples: Vec<Sample>) -> Arrays<'_> {
    let t: Vec<f64> = samples.iter().map(|s| s.t).collect();
    let v: Vec<f64> = samples.into_iter().map(|s| s.v).collect();
    (t.into_pyarray(py), v.into_pyarray(py))
}

/// Feed a chain from arrays, without the GIL.
fn feed(
    py: Python<'_>,
    chain: &mut Chain,
    t: &[f64],
    v: &[f64],
    good: Option<&[bool]>,
) -> PyResult<Vec<Sample>> {
    if t.len() != v.len() || good.is_some_and(|g| g.len() != t.len()) {
        return Err(config_error(
            py,
            format!(
                "t, v (and good) must have one length, not {}, {}{}",
                t.len(),
                v.len(),
                good.map_or(String::new(), |g| format!(", {}", g.len()))
            ),
        ));
    }
    Ok(py.detach(|| {
        let mut out = Vec::with_capacity(t.len());
        chain.push_many(t, v, good, &mut out);
        out
    }))
}

/// Operators in series over one series of points, its state kept between calls.
#[pyclass(module = "bifrost._native")]
pub(crate) struct NativeChain {
    chain: Chain,
}

#[pymethods]
impl NativeChain {
    #[new]
    fn new(py: Python<'_>, stages: &Bound<'_, PyAny>) -> PyResult<Self> {
        let specs = specs_of(py, stages)?;
        Ok(Self {
            chain: Chain::new(&specs).map_err(|e| config_error(py, e.0))?,
        })
    }

    /// Take one point; the samples it releases.
    #[pyo3(signature = (t, v, good=true))]
    fn push(&mut self, t: f64, v: f64, good: bool) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        self.chain.push(t, v, good, &mut out);
        out.into_iter().map(|s| (s.t, s.v)).collect()
    }

    /// Take arrays of points; arrays of the samples they release.
    #[pyo3(signature = (t, v, good=None))]
    fn process<'py>(
        &mut self,
        py: Python<'py>,
        t: PyReadonlyArray1<'py, f64>,
        v: PyReadonlyArray1<'py, f64>,
        good: Option<PyReadonlyArray1<'py, bool>>,
    ) -> PyResult<Arrays<'py>> {
        let good = match &good {
            Some(g) => Some(slice(py, g, "good")?),
            None => None,
        };
        let out = feed(
            py,
            &mut self.chain,
            slice(py, &t, "t")?,
            slice(py, &v, "v")?,
            good,
        )?;
        Ok(arrays(py, out))
    }

    /// Release what the stages hold back.
    fn flush(&mut self) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        self.chain.flush(&mut out);
        out.into_iter().map(|s| (s.t, s.v)).collect()
    }

    #[getter]
    fn rejected(&self) -> u64 {
        self.chain.rejected()
    }

    #[getter]
    fn skipped(&self) -> u64 {
        self.chain.skipped()
    }
}

/// The same operators for every tag, each tag with its own state.
#[pyclass(module = "bifrost._native")]
pub(crate) struct NativePipeline {
    specs: Vec<Spec>,
    chains: HashMap<String, Chain>,
    out: Vec<Sample>,
}

impl NativePipeline {
    fn chain(&mut self, tag: &str) -> &mut Chain {
        if !self.chains.contains_key(tag) {
            // The specs were built once when the pipeline was made: they build.
            let chain = Chain::new(&self.specs).unwrap_or_else(|_| unreachable!());
            self.chains.insert(tag.to_owned(), chain);
        }
        self.chains.get_mut(tag).unwrap_or_else(|| unreachable!())
    }

    /// Feed one point to `tag`'s chain; the samples it releases (in a buffer reused between calls).
    fn feed_point(
        &mut self,
        py: Python<'_>,
        tag: &str,
        point: &Bound<'_, DataPoint>,
    ) -> PyResult<&[Sample]> {
        let good_quality = &qualities(py)?.good;
        let (value, quality, t) = point.get().parts();
        let value = value.bind(py);
        let good = quality.is(good_quality);
        // A string or None is no number: skipped as a Bad point would be.
        let v = if value.is_none() {
            f64::NAN
        } else {
            value.extract::<f64>().unwrap_or(f64::NAN)
        };
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        self.chain(tag).push(t, v, good, &mut out);
        self.out = out;
        Ok(&self.out)
    }
}

fn point_list<'py>(py: Python<'py>, samples: &[Sample]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for sample in samples {
        list.append(points(py, *sample)?)?;
    }
    Ok(list)
}

fn points(py: Python<'_>, sample: Sample) -> PyResult<Bound<'_, DataPoint>> {
    let good = qualities(py)?.good.clone_ref(py);
    Bound::new(
        py,
        DataPoint::of(
            PyFloat::new(py, sample.v).into_any().unbind(),
            good,
            sample.t,
        ),
    )
}

#[pymethods]
impl NativePipeline {
    #[new]
    fn new(py: Python<'_>, stages: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            specs: specs_of(py, stages)?,
            chains: HashMap::new(),
            out: Vec::new(),
        })
    }

    /// Feed a `subscribe()` batch; the points released, by tag (tags that released nothing left out).
    fn apply<'py>(
        &mut self,
        py: Python<'py>,
        batch: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let result = PyDict::new(py);
        for (tag, point) in batch.iter() {
            let name = tag.cast::<PyString>()?.to_str()?;
            let released = self.feed_point(py, name, point.cast::<DataPoint>()?)?;
            if !released.is_empty() {
                result.set_item(tag, point_list(py, released)?)?;
            }
        }
        Ok(result)
    }

    /// Feed one point of `tag`; the points it releases.
    fn push<'py>(
        &mut self,
        py: Python<'py>,
        tag: &str,
        point: &Bound<'py, DataPoint>,
    ) -> PyResult<Bound<'py, PyList>> {
        let released = self.feed_point(py, tag, point)?;
        point_list(py, released)
    }

    /// Feed arrays of points of `tag`; arrays of the samples they release.
    #[pyo3(signature = (tag, t, v, good=None))]
    fn process<'py>(
        &mut self,
        py: Python<'py>,
        tag: &str,
        t: PyReadonlyArray1<'py, f64>,
        v: PyReadonlyArray1<'py, f64>,
        good: Option<PyReadonlyArray1<'py, bool>>,
    ) -> PyResult<Arrays<'py>> {
        let good = match &good {
            Some(g) => Some(slice(py, g, "good")?),
            None => None,
        };
        let (t, v) = (slice(py, &t, "t")?, slice(py, &v, "v")?);
        let out = feed(py, self.chain(tag), t, v, good)?;
        Ok(arrays(py, out))
    }

    /// Release what every tag's stages hold back, by tag.
    fn flush<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let result = PyDict::new(py);
        let mut names: Vec<&String> = self.chains.keys().collect();
        names.sort();
        let names: Vec<String> = names.into_iter().cloned().collect();
        for name in names {
            let mut out = Vec::new();
            self.chain(&name).flush(&mut out);
            if !out.is_empty() {
                result.set_item(name, point_list(py, &out)?)?;
            }
        }
        Ok(result)
    }

    /// Per tag: (points rejected as out of order, points skipped for quality).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let result = PyDict::new(py);
        for (name, chain) in &self.chains {
            result.set_item(name, PyTuple::new(py, [chain.rejected(), chain.skipped()])?)?;
        }
        Ok(result)
    }
}

fn spec_error(py: Python<'_>) -> impl Fn(SpecError) -> PyErr + '_ {
    move |error| config_error(py, error.0)
}

fn indices(py: Python<'_>, kept: Vec<usize>) -> Bound<'_, PyArray1<u64>> {
    kept.into_iter()
        .map(|i| i as u64)
        .collect::<Vec<u64>>()
        .into_pyarray(py)
}

/// The indices LTTB keeps of `(x, y)` (x None: the index).
#[pyfunction]
#[pyo3(signature = (x, y, n_out))]
pub(crate) fn lttb<'py>(
    py: Python<'py>,
    x: Option<PyReadonlyArray1<'py, f64>>,
    y: PyReadonlyArray1<'py, f64>,
    n_out: usize,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let x = match &x {
        Some(x) => Some(slice(py, x, "x")?),
        None => None,
    };
    let y = slice(py, &y, "y")?;
    let kept = py
        .detach(|| downsample::lttb(x, y, n_out))
        .map_err(spec_error(py))?;
    Ok(indices(py, kept))
}

/// The indices `MinMaxLTTB` keeps of `(x, y)`.
#[pyfunction]
#[pyo3(signature = (x, y, n_out, ratio=4))]
pub(crate) fn minmax_lttb<'py>(
    py: Python<'py>,
    x: Option<PyReadonlyArray1<'py, f64>>,
    y: PyReadonlyArray1<'py, f64>,
    n_out: usize,
    ratio: usize,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let x = match &x {
        Some(x) => Some(slice(py, x, "x")?),
        None => None,
    };
    let y = slice(py, &y, "y")?;
    let kept = py
        .detach(|| downsample::minmax_lttb(x, y, n_out, ratio))
        .map_err(spec_error(py))?;
    Ok(indices(py, kept))
}

/// The rolling statistic over the last `window` non-NaN values, one per value.
#[pyfunction]
#[pyo3(signature = (values, window, stat="mean"))]
pub(crate) fn rolling<'py>(
    py: Python<'py>,
    values: PyReadonlyArray1<'py, f64>,
    window: usize,
    stat: &str,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let stat = Stat::parse(stat).map_err(spec_error(py))?;
    let values = slice(py, &values, "values")?;
    let out = py
        .detach(|| window::rolling(values, window, stat))
        .map_err(spec_error(py))?;
    Ok(out.into_pyarray(py))
}

/// Counter deltas of uint64 readings: (the index of the reading each delta ends at, the deltas).
#[pyfunction]
#[pyo3(signature = (values, bits=64, max_delta=None))]
pub(crate) fn counter_delta<'py>(
    py: Python<'py>,
    values: PyReadonlyArray1<'py, u64>,
    bits: u32,
    max_delta: Option<u64>,
) -> PyResult<(U64Array<'py>, U64Array<'py>)> {
    let mut counter =
        bifrost_analytics::signal::CounterDelta::new(bits, max_delta).map_err(spec_error(py))?;
    let values = slice(py, &values, "values")?;
    let (at, deltas): (Vec<u64>, Vec<u64>) = values
        .iter()
        .enumerate()
        .filter_map(|(i, &reading)| counter.add(reading).map(|d| (i as u64, d)))
        .unzip();
    Ok((at.into_pyarray(py), deltas.into_pyarray(py)))
}
