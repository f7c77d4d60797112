//! Thin Python bindings: the only crate that uses pyo3. Builds `bifrost._native`.

// pyo3 extracts arguments into owned values, and Python-facing functions mirror the keyword
// arguments of their Python twins, so these two lints fight the binding layer's shape.
#![allow(clippy::needless_pass_by_value, clippy::too_many_arguments)]

use bifrost_modbus::{ByteOrder, CodecError, DataType, Value, WireFormat};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};

fn codec_error(err: &CodecError) -> PyErr {
    PyValueError::new_err(err.to_string())
}

fn wire_format(
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

fn value_to_py(py: Python<'_>, value: Value) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Value::Bool(b) => PyBool::new(py, b).to_owned().into_any().unbind(),
        Value::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        Value::Float(f) => PyFloat::new(py, f).into_any().unbind(),
        Value::Str(s) => PyString::new(py, &s).into_any().unbind(),
    })
}

fn value_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
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
fn decode(
    py: Python<'_>,
    words: Vec<u16>,
    dtype: &str,
    byte_order: &str,
    length: usize,
    scale: f64,
    offset: f64,
    bit: Option<u8>,
) -> PyResult<Py<PyAny>> {
    let format = wire_format(dtype, byte_order, length, scale, offset, bit)?;
    let value = format.decode(&words).map_err(|e| codec_error(&e))?;
    value_to_py(py, value)
}

/// Encode a value into registers, with the rules of `bifrost.values`.
#[pyfunction]
#[pyo3(signature = (value, dtype, byte_order="ABCD", *, length=0, scale=1.0, offset=0.0, bit=None, current=0))]
fn encode(
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

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add_function(wrap_pyfunction!(encode, m)?)?;
    Ok(())
}
