//! The native OPC UA client engine's bindings (`OpcuaClient`, `OpcuaSubscription`) over
//! `bifrost-opcua`'s client, for `bifrost/opcua/_native_engine.py`.
//!
//! A service call's future is polled on the asyncio loop's thread, not on tokio: its first poll
//! sends the request (open62541's request functions are thread-safe), and the C client's own
//! background thread, receiving the response, wakes it through the loop's hub (`bridge.rs`) —
//! one thread hop per call, and the Python results are made in the hub's drain, where the loop
//! holds the GIL anyway. Only connect and close, which block in C, run on tokio's blocking pool.

// OPC UA's own words (ReadResult, StatusCode, CreateMonitoredItems) fill the docs: not code.
#![allow(clippy::doc_markdown)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bifrost_opcua::{
    Client, ClientCertificate, ClientError, ClientOptions, Datum, Identifier, MonitorItem, NodeRef,
    Plain, PreparedRead, ReadValue, ReadValues, SecurityMode, Subscription, Value,
};
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple};

use crate::bridge::{self, Hub};
use crate::point::{self, DataPoint};

type Convert = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;
type Boxed = Pin<Box<dyn Future<Output = Convert> + Send>>;

/// A future driven by the loop: polled in the call, then again on the loop's thread each time
/// its waker (the C client's thread) queues it on the hub.
struct LoopTask {
    future: Mutex<Option<Boxed>>,
    hub: Arc<Hub>,
    target: Py<PyAny>,
    /// The loop's timer bounding the call, cancelled once it is done.
    timer: Mutex<Option<Py<PyAny>>>,
}

impl Wake for LoopTask {
    fn wake(self: Arc<Self>) {
        let task = Arc::clone(&self);
        self.hub.run(Box::new(move |py| task.poll(py)));
    }
}

impl LoopTask {
    fn poll(self: &Arc<Self>, py: Python<'_>) {
        let waker = Waker::from(Arc::clone(self));
        let mut cx = Context::from_waker(&waker);
        let mut slot = self.future.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(future) = slot.as_mut() else {
            return; // already finished (a late wake-up)
        };
        if let Poll::Ready(convert) = future.as_mut().poll(&mut cx) {
            *slot = None;
            drop(slot);
            let timer = self
                .timer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(timer) = timer {
                let _ = timer.bind(py).call_method0(intern!(py, "cancel"));
            }
            bridge::settle(py, self.target.bind(py), convert(py));
        }
    }
}

/// An asyncio future of `work`, driven on the running loop.
fn on_loop<F>(py: Python<'_>, work: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = Convert> + Send + 'static,
{
    Ok(start(py, work)?.1)
}

fn start<F>(py: Python<'_>, work: F) -> PyResult<(Arc<LoopTask>, Bound<'_, PyAny>)>
where
    F: Future<Output = Convert> + Send + 'static,
{
    let (event_loop, hub) = bridge::current(py)?;
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    let task = Arc::new(LoopTask {
        future: Mutex::new(Some(Box::pin(work))),
        hub,
        target: future.clone().unbind(),
        timer: Mutex::new(None),
    });
    task.poll(py);
    Ok((task, future))
}

/// As [`on_loop`], failing with bifrost's TimeoutError(`message`) unless done within `timeout`
/// seconds: one loop timer, cheaper than an `asyncio.timeout` around the await (a context manager,
/// its coroutines and a timer) on a call made thousands of times a second.
fn on_loop_within<F>(
    py: Python<'_>,
    work: F,
    timeout: f64,
    message: String,
) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = Convert> + Send + 'static,
{
    let (task, future) = start(py, work)?;
    if task
        .future
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_none()
    {
        return Ok(future); // done at once (failed to send)
    }
    let expire = Py::new(
        py,
        Expire {
            task: Arc::clone(&task),
            message,
        },
    )?;
    let (event_loop, _) = bridge::current(py)?;
    let timer = event_loop.call_method1(intern!(py, "call_later"), (timeout, expire))?;
    *task.timer.lock().unwrap_or_else(PoisonError::into_inner) = Some(timer.unbind());
    Ok(future)
}

/// The timer of a bounded call: gives up on the call and fails its future.
#[pyclass(frozen, module = "bifrost._native", name = "_Expire")]
struct Expire {
    task: Arc<LoopTask>,
    message: String,
}

#[pymethods]
impl Expire {
    fn __call__(&self, py: Python<'_>) {
        // Dropping the Rust future lets go of the request: its late answer finds no receiver.
        let dropped = self
            .task
            .future
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.task
            .timer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if dropped.is_some() {
            let error = py_error(py, &ClientError::Timeout(self.message.clone()));
            bridge::settle(py, self.task.target.bind(py), Err(error));
        }
    }
}

struct Imported(PyOnceLock<Py<PyAny>>, &'static str, &'static str);

impl Imported {
    const fn new(module: &'static str, name: &'static str) -> Self {
        Self(PyOnceLock::new(), module, name)
    }

    fn get<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyAny>> {
        self.0.import(py, self.1, self.2)
    }
}

static READ_RESULT: Imported = Imported::new("bifrost.opcua.engine", "ReadResult");
static NODE_ID: Imported = Imported::new("bifrost.opcua.nodes", "NodeId");
static QUALIFIED_NAME: Imported = Imported::new("bifrost.opcua.nodes", "QualifiedName");
static UUID: Imported = Imported::new("uuid", "UUID");
static FROM_TIMESTAMP: Imported = Imported::new("bifrost.opcua._native_engine", "utc_datetime");
static DECODE: Imported = Imported::new("bifrost.opcua.variants", "decode");
static CONNECT_ERROR: Imported = Imported::new("bifrost.errors", "ConnectError");
static TIMEOUT_ERROR: Imported = Imported::new("bifrost.errors", "TimeoutError");
static DEVICE_ERROR: Imported = Imported::new("bifrost.errors", "DeviceError");
static PROTOCOL_ERROR: Imported = Imported::new("bifrost.errors", "ProtocolError");

fn py_error(py: Python<'_>, error: &ClientError) -> PyErr {
    let made = match error {
        ClientError::Connect(m) => CONNECT_ERROR.get(py).and_then(|c| c.call1((m,))),
        ClientError::Timeout(m) => TIMEOUT_ERROR.get(py).and_then(|c| c.call1((m,))),
        ClientError::Protocol(m) => PROTOCOL_ERROR.get(py).and_then(|c| c.call1((m,))),
        ClientError::Status { message, code } => {
            DEVICE_ERROR.get(py).and_then(|c| c.call1((message, *code)))
        }
    };
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

fn node_ref(node: &Bound<'_, PyAny>) -> PyResult<NodeRef> {
    let (namespace, identifier): (u16, Bound<'_, PyAny>) = node.extract()?;
    // Strings first, by type: a failed extraction makes a Python exception, which costs more
    // than the whole conversion of a node.
    let identifier = if let Ok(s) = identifier.cast::<PyString>() {
        Identifier::String(s.to_str()?.to_owned())
    } else if let Ok(n) = identifier.extract::<u32>() {
        Identifier::Numeric(n)
    } else if let Ok(b) = identifier.cast::<PyBytes>() {
        Identifier::Opaque(b.as_bytes().to_vec())
    } else if let Ok(bytes) = identifier.getattr(intern!(node.py(), "bytes")) {
        let raw: Vec<u8> = bytes.extract()?;
        let guid: [u8; 16] = raw
            .try_into()
            .map_err(|_| PyValueError::new_err("a Guid identifier has 16 bytes"))?;
        Identifier::Guid(guid)
    } else {
        return Err(PyValueError::new_err(format!(
            "a NodeId identifier is an int, str, bytes or uuid.UUID, not {}",
            identifier.get_type().name()?
        )));
    };
    Ok(NodeRef {
        namespace,
        identifier,
    })
}

fn py_node<'py>(py: Python<'py>, node: &NodeRef) -> PyResult<Bound<'py, PyAny>> {
    let identifier = match &node.identifier {
        Identifier::Numeric(n) => n.into_pyobject(py)?.into_any(),
        Identifier::String(s) => s.into_pyobject(py)?.into_any(),
        Identifier::Opaque(b) => PyBytes::new(py, b).into_any(),
        Identifier::Guid(g) => UUID.get(py)?.call(
            (),
            Some(&[("bytes", PyBytes::new(py, g))].into_py_dict(py)?),
        )?,
    };
    NODE_ID.get(py)?.call1((identifier, node.namespace))
}

use pyo3::types::IntoPyDict as _;

fn py_datum<'py>(py: Python<'py>, datum: &Datum) -> PyResult<Bound<'py, PyAny>> {
    Ok(match datum {
        Datum::Null => py.None().into_bound(py),
        Datum::Boolean(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Datum::Int(i) => i.into_pyobject(py)?.into_any(),
        Datum::UInt(u) => u.into_pyobject(py)?.into_any(),
        Datum::Float(f) => f.into_pyobject(py)?.into_any(),
        Datum::String(s) | Datum::Text(s) => s.into_pyobject(py)?.into_any(),
        Datum::DateTime(seconds) => FROM_TIMESTAMP.get(py)?.call1((*seconds,))?,
        Datum::Guid(g) => UUID.get(py)?.call(
            (),
            Some(&[("bytes", PyBytes::new(py, g))].into_py_dict(py)?),
        )?,
        Datum::Bytes(b) => PyBytes::new(py, b).into_any(),
        Datum::Node(node) => py_node(py, node)?,
        Datum::QualifiedName(ns, name) => QUALIFIED_NAME.get(py)?.call1((name, *ns))?,
        Datum::StatusCode(code) => code.into_pyobject(py)?.into_any(),
        Datum::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(py_datum(py, item)?)?;
            }
            list.into_any()
        }
        // A structure or another type Bifrost does not unpack: a value `variants.decode` refuses
        // as not scalar, as it refuses asyncua's objects for them.
        Datum::Unsupported(type_id) => PyTuple::new(
            py,
            [
                intern!(py, "unsupported").clone().into_any(),
                type_id.into_pyobject(py)?.into_any(),
            ],
        )?
        .into_any(),
    })
}

fn py_result<'py>(py: Python<'py>, value: &ReadValue) -> PyResult<Bound<'py, PyAny>> {
    READ_RESULT.get(py)?.call1((
        py_datum(py, &value.value)?,
        value.variant,
        value.status,
        value.source_timestamp,
        value.server_timestamp,
    ))
}

/// The value of a write, typed by its Variant type id.
fn write_value(value: &Bound<'_, PyAny>, variant: u32) -> PyResult<Value> {
    Ok(match variant {
        1 => Value::Boolean(value.extract()?),
        2 => Value::SByte(value.extract()?),
        3 => Value::Byte(value.extract()?),
        4 => Value::Int16(value.extract()?),
        5 => Value::UInt16(value.extract()?),
        6 => Value::Int32(value.extract()?),
        7 => Value::UInt32(value.extract()?),
        8 => Value::Int64(value.extract()?),
        9 => Value::UInt64(value.extract()?),
        10 => Value::Float(value.extract::<f64>()? as f32),
        11 => Value::Double(value.extract()?),
        12 => Value::String(value.extract()?),
        other => {
            return Err(PyValueError::new_err(format!(
                "writing a Variant of type {other} is not supported"
            )))
        }
    })
}

/// A read_many planned once for a tag list: the Read request, and per point of the result its key,
/// the index of the node it reads and its scale and offset.
#[pyclass(frozen, module = "bifrost._native")]
pub(crate) struct OpcuaReadPlan {
    read: PreparedRead,
    points: Vec<(Py<PyString>, usize, Scaling)>,
}

/// A tag's (scale, offset), `None` for a value as read.
type Scaling = Option<(f64, f64)>;

/// What a point's value is, from a read value: `decode` of `bifrost.opcua.variants` as the
/// connection applies it (numbers scaled, other types by Python's own rules), built here in one
/// pass. `None` for what a DataPoint cannot carry (arrays, structures).
fn point_value<'py>(
    py: Python<'py>,
    values: &ReadValues,
    index: usize,
    value: Option<Plain<'_>>,
    scaling: Scaling,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let scaled = |x: f64| -> Bound<'py, PyAny> {
        let (scale, offset) = scaling.unwrap_or((1.0, 0.0));
        PyFloat::new(py, x * scale + offset).into_any()
    };
    Ok(Some(match value {
        Some(Plain::Null) => py.None().into_bound(py),
        Some(Plain::Boolean(b)) => PyBool::new(py, b).to_owned().into_any(),
        Some(Plain::Int(i)) if scaling.is_some() => scaled(i as f64),
        Some(Plain::Int(i)) => i.into_pyobject(py)?.into_any(),
        Some(Plain::UInt(u)) if scaling.is_some() => scaled(u as f64),
        Some(Plain::UInt(u)) => u.into_pyobject(py)?.into_any(),
        Some(Plain::Float(f)) if scaling.is_some() => scaled(f),
        Some(Plain::Float(f)) => PyFloat::new(py, f).into_any(),
        Some(Plain::String(s)) => PyString::new(py, s).into_any(),
        None => {
            let whole = values.value(index);
            if matches!(whole.value, Datum::Array(_) | Datum::Unsupported(_)) {
                return Ok(None);
            }
            // DateTime, Guid, NodeId, QualifiedName, ByteString: their string forms, as Python
            // makes them (no number among these, so no scaling).
            DECODE.get(py)?.call1((py_datum(py, &whole.value)?,))?
        }
    }))
}

fn read_points<'py>(
    py: Python<'py>,
    plan: &OpcuaReadPlan,
    values: &ReadValues,
) -> PyResult<Bound<'py, PyDict>> {
    let qualities = point::qualities(py)?;
    let out = PyDict::new(py);
    let mut now: Option<f64> = None;
    let mut now = || *now.get_or_insert_with(|| point::seconds(std::time::SystemTime::now()));
    for (key, index, scaling) in &plan.points {
        let read = values.plain(*index);
        let point = match point_value(py, values, *index, read.value, *scaling)? {
            Some(value) => {
                let quality = match (read.status >> 30) & 0b11 {
                    0 => &qualities.good,
                    1 => &qualities.uncertain,
                    _ => &qualities.bad,
                };
                // `source or server or now`, as Python's `or` reads them: 0.0 is no timestamp.
                let stamp = read
                    .source_timestamp
                    .filter(|t| *t != 0.0)
                    .or(read.server_timestamp.filter(|t| *t != 0.0))
                    .unwrap_or_else(&mut now);
                DataPoint::of(value.unbind(), quality.clone_ref(py), stamp)
            }
            None => DataPoint::of(py.None(), qualities.bad.clone_ref(py), now()),
        };
        out.set_item(key.bind(py), Py::new(py, point)?)?;
    }
    Ok(out)
}

/// One OPC UA session (open62541's client, its own background thread).
#[pyclass(frozen, module = "bifrost._native")]
pub(crate) struct OpcuaClient {
    client: Mutex<Option<Arc<Client>>>,
    url: String,
}

impl OpcuaClient {
    fn live(&self, py: Python<'_>) -> PyResult<Arc<Client>> {
        self.client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                py_error(
                    py,
                    &ClientError::Connect(format!("{}: the session is closed", self.url)),
                )
            })
    }
}

#[pymethods]
impl OpcuaClient {
    /// Open a session; an awaitable of the client (ConnectError naming why not).
    #[staticmethod]
    #[pyo3(signature = (url, *, timeout, policy, mode, certificate=None, private_key=None, application_uri=None, user=None, password=None))]
    fn connect<'py>(
        py: Python<'py>,
        url: String,
        timeout: f64,
        policy: String,
        mode: &str,
        certificate: Option<Vec<u8>>,
        private_key: Option<Vec<u8>>,
        application_uri: Option<String>,
        user: Option<String>,
        password: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mode = SecurityMode::from_name(mode)
            .ok_or_else(|| PyValueError::new_err(format!("unknown security mode {mode:?}")))?;
        let certificate = match (certificate, private_key) {
            (Some(certificate), Some(private_key)) => Some(ClientCertificate {
                certificate,
                private_key,
                application_uri: application_uri.unwrap_or_default(),
            }),
            _ => None,
        };
        let options = ClientOptions {
            url: url.clone(),
            timeout: Duration::try_from_secs_f64(timeout)
                .map_err(|_| PyValueError::new_err(format!("bad timeout {timeout}")))?,
            policy,
            mode,
            certificate,
            user: user.map(|u| (u, password.unwrap_or_default())),
        };
        bridge::awaitable(py, async move {
            let joined = tokio::task::spawn_blocking(move || Client::connect(&options)).await;
            move |py: Python<'_>| -> PyResult<Py<PyAny>> {
                let client = joined.map_err(|e| {
                    py_error(py, &ClientError::Connect(format!("{url}: connect: {e}")))
                })?;
                let client = client.map_err(|e| py_error(py, &e))?;
                Ok(Py::new(
                    py,
                    OpcuaClient {
                        client: Mutex::new(Some(Arc::new(client))),
                        url,
                    },
                )?
                .into_any())
            }
        })
    }

    /// Whether the channel is open and the session activated.
    fn healthy(&self, py: Python<'_>) -> bool {
        let Ok(client) = self.live(py) else {
            return false;
        };
        py.detach(|| client.healthy())
    }

    /// One Read of `attribute` of every node ((namespace, identifier) pairs): ReadResults.
    fn read<'py>(
        &self,
        py: Python<'py>,
        nodes: Vec<Bound<'py, PyAny>>,
        attribute: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.live(py)?;
        let nodes = nodes.iter().map(node_ref).collect::<PyResult<Vec<_>>>()?;
        let call = client
            .read(&nodes, attribute)
            .map_err(|e| py_error(py, &e))?;
        on_loop(py, async move {
            let outcome = call.await;
            Box::new(move |py: Python<'_>| -> PyResult<Py<PyAny>> {
                let values = outcome.map_err(|e| py_error(py, &e))?;
                let list = PyList::empty(py);
                for value in &values {
                    list.append(py_result(py, value)?)?;
                }
                Ok(list.into_any().unbind())
            }) as Convert
        })
    }

    /// A read_many's plan: the Read of `nodes` built once, and per point (in the order of the
    /// result) its key, the index of its node in `nodes`, and its (scale, offset) or None.
    #[allow(clippy::unused_self)] // a method: plans belong to a session's reads
    fn prepare_read(
        &self,
        py: Python<'_>,
        nodes: Vec<Bound<'_, PyAny>>,
        attribute: u32,
        points: Vec<(Bound<'_, PyString>, usize, Scaling)>,
    ) -> PyResult<OpcuaReadPlan> {
        let nodes = nodes.iter().map(node_ref).collect::<PyResult<Vec<_>>>()?;
        if let Some((key, index, _)) = points.iter().find(|(_, index, _)| *index >= nodes.len()) {
            return Err(PyValueError::new_err(format!(
                "point {key} reads node {index} of {}",
                nodes.len()
            )));
        }
        let read = PreparedRead::new(&nodes, attribute).map_err(|e| py_error(py, &e))?;
        Ok(OpcuaReadPlan {
            read,
            points: points
                .into_iter()
                .map(|(key, index, scaling)| (key.unbind(), index, scaling))
                .collect(),
        })
    }

    /// Send a plan's Read: a dict of DataPoints by key, in the plan's order (quality from each
    /// StatusCode, the source timestamp, else the server's, else now); TimeoutError(`message`)
    /// when no answer came within `timeout` seconds.
    fn read_points<'py>(
        &self,
        py: Python<'py>,
        plan: Py<OpcuaReadPlan>,
        timeout: f64,
        message: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.live(py)?;
        let call = client
            .read_prepared(&plan.get().read)
            .map_err(|e| py_error(py, &e))?;
        let work = async move {
            let outcome = call.await;
            Box::new(move |py: Python<'_>| -> PyResult<Py<PyAny>> {
                let values = outcome.map_err(|e| py_error(py, &e))?;
                Ok(read_points(py, plan.get(), &values)?.into_any().unbind())
            }) as Convert
        };
        on_loop_within(py, work, timeout, message)
    }

    /// One Write of (node, value, variant type id) items: the StatusCode of each.
    fn write<'py>(
        &self,
        py: Python<'py>,
        items: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>, u32)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.live(py)?;
        let items = items
            .iter()
            .map(|(node, value, variant)| Ok((node_ref(node)?, write_value(value, *variant)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let call = client.write(&items).map_err(|e| py_error(py, &e))?;
        on_loop(py, async move {
            let outcome = call.await;
            Box::new(move |py: Python<'_>| -> PyResult<Py<PyAny>> {
                let statuses = outcome.map_err(|e| py_error(py, &e))?;
                Ok(statuses.into_pyobject(py)?.into_any().unbind())
            }) as Convert
        })
    }

    /// Browse: (node, (namespace, browse name), display name, node class) per child.
    fn browse<'py>(&self, py: Python<'py>, node: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.live(py)?;
        let node = node_ref(&node)?;
        let call = client.browse(&node).map_err(|e| py_error(py, &e))?;
        on_loop(py, async move {
            let outcome = call.await;
            Box::new(move |py: Python<'_>| -> PyResult<Py<PyAny>> {
                let references = outcome.map_err(|e| py_error(py, &e))?;
                let list = PyList::empty(py);
                for r in &references {
                    list.append((
                        py_node(py, &r.node)?,
                        (r.browse_name.0, &r.browse_name.1),
                        &r.display_name,
                        r.node_class,
                    ))?;
                }
                Ok(list.into_any().unbind())
            }) as Convert
        })
    }

    /// A subscription of (client handle, node, deadband) items; an awaitable OpcuaSubscription.
    fn subscribe<'py>(
        &self,
        py: Python<'py>,
        interval: f64,
        items: Vec<(u32, Bound<'py, PyAny>, f64)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.live(py)?;
        let items = items
            .iter()
            .map(|(handle, node, deadband)| {
                Ok(MonitorItem {
                    handle: *handle,
                    node: node_ref(node)?,
                    deadband: *deadband,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let interval = Duration::try_from_secs_f64(interval)
            .map_err(|_| PyValueError::new_err(format!("bad interval {interval}")))?;
        let call = client
            .subscribe(interval, items)
            .map_err(|e| py_error(py, &e))?;
        let owner = Arc::clone(&client);
        on_loop(py, async move {
            let outcome = call.await;
            Box::new(move |py: Python<'_>| -> PyResult<Py<PyAny>> {
                let subscription = outcome.map_err(|e| py_error(py, &e))?;
                Ok(Py::new(
                    py,
                    OpcuaSubscription {
                        subscription,
                        client: Arc::downgrade(&owner),
                    },
                )?
                .into_any())
            }) as Convert
        })
    }

    /// Close the session; safe to call twice. An awaitable of None.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        bridge::awaitable(py, async move {
            if let Some(client) = client {
                // A method call may hold the client for an instant; then the last holder drops it.
                if let Ok(owned) = Arc::try_unwrap(client) {
                    let _ = tokio::task::spawn_blocking(move || owned.disconnect_blocking()).await;
                }
            }
            |py: Python<'_>| -> PyResult<Py<PyAny>> { Ok(py.None()) }
        })
    }
}

/// A live subscription of an OpcuaClient.
#[pyclass(frozen, module = "bifrost._native")]
pub(crate) struct OpcuaSubscription {
    subscription: Subscription,
    /// Weak: the OpcuaClient owns the session, and closing it must not wait for this.
    client: std::sync::Weak<Client>,
}

#[pymethods]
impl OpcuaSubscription {
    /// Per item, the StatusCode of its CreateMonitoredItems result.
    #[getter]
    fn statuses(&self) -> Vec<u32> {
        self.subscription.statuses.clone()
    }

    /// The revised publishing interval, in seconds.
    #[getter]
    fn interval(&self) -> f64 {
        self.subscription.interval.as_secs_f64()
    }

    /// The revised keep-alive count.
    #[getter]
    fn keepalive(&self) -> u32 {
        self.subscription.keepalive
    }

    /// An awaitable done once a notification is queued; it takes none.
    fn ready<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let ready = self.subscription.ready();
        on_loop(py, async move {
            ready.await;
            Box::new(|py: Python<'_>| -> PyResult<Py<PyAny>> { Ok(py.None()) }) as Convert
        })
    }

    /// The queued notifications as (client handle, ReadResult), in order; whole messages (it
    /// waits for a publish response being delivered).
    fn take<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        if let Some(client) = self.client.upgrade() {
            py.detach(|| {
                let _ = client.healthy();
            });
        }
        let list = PyList::empty(py);
        for (handle, value) in self.subscription.take() {
            list.append((handle, py_result(py, &value)?))?;
        }
        Ok(list)
    }

    /// Whether the channel is open and the session activated.
    fn healthy(&self, py: Python<'_>) -> bool {
        self.client
            .upgrade()
            .is_some_and(|client| py.detach(|| client.healthy()))
    }

    /// Delete the subscription on the server (without waiting); safe to call twice.
    fn close(&self) {
        self.subscription.close();
    }
}
