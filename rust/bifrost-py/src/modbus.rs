//! The Modbus client engine for Python: `ModbusClient`, `NativePlan` and `NativeSubscription`.
//!
//! Every call returns an asyncio awaitable (see `bridge.rs`); the work runs on tokio's threads
//! without the GIL. A whole read plan is one call and comes back in bulk: one list of values
//! (None where the tag's request failed) and one list of errors (one per request) from `execute`,
//! or, from `read_points`, a ready dict of `DataPoint`s by key (built here, one timestamp for the
//! whole read) and the errors of the requests that failed.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use bifrost_modbus::engine::{
    Area, BackoffConfig, Batch, Client, ClientConfig, Error, Parity, PollOptions, ReadPlan,
    ReadRequest, Readings, SerialConfig, Subscription, TagDecoder, Transport, Words, WriteRequest,
};
use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyString, PyTuple};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::bridge::{self, Hub};
use crate::codec::{value_to_py, wire_format};
use crate::errors;
use crate::point::{self, DataPoint};

/// The keys (tag names) of a plan's tags, in plan order: the keys of its dicts of points.
pub(crate) struct KeyList {
    pub(crate) names: Box<[Py<PyString>]>,
    /// `{key: None}` for every key, in order: a dict of every tag starts as a copy of it, which
    /// costs less than growing a new dict key by key.
    template: Py<PyDict>,
}

impl KeyList {
    fn new(py: Python<'_>, names: Vec<Py<PyString>>) -> PyResult<Self> {
        let template = PyDict::new(py);
        for name in &names {
            template.set_item(name.bind(py), py.None())?;
        }
        Ok(Self {
            names: names.into_boxed_slice(),
            template: template.unbind(),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// A dict for `count` of the keys: the template's copy when it is all of them.
    fn dict<'py>(&self, py: Python<'py>, count: usize) -> PyResult<Bound<'py, PyDict>> {
        if count == self.names.len() {
            self.template.bind(py).copy()
        } else {
            Ok(PyDict::new(py))
        }
    }
}

pub(crate) type Keys = Arc<KeyList>;

/// A read plan, checked and built once: the requests to send, how each tag is decoded, and
/// (optionally) each tag's key.
#[pyclass(frozen, module = "bifrost._native")]
pub(crate) struct NativePlan {
    pub(crate) plan: Arc<ReadPlan>,
    pub(crate) keys: Option<Keys>,
}

impl NativePlan {
    pub(crate) fn keys(&self, py: Python<'_>) -> PyResult<Keys> {
        self.keys.clone().ok_or_else(|| {
            errors::config_error(
                py,
                "this plan has no keys: build it with NativePlan(requests, tags, keys)".to_owned(),
            )
        })
    }
}

type PlainRequest = (u8, String, u16, u16);
type PlainTag = (usize, u16, String, String, usize, f64, f64, Option<u8>);

#[pymethods]
impl NativePlan {
    /// `requests`: (unit, area, start, count) with area `coil`, `di`, `ir` or `hr`.
    /// `tags`: (request, offset, dtype, byte order, length, scale, offset, bit), `offset` counting
    /// registers (or bits) from the request's start. `keys`: a name per tag, for `read_points`
    /// and `subscribe_points`.
    #[new]
    #[pyo3(signature = (requests, tags, keys=None))]
    fn new(
        py: Python<'_>,
        requests: Vec<PlainRequest>,
        tags: Vec<PlainTag>,
        keys: Option<Vec<Py<PyString>>>,
    ) -> PyResult<Self> {
        if let Some(keys) = &keys {
            if keys.len() != tags.len() {
                return Err(errors::config_error(
                    py,
                    format!(
                        "{} keys for {} tags: give one per tag",
                        keys.len(),
                        tags.len()
                    ),
                ));
            }
        }
        let requests = requests
            .into_iter()
            .map(|(unit, area, start, count)| {
                Ok(ReadRequest::new(unit, parse_area(py, &area)?, start, count))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let tags = tags
            .into_iter()
            .enumerate()
            .map(
                |(index, (request, offset, dtype, order, length, scale, value_offset, bit))| {
                    let format = wire_format(&dtype, &order, length, scale, value_offset, bit)
                        .map_err(|e| errors::config_error(py, format!("tag {index}: {e}")))?;
                    Ok(TagDecoder::new(request, offset, format))
                },
            )
            .collect::<PyResult<Vec<_>>>()?;
        let plan =
            ReadPlan::new(requests, tags).map_err(|e| errors::config_error(py, e.to_string()))?;
        Ok(Self {
            plan: Arc::new(plan),
            keys: keys
                .map(|keys| KeyList::new(py, keys).map(Arc::new))
                .transpose()?,
        })
    }

    /// How many requests the plan sends.
    #[getter]
    fn request_count(&self) -> usize {
        self.plan.requests().len()
    }

    /// How many tags the plan decodes.
    #[getter]
    fn tag_count(&self) -> usize {
        self.plan.tags().len()
    }

    fn __repr__(&self) -> String {
        format!(
            "NativePlan({} requests, {} tags)",
            self.plan.requests().len(),
            self.plan.tags().len()
        )
    }
}

pub(crate) fn parse_area(py: Python<'_>, area: &str) -> PyResult<Area> {
    area.parse()
        .map_err(|e: bifrost_modbus::engine::PlanError| errors::config_error(py, e.message))
}

/// Serial buses open in this process, by path: the units of one bus share its connection.
struct Bus {
    client: Client,
    serial: SerialConfig,
    users: usize,
}

static BUSES: LazyLock<Mutex<HashMap<String, Bus>>> = LazyLock::new(Mutex::default);

fn buses() -> std::sync::MutexGuard<'static, HashMap<String, Bus>> {
    BUSES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Give back one use of a client; the last user of a bus (or of a TCP client) closes it.
fn release(client: Client, bus: Option<&str>) -> Option<Client> {
    let Some(path) = bus else {
        return Some(client);
    };
    let mut buses = buses();
    let last = buses.get_mut(path).is_some_and(|shared| {
        shared.users = shared.users.saturating_sub(1);
        shared.users == 0
    });
    if last {
        buses.remove(path).map(|shared| shared.client)
    } else {
        None
    }
}

#[derive(Default)]
struct State {
    client: Option<Client>,
    /// Bumped on every connect, so a failed connect only undoes itself.
    generation: u64,
}

/// One Modbus connection: Modbus TCP, RTU over TCP, or RTU on a serial bus (shared by every
/// client of the same path in this process).
#[pyclass(frozen, module = "bifrost._native")]
pub(crate) struct ModbusClient {
    config: ClientConfig,
    /// The serial path, for a client of a shared bus.
    bus: Option<String>,
    state: Arc<Mutex<State>>,
}

impl ModbusClient {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn client(&self, py: Python<'_>) -> PyResult<Client> {
        self.lock().client.clone().ok_or_else(|| {
            errors::connect_error(
                py,
                format!("{}: not connected (call connect() first)", self.device()),
            )
        })
    }

    fn device(&self) -> String {
        self.config
            .name
            .clone()
            .unwrap_or_else(|| self.config.transport.to_string())
    }

    /// A client for this connection: a new one, or the bus's.
    fn acquire(&self, py: Python<'_>) -> PyResult<Client> {
        let handle = bridge::runtime().handle();
        let Transport::Serial(serial) = &self.config.transport else {
            return Ok(Client::spawn_on(self.config.clone(), handle));
        };
        let mut buses = buses();
        if let Some(shared) = buses.get_mut(&serial.path) {
            if shared.serial != *serial {
                return Err(errors::config_error(
                    py,
                    format!(
                        "{} is already open with other line settings ({:?}); every unit of a bus \
                         must use the same baud rate, parity, data and stop bits",
                        serial.path, shared.serial
                    ),
                ));
            }
            shared.users += 1;
            return Ok(shared.client.clone());
        }
        let client = Client::spawn_on(self.config.clone(), handle);
        buses.insert(
            serial.path.clone(),
            Bus {
                client: client.clone(),
                serial: serial.clone(),
                users: 1,
            },
        );
        Ok(client)
    }
}

impl Drop for ModbusClient {
    fn drop(&mut self) {
        let client = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .client
            .take();
        if let Some(client) = client {
            // Dropping the last handle ends the connection's task.
            drop(release(client, self.bus.as_deref()));
        }
    }
}

pub(crate) fn seconds(py: Python<'_>, what: &str, value: f64) -> PyResult<Duration> {
    match Duration::try_from_secs_f64(value) {
        Ok(duration) if value > 0.0 => Ok(duration),
        _ => Err(errors::config_error(
            py,
            format!("{what} must be a positive number of seconds, not {value}"),
        )),
    }
}

pub(crate) fn words_to_py(py: Python<'_>, words: Words) -> PyResult<Py<PyAny>> {
    Ok(match words {
        Words::Registers(registers) => PyList::new(py, registers)?.into_any().unbind(),
        Words::Bits(bits) => PyList::new(py, bits.into_iter().map(|b| PyBool::new(py, b)))?
            .into_any()
            .unbind(),
    })
}

fn done(py: Python<'_>, result: Result<(), Error>) -> PyResult<Py<PyAny>> {
    result
        .map(|()| py.None())
        .map_err(|e| errors::to_py(py, &e))
}

/// `(values, errors)`: a value per tag (None where its request failed), an exception or None per
/// request.
pub(crate) fn readings_to_py(py: Python<'_>, readings: &Readings) -> PyResult<Py<PyAny>> {
    let values = readings
        .values
        .iter()
        .map(|value| match value {
            Some(value) => value_to_py(py, value),
            None => Ok(py.None().into_bound(py)),
        })
        .collect::<PyResult<Vec<_>>>()?;
    let errors = readings
        .errors
        .iter()
        .map(|error| match error {
            Some(error) => errors::to_py(py, error)
                .into_value(py)
                .into_bound(py)
                .into_any(),
            None => py.None().into_bound(py),
        })
        .collect::<Vec<_>>();
    Ok(
        PyTuple::new(py, [PyList::new(py, values)?, PyList::new(py, errors)?])?
            .into_any()
            .unbind(),
    )
}

/// `(tags, values, errors)`: the indices (into the plan's tags) of what changed, and per changed
/// tag its value or None, and its exception or None.
fn batch_to_py(py: Python<'_>, batch: &Batch) -> PyResult<Py<PyAny>> {
    let mut values = Vec::with_capacity(batch.values.len());
    let mut errors = Vec::with_capacity(batch.values.len());
    // The tags of one failed request share one exception object.
    let mut last: Option<(String, Bound<'_, PyAny>)> = None;
    for result in &batch.values {
        match result {
            Ok(value) => {
                values.push(value_to_py(py, value)?);
                errors.push(py.None().into_bound(py));
            }
            Err(error) => {
                let message = error.to_string();
                let exception = match &last {
                    Some((seen, exception)) if *seen == message => exception.clone(),
                    _ => {
                        let exception = errors::to_py(py, error)
                            .into_value(py)
                            .into_bound(py)
                            .into_any();
                        last = Some((message, exception.clone()));
                        exception
                    }
                };
                values.push(py.None().into_bound(py));
                errors.push(exception);
            }
        }
    }
    Ok(PyTuple::new(
        py,
        [
            PyList::new(py, &batch.tags)?,
            PyList::new(py, values)?,
            PyList::new(py, errors)?,
        ],
    )?
    .into_any()
    .unbind())
}

/// `(points, failures)`: a dict of a `DataPoint` per key, in plan order (`DataPoint(None, BAD)`
/// where the tag's request failed), all of one timestamp; and `(request, exception)` per failed
/// request.
pub(crate) fn readings_to_points(
    py: Python<'_>,
    keys: &Keys,
    readings: &Readings,
) -> PyResult<Py<PyAny>> {
    let qualities = point::qualities(py)?;
    let timestamp = point::seconds(readings.timestamp);
    let points = keys.dict(py, readings.values.len())?;
    for (key, value) in keys.names.iter().zip(&readings.values) {
        let point = match value {
            Some(value) => DataPoint::of(
                value_to_py(py, value)?.unbind(),
                qualities.good.clone_ref(py),
                timestamp,
            ),
            None => DataPoint::of(py.None(), qualities.bad.clone_ref(py), timestamp),
        };
        points.set_item(key.bind(py), Bound::new(py, point)?)?;
    }
    let failures = PyList::empty(py);
    for (index, error) in readings.errors.iter().enumerate() {
        if let Some(error) = error {
            failures.append((index, errors::to_py(py, error).into_value(py)))?;
        }
    }
    Ok(PyTuple::new(py, [points.into_any(), failures.into_any()])?
        .into_any()
        .unbind())
}

/// `(points, failures)`: a `DataPoint` per changed key (`DataPoint(None, BAD)` where its read
/// failed), all of the poll's timestamp; and `(key, exception)` per failed tag. `record` keeps,
/// per tag, what was handed out: the point, or the exception of a failed read.
pub(crate) fn batch_to_points(
    py: Python<'_>,
    keys: &Keys,
    batch: &Batch,
    record: &mut [Option<Py<PyAny>>],
) -> PyResult<Py<PyAny>> {
    let qualities = point::qualities(py)?;
    let timestamp = point::seconds(batch.timestamp);
    let points = keys.dict(py, batch.tags.len())?;
    let failures = PyList::empty(py);
    // The tags of one failed request share one exception object.
    let mut last: Option<(String, Bound<'_, PyAny>)> = None;
    for (tag, result) in batch.tags.iter().zip(&batch.values) {
        let key = keys.names[*tag].bind(py);
        let (point, handed) = match result {
            Ok(value) => {
                let point = Bound::new(
                    py,
                    DataPoint::of(
                        value_to_py(py, value)?.unbind(),
                        qualities.good.clone_ref(py),
                        timestamp,
                    ),
                )?
                .into_any();
                let handed = point.clone().unbind();
                (point, handed)
            }
            Err(error) => {
                let message = error.to_string();
                let exception = match &last {
                    Some((seen, exception)) if *seen == message => exception.clone(),
                    _ => {
                        let exception = errors::to_py(py, error)
                            .into_value(py)
                            .into_bound(py)
                            .into_any();
                        last = Some((message, exception.clone()));
                        exception
                    }
                };
                failures.append((key, &exception))?;
                let point = DataPoint::of(py.None(), qualities.bad.clone_ref(py), timestamp);
                (Bound::new(py, point)?.into_any(), exception.unbind())
            }
        };
        points.set_item(key, point)?;
        record[*tag] = Some(handed);
    }
    Ok(PyTuple::new(py, [points.into_any(), failures.into_any()])?
        .into_any()
        .unbind())
}

#[pymethods]
impl ModbusClient {
    /// `transport`: `tcp` or `rtu_over_tcp` (`address` is host:port), or `serial` (`address` is
    /// the port's path; clients of one path share the bus). `name` is how errors name the device.
    #[new]
    #[pyo3(signature = (
        transport, address, *, name=None, timeout=3.0, connect_timeout=None,
        backoff_base=0.1, backoff_max=10.0, baud=19200, parity="N", data_bits=8, stop_bits=1
    ))]
    fn new(
        py: Python<'_>,
        transport: &str,
        address: &str,
        name: Option<String>,
        timeout: f64,
        connect_timeout: Option<f64>,
        backoff_base: f64,
        backoff_max: f64,
        baud: u32,
        parity: &str,
        data_bits: u8,
        stop_bits: u8,
    ) -> PyResult<Self> {
        let (transport, bus) = match transport {
            "tcp" => (
                Transport::Tcp {
                    address: address.to_owned(),
                },
                None,
            ),
            "rtu_over_tcp" => (
                Transport::RtuOverTcp {
                    address: address.to_owned(),
                },
                None,
            ),
            "serial" => {
                let parity = match parity.to_ascii_uppercase().as_str() {
                    "N" | "NONE" => Parity::None,
                    "E" | "EVEN" => Parity::Even,
                    "O" | "ODD" => Parity::Odd,
                    other => {
                        return Err(errors::config_error(
                            py,
                            format!("parity {other:?}: expected N, E or O"),
                        ))
                    }
                };
                if !(5..=8).contains(&data_bits) || !(1..=2).contains(&stop_bits) || baud == 0 {
                    return Err(errors::config_error(
                        py,
                        format!(
                            "serial line {baud} baud, {data_bits} data bits, {stop_bits} stop bits: \
                             expected a positive baud rate, 5..8 data bits and 1 or 2 stop bits"
                        ),
                    ));
                }
                let serial = SerialConfig {
                    path: address.to_owned(),
                    baud_rate: baud,
                    parity,
                    data_bits,
                    stop_bits,
                };
                (Transport::Serial(serial), Some(address.to_owned()))
            }
            other => {
                return Err(errors::config_error(
                    py,
                    format!("transport {other:?}: expected tcp, rtu_over_tcp or serial"),
                ))
            }
        };
        let backoff = BackoffConfig {
            base: seconds(py, "backoff_base", backoff_base)?,
            max: seconds(py, "backoff_max", backoff_max)?,
            ..BackoffConfig::default()
        };
        let mut config = ClientConfig::new(transport)
            .with_timeout(seconds(py, "timeout", timeout)?)
            .with_backoff(backoff);
        config.connect_timeout = connect_timeout
            .map(|t| seconds(py, "connect_timeout", t))
            .transpose()?;
        // A shared bus is named after itself: it serves several devices.
        if bus.is_none() {
            config.name = name;
        }
        Ok(Self {
            config,
            bus,
            state: Arc::default(),
        })
    }

    /// How errors name the device (for a serial bus: the bus).
    #[getter(device)]
    fn device_name(&self) -> String {
        self.device()
    }

    /// Whether the connection is up now.
    #[getter]
    fn connected(&self) -> bool {
        self.lock()
            .client
            .as_ref()
            .is_some_and(|c| c.stats().connected)
    }

    /// Counters of the connection: `connects`, `failed_connects`, `losses`, `requests`, `timeouts`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self
            .lock()
            .client
            .as_ref()
            .map(Client::stats)
            .unwrap_or_default();
        let dict = PyDict::new(py);
        dict.set_item("connected", stats.connected)?;
        dict.set_item("connects", stats.connects)?;
        dict.set_item("failed_connects", stats.failed_connects)?;
        dict.set_item("losses", stats.losses)?;
        dict.set_item("requests", stats.requests)?;
        dict.set_item("timeouts", stats.timeouts)?;
        Ok(dict)
    }

    /// Connect (or join the bus's connection); raises `ConnectError` naming the device.
    fn connect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (client, generation) = {
            let existing = self.lock().client.clone();
            if let Some(client) = existing {
                (client, None)
            } else {
                let client = self.acquire(py)?;
                let mut state = self.lock();
                state.generation += 1;
                state.client = Some(client.clone());
                (client, Some(state.generation))
            }
        };
        let state = Arc::clone(&self.state);
        let bus = self.bus.clone();
        bridge::awaitable(py, async move {
            let result = client.ensure_connected().await;
            if let (Err(_), Some(generation)) = (&result, generation) {
                // Give up this attempt's client: no reconnects behind the caller's back.
                let taken = {
                    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                    if state.generation == generation {
                        state.client.take()
                    } else {
                        None
                    }
                };
                if let Some(last) = taken.and_then(|c| release(c, bus.as_deref())) {
                    last.close().await;
                }
            }
            move |py: Python<'_>| done(py, result)
        })
    }

    /// Disconnect (leave the bus; its last client closes it). Safe to call twice.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let taken = self.lock().client.take();
        let last = taken.and_then(|client| release(client, self.bus.as_deref()));
        bridge::awaitable(py, async move {
            if let Some(client) = last {
                client.close().await;
            }
            |py: Python<'_>| Ok(py.None())
        })
    }

    /// Read `count` items of `area` (`coil`, `di`, `ir`, `hr`) from `start`: a list of ints
    /// (registers) or of bools (coils, discrete inputs).
    fn read<'py>(
        &self,
        py: Python<'py>,
        unit: u8,
        area: &str,
        start: u16,
        count: u16,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = ReadRequest::new(unit, parse_area(py, area)?, start, count);
        let client = self.client(py)?;
        bridge::awaitable(py, async move {
            let result = client.read(request).await;
            move |py: Python<'_>| match result {
                Ok(words) => words_to_py(py, words),
                Err(e) => Err(errors::to_py(py, &e)),
            }
        })
    }

    /// Write holding registers from `start`: FC6 for one word, FC16 for several.
    fn write_registers<'py>(
        &self,
        py: Python<'py>,
        unit: u8,
        start: u16,
        words: Vec<u16>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = if words.len() == 1 {
            WriteRequest::Register {
                unit,
                address: start,
                value: words[0],
            }
        } else {
            WriteRequest::Registers {
                unit,
                address: start,
                values: words,
            }
        };
        self.write(py, request)
    }

    /// Write coils from `start`: FC5 for one, FC15 for several.
    fn write_coils<'py>(
        &self,
        py: Python<'py>,
        unit: u8,
        start: u16,
        bits: Vec<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = if bits.len() == 1 {
            WriteRequest::Coil {
                unit,
                address: start,
                value: bits[0],
            }
        } else {
            WriteRequest::Coils {
                unit,
                address: start,
                values: bits,
            }
        };
        self.write(py, request)
    }

    /// Send a request PDU encoded by the caller; an awaitable of the reply's PDU (bytes). An
    /// exception reply raises `DeviceError`. `write`: queue it with the writes (served first);
    /// reads of identity (17, 43) wait with the reads. As `TcpSession.transact`.
    #[pyo3(signature = (unit, pdu, write=true))]
    fn transact<'py>(
        &self,
        py: Python<'py>,
        unit: u8,
        pdu: Vec<u8>,
        write: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client(py)?;
        bridge::awaitable(py, async move {
            let result = client.transact(unit, pdu, write).await;
            move |py: Python<'_>| match result {
                Ok(reply) => Ok(PyBytes::new(py, &reply).into_any().unbind()),
                Err(e) => Err(errors::to_py(py, &e)),
            }
        })
    }

    /// Run a plan: `(values, errors)`, a value per tag (None where its request failed) and an
    /// exception or None per request.
    fn execute<'py>(&self, py: Python<'py>, plan: &NativePlan) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client(py)?;
        let plan = Arc::clone(&plan.plan);
        bridge::awaitable(py, async move {
            let readings = client.execute(&plan).await;
            move |py: Python<'_>| readings_to_py(py, &readings)
        })
    }

    /// Run a plan whose tags have keys: `(points, failures)`, a dict of a `DataPoint` per key in
    /// plan order (`DataPoint(None, Quality.BAD)` where the tag's request failed), all of one
    /// timestamp, and `(request index, exception)` per failed request.
    fn read_points<'py>(&self, py: Python<'py>, plan: &NativePlan) -> PyResult<Bound<'py, PyAny>> {
        let keys = plan.keys(py)?;
        let client = self.client(py)?;
        let plan = Arc::clone(&plan.plan);
        // The points are made by the awaiting task (see `bridge::deferred`).
        Ok(bridge::deferred(py, async move {
            let readings = client.execute(&plan).await;
            move |py: Python<'_>| readings_to_points(py, &keys, &readings)
        })?
        .into_any())
    }

    /// Poll `plan` every `interval` seconds in Rust; an async iterator of batches of what changed
    /// by more than `deadband` (the first batch holds every tag).
    #[pyo3(signature = (plan, interval, deadband=0.0))]
    fn subscribe(
        &self,
        py: Python<'_>,
        plan: &NativePlan,
        interval: f64,
        deadband: f64,
    ) -> PyResult<NativeSubscription> {
        let subscription = self.poll(py, plan, interval, deadband)?;
        Ok(NativeSubscription {
            stream: Stream::start(subscription, Output::Values),
        })
    }

    /// As `subscribe`, for a plan whose tags have keys: batches of `(points, failures)`, a dict of
    /// a `DataPoint` per changed key (`DataPoint(None, Quality.BAD)` where its read failed) and
    /// `(key, exception)` per failed tag.
    #[pyo3(signature = (plan, interval, deadband=0.0))]
    fn subscribe_points(
        &self,
        py: Python<'_>,
        plan: &NativePlan,
        interval: f64,
        deadband: f64,
    ) -> PyResult<NativePointSubscription> {
        let keys = plan.keys(py)?;
        let subscription = self.poll(py, plan, interval, deadband)?;
        let last = Mutex::new(std::iter::repeat_with(|| None).take(keys.len()).collect());
        Ok(NativePointSubscription {
            stream: Stream::start(subscription, Output::Points { keys, last }),
        })
    }

    fn __repr__(&self) -> String {
        format!("ModbusClient({:?})", self.device())
    }
}

impl ModbusClient {
    fn poll(
        &self,
        py: Python<'_>,
        plan: &NativePlan,
        interval: f64,
        deadband: f64,
    ) -> PyResult<Subscription> {
        let interval = seconds(py, "interval", interval)?;
        if deadband.is_nan() || deadband < 0.0 {
            return Err(errors::config_error(
                py,
                format!("deadband must be 0 or more, not {deadband}"),
            ));
        }
        let client = self.client(py)?;
        let options = PollOptions::new(interval).with_deadband(deadband);
        Ok(client.subscribe((*plan.plan).clone(), options))
    }

    fn write<'py>(&self, py: Python<'py>, request: WriteRequest) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client(py)?;
        bridge::awaitable(py, async move {
            let result = client.write(request).await;
            move |py: Python<'_>| done(py, result)
        })
    }
}

/// What passes between the poll loop and the consumer: at most one batch at a time, so the poll
/// loop's own buffer and back-pressure stay in charge, and a cancelled `__anext__` loses nothing.
#[derive(Default)]
enum Next {
    #[default]
    Empty,
    Batch(Batch),
    Ended,
}

#[derive(Default)]
struct Slot {
    next: Next,
    /// The future of a pending `__anext__`, and the hub of its loop.
    waiter: Option<(Py<PyAny>, Arc<Hub>)>,
}

/// What a batch becomes in Python.
enum Output {
    /// `(tags, values, errors)`.
    Values,
    /// `(points, failures)`, keyed by the plan's keys; and per tag what was handed out last.
    Points {
        keys: Keys,
        last: Mutex<Vec<Option<Py<PyAny>>>>,
    },
}

struct Feed {
    slot: Mutex<Slot>,
    /// The consumer took the batch: the forwarder may fetch the next.
    taken: Notify,
    output: Output,
}

impl Feed {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Take the waiting batch: `None` if there is none yet; `StopAsyncIteration` once ended.
    fn take(&self, py: Python<'_>) -> Option<PyResult<Py<PyAny>>> {
        let batch = {
            let mut slot = self.lock();
            match std::mem::take(&mut slot.next) {
                Next::Empty => return None,
                Next::Ended => {
                    slot.next = Next::Ended; // ended stays ended
                    return Some(Err(PyStopAsyncIteration::new_err(())));
                }
                Next::Batch(batch) => batch,
            }
        };
        self.taken.notify_one();
        Some(match &self.output {
            Output::Values => batch_to_py(py, &batch),
            Output::Points { keys, last } => {
                let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
                batch_to_points(py, keys, &batch, &mut last)
            }
        })
    }

    /// Wake a waiter (on its loop's thread): mark its future done, unless it was cancelled. The
    /// batch stays in the slot until the waiter takes it (and converts it) when it resumes, so a
    /// cancelled wait loses nothing.
    fn deliver(py: Python<'_>, future: &Py<PyAny>) {
        bridge::settle(py, future.bind(py), Ok(py.None()));
    }
}

/// A running poll loop and its feed: what both subscription classes are made of.
struct Stream {
    feed: Arc<Feed>,
    task: AbortHandle,
}

impl Stream {
    fn start(mut subscription: Subscription, output: Output) -> Self {
        let feed = Arc::new(Feed {
            slot: Mutex::default(),
            taken: Notify::new(),
            output,
        });
        let forwarder = Arc::clone(&feed);
        let task = bridge::runtime().spawn(async move {
            loop {
                let next = subscription.next().await;
                let ended = next.is_none();
                let waiter = {
                    let mut slot = forwarder.lock();
                    slot.next = next.map_or(Next::Ended, Next::Batch);
                    slot.waiter.take()
                };
                if let Some((future, hub)) = waiter {
                    hub.run(Box::new(move |py| Feed::deliver(py, &future)));
                }
                if ended {
                    return;
                }
                forwarder.taken.notified().await;
            }
        });
        Self {
            feed,
            task: task.abort_handle(),
        }
    }

    /// The awaitable of the next batch.
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, NextBatch>> {
        Bound::new(
            py,
            NextBatch {
                feed: Arc::clone(&self.feed),
            },
        )
    }

    fn close(&self) {
        self.task.abort();
        let waiter = {
            let mut slot = self.feed.lock();
            slot.next = Next::Ended;
            slot.waiter.take()
        };
        if let Some((future, hub)) = waiter {
            hub.run(Box::new(move |py| Feed::deliver(py, &future)));
        }
    }
}

/// Awaiting the next batch: the batch is taken, and made into Python objects, by the task that
/// awaits it (when it is there at once, or when the task resumes after waiting for it), so the
/// objects of many subscriptions' batches are not all made at once in the hub's drain (see
/// `bridge::deferred`).
#[pyclass(frozen, module = "bifrost._native", name = "_NextBatch")]
pub(crate) struct NextBatch {
    feed: Arc<Feed>,
}

#[pymethods]
impl NextBatch {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The batch through `StopIteration` if it is there; else wait for it: register a future as
    /// the feed's waiter and yield it (marked blocking, as `Future.__await__` does).
    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(result) = self.feed.take(py) {
            return Err(PyStopIteration::new_err((result?,)));
        }
        let (event_loop, hub) = bridge::current(py)?;
        let future = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
        let mut slot = self.feed.lock();
        if matches!(slot.next, Next::Empty) {
            let replaced = slot.waiter.replace((future.clone().unbind(), hub));
            drop(slot);
            drop(replaced); // a cancelled waiter's future, released outside the lock
        } else {
            // The batch came in meanwhile.
            drop(slot);
            let result = self
                .feed
                .take(py)
                .unwrap_or_else(|| Err(PyStopAsyncIteration::new_err(())));
            return Err(PyStopIteration::new_err((result?,)));
        }
        future.setattr(pyo3::intern!(py, "_asyncio_future_blocking"), true)?;
        Ok(future.unbind())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The batches of a subscription: `async for tags, values, errors in subscription`. Each batch
/// holds the indices (into the plan's tags) of what changed, their values (None where failed) and
/// exceptions (None where read).
#[pyclass(frozen, module = "bifrost._native")]
pub(crate) struct NativeSubscription {
    stream: Stream,
}

#[pymethods]
impl NativeSubscription {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, NextBatch>> {
        self.stream.next(py)
    }

    /// End the poll loop. Batches not yet taken are dropped; iteration then ends.
    fn close(&self) {
        self.stream.close();
    }
}

/// The batches of a subscription to a plan with keys: `async for points, failures in
/// subscription`. Each batch holds a `DataPoint` per changed key (`DataPoint(None, Quality.BAD)`
/// where its read failed) and `(key, exception)` per failed tag.
#[pyclass(frozen, module = "bifrost._native")]
pub(crate) struct NativePointSubscription {
    stream: Stream,
}

#[pymethods]
impl NativePointSubscription {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, NextBatch>> {
        self.stream.next(py)
    }

    /// What was handed out last per key, over every batch taken so far: its `DataPoint`, or the
    /// exception of its failed read.
    fn last<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        if let Output::Points { keys, last } = &self.stream.feed.output {
            let last = last.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, record) in keys.names.iter().zip(last.iter()) {
                if let Some(record) = record {
                    dict.set_item(key.bind(py), record.bind(py))?;
                }
            }
        }
        Ok(dict)
    }

    /// End the poll loop. Batches not yet taken are dropped; iteration then ends.
    fn close(&self) {
        self.stream.close();
    }
}
