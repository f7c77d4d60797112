//! The connection's task. It alone owns the transport; callers talk to it over two queues.
//!
//! * **Writes first.** Writes (and `close`) go through one queue, reads, plans and `connect`
//!   through another. The task always takes a waiting write before a read, and looks at the write
//!   queue again between the requests of a plan, so a write waits for at most one request in
//!   flight. Within a queue, callers are served in the order they arrived.
//! * **One request in flight, each bounded by the timeout.** On a timeout the connection is
//!   *dropped*, not drained: one request is in flight and RTU has no transaction id to match a
//!   reply to its request, so a reply that comes late on the same connection would be taken as
//!   the answer to the next request. A new connection cannot carry
//!   it. On a serial line, where "the connection" is the wire itself, the port is closed, kept
//!   closed for `serial_quiet`, then reopened and its input buffer cleared, so what the device
//!   sent meanwhile is thrown away. A reply later than timeout + `serial_quiet` would still be
//!   read as the next one (RTU frames carry nothing to tell them apart beyond unit, function and
//!   CRC), so `serial_quiet` must cover how late a device on the bus may answer.
//! * **Supervised reconnect.** After a lost connection or a failed attempt, the next attempt is
//!   scheduled by the backoff (exponential, jittered) and made in the background when it is due,
//!   whether or not anyone is calling. A call that finds the connection down waits for the next
//!   attempt when that is due within the request timeout, and otherwise fails at once with
//!   `Error::Connect`, so callers of a dead device fail fast instead of queueing.
//! * **Plans fail per request.** An exception fails only the tags of its request. Once the
//!   connection is lost during a plan (timeout, reset, broken frame), the rest of that plan's
//!   requests are not sent and fail with the same error: a stalled device costs one timeout per
//!   plan, not one per request.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::backoff::Backoff;
use super::error::Error;
use super::line::{Line, LineError};
use super::mbap::{self, ReplyError};
use super::plan::{Area, ReadRequest, Words};
use super::transport::{self, Transport};
use super::write::WriteRequest;
use crate::values::{Value, WireFormat};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout, Instant};

pub(crate) type Reply<T> = oneshot::Sender<T>;

/// Commands of the write queue, served first.
pub(crate) enum WriteCommand {
    Write {
        request: WriteRequest,
        reply: Reply<Result<(), Error>>,
    },
    /// Read-modify-write of one bit of a holding register, done as one step of the task so no
    /// other command of this client runs in between.
    WriteBit {
        unit: u8,
        address: u16,
        format: WireFormat,
        value: Value,
        reply: Reply<Result<(), Error>>,
    },
    /// A request PDU encoded by the caller (mask write, read/write multiple registers).
    Raw {
        unit: u8,
        pdu: Vec<u8>,
        reply: Reply<Result<Vec<u8>, Error>>,
    },
    Close {
        reply: Reply<()>,
    },
}

/// Commands of the read queue.
pub(crate) enum ReadCommand {
    Read {
        request: ReadRequest,
        reply: Reply<Result<Words, Error>>,
    },
    Plan {
        requests: Arc<[ReadRequest]>,
        reply: Reply<Vec<Result<Words, Error>>>,
    },
    /// A request PDU encoded by the caller that only reads (device identification, server id).
    Raw {
        unit: u8,
        pdu: Vec<u8>,
        reply: Reply<Result<Vec<u8>, Error>>,
    },
    Connect {
        reply: Reply<Result<(), Error>>,
    },
}

/// Counters shared with the handles.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connected: AtomicBool,
    pub(crate) connects: AtomicU64,
    pub(crate) failed_connects: AtomicU64,
    pub(crate) losses: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) timeouts: AtomicU64,
}

pub(crate) struct Settings {
    pub(crate) device: Arc<str>,
    pub(crate) transport: Transport,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) serial_quiet: Duration,
    pub(crate) backoff: Backoff,
}

pub(crate) struct Actor {
    device: Arc<str>,
    transport: Transport,
    timeout: Duration,
    connect_timeout: Duration,
    serial_quiet: Duration,
    backoff: Backoff,
    conn: Option<Line>,
    /// When disconnected: when the next attempt is due.
    next_attempt: Instant,
    /// Why the last attempt failed, or the connection was lost.
    last_error: Option<Error>,
    /// Serial only: keep the port closed until then (a late reply is still on the wire).
    quiet_until: Option<Instant>,
    writes: mpsc::Receiver<WriteCommand>,
    reads: mpsc::Receiver<ReadCommand>,
    counters: Arc<Counters>,
}

enum Flow {
    Continue,
    Stop,
}

impl Actor {
    pub(crate) fn new(
        settings: Settings,
        writes: mpsc::Receiver<WriteCommand>,
        reads: mpsc::Receiver<ReadCommand>,
        counters: Arc<Counters>,
    ) -> Self {
        let Settings {
            device,
            transport,
            timeout,
            connect_timeout,
            serial_quiet,
            backoff,
        } = settings;
        Self {
            device,
            transport,
            timeout,
            connect_timeout,
            serial_quiet,
            backoff,
            conn: None,
            next_attempt: Instant::now(),
            last_error: None,
            quiet_until: None,
            writes,
            reads,
            counters,
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            let down = self.conn.is_none();
            let next_attempt = self.next_attempt;
            tokio::select! {
                biased;
                command = self.writes.recv() => match command {
                    Some(command) => {
                        if let Flow::Stop = self.on_write(command).await {
                            break;
                        }
                    }
                    None => break,
                },
                command = self.reads.recv() => match command {
                    Some(command) => {
                        if let Flow::Stop = self.on_read(command).await {
                            break;
                        }
                    }
                    None => break,
                },
                () = sleep_until(next_attempt), if down => {
                    // Supervision: reconnect in the background when the backoff says so.
                    let _ = self.connect().await;
                }
            }
        }
        self.shutdown().await;
        // Whatever is still queued gets dropped: its callers see `Error::Closed`.
    }

    async fn on_write(&mut self, command: WriteCommand) -> Flow {
        match command {
            WriteCommand::Write { request, reply } => {
                if !reply.is_closed() {
                    let result = self.write(&request).await;
                    let _ = reply.send(result);
                }
            }
            WriteCommand::WriteBit {
                unit,
                address,
                format,
                value,
                reply,
            } => {
                if !reply.is_closed() {
                    let result = self.write_bit(unit, address, &format, &value).await;
                    let _ = reply.send(result);
                }
            }
            WriteCommand::Raw { unit, pdu, reply } => {
                if !reply.is_closed() {
                    let result = self.raw(unit, &pdu).await;
                    let _ = reply.send(result);
                }
            }
            WriteCommand::Close { reply } => {
                self.shutdown().await;
                let _ = reply.send(());
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    async fn on_read(&mut self, command: ReadCommand) -> Flow {
        match command {
            ReadCommand::Read { request, reply } => {
                if !reply.is_closed() {
                    let result = self.read(&request).await;
                    let _ = reply.send(result);
                }
            }
            ReadCommand::Raw { unit, pdu, reply } => {
                if !reply.is_closed() {
                    let result = self.raw(unit, &pdu).await;
                    let _ = reply.send(result);
                }
            }
            ReadCommand::Plan { requests, reply } => return self.plan(&requests, reply).await,
            ReadCommand::Connect { reply } => {
                let result = if self.conn.is_some() {
                    Ok(())
                } else {
                    self.connect().await
                };
                let _ = reply.send(result);
            }
        }
        Flow::Continue
    }

    async fn plan(
        &mut self,
        requests: &[ReadRequest],
        reply: Reply<Vec<Result<Words, Error>>>,
    ) -> Flow {
        let mut results = Vec::with_capacity(requests.len());
        let mut broken: Option<Error> = None;
        let mut flow = Flow::Continue;
        for request in requests {
            // Writes go first, even in the middle of a plan.
            while let Ok(command) = self.writes.try_recv() {
                if let Flow::Stop = self.on_write(command).await {
                    flow = Flow::Stop;
                    broken = Some(self.closed());
                    break;
                }
            }
            if reply.is_closed() {
                return flow; // the caller gave up: send nothing more for it
            }
            if let Some(error) = &broken {
                results.push(Err(error.clone()));
                continue;
            }
            let result = self.read(request).await;
            if let Err(error) = &result {
                if self.conn.is_none() {
                    broken = Some(error.clone());
                }
            }
            results.push(result);
        }
        let _ = reply.send(results);
        flow
    }

    async fn read(&mut self, request: &ReadRequest) -> Result<Words, Error> {
        request
            .validate()
            .map_err(|message| Error::invalid(&self.device, message))?;
        let reply = self
            .transact(request.unit, &mbap::read_pdu(request))
            .await?;
        let parsed = mbap::parse_read(request, &reply);
        self.settle(request.unit, parsed)
    }

    /// A reply checked against its request: an exception fails the call and keeps the connection;
    /// a reply that cannot answer it fails the call and drops the connection (what the device
    /// meant, and whether more of it is coming, cannot be known).
    fn settle<T>(&mut self, unit: u8, parsed: Result<T, ReplyError>) -> Result<T, Error> {
        match parsed {
            Ok(value) => Ok(value),
            Err(ReplyError::Exception { function, code }) => Err(Error::Exception {
                device: Arc::clone(&self.device),
                unit,
                function,
                code,
            }),
            Err(ReplyError::Malformed(why)) => {
                let error = Error::protocol(&self.device, why);
                self.lose(&error);
                Err(error)
            }
        }
    }

    /// A request PDU the caller encoded, and the reply's PDU (checked only for its function code:
    /// the caller decodes it).
    async fn raw(&mut self, unit: u8, pdu: &[u8]) -> Result<Vec<u8>, Error> {
        let Some(&function) = pdu.first() else {
            return Err(Error::invalid(&self.device, "an empty request PDU"));
        };
        let reply = self.transact(unit, pdu).await?;
        let parsed = match reply.as_slice() {
            [f, code] if *f == function | 0x80 => Err(ReplyError::Exception {
                function,
                code: *code,
            }),
            [f, ..] if *f == function => Ok(()),
            _ => Err(ReplyError::Malformed(format!(
                "the reply {reply:02X?} does not answer function {function}"
            ))),
        };
        self.settle(unit, parsed).map(|()| reply)
    }

    async fn write(&mut self, request: &WriteRequest) -> Result<(), Error> {
        request
            .validate()
            .map_err(|message| Error::invalid(&self.device, message))?;
        let reply = self
            .transact(request.unit(), &mbap::write_pdu(request))
            .await?;
        let parsed = mbap::parse_write(request, &reply);
        self.settle(request.unit(), parsed)
    }

    async fn write_bit(
        &mut self,
        unit: u8,
        address: u16,
        format: &WireFormat,
        value: &Value,
    ) -> Result<(), Error> {
        let read = ReadRequest::new(unit, Area::HoldingRegisters, address, 1);
        let Words::Registers(current) = self.read(&read).await? else {
            unreachable!("a register read yields registers")
        };
        let words = format
            .encode(value, current[0])
            .map_err(|source| Error::Encode {
                device: Arc::clone(&self.device),
                source,
            })?;
        self.write(&WriteRequest::Register {
            unit,
            address,
            value: words[0],
        })
        .await
    }

    /// One request and the PDU of its reply, within the timeout, on a connection made if
    /// needed. Anything but a whole reply frame drops the connection.
    async fn transact(&mut self, unit: u8, pdu: &[u8]) -> Result<Vec<u8>, Error> {
        self.ensure_connected().await?;
        let function = pdu[0];
        let Some(conn) = self.conn.as_mut() else {
            unreachable!("ensure_connected leaves a connection")
        };
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let error = match timeout(self.timeout, conn.call(unit, pdu)).await {
            Ok(Ok(reply)) => return Ok(reply),
            Ok(Err(LineError::Protocol(why))) => Error::protocol(&self.device, why),
            Ok(Err(LineError::Closed)) => Error::connect(
                &self.device,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection lost: the device closed it",
                ),
            ),
            Ok(Err(LineError::Io(error))) => Error::connect(&self.device, lost(&error)),
            Err(_elapsed) => {
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                Error::Timeout {
                    device: Arc::clone(&self.device),
                    unit,
                    function,
                    after: self.timeout,
                }
            }
        };
        self.lose(&error);
        Err(error)
    }

    async fn ensure_connected(&mut self) -> Result<(), Error> {
        if self.conn.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        if self.next_attempt > now + self.timeout {
            let wait = self.next_attempt - now;
            let cause = self
                .last_error
                .as_ref()
                .map_or_else(|| "not connected".to_owned(), ToString::to_string);
            return Err(Error::connect(
                &self.device,
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!(
                        "not connected ({cause}); next attempt in {} ms",
                        wait.as_millis()
                    ),
                ),
            ));
        }
        sleep_until(self.next_attempt).await;
        self.connect().await
    }

    /// One attempt, now, bounded by the connect timeout.
    async fn connect(&mut self) -> Result<(), Error> {
        if let Some(until) = self.quiet_until.take() {
            sleep_until(until).await;
        }
        let error = match timeout(self.connect_timeout, transport::open(&self.transport)).await {
            Ok(Ok(conn)) => {
                self.conn = Some(conn);
                self.backoff.reset();
                self.last_error = None;
                self.counters.connected.store(true, Ordering::Relaxed);
                self.counters.connects.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Ok(Err(error)) => Error::connect(
                &self.device,
                io::Error::new(error.kind(), format!("cannot connect: {error}")),
            ),
            Err(_elapsed) => Error::connect(
                &self.device,
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "cannot connect: no connection within {} ms",
                        self.connect_timeout.as_millis()
                    ),
                ),
            ),
        };
        self.counters
            .failed_connects
            .fetch_add(1, Ordering::Relaxed);
        self.next_attempt = Instant::now() + self.backoff.next_delay();
        self.last_error = Some(error.clone());
        Err(error)
    }

    /// Drop the connection (never reuse a stream whose state is unknown) and schedule the next
    /// attempt.
    fn lose(&mut self, cause: &Error) {
        if self.conn.take().is_some() {
            self.counters.connected.store(false, Ordering::Relaxed);
            self.counters.losses.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        if matches!(self.transport, Transport::Serial(_)) {
            self.quiet_until = Some(now + self.serial_quiet);
        }
        self.next_attempt = now + self.backoff.next_delay();
        self.last_error = Some(cause.clone());
    }

    async fn shutdown(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            self.counters.connected.store(false, Ordering::Relaxed);
            // A polite close if it is quick; dropping closes it anyway.
            let _ = timeout(self.timeout, conn.shutdown()).await;
        }
    }

    fn closed(&self) -> Error {
        Error::Closed {
            device: Arc::clone(&self.device),
        }
    }
}

/// Say plainly how a connection was lost, in the words of the Python engine and the TCP session:
/// a broken pipe is the device having closed it, and an OS error is its text without Rust's
/// " (os error N)" tail.
fn lost(error: &io::Error) -> io::Error {
    if matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
    ) {
        return io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection lost: the device closed it",
        );
    }
    let text = error.to_string();
    let text = text
        .find(" (os error ")
        .map_or(text.as_str(), |at| &text[..at]);
    io::Error::new(error.kind(), format!("connection lost: {text}"))
}
