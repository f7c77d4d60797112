//! The Modbus client engine: an async client that frames every request itself (MBAP or RTU, see
//! `line.rs`) over a tokio byte stream — a TCP socket or a serial port (tokio-serial) — with a
//! timeout on every request, supervised reconnect with backoff and writes ahead of polls, and runs
//! whole read plans, decoding every value in Rust.
//!
//! A [`Client`] is a cheap handle (clone it freely) to one connection. The connection is owned by
//! one task (see `actor.rs` for the rules it keeps: one request in flight, the connection
//! *dropped* on a timeout so a late reply is never taken for the next one, writes first, fail
//! fast while the device is down). On TCP each request names its unit (for gateways); on a
//! serial bus the units of the bus share the one connection, each request naming its unit.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bifrost_modbus::engine::Error> {
//! use bifrost_modbus::engine::{Area, Client, ClientConfig, ReadPlan, ReadRequest, TagDecoder};
//! use bifrost_modbus::{ByteOrder, DataType, WireFormat};
//!
//! let client = Client::connect(ClientConfig::tcp("127.0.0.1:502")).await?;
//! let plan = ReadPlan::new(
//!     vec![ReadRequest::new(1, Area::HoldingRegisters, 0, 4)],
//!     vec![TagDecoder::new(0, 0, WireFormat::plain(DataType::Float32, ByteOrder::Abcd))],
//! )
//! .expect("a valid plan");
//! let readings = client.execute(&plan).await;
//! println!("{:?}", readings.get(&plan, 0));
//! # Ok(()) }
//! ```

mod actor;
mod backoff;
mod error;
mod line;
pub mod mbap;
mod plan;
mod poll;
pub mod rtu;
mod transport;
mod write;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::values::{DataType, Value, WireFormat};

use actor::{Actor, Counters, ReadCommand, Settings, WriteCommand};

pub use backoff::{Backoff, BackoffConfig};
pub use error::{exception_constant, exception_name, function_name, Error};
pub use plan::{
    Area, PlanError, ReadPlan, ReadRequest, Readings, TagDecoder, Words, ADDRESS_SPACE,
    MAX_READ_BITS, MAX_READ_REGISTERS, MAX_WRITE_BITS, MAX_WRITE_REGISTERS,
};
pub use poll::{Batch, ChangeFilter, PollOptions, Subscription};
pub use transport::{Parity, SerialConfig, Transport};
pub use write::WriteRequest;

/// Everything about one connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    pub transport: Transport,
    /// How errors name the device; defaults to the transport as a URL (`modbus://host:port`).
    pub name: Option<String>,
    /// Longest wait for the reply to one request.
    pub timeout: Duration,
    /// Longest wait for a connection (TCP connect, opening a port); defaults to `timeout`.
    pub connect_timeout: Option<Duration>,
    /// Reconnect schedule.
    pub backoff: BackoffConfig,
    /// Commands each queue (writes, reads) holds before callers wait to enqueue.
    pub queue_capacity: usize,
    /// Serial only: after a timeout the port stays closed this long, so the late reply is lost on
    /// the line instead of read as the next one.
    pub serial_quiet: Duration,
}

impl ClientConfig {
    #[must_use]
    pub fn new(transport: Transport) -> Self {
        Self {
            transport,
            name: None,
            timeout: Duration::from_secs(3),
            connect_timeout: None,
            backoff: BackoffConfig::default(),
            queue_capacity: 1024,
            serial_quiet: Duration::from_millis(100),
        }
    }

    /// Modbus TCP to `host:port`.
    #[must_use]
    pub fn tcp(address: impl Into<String>) -> Self {
        Self::new(Transport::Tcp {
            address: address.into(),
        })
    }

    /// RTU framing over TCP to `host:port`.
    #[must_use]
    pub fn rtu_over_tcp(address: impl Into<String>) -> Self {
        Self::new(Transport::RtuOverTcp {
            address: address.into(),
        })
    }

    /// RTU over a serial port (crate feature `serial`).
    #[must_use]
    pub fn serial(serial: SerialConfig) -> Self {
        Self::new(Transport::Serial(serial))
    }

    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    #[must_use]
    pub fn with_backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = backoff;
        self
    }
}

/// What a connection has been through (for tests, logs and health checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub connected: bool,
    /// Successful connects.
    pub connects: u64,
    /// Failed connect attempts.
    pub failed_connects: u64,
    /// Connections dropped after a timeout or a transport or framing error.
    pub losses: u64,
    /// Requests sent.
    pub requests: u64,
    /// Requests that timed out.
    pub timeouts: u64,
}

/// A handle to one connection's task. Clones share the connection; the task ends when the last
/// handle is dropped or [`Client::close`] is called.
#[derive(Debug, Clone)]
pub struct Client {
    device: Arc<str>,
    writes: mpsc::Sender<WriteCommand>,
    reads: mpsc::Sender<ReadCommand>,
    counters: Arc<Counters>,
    runtime: Handle,
}

impl Client {
    /// Start the connection's task on the current tokio runtime. It connects in the background
    /// at once; calls made before it is connected wait for that attempt.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    #[must_use]
    pub fn spawn(config: ClientConfig) -> Self {
        Self::spawn_on(config, &Handle::current())
    }

    /// Start the connection's task on `runtime` (callable from any thread).
    #[must_use]
    pub fn spawn_on(config: ClientConfig, runtime: &Handle) -> Self {
        let device: Arc<str> = Arc::from(
            config
                .name
                .clone()
                .unwrap_or_else(|| config.transport.to_string())
                .as_str(),
        );
        let capacity = config.queue_capacity.max(1);
        let (writes, write_queue) = mpsc::channel(capacity);
        let (reads, read_queue) = mpsc::channel(capacity);
        let counters = Arc::new(Counters::default());
        let settings = Settings {
            device: Arc::clone(&device),
            transport: config.transport,
            timeout: config.timeout,
            connect_timeout: config.connect_timeout.unwrap_or(config.timeout),
            serial_quiet: config.serial_quiet,
            backoff: Backoff::new(config.backoff),
        };
        let actor = Actor::new(settings, write_queue, read_queue, Arc::clone(&counters));
        runtime.spawn(actor.run());
        Self {
            device,
            writes,
            reads,
            counters,
            runtime: runtime.clone(),
        }
    }

    /// Start the task and wait for the first connection.
    ///
    /// # Errors
    /// `Error::Connect` when the device cannot be reached (the task keeps no retry going: the
    /// client is dropped).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn connect(config: ClientConfig) -> Result<Self, Error> {
        let client = Self::spawn(config);
        client.ensure_connected().await?;
        Ok(client)
    }

    /// Connect now if not connected (ignoring the backoff's schedule).
    ///
    /// # Errors
    /// `Error::Connect`, or `Error::Closed`.
    pub async fn ensure_connected(&self) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send_read(ReadCommand::Connect { reply }).await?;
        answer.await.map_err(|_| self.closed())?
    }

    /// The device's name, as errors give it.
    #[must_use]
    pub fn device(&self) -> &str {
        &self.device
    }

    #[must_use]
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            connected: c.connected.load(Ordering::Relaxed),
            connects: c.connects.load(Ordering::Relaxed),
            failed_connects: c.failed_connects.load(Ordering::Relaxed),
            losses: c.losses.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
        }
    }

    /// Whether the task has ended (closed, or its runtime is gone).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.reads.is_closed()
    }

    /// One raw read.
    ///
    /// # Errors
    /// Any [`Error`]; `Invalid` for a count outside the protocol's limits.
    pub async fn read(&self, request: ReadRequest) -> Result<Words, Error> {
        let (reply, answer) = oneshot::channel();
        self.send_read(ReadCommand::Read { request, reply }).await?;
        answer.await.map_err(|_| self.closed())?
    }

    /// Read `count` registers of `area` (input or holding registers).
    ///
    /// # Errors
    /// As [`Client::read`]; `Invalid` for a bit area.
    pub async fn read_registers(
        &self,
        unit: u8,
        area: Area,
        start: u16,
        count: u16,
    ) -> Result<Vec<u16>, Error> {
        if area.is_bits() {
            return Err(Error::invalid(
                &self.device,
                format!("{area} holds bits, not registers"),
            ));
        }
        match self
            .read(ReadRequest::new(unit, area, start, count))
            .await?
        {
            Words::Registers(registers) => Ok(registers),
            Words::Bits(_) => unreachable!("a register area yields registers"),
        }
    }

    /// Read `count` bits of `area` (coils or discrete inputs).
    ///
    /// # Errors
    /// As [`Client::read`]; `Invalid` for a register area.
    pub async fn read_bits(
        &self,
        unit: u8,
        area: Area,
        start: u16,
        count: u16,
    ) -> Result<Vec<bool>, Error> {
        if !area.is_bits() {
            return Err(Error::invalid(
                &self.device,
                format!("{area} holds registers, not bits"),
            ));
        }
        match self
            .read(ReadRequest::new(unit, area, start, count))
            .await?
        {
            Words::Bits(bits) => Ok(bits),
            Words::Registers(_) => unreachable!("a bit area yields bits"),
        }
    }

    /// Send the plan's requests, one after another on the one connection, and return the raw
    /// reply of each (for callers that decode themselves).
    pub async fn execute_raw(&self, plan: &ReadPlan) -> Vec<Result<Words, Error>> {
        let count = plan.requests().len();
        if count == 0 {
            return Vec::new();
        }
        let (reply, answer) = oneshot::channel();
        let command = ReadCommand::Plan {
            requests: plan.shared_requests(),
            reply,
        };
        if self.send_read(command).await.is_err() {
            return vec![Err(self.closed()); count];
        }
        answer
            .await
            .unwrap_or_else(|_| vec![Err(self.closed()); count])
    }

    /// Run a plan: send its requests and decode every tag (in the caller's task, so the
    /// connection's task is free for the next caller meanwhile). A failed request fails only its
    /// own tags.
    pub async fn execute(&self, plan: &ReadPlan) -> Readings {
        let replies = self.execute_raw(plan).await;
        plan.decode(replies, SystemTime::now())
    }

    /// One raw write.
    ///
    /// # Errors
    /// Any [`Error`]; `Invalid` for an empty or too long multiple write.
    pub async fn write(&self, request: WriteRequest) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send_write(WriteCommand::Write { request, reply })
            .await?;
        answer.await.map_err(|_| self.closed())?
    }

    /// Send a request PDU encoded by the caller (any function code) and return the reply's PDU,
    /// checked only for being an answer to that function: an exception reply is
    /// `Error::Exception`. `write` queues it with the writes (served first); a request that only
    /// reads (17, 43) may go with the reads.
    ///
    /// # Errors
    /// Any [`Error`]; `Invalid` for an empty PDU.
    pub async fn transact(&self, unit: u8, pdu: Vec<u8>, write: bool) -> Result<Vec<u8>, Error> {
        let (reply, answer) = oneshot::channel();
        if write {
            self.send_write(WriteCommand::Raw { unit, pdu, reply })
                .await?;
        } else {
            self.send_read(ReadCommand::Raw { unit, pdu, reply })
                .await?;
        }
        answer.await.map_err(|_| self.closed())?
    }

    /// Encode `value` with `format` (the value codec's rules) and write it at `address` of `area`:
    /// a coil with FC5; one register with FC6, several with FC16; a bit of a holding register by
    /// reading the register and writing it back with the bit changed (one step of the
    /// connection's task, so no other command of this client comes in between).
    ///
    /// # Errors
    /// `Encode` when the value does not fit the format; `Invalid` for a read-only area or a
    /// format the area cannot hold; otherwise as [`Client::write`].
    pub async fn write_value(
        &self,
        unit: u8,
        area: Area,
        address: u16,
        format: &WireFormat,
        value: &Value,
    ) -> Result<(), Error> {
        let encode_error = |source| Error::Encode {
            device: Arc::clone(&self.device),
            source,
        };
        match area {
            Area::DiscreteInputs | Area::InputRegisters => Err(Error::invalid(
                &self.device,
                format!("{area}:{address} is read-only"),
            )),
            Area::Coils => {
                if format.dtype != DataType::Bool || format.bit.is_some() {
                    return Err(Error::invalid(
                        &self.device,
                        format!(
                            "coil:{address} holds a plain bool, not {}",
                            format.dtype.name()
                        ),
                    ));
                }
                let words = format.encode(value, 0).map_err(encode_error)?;
                self.write(WriteRequest::Coil {
                    unit,
                    address,
                    value: words[0] != 0,
                })
                .await
            }
            Area::HoldingRegisters if format.bit.is_some() => {
                format.encode(value, 0).map_err(encode_error)?; // refuse a bad value before any I/O
                let (reply, answer) = oneshot::channel();
                let command = WriteCommand::WriteBit {
                    unit,
                    address,
                    format: format.clone(),
                    value: value.clone(),
                    reply,
                };
                self.send_write(command).await?;
                answer.await.map_err(|_| self.closed())?
            }
            Area::HoldingRegisters => {
                let words = format.encode(value, 0).map_err(encode_error)?;
                let request = if words.len() == 1 {
                    WriteRequest::Register {
                        unit,
                        address,
                        value: words[0],
                    }
                } else {
                    WriteRequest::Registers {
                        unit,
                        address,
                        values: words,
                    }
                };
                self.write(request).await
            }
        }
    }

    /// Poll `plan` every `options.interval` and deliver what changed (see [`PollOptions`]). The
    /// poll loop runs on the client's runtime until the [`Subscription`] is dropped or stopped.
    #[must_use]
    pub fn subscribe(&self, plan: ReadPlan, options: PollOptions) -> Subscription {
        poll::spawn(self, plan, options)
    }

    /// Close the connection and end the task. Queued writes ahead of the close are done first;
    /// everything after it fails with `Error::Closed`. Closing twice is harmless.
    pub async fn close(&self) {
        let (reply, answer) = oneshot::channel();
        if self
            .writes
            .send(WriteCommand::Close { reply })
            .await
            .is_ok()
        {
            let _ = answer.await;
        }
    }

    pub(crate) fn runtime(&self) -> &Handle {
        &self.runtime
    }

    fn closed(&self) -> Error {
        Error::Closed {
            device: Arc::clone(&self.device),
        }
    }

    async fn send_read(&self, command: ReadCommand) -> Result<(), Error> {
        self.reads.send(command).await.map_err(|_| self.closed())
    }

    async fn send_write(&self, command: WriteCommand) -> Result<(), Error> {
        self.writes.send(command).await.map_err(|_| self.closed())
    }
}
