//! The value codec (`decode`, `encode`) and the conversions of values between Rust and Python.

use bifrost_modbus::{ByteOrder, CodecError, DataType, Value, WireFormat};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};

fn codec_error(err: &CodecError) -> PyErr {
    PyValueError::new_err(err.to_string())
}

pub(crate) fn wire_format(
    dtype: &str,
    order: &str,
    length: usize,
    scale: f64,
    offset: f64,
    bit: Option<u8>,
) -> PyResult<WireFormat> {
    let dtype: DataType = dtype.parse().map_err(|e| codec_error(&e))?;
    let order: ByteOrder = order.parse().map_err(|e| codec_error(&e))?;
    WireFormat::new(dtype, order, length, scale, offset, bit).map_err(|e| codec_error(&e))
}

/// A decoded value as a Python object (a plain `int` for every integer that fits 64 bits).
pub(crate) fn value_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => match i64::try_from(*i) {
            Ok(small) => small.into_pyobject(py)?.into_any(),
            Err(_) => i.into_pyobject(py)?.into_any(),
        },
        Value::Float(f) => PyFloat::new(py, *f).into_any(),
        Value::Str(s) => PyString::new(py, s).into_any(),
    })
}

pub(crate) fn value_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if let Ok(flag) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(flag.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        // An int beyond i128 is beyond every type's range: report it as such.
        return obj.extract::<i128>().map(Value::Int).map_err(|_| {
            PyValueError::new_err(format!("{obj} is out of range for every integer type"))
        });
    }
    if let Ok(float) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(float.value()));
    }
    if let Ok(text) = obj.cast::<PyString>() {
        return Ok(Value::Str(text.to_str()?.to_owned()));
    }
    Err(PyTypeError::new_err(format!(
        "cannot encode a {}",
        obj.get_type().name()?
    )))
}

/// Decode registers into a value, with the rules of `bifrost.values`.
#[pyfunction]
#[pyo3(signature = (words, dtype, byte_order="ABCD", *, length=0, scale=1.0, offset=0.0, bit=None))]
pub(crate) fn decode<'py>(
    py: Python<'py>,
    words: Vec<u16>,
    dtype: &str,
    byte_order: &str,
    length: usize,
    scale: f64,
    offset: f64,
    bit: Option<u8>,
) -> PyResult<Bound<'py, PyAny>> {
    let format = wire_format(dtype, byte_order, length, scale, offset, bit)?;
    let value = format.decode(&words).map_err(|e| codec_error(&e))?;
    value_to_py(py, &value)
}

/// Encode a value into registers, with the rules of `bifrost.values`.
#[pyfunction]
#[pyo3(signature = (value, dtype, byte_order="ABCD", *, length=0, scale=1.0, offset=0.0, bit=None, current=0))]
pub(crate) fn encode(
    value: &Bound<'_, PyAny>,
    dtype: &str,
    byte_order: &str,
    length: usize,
    scale: f64,
    offset: f64,
    bit: Option<u8>,
    current: u16,
) -> PyResult<Vec<u16>> {
    let format = wire_format(dtype, byte_order, length, scale, offset, bit)?;
    format
        .encode(&value_from_py(value)?, current)
        .map_err(|e| codec_error(&e))
}
