//! `DataPoint`, the value a read returns, as a Rust class: a bulk read builds its whole dict of
//! points here, in one go, rather than one Python object at a time.
//!
//! `bifrost.tags` re-exports it, so `from bifrost import DataPoint` is the same class. `Quality`
//! stays the Python enum of `bifrost.tags`; its members are looked up once and cached.

use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::basic::CompareOp;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyFloat, PyString, PyTuple};

/// `bifrost.tags.Quality` and the members a read uses.
pub(crate) struct Qualities {
    class: Py<PyAny>,
    pub(crate) good: Py<PyAny>,
    pub(crate) uncertain: Py<PyAny>,
    pub(crate) bad: Py<PyAny>,
}

static QUALITIES: PyOnceLock<Qualities> = PyOnceLock::new();

/// The `Quality` enum and its members, imported on first use (`bifrost.tags` imports this module,
/// so it cannot be imported when this module is).
pub(crate) fn qualities(py: Python<'_>) -> PyResult<&'static Qualities> {
    QUALITIES.get_or_try_init(py, || {
        let class = py
            .import(intern!(py, "bifrost.tags"))?
            .getattr(intern!(py, "Quality"))?;
        Ok(Qualities {
            good: class.getattr(intern!(py, "GOOD"))?.unbind(),
            uncertain: class.getattr(intern!(py, "UNCERTAIN"))?.unbind(),
            bad: class.getattr(intern!(py, "BAD"))?.unbind(),
            class: class.unbind(),
        })
    })
}

/// Seconds since the epoch, as `time.time()`.
pub(crate) fn seconds(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// One value read from a device: value, quality, and when it was read (seconds since the epoch).
///
/// Immutable; equal by value, quality and timestamp, and so unhashable. Freed points are kept on
/// a free list for the next batch: a poll makes and drops thousands per cycle, and reusing them
/// made `bifrost.poll`'s points ~1.27x the values per CPU-second of plain allocation (bench (c),
/// A/B of the two builds in one session). (pyo3 makes every class a GC type, so they are tracked
/// by the cycle collector all the same; untracking them would take `unsafe`.)
#[pyclass(frozen, freelist = 8192, module = "bifrost", name = "DataPoint")]
pub(crate) struct DataPoint {
    #[pyo3(get)]
    value: Py<PyAny>,
    #[pyo3(get)]
    quality: Py<PyAny>,
    #[pyo3(get)]
    timestamp: f64,
}

impl DataPoint {
    /// A point of a read: `value` with `quality` (one of the cached members), at `timestamp`.
    pub(crate) fn of(value: Py<PyAny>, quality: Py<PyAny>, timestamp: f64) -> Self {
        Self {
            value,
            quality,
            timestamp,
        }
    }

    /// The value, the quality and the timestamp, for operators that read points.
    pub(crate) fn parts(&self) -> (&Py<PyAny>, &Py<PyAny>, f64) {
        (&self.value, &self.quality, self.timestamp)
    }
}

#[pymethods]
impl DataPoint {
    /// `DataPoint(value, quality=Quality.GOOD, timestamp=None)`; no timestamp means now.
    #[new]
    #[pyo3(
        signature = (value, quality=None, timestamp=None),
        text_signature = "(value, quality=Quality.GOOD, timestamp=None)"
    )]
    fn new(
        py: Python<'_>,
        value: Py<PyAny>,
        quality: Option<Bound<'_, PyAny>>,
        timestamp: Option<f64>,
    ) -> PyResult<Self> {
        let qualities = qualities(py)?;
        let quality = match quality {
            None => qualities.good.clone_ref(py),
            Some(given) if given.is(&qualities.good) || given.is(&qualities.bad) => given.unbind(),
            // Another member as is; anything else through the enum (`"bad"` -> Quality.BAD).
            Some(given) => {
                let class = qualities.class.bind(py);
                if given.is_instance(class)? {
                    given.unbind()
                } else {
                    class.call1((given,))?.unbind()
                }
            }
        };
        let timestamp = timestamp.unwrap_or_else(|| seconds(SystemTime::now()));
        Ok(Self::of(value, quality, timestamp))
    }

    /// Whether the quality is `Quality.GOOD`.
    #[getter]
    fn good(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.quality.is(&qualities(py)?.good))
    }

    /// The timestamp as an aware UTC `datetime`.
    #[getter]
    fn datetime<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        static FROM_TIMESTAMP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        static UTC: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let from_timestamp = FROM_TIMESTAMP.get_or_try_init(py, || {
            py.import(intern!(py, "datetime"))?
                .getattr(intern!(py, "datetime"))?
                .getattr(intern!(py, "fromtimestamp"))
                .map(Bound::unbind)
        })?;
        let utc = UTC.get_or_try_init(py, || {
            py.import(intern!(py, "datetime"))?
                .getattr(intern!(py, "timezone"))?
                .getattr(intern!(py, "utc"))
                .map(Bound::unbind)
        })?;
        from_timestamp
            .bind(py)
            .call1((self.timestamp, utc.bind(py)))
    }

    #[allow(clippy::float_cmp)] // equal timestamps are exactly equal, as in Python
    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let equal = match op {
            CompareOp::Eq | CompareOp::Ne => {
                let Ok(other) = other.cast::<Self>() else {
                    return Ok(py.NotImplemented());
                };
                slf.is(other) || {
                    let (mine, theirs) = (slf.get(), other.get());
                    same(mine.value.bind(py), theirs.value.bind(py))?
                        && same(mine.quality.bind(py), theirs.quality.bind(py))?
                        && mine.timestamp == theirs.timestamp
                }
            }
            _ => return Ok(py.NotImplemented()),
        };
        let answer = matches!(op, CompareOp::Eq) == equal;
        Ok(pyo3::types::PyBool::new(py, answer)
            .to_owned()
            .into_any()
            .unbind())
    }

    /// Equal by value: not hashable (as a Python class defining `__eq__` alone).
    #[classattr]
    const __hash__: Option<Py<PyAny>> = None;

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let value = self.value.bind(py).repr()?;
        let quality = self.quality.bind(py).getattr(intern!(py, "value"))?.str()?;
        // Python's own formatting, so that the text is exactly that of `f"{timestamp:.3f}"`.
        let timestamp = PyFloat::new(py, self.timestamp)
            .call_method1(intern!(py, "__format__"), (intern!(py, ".3f"),))?
            .cast_into::<PyString>()?;
        Ok(format!(
            "DataPoint(value={value}, quality={quality}, timestamp={timestamp})"
        ))
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let point = slf.get();
        let args = PyTuple::new(
            py,
            [
                point.value.bind(py).clone(),
                point.quality.bind(py).clone(),
                PyFloat::new(py, point.timestamp).into_any(),
            ],
        )?;
        PyTuple::new(py, [slf.get_type().into_any(), args.into_any()])
    }
}

/// `a == b` as a tuple compares its items: the same object, or equal.
fn same(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<bool> {
    if a.is(b) {
        return Ok(true);
    }
    a.eq(b)
}

/// Run `make` with the cycle collector paused. A batch is thousands of fresh objects in a tree
/// (dicts of `DataPoint`s of numbers and strings) with no cycle among them: collections run while
/// it is built would only walk it again and again (every pyo3 object is tracked) and find nothing.
/// The collector runs as usual once it is built.
pub(crate) fn without_collector<T>(
    py: Python<'_>,
    make: impl FnOnce() -> PyResult<T>,
) -> PyResult<T> {
    let gc = py.import(intern!(py, "gc"))?;
    let enabled = gc.call_method0(intern!(py, "isenabled"))?.is_truthy()?;
    if enabled {
        gc.call_method0(intern!(py, "disable"))?;
    }
    let result = make();
    if enabled {
        gc.call_method0(intern!(py, "enable"))?;
    }
    result
}
