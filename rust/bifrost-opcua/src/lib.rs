//! Bifrost's OPC UA engine over open62541 (C, vendored by `open62541-sys`).
//!
//! * `server.rs`: the simulator's server (variables from a node list, values pushed in from
//!   outside, client writes reported back, security, users, per-service event log).
//! * `client.rs`: the client (Read, Write, Browse, subscriptions) over the crate's AsyncClient.
//! * `read.rs`: reads planned once and sent again, their answers unpacked in place.
//! * `ffi.rs`: the only module with `unsafe` (calls into the C library the safe crate lacks).

mod client;
mod ffi;
mod read;
mod server;
mod value;

pub use client::{
    Client, ClientCertificate, ClientError, ClientOptions, Datum, Identifier, MonitorItem, NodeRef,
    ReadValue, Reference, SecurityMode, Subscription,
};
pub use read::{Plain, PlainValue, PreparedRead, ReadValues};
pub use server::{
    generate_certificate, status_code, status_name, ua_time, ClientWrite, SecurityPolicy, Server,
    ServerConfig, ServiceEvent, StartError, StatusFault, User, Variable,
};
pub use value::{Value, ValueType};
