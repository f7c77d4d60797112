//! Bifrost's Modbus engine, in pure Rust (no Python): the value codec shared with
//! `bifrost/values.py`, and the client engine (its own MBAP and RTU framing over tokio).

pub mod engine;
pub mod values;

pub use values::{ByteOrder, CodecError, DataType, Value, WireFormat};
