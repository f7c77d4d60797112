//! The engine's errors as bifrost's own Python exceptions (`bifrost.errors`).

use bifrost_modbus::engine::Error;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use pyo3::PyErrArguments;

struct Imported(PyOnceLock<Py<PyType>>, &'static str);

impl Imported {
    const fn new(name: &'static str) -> Self {
        Self(PyOnceLock::new(), name)
    }

    fn get<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyType>> {
        self.0.import(py, "bifrost.errors", self.1)
    }
}

static TIMEOUT: Imported = Imported::new("TimeoutError");
static CONNECT: Imported = Imported::new("ConnectError");
static DEVICE: Imported = Imported::new("DeviceError");
static PROTOCOL: Imported = Imported::new("ProtocolError");
static ENCODE: Imported = Imported::new("EncodeError");
static CONFIG: Imported = Imported::new("ConfigError");

fn raise<A: PyErrArguments + 'static>(py: Python<'_>, class: &Imported, args: A) -> PyErr {
    match class.get(py) {
        Ok(ty) => PyErr::from_type(ty.clone(), args),
        Err(err) => err,
    }
}

/// `bifrost.errors.ConfigError(message)`.
pub(crate) fn config_error(py: Python<'_>, message: String) -> PyErr {
    raise(py, &CONFIG, (message,))
}

/// `bifrost.errors.ConnectError(message)`.
pub(crate) fn connect_error(py: Python<'_>, message: String) -> PyErr {
    raise(py, &CONNECT, (message,))
}

/// The Python exception of an engine error. The message is the error's (it starts with the
/// device); an exception reply becomes `DeviceError` with its `code`.
///
/// timeout -> `TimeoutError`, connect and closed -> `ConnectError`, exception ->
/// `DeviceError(code)`, protocol -> `ProtocolError`, encode -> `EncodeError`, invalid ->
/// `ConfigError`.
pub(crate) fn to_py(py: Python<'_>, error: &Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::Timeout { .. } => raise(py, &TIMEOUT, (message,)),
        Error::Connect { .. } | Error::Closed { .. } => raise(py, &CONNECT, (message,)),
        Error::Exception { code, .. } => raise(py, &DEVICE, (message, *code)),
        Error::Protocol { .. } => raise(py, &PROTOCOL, (message,)),
        Error::Encode { .. } => raise(py, &ENCODE, (message,)),
        Error::Invalid { .. } => raise(py, &CONFIG, (message,)),
    }
}
