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
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::codec::{value_from_py, value_to_py};
use crate::errors;
use crate::hub::Hub;
use crate::modbus::{seconds, Keys, NativePlan};
use crate::point::{self, without_collector, DataPoint};
use crate::session::{PlanOutput, Replies, TcpSession};

/// Bounds of the adaptive resting window (see `hub.rs`).
const MIN_WINDOW: Duration = Duration::from_micros(50);
const MAX_WINDOW: Duration = Duration::from_millis(2);

struct Member {
    session: Py<TcpSession>,
    plan: Arc<ReadPlan>,
    keys: Keys,
    name: Py<PyString>,
    filter: ChangeFilter,
    /// The device's columns (its tags as first planned) and, once its plan was split around a
    /// hole, the column of each tag of the plan in use (the tags inside the hole stay NaN).
    width: usize,
    positions: Option<Vec<usize>>,
    /// A plan to use from the next cycle on (`replace`).
    next: Option<(Arc<ReadPlan>, Keys, Vec<usize>)>,
}

struct Fleet {
    members: Vec<Member>,
    interval: Duration,
    columnar: bool,
    cycle: Vec<Option<Replies>>,
    pending: usize,
    started: Instant,
    running: bool,
    /// A batch made before anyone asked for it.
    ready: Option<Py<PyAny>>,
    waiter: Option<Py<PyAny>>,
    timer: Option<Py<PyAny>>,
    closed: bool,
    event_loop: Py<PyAny>,
    hub: Arc<Hub>,
    /// The columns' buffers, kept from cycle to cycle.
    values: Vec<f64>,
    good: Vec<u8>,
    /// The hub's resting window: fixed, or (None) an eighth of the last cycle's time.
    coalesce: Option<Duration>,
}

fn lock(fleet: &Mutex<Fleet>) -> MutexGuard<'_, Fleet> {
    fleet.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Many devices polled in one loop (see the module's notes).
#[pyclass(frozen, module = "bifrost._native")]
pub(crate) struct FleetPoll {
    fleet: Arc<Mutex<Fleet>>,
}

/// The batch of a finished cycle: `(changes, errors)` or `(timestamp, values, good, errors)`,
/// `errors` being `{device: exception}` for the devices whose reads failed this cycle.
fn batch(py: Python<'_>, fleet: &mut Fleet) -> PyResult<Py<PyAny>> {
    let replies: Vec<Replies> = fleet
        .cycle
        .iter_mut()
        .map(|r| r.take().expect("every device answered"))
        .collect();
    let failed = PyDict::new(py);
    for (member, replies) in fleet.members.iter().zip(&replies) {
        if let Some(Err(error)) = replies.replies.iter().find(|r| r.is_err()) {
            failed.set_item(
                member.name.bind(py),
                errors::to_py(py, error).into_value(py),
            )?;
        }
    }
    if fleet.columnar {
        let total: usize = fleet.members.iter().map(|m| m.width).sum();
        // Decoded straight into the columns (no Value per tag), in buffers kept from cycle to
        // cycle.
        let mut values = std::mem::take(&mut fleet.values);
        let mut good = std::mem::take(&mut fleet.good);
        values.clear();
        good.clear();
        values.reserve(total);
        good.reserve(total);
        let mut latest = 0.0_f64;
        for (member, replies) in fleet.members.iter().zip(&replies) {
            latest = latest.max(point::seconds(replies.timestamp));
            match &member.positions {
                None => member
                    .plan
                    .decode_f64_into(&replies.replies, &mut values, &mut good),
                Some(positions) => {
                    let start = values.len();
                    values.resize(start + member.width, f64::NAN);
                    good.resize(start + member.width, 0);
                    let (mut mine, mut ok) = (Vec::new(), Vec::new());
                    member
                        .plan
                        .decode_f64_into(&replies.replies, &mut mine, &mut ok);
                    for ((value, ok), at) in mine.into_iter().zip(ok).zip(positions) {
                        values[start + at] = value;
                        good[start + at] = ok;
                    }
                }
            }
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let out = PyTuple::new(
            py,
            [
                latest.into_pyobject(py)?.into_any(),
                PyBytes::new(py, &bytes).into_any(),
                PyBytes::new(py, &good).into_any(),
                failed.into_any(),
            ],
        )?;
        fleet.values = values;
        fleet.good = good;
        return Ok(out.into_any().unbind());
    }
    let readings: Vec<Readings> = fleet
        .members
        .iter()
        .zip(replies)
        .map(|(member, r)| member.plan.decode(r.replies, r.timestamp))
        .collect();
    let qualities = point::qualities(py)?;
    let changes = PyDict::new(py);
    for (member, readings) in fleet.members.iter_mut().zip(&readings) {
        let timestamp = point::seconds(readings.timestamp);
        let mut device: Option<Bound<'_, PyDict>> = None;
        for tag in 0..member.plan.tags().len() {
            let result = readings.get(&member.plan, tag);
            let column = member.positions.as_ref().map_or(tag, |p| p[tag]);
            if !member.filter.offer(column, result) {
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
            for member in &mut fleet.members {
                // The change filter stays: it counts the device's first columns.
                if let Some((plan, keys, positions)) = member.next.take() {
                    member.plan = plan;
                    member.keys = keys;
                    member.positions = Some(positions);
                }
            }
            fleet.hub.set_cycle_open(true);
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
            let output = PlanOutput::Callback(Box::new(move |py, replies| {
                Self::answered(py, &target, index, replies);
            }));
            if let Err(err) = TcpSession::run_plan(session.bind(py), plan, output) {
                err.write_unraisable(py, None);
            }
        }
    }

    fn answered(py: Python<'_>, me: &Py<Self>, index: usize, replies: Replies) {
        let mut fleet = lock(&me.get().fleet);
        fleet.cycle[index] = Some(replies);
        fleet.pending -= 1;
        if fleet.pending > 0 {
            return;
        }
        fleet.running = false;
        fleet.hub.set_cycle_open(false);
        if fleet.coalesce.is_none() {
            let window = (fleet.started.elapsed() / 8).clamp(MIN_WINDOW, MAX_WINDOW);
            fleet.hub.set_window(window);
        }
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
    /// `coalesce`: the hub's resting window in seconds (0: none); None adapts it to the cycles.
    #[new]
    #[pyo3(signature = (sessions, plans, names, *, interval, deadband=0.0, columnar=false, coalesce=None))]
    fn new(
        py: Python<'_>,
        sessions: Vec<Py<TcpSession>>,
        plans: Vec<PyRef<'_, NativePlan>>,
        names: Vec<Py<PyString>>,
        interval: f64,
        deadband: f64,
        columnar: bool,
        coalesce: Option<f64>,
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
        let coalesce = match coalesce {
            Some(0.0) => Some(Duration::ZERO),
            Some(c) => Some(seconds(py, "coalesce", c)?),
            None => None,
        };
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        let hub = Hub::new(py, &event_loop, sessions.len())?;
        hub.set_window(coalesce.unwrap_or(MIN_WINDOW));
        for (token, session) in sessions.iter().enumerate() {
            TcpSession::attach(session.bind(py), Some((Arc::clone(&hub), token)))?;
        }
        let members = sessions
            .into_iter()
            .zip(plans)
            .zip(names)
            .map(|((session, plan), name)| {
                let keys = plan.keys(py)?;
                Ok(Member {
                    session,
                    filter: ChangeFilter::new(plan.plan.tags().len(), deadband, None),
                    width: plan.plan.tags().len(),
                    positions: None,
                    next: None,
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
                hub,
                values: Vec::new(),
                good: Vec::new(),
                coalesce,
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

    /// Device `index` is read with `plan` from the next cycle on (its first plan split around
    /// holes): `positions[i]` is the column, among the device's first ones, of the plan's tag `i`.
    /// `seen`: (column, value) handed out for the device by the split reads, which the change
    /// filter takes as reported.
    #[pyo3(signature = (index, plan, positions, seen=Vec::new()))]
    fn replace(
        &self,
        py: Python<'_>,
        index: usize,
        plan: PyRef<'_, NativePlan>,
        positions: Vec<usize>,
        seen: Vec<(usize, Bound<'_, PyAny>)>,
    ) -> PyResult<()> {
        let keys = plan.keys(py)?;
        let mut fleet = lock(&self.fleet);
        let Some(member) = fleet.members.get_mut(index) else {
            return Err(errors::config_error(
                py,
                format!("no device {index} in this poll"),
            ));
        };
        if positions.len() != plan.plan.tags().len() || positions.iter().any(|&p| p >= member.width)
        {
            return Err(errors::config_error(
                py,
                format!("one column (below {}) per tag of the plan", member.width),
            ));
        }
        for (column, value) in seen {
            if column < member.width {
                member.filter.remember(column, value_from_py(&value)?);
            }
        }
        member.next = Some((Arc::clone(&plan.plan), keys, positions));
        Ok(())
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
        if !fleet.closed {
            // The sessions read through the loop again (unless another poll took them since).
            for member in &fleet.members {
                let session = member.session.bind(py);
                let mine = session
                    .try_borrow()
                    .is_ok_and(|s| s.attached_to(&fleet.hub));
                if mine {
                    if let Err(err) = TcpSession::attach(session, None) {
                        err.write_unraisable(py, None);
                    }
                }
            }
            fleet.hub.close(py);
        }
        fleet.closed = true;
        if let Some(timer) = fleet.timer.take() {
            let _ = timer.bind(py).call_method0(intern!(py, "cancel"));
        }
        if let Some(waiter) = fleet.waiter.take() {
            settle(py, waiter.bind(py), Ok(py.None()));
        }
    }
}
