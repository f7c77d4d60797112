//! Thin Python bindings: the only crate that uses pyo3. Builds `bifrost._native`.
//!
//! * `codec.rs`: the value codec (`decode`, `encode`) and value conversions.
//! * `point.rs`: `DataPoint`, the value a read returns (re-exported by `bifrost.tags`).
//! * `modbus.rs`: the Modbus client engine (`ModbusClient`, `NativePlan`, `NativeSubscription`,
//!   `NativePointSubscription`).
//! * `opcua_client.rs`: the native OPC UA client engine (`OpcuaClient`, `OpcuaSubscription`).
//! * `opcua_server.rs`: the simulator's OPC UA server (`OpcuaServer`) over `bifrost-opcua`.
//! * `session.rs`: `TcpSession`, Modbus TCP driven by the asyncio loop (no thread hop).
//! * `fleet.rs`: `FleetPoll`, many sessions polled in one loop, one batch per cycle.
//! * `bridge.rs`: how work on the tokio runtime becomes an asyncio awaitable.
//! * `errors.rs`: the engine's errors as `bifrost.errors` exceptions.
//! * `analytics.rs`: `bifrost-analytics` operators (`NativeChain`, `NativePipeline`) and batch functions.

// pyo3 extracts arguments into owned values, and Python-facing functions mirror the keyword
// arguments of their Python twins, so these two lints fight the binding layer's shape.
#![allow(clippy::needless_pass_by_value, clippy::too_many_arguments)]

mod analytics;
mod bridge;
mod codec;
mod errors;
mod fleet;
mod hub;
mod modbus;
mod opcua_client;
mod opcua_server;
mod point;
mod session;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    bridge::configure_runtime();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(codec::decode, m)?)?;
    m.add_function(wrap_pyfunction!(codec::encode, m)?)?;
    m.add_class::<modbus::ModbusClient>()?;
    m.add_class::<modbus::NativePlan>()?;
    m.add_class::<modbus::NativeSubscription>()?;
    m.add_class::<modbus::NativePointSubscription>()?;
    m.add_class::<point::DataPoint>()?;
    m.add_class::<opcua_server::OpcuaServer>()?;
    m.add_class::<opcua_client::OpcuaClient>()?;
    m.add_class::<opcua_client::OpcuaSubscription>()?;
    m.add_class::<opcua_client::OpcuaReadPlan>()?;
    m.add_function(wrap_pyfunction!(opcua_server::opcua_status_code, m)?)?;
    m.add_function(wrap_pyfunction!(opcua_server::opcua_status_name, m)?)?;
    m.add_function(wrap_pyfunction!(opcua_server::opcua_certificate, m)?)?;
    m.add_class::<session::TcpSession>()?;
    m.add_class::<fleet::FleetPoll>()?;
    m.add_class::<analytics::NativeChain>()?;
    m.add_class::<analytics::NativePipeline>()?;
    m.add_function(wrap_pyfunction!(analytics::lttb, m)?)?;
    m.add_function(wrap_pyfunction!(analytics::minmax_lttb, m)?)?;
    m.add_function(wrap_pyfunction!(analytics::rolling, m)?)?;
    m.add_function(wrap_pyfunction!(analytics::counter_delta, m)?)?;
    Ok(())
}
