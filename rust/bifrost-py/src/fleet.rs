//! `FleetPoll`: many loop-driven sessions (`TcpSession`) polled together, one batch per cycle.
//!
//! A cycle sends every device's read plan at once (each on its own connection, inline on the
//! loop's thread); as the replies come in they are decoded in Rust, and when the last device has
//! answered (or failed) the cycle's batch is made and handed to the one waiting `next()`: only the
//! tags that changed by more than the deadband, as `{device: {key: DataPoint}}`, or, when asked,
//! every value in columns (`(timestamp, float64 bytes, good bytes)`: no object per value). The
//! next cycle starts `interval` after the last one started, once its batch was taken (a consumer
//! slower than the interval slows the poll instead of piling batches up).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bifrost_modbus::engine::{ChangeFilter, ReadPlan, Readings};
use bifrost_modbus::Value;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::codec::value_to_py;
use crate::errors;
use crate::modbus::{seconds, Keys, NativePlan};
use crate::point::{self, without_collector, DataPoint};
use crate::session::{PlanOutput, TcpSession};

struct Member {
    session: Py<TcpSession>,
    plan: Arc<ReadPlan>,
    keys: Keys,
    name: Py<PyString>,
    filter: ChangeFilter,
}

struct Fleet {
    members: Vec<Member>,
    interval: Duration,
    columnar: bool,
    cycle: Vec<Option<Readings>>,
    pending: usize,
    started: Instant,
    running: bool,
    /// A batch made before anyone asked for it.
    ready: Option<Py<PyAny>>,
    waiter: Option<Py<PyAny>>,
    timer: Option<Py<PyAny>>,
    closed: bool,
    event_loop: Py<PyAny>,
}

fn lock(fleet: &Mutex<Fleet>) -> MutexGuard<'_, Fleet> {
    fleet.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Many devices polled in one loop (see the module's notes).
#[pyclass(frozen, module = "bifrost._native")]
pub(crate) struct FleetPoll {
    fleet: Arc<Mutex<Fleet>>,
}

fn as_f64(value: &Value) -> f64 {
    match value {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(_) => f64::NAN,
    }
}

/// The batch of a finished cycle: `(changes, errors)` or `(timestamp, values, good, errors)`,
/// `errors` being `{device: exception}` for the devices whose reads failed this cycle.
fn batch(py: Python<'_>, fleet: &mut Fleet) -> PyResult<Py<PyAny>> {
    let readings: Vec<Readings> = fleet
        .cycle
        .iter_mut()
        .map(|r| r.take().expect("every device answered"))
        .collect();
    let failed = PyDict::new(py);
    for (member, readings) in fleet.members.iter().zip(&readings) {
        if let Some(error) = readings.errors.iter().flatten().next() {
            failed.set_item(
                member.name.bind(py),
                errors::to_py(py, error).into_value(py),
            )?;
        }
    }
    if fleet.columnar {
        let total: usize = readings.iter().map(|r| r.values.len()).sum();
        let mut values = Vec::with_capacity(total * 8);
        let mut good = Vec::with_capacity(total);
        let mut latest = 0.0_f64;
        for readings in &readings {
            latest = latest.max(point::seconds(readings.timestamp));
            for value in &readings.values {
                let (number, ok) = value.as_ref().map_or((f64::NAN, 0), |v| (as_f64(v), 1));
                values.extend_from_slice(&number.to_ne_bytes());
                good.push(ok);
            }
        }
        let out = PyTuple::new(
            py,
            [
                latest.into_pyobject(py)?.into_any(),
                PyBytes::new(py, &values).into_any(),
                PyBytes::new(py, &good).into_any(),
                failed.into_any(),
            ],
        )?;
        return Ok(out.into_any().unbind());
    }
    let qualities = point::qualities(py)?;
    let changes = PyDict::new(py);
    for (member, readings) in fleet.members.iter_mut().zip(&readings) {
        let timestamp = point::seconds(readings.timestamp);
        let mut device: Option<Bound<'_, PyDict>> = None;
        for tag in 0..member.plan.tags().len() {
            let result = readings.get(&member.plan, tag);
            if !member.filter.offer(tag, result) {
                continue;
            }
            let point = match result {
                Ok(value) => DataPoint::of(
                    value_to_py(py, value)?.unbind(),
                    qualities.good.clone_ref(py),
                    timestamp,
                ),
                Err(_) => DataPoint::of(py.None(), qualities.bad.clone_ref(py), timestamp),
            };
            let dict = device.get_or_insert_with(|| PyDict::new(py));
            dict.set_item(member.keys.names[tag].bind(py), Bound::new(py, point)?)?;
        }
        if let Some(device) = device {
            changes.set_item(member.name.bind(py), device)?;
        }
    }
    Ok(PyTuple::new(py, [changes.into_any(), failed.into_any()])?
        .into_any()
        .unbind())
}

fn settle(py: Python<'_>, future: &Bound<'_, PyAny>, value: PyResult<Py<PyAny>>) {
    let _ = match value {
        Ok(value) => future.call_method1(intern!(py, "set_result"), (value,)),
        Err(err) => future.call_method1(intern!(py, "set_exception"), (err.into_value(py),)),
    };
}

impl FleetPoll {
    /// Schedule the next cycle: `interval` after the last one started.
    fn schedule(py: Python<'_>, me: &Py<Self>, fleet: &mut Fleet) {
        if fleet.closed || fleet.running || fleet.timer.is_some() {
            return;
        }
        let delay = (fleet.started + fleet.interval)
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        let armed = me
            .bind(py)
            .getattr(intern!(py, "_cycle"))
            .and_then(|callback| {
                fleet
                    .event_loop
                    .bind(py)
                    .call_method1(intern!(py, "call_later"), (delay, callback))
            });
        match armed {
            Ok(handle) => fleet.timer = Some(handle.unbind()),
            Err(err) => err.write_unraisable(py, None),
        }
    }

    fn start(py: Python<'_>, me: &Py<Self>) {
        let work: Vec<(Py<TcpSession>, Arc<ReadPlan>, usize)> = {
            let mut fleet = lock(&me.get().fleet);
            if fleet.closed || fleet.running {
                return;
            }
            fleet.running = true;
            fleet.started = Instant::now();
            fleet.pending = fleet.members.len();
            fleet.cycle = fleet.members.iter().map(|_| None).collect();
            fleet
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| (m.session.clone_ref(py), Arc::clone(&m.plan), i))
                .collect()
        };
        for (session, plan, index) in work {
            let target = me.clone_ref(py);
            let output = PlanOutput::Callback(Box::new(move |py, readings| {
                Self::answered(py, &target, index, readings);
            }));
            if let Err(err) = TcpSession::run_plan(session.bind(py), plan, output) {
                err.write_unraisable(py, None);
            }
        }
    }

    fn answered(py: Python<'_>, me: &Py<Self>, index: usize, readings: Readings) {
        let mut fleet = lock(&me.get().fleet);
        fleet.cycle[index] = Some(readings);
        fleet.pending -= 1;
        if fleet.pending > 0 {
            return;
        }
        fleet.running = false;
        let made = without_collector(py, || batch(py, &mut fleet));
        let made = match made {
            Ok(made) => made,
            Err(err) => {
                err.write_unraisable(py, None);
                return;
            }
        };
        if let Some(waiter) = fleet.waiter.take() {
            settle(py, waiter.bind(py), Ok(made));
            Self::schedule(py, me, &mut fleet);
        } else {
            fleet.ready = Some(made);
        }
    }
}

#[pymethods]
impl FleetPoll {
    /// `sessions`, `plans` (with keys) and `names`: one per device. Call in the running loop.
    #[new]
    #[pyo3(signature = (sessions, plans, names, *, interval, deadband=0.0, columnar=false))]
    fn new(
        py: Python<'_>,
        sessions: Vec<Py<TcpSession>>,
        plans: Vec<PyRef<'_, NativePlan>>,
        names: Vec<Py<PyString>>,
        interval: f64,
        deadband: f64,
        columnar: bool,
    ) -> PyResult<Self> {
        if sessions.len() != plans.len() || sessions.len() != names.len() {
            return Err(errors::config_error(
                py,
                "one plan and one name per session".to_owned(),
            ));
        }
        if deadband.is_nan() || deadband < 0.0 {
            return Err(errors::config_error(
                py,
                format!("deadband must be 0 or more, not {deadband}"),
            ));
        }
        let interval = seconds(py, "interval", interval)?;
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        let members = sessions
            .into_iter()
            .zip(plans)
            .zip(names)
            .map(|((session, plan), name)| {
                let keys = plan.keys(py)?;
                Ok(Member {
                    session,
                    filter: ChangeFilter::new(plan.plan.tags().len(), deadband, None),
                    plan: Arc::clone(&plan.plan),
                    keys,
                    name,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Self {
            fleet: Arc::new(Mutex::new(Fleet {
                members,
                interval,
                columnar,
                cycle: Vec::new(),
                pending: 0,
                started: Instant::now(),
                running: false,
                ready: None,
                waiter: None,
                timer: None,
                closed: false,
                event_loop: event_loop.unbind(),
            })),
        })
    }

    /// An awaitable of the next cycle's batch, or of None once closed.
    fn next(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let me = slf.clone().unbind();
        let mut fleet = lock(&slf.get().fleet);
        let future = fleet
            .event_loop
            .bind(py)
            .call_method0(intern!(py, "create_future"))?;
        if fleet.closed {
            settle(py, &future, Ok(py.None()));
        } else if let Some(ready) = fleet.ready.take() {
            settle(py, &future, Ok(ready));
            Self::schedule(py, &me, &mut fleet);
        } else {
            let first = !fleet.running && fleet.timer.is_none();
            fleet.waiter = Some(future.clone().unbind());
            if first {
                drop(fleet);
                Self::start(py, &me);
            }
        }
        Ok(future.unbind())
    }

    fn _cycle(slf: &Bound<'_, Self>) {
        lock(&slf.get().fleet).timer = None;
        Self::start(slf.py(), &slf.clone().unbind());
    }

    /// The devices' names, in order.
    #[getter]
    fn names(&self, py: Python<'_>) -> Vec<Py<PyString>> {
        lock(&self.fleet)
            .members
            .iter()
            .map(|m| m.name.clone_ref(py))
            .collect()
    }

    /// Stop polling; a waiting `next()` gets None. Safe to call twice.
    fn close(&self, py: Python<'_>) {
        let mut fleet = lock(&self.fleet);
        fleet.closed = true;
        if let Some(timer) = fleet.timer.take() {
            let _ = timer.bind(py).call_method0(intern!(py, "cancel"));
        }
        if let Some(waiter) = fleet.waiter.take() {
            settle(py, waiter.bind(py), Ok(py.None()));
        }
    }
}
