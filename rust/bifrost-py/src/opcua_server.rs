//! The simulator's OPC UA server for Python: `OpcuaServer`, plus status-code names and
//! certificate generation.
//!
//! The server runs on its own thread (in `bifrost-opcua`); these calls only push values into its
//! shared state or drain what it logged, so none of them waits for a client. The blocking ones
//! (start, stop) release the GIL.

use bifrost_opcua::{
    SecurityPolicy, Server, ServerConfig, StatusFault, User, Value, ValueType, Variable,
};
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString};

use crate::errors;

/// A variable's type: its scalar type, and whether it is a one-dimensional array of them (a type
/// name ending in `[]`: `Double[]`).
type VariableType = (ValueType, bool);

fn variable_type(name: &str) -> Option<VariableType> {
    match name.strip_suffix("[]") {
        Some(scalar) => ValueType::from_name(scalar).map(|t| (t, true)),
        None => ValueType::from_name(name).map(|t| (t, false)),
    }
}

fn py_to_variable_value(
    obj: &Bound<'_, PyAny>,
    (value_type, array): VariableType,
) -> PyResult<Value> {
    if !array {
        return py_to_value(obj, value_type);
    }
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(format!(
            "{} is not a list of {value_type} values",
            obj.repr()?
        )));
    }
    let items = obj
        .try_iter()
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "{} is not a list of {value_type} values",
                obj.repr().map_or_else(|_| "?".into(), |r| r.to_string())
            ))
        })?
        .map(|item| py_to_value(&item?, value_type))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Value::Array(value_type, items))
}

fn py_to_value(obj: &Bound<'_, PyAny>, value_type: ValueType) -> PyResult<Value> {
    let wrong = || {
        PyTypeError::new_err(format!(
            "{} is not a {value_type} value",
            obj.repr().map_or_else(|_| "?".into(), |r| r.to_string())
        ))
    };
    Ok(match value_type {
        ValueType::Boolean => Value::Boolean(obj.extract::<bool>().map_err(|_| wrong())?),
        ValueType::SByte => Value::SByte(int(obj)?),
        ValueType::Byte => Value::Byte(int(obj)?),
        ValueType::Int16 => Value::Int16(int(obj)?),
        ValueType::UInt16 => Value::UInt16(int(obj)?),
        ValueType::Int32 => Value::Int32(int(obj)?),
        ValueType::UInt32 => Value::UInt32(int(obj)?),
        ValueType::Int64 => Value::Int64(int(obj)?),
        ValueType::UInt64 => Value::UInt64(int(obj)?),
        ValueType::Float => Value::Float(obj.extract::<f64>().map_err(|_| wrong())? as f32),
        ValueType::Double => Value::Double(obj.extract::<f64>().map_err(|_| wrong())?),
        ValueType::String => Value::String(obj.extract::<String>().map_err(|_| wrong())?),
    })
}

/// An integer of the variable's width; a bool is 0/1, a float must be integral.
fn int<'py, T>(obj: &Bound<'py, PyAny>) -> PyResult<T>
where
    T: for<'a> FromPyObject<'a, 'py> + TryFrom<i128>,
{
    let wide: i128 = if obj.is_instance_of::<PyBool>() {
        i128::from(obj.extract::<bool>()?)
    } else if obj.is_instance_of::<PyInt>() {
        obj.extract::<i128>()?
    } else if obj.is_instance_of::<PyFloat>() {
        let f = obj.extract::<f64>()?;
        if f.fract() != 0.0 || !f.is_finite() {
            return Err(PyValueError::new_err(format!("{f} is not an integer")));
        }
        f as i128
    } else {
        return Err(PyTypeError::new_err(format!(
            "{} is not an integer",
            obj.repr()?
        )));
    };
    T::try_from(wide).map_err(|_| PyValueError::new_err(format!("{wide} is out of range")))
}

fn value_to_py(py: Python<'_>, value: &Value) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Value::Boolean(v) => PyBool::new(py, *v).to_owned().into_any().unbind(),
        Value::SByte(v) => v.into_pyobject(py)?.into_any().unbind(),
        Value::Byte(v) => v.into_pyobject(py)?.into_any().unbind(),
        Value::Int16(v) => v.into_pyobject(py)?.into_any().unbind(),
        Value::UInt16(v) => v.into_pyobject(py)?.into_any().unbind(),
        Value::Int32(v) => v.into_pyobject(py)?.into_any().unbind(),
        Value::UInt32(v) => v.into_pyobject(py)?.into_any().unbind(),
        Value::Int64(v) => v.into_pyobject(py)?.into_any().unbind(),
        Value::UInt64(v) => v.into_pyobject(py)?.into_any().unbind(),
        Value::Float(v) => f64::from(*v).into_pyobject(py)?.into_any().unbind(),
        Value::Double(v) => v.into_pyobject(py)?.into_any().unbind(),
        Value::String(v) => PyString::new(py, v).into_any().unbind(),
        Value::Array(_, items) => PyList::new(
            py,
            items
                .iter()
                .map(|item| value_to_py(py, item))
                .collect::<PyResult<Vec<_>>>()?,
        )?
        .into_any()
        .unbind(),
    })
}

/// (node id, browse path, type name, writable, unit, initial value)
type PlainVariable<'py> = (
    String,
    Vec<String>,
    String,
    bool,
    Option<String>,
    Bound<'py, PyAny>,
);
/// (name, password, can write)
type PlainUser = (String, String, bool);
/// (variable index, value, user or None)
type PlainWrite = (usize, Py<PyAny>, Option<String>);
/// (time, service, request id, channel id, session or None, [(variable index, status code)])
type PlainEvent = (f64, String, u32, u32, Option<String>, Vec<(usize, u32)>);

/// An OPC UA server (C open62541) serving variables whose values are pushed in from Python.
#[pyclass(frozen, module = "bifrost._native")]
pub(crate) struct OpcuaServer {
    server: std::sync::Mutex<Server>,
    types: Vec<VariableType>,
    #[pyo3(get)]
    port: u16,
    #[pyo3(get)]
    url: String,
    #[pyo3(get)]
    namespaces: Vec<String>,
    #[pyo3(get)]
    node_ids: Vec<String>,
}

impl OpcuaServer {
    fn with<R>(&self, f: impl FnOnce(&mut Server) -> R) -> R {
        let mut guard = self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

#[pymethods]
impl OpcuaServer {
    /// Build the address space and start serving (returns once the socket listens).
    #[new]
    #[pyo3(signature = (*, host, port, path, device, variables, namespaces, application_uri,
        application_name="Bifrost simulator".to_owned(), security=vec!["None".to_owned()],
        certificate=None, private_key=None, users=Vec::new(), advertised_url=None))]
    fn new(
        py: Python<'_>,
        host: String,
        port: u16,
        path: String,
        device: String,
        variables: Vec<PlainVariable<'_>>,
        namespaces: Vec<String>,
        application_uri: String,
        application_name: String,
        security: Vec<String>,
        certificate: Option<Vec<u8>>,
        private_key: Option<Vec<u8>>,
        users: Vec<PlainUser>,
        advertised_url: Option<String>,
    ) -> PyResult<Self> {
        let security = security
            .iter()
            .map(|name| {
                SecurityPolicy::from_name(name).ok_or_else(|| {
                    errors::config_error(
                        py,
                        format!("security policy {name:?}: use None or Basic256Sha256"),
                    )
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let mut vars = Vec::with_capacity(variables.len());
        let mut types = Vec::with_capacity(variables.len());
        for (node_id, path, type_name, writable, unit, initial) in variables {
            let kind = variable_type(&type_name).ok_or_else(|| {
                errors::config_error(py, format!("{node_id}: unknown OPC UA type {type_name:?}"))
            })?;
            let initial = py_to_variable_value(&initial, kind)
                .map_err(|e| errors::config_error(py, format!("{node_id}: initial value: {e}")))?;
            let value_type = kind.0;
            types.push(kind);
            vars.push(Variable {
                node_id,
                path,
                value_type,
                writable,
                unit,
                initial,
            });
        }
        let certificate = match (certificate, private_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(errors::config_error(
                    py,
                    "give both certificate and private_key, or neither".into(),
                ))
            }
        };
        let config = ServerConfig {
            host,
            port,
            path,
            advertised_url,
            application_uri,
            application_name,
            namespaces,
            device,
            security,
            certificate,
            users: users
                .into_iter()
                .map(|(name, password, can_write)| User {
                    name,
                    password,
                    can_write,
                })
                .collect(),
            variables: vars,
        };
        let server = py
            .detach(|| Server::start(config))
            .map_err(|e| PyOSError::new_err(format!("OPC UA server: {e}")))?;
        Ok(Self {
            port: server.port(),
            url: server.url().to_owned(),
            namespaces: server.namespaces().to_vec(),
            node_ids: server.node_ids().to_vec(),
            types,
            server: std::sync::Mutex::new(server),
        })
    }

    /// Set values: (index, value, status code, source time in Unix seconds). Returns the indexes
    /// whose value did not fit its variable's type (those keep their old value).
    fn set_values(&self, batch: Vec<(usize, Bound<'_, PyAny>, u32, f64)>) -> Vec<usize> {
        let mut rejected = Vec::new();
        let mut values = Vec::with_capacity(batch.len());
        for (index, obj, status, time) in batch {
            match self
                .types
                .get(index)
                .map(|t| py_to_variable_value(&obj, *t))
            {
                Some(Ok(v)) => values.push((index, v, status, bifrost_opcua::ua_time(time))),
                _ => rejected.push(index),
            }
        }
        rejected.extend(self.with(|s| s.set_values(values)));
        rejected
    }

    /// (value, status code) variable `index` holds now.
    fn value(&self, py: Python<'_>, index: usize) -> PyResult<Option<(Py<PyAny>, u32)>> {
        match self.with(|s| s.value(index)) {
            Some((v, status, _)) => Ok(Some((value_to_py(py, &v)?, status))),
            None => Ok(None),
        }
    }

    /// Take the client writes waiting: (index, value, user or None). Their clients get their
    /// answer once this returns.
    fn drain_writes(&self, py: Python<'_>) -> PyResult<Vec<PlainWrite>> {
        self.with(|s| s.drain_writes())
            .into_iter()
            .map(|w| Ok((w.index, value_to_py(py, &w.value)?, w.user)))
            .collect()
    }

    /// Take the service events: (time, service, request id, channel id, session or None,
    /// [(variable index, status code)]).
    fn drain_events(&self) -> Vec<PlainEvent> {
        self.with(|s| s.drain_events())
            .into_iter()
            .map(|e| {
                (
                    e.at,
                    e.service,
                    e.request_id,
                    e.channel_id,
                    e.session,
                    e.nodes,
                )
            })
            .collect()
    }

    /// Log each service request (for `drain_events`).
    fn set_log_services(&self, on: bool) {
        self.with(|s| s.set_log_services(on));
    }

    /// Make variables (`nodes`: indexes, or None for all) answer `status` instead of their
    /// value, to reads and writes, with `probability`, for `count` operations.
    #[pyo3(signature = (nodes, status, probability=1.0, count=None, seed=0))]
    fn set_status_fault(
        &self,
        nodes: Option<Vec<usize>>,
        status: u32,
        probability: f64,
        count: Option<u64>,
        seed: u64,
    ) {
        self.with(|s| {
            s.set_status_fault(Some(StatusFault {
                nodes,
                status,
                probability,
                count,
                seed,
            }));
        });
    }

    /// Clear the status fault.
    fn clear_status_fault(&self) {
        self.with(|s| s.set_status_fault(None));
    }

    /// Close every session (clients must create new ones).
    fn drop_sessions(&self) {
        self.with(|s| s.drop_sessions());
    }

    /// A descriptor that turns readable when client writes wait (`loop.add_reader`).
    fn wake_fd(&self) -> i32 {
        self.with(|s| s.wake_fd())
    }

    /// Empty the wake descriptor.
    fn clear_wake(&self) {
        self.with(|s| s.clear_wake());
    }

    /// Whether the server still runs.
    #[getter]
    fn running(&self) -> bool {
        self.with(|s| s.is_running())
    }

    /// Stop serving (returns once the server's thread has exited; a few ms).
    fn stop(&self, py: Python<'_>) {
        py.detach(|| self.with(Server::stop));
    }
}

/// The numeric OPC UA status code named `name`, or None.
#[pyfunction]
pub(crate) fn opcua_status_code(name: &str) -> Option<u32> {
    bifrost_opcua::status_code(name)
}

/// The name of OPC UA status code `code`.
#[pyfunction]
pub(crate) fn opcua_status_name(code: u32) -> &'static str {
    bifrost_opcua::status_name(code)
}

/// A self-signed server certificate and private key (DER) for `application_uri`, valid for
/// `hosts` (host names or IP addresses).
#[pyfunction]
pub(crate) fn opcua_certificate<'py>(
    py: Python<'py>,
    application_uri: &str,
    hosts: Vec<String>,
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let (cert, key) = py
        .detach(|| bifrost_opcua::generate_certificate(application_uri, &hosts))
        .map_err(|e| errors::config_error(py, e))?;
    Ok((PyBytes::new(py, &cert), PyBytes::new(py, &key)))
}
