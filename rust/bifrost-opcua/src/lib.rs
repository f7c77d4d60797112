//! Bifrost's OPC UA engine over open62541 (C, vendored by `open62541-sys`).
//!
//! * `server.rs`: the simulator's server (variables from a node list, values pushed in from
//!   outside, client writes reported back, security, users, per-service event log).
//! * `ffi.rs`: the only module with `unsafe` (calls into the C library the safe crate lacks).

mod ffi;
mod server;
mod value;

pub use server::{
    generate_certificate, status_code, status_name, ua_time, ClientWrite, SecurityPolicy, Server,
    ServerConfig, ServiceEvent, StartError, StatusFault, User, Variable,
};
pub use value::{Value, ValueType};
