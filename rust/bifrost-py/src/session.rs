//! `TcpSession`: Modbus TCP with Rust as the engine and the asyncio loop as the driver.
//!
//! The session owns a non-blocking socket registered with the running loop (`add_reader`, and
//! `add_writer` while a connect is under way or bytes wait to go out). Its callbacks run on the
//! loop's thread: a call encodes its frame and writes it at once, a readable socket is read, cut
//! into frames and matched to requests by transaction id, and the caller's asyncio future is
//! settled in the same callback. No thread is crossed, nothing is queued for another thread.
//! Timeouts are one loop timer for the whole session, set at the earliest deadline and moved on
//! when it fires (not one timer per request).
//!
//! The rules of the tokio engine (`bifrost_modbus::engine`, still used for serial ports and RTU)
//! hold here too:
//! * every call has a timeout; on a timeout the connection is dropped, so a late reply can never
//!   be taken for the answer to a later request;
//! * a lost connection is reopened with backoff; a call while the next attempt is further off
//!   than the timeout fails at once with `ConnectError`, saying when it is due;
//! * writes go before reads that wait;
//! * a plan whose connection is lost fails its remaining requests with the same error.
//!
//! Pipelining (`max_in_flight` > 1) keeps several requests on the wire, matched by transaction
//! id. A device that answers out of order, or leaves a request unanswered while others are in
//! flight, is told off with a warning and served one request at a time from then on.
//!
//! A connection the device closed while it was idle is reopened at once, without backoff, and the
//! call goes on: nothing was lost. A connection idle for a while is checked (a peek, no data
//! taken) before a request is written to it, so a device that restarted since is noticed before
//! the request goes to a dead socket.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bifrost_modbus::engine::mbap::{self, Decoder, ReplyError};
use bifrost_modbus::engine::{
    Backoff, BackoffConfig, Error, ReadPlan, ReadRequest, Words, WriteRequest,
};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::bridge::{Deferred, Slot};
use crate::errors;
use crate::hub::Hub;
use crate::modbus::{
    parse_area, readings_to_points, readings_to_py, seconds, words_to_py, NativePlan,
};
use crate::point::without_collector;

/// An idle connection older than this is peeked at before a request is written to it.
const IDLE_CHECK: Duration = Duration::from_millis(10);
/// Linux's EINPROGRESS and macOS's: a non-blocking connect under way.
const IN_PROGRESS: [i32; 2] = [115, 36];

/// What one request asks.
enum Job {
    Read(ReadRequest),
    Write(WriteRequest),
    /// A PDU encoded by the caller (functions 17, 22, 23, 43); the reply's PDU comes back.
    Raw {
        unit: u8,
        pdu: Vec<u8>,
    },
}

impl Job {
    fn unit(&self) -> u8 {
        match self {
            Self::Read(request) => request.unit,
            Self::Write(request) => request.unit(),
            Self::Raw { unit, .. } => *unit,
        }
    }

    fn function(&self) -> u8 {
        match self {
            Self::Read(request) => request.area.read_function(),
            Self::Write(request) => mbap::write_pdu(request)[0],
            Self::Raw { pdu, .. } => pdu[0],
        }
    }

    fn encode(&self, out: &mut Vec<u8>, transaction: u16) {
        match self {
            Self::Read(request) => {
                mbap::encode_frame(out, transaction, request.unit, &mbap::read_pdu(request));
            }
            Self::Write(request) => {
                mbap::encode_frame(out, transaction, request.unit(), &mbap::write_pdu(request));
            }
            Self::Raw { unit, pdu } => mbap::encode_frame(out, transaction, *unit, pdu),
        }
    }

    fn answer(&self, pdu: Vec<u8>) -> Result<Answer, ReplyError> {
        match self {
            Self::Read(request) => mbap::parse_read(request, &pdu).map(Answer::Words),
            Self::Write(request) => mbap::parse_write(request, &pdu).map(|()| Answer::Done),
            Self::Raw { pdu: asked, .. } => {
                let function = asked[0];
                match pdu.as_slice() {
                    [f, code] if *f == function | 0x80 => Err(ReplyError::Exception {
                        function,
                        code: *code,
                    }),
                    [f, ..] if *f == function => Ok(Answer::Pdu(pdu)),
                    _ => Err(ReplyError::Malformed(format!(
                        "the reply {pdu:02X?} does not answer function {function}"
                    ))),
                }
            }
        }
    }
}

enum Answer {
    Words(Words),
    Done,
    Pdu(Vec<u8>),
}

/// What a finished plan becomes.
pub(crate) enum PlanOutput {
    /// `(values, errors)` for an asyncio future.
    Values(Py<PyAny>),
    /// `(points, failures)`, made by the task that awaits them (see `bridge::deferred`: fifty
    /// devices' thousands of points made at once in one callback would all be in the cycle
    /// collector's young generation at once).
    Points(Py<PyAny>, crate::modbus::Keys, Slot),
    /// The replies, undecoded, handed to Rust code on the loop's thread (the fleet poller).
    Callback(Box<dyn FnOnce(Python<'_>, Replies) + Send>),
}

/// The replies of one run of a plan, in request order, and when the last came.
pub(crate) struct Replies {
    pub(crate) replies: Vec<Result<Words, Error>>,
    pub(crate) timestamp: SystemTime,
}

/// One run of a read plan: a reply per request, then the output.
pub(crate) struct PlanRun {
    plan: Arc<ReadPlan>,
    replies: Vec<Option<Result<Words, Error>>>,
    remaining: usize,
    /// Set once a request of the run lost the connection: the rest fail with it, unsent.
    broken: Option<Error>,
    output: Option<PlanOutput>,
}

enum Sink {
    Future(Py<PyAny>),
    Plan(Arc<Mutex<PlanRun>>, usize),
}

struct Op {
    job: Job,
    sink: Sink,
    /// Queued with the writes, which go first.
    write: bool,
}

struct InFlight {
    transaction: u16,
    op: Op,
    deadline: Instant,
}

enum Link {
    Down,
    Connecting { socket: Socket, deadline: Instant },
    Up { stream: TcpStream, last_io: Instant },
    Closed,
}

/// One Modbus TCP connection driven by the running asyncio loop (see the module's notes).
#[pyclass(module = "bifrost._native")]
pub(crate) struct TcpSession {
    device: Arc<str>,
    address: SocketAddr,
    timeout: Duration,
    /// The depth asked for, and the depth in use (1 once the device proved it cannot pipeline).
    asked_depth: usize,
    depth: usize,
    warn: Option<Py<PyAny>>,
    event_loop: Option<Py<PyAny>>,
    create_future: Option<Py<PyAny>>,
    link: Link,
    decoder: Decoder,
    out: Vec<u8>,
    writer_armed: bool,
    transaction: u16,
    in_flight: VecDeque<InFlight>,
    writes: VecDeque<Op>,
    reads: VecDeque<Op>,
    /// Futures of `connect()` calls waiting for the attempt under way.
    connecting: Vec<Py<PyAny>>,
    backoff: Backoff,
    next_attempt: Instant,
    last_error: Option<Error>,
    /// An attempt is due at the next attempt time (callers are queued).
    reconnect_due: bool,
    timer: Option<(Instant, Py<PyAny>)>,
    /// Connections lost (timeouts, resets, protocol errors) and requests sent, for tests.
    losses: u64,
    requests: u64,
    /// The fleet hub this session reads through (and its token there), instead of the loop.
    hub: Option<(Arc<Hub>, usize)>,
}

impl TcpSession {
    fn closed_error(&self) -> Error {
        Error::Closed {
            device: Arc::clone(&self.device),
        }
    }

    fn connect_error(&self, message: String) -> Error {
        Error::Connect {
            device: Arc::clone(&self.device),
            source: Arc::new(io::Error::other(message)),
        }
    }

    fn protocol_error(&self, message: String) -> Error {
        Error::Protocol {
            device: Arc::clone(&self.device),
            message: message.into(),
        }
    }

    fn event_loop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.event_loop {
            Some(event_loop) => Ok(event_loop.bind(py).clone()),
            None => Err(errors::connect_error(
                py,
                format!("{}: not connected (call connect() first)", self.device),
            )),
        }
    }

    fn new_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.create_future {
            Some(create) => create.bind(py).call0(),
            None => Err(errors::connect_error(
                py,
                format!("{}: not connected (call connect() first)", self.device),
            )),
        }
    }

    fn fd(&self) -> Option<i32> {
        match &self.link {
            Link::Up { stream, .. } => Some(stream.as_raw_fd()),
            Link::Connecting { socket, .. } => Some(socket.as_raw_fd()),
            Link::Down | Link::Closed => None,
        }
    }

    fn warn(&self, py: Python<'_>, message: String) {
        if let Some(warn) = &self.warn {
            if let Err(err) = warn.bind(py).call1((message,)) {
                err.write_unraisable(py, None);
            }
        }
    }

    fn fall_back(&mut self, py: Python<'_>, why: &str) {
        if self.depth > 1 {
            self.depth = 1;
            let message = format!(
                "{}: {why}: it cannot take pipelined requests; sending one at a time from now on \
                 (max_in_flight={} asked, 1 used)",
                self.device, self.asked_depth
            );
            self.warn(py, message);
        }
    }

    // -- timers -------------------------------------------------------------------------------

    /// The earliest moment something is due: a reply's deadline, the connect's, a reconnect.
    fn next_due(&self) -> Option<Instant> {
        let mut due = self.in_flight.front().map(|f| f.deadline);
        if let Link::Connecting { deadline, .. } = &self.link {
            due = Some(due.map_or(*deadline, |d| d.min(*deadline)));
        }
        if self.reconnect_due && matches!(self.link, Link::Down) {
            due = Some(due.map_or(self.next_attempt, |d| d.min(self.next_attempt)));
        }
        due
    }

    /// Have the timer fire by `due` (a timer set earlier stays: it moves itself on when it fires).
    fn arm(&mut self, py: Python<'_>, me: &Bound<'_, Self>, due: Instant) {
        if let Some((at, _)) = &self.timer {
            if due >= *at {
                return;
            }
        }
        self.disarm(py);
        let Ok(event_loop) = self.event_loop(py) else {
            return;
        };
        let delay = due.saturating_duration_since(Instant::now()).as_secs_f64();
        let armed = me.getattr(intern!(py, "_on_timer")).and_then(|callback| {
            event_loop.call_method1(intern!(py, "call_later"), (delay, callback))
        });
        match armed {
            Ok(handle) => self.timer = Some((due, handle.unbind())),
            Err(err) => err.write_unraisable(py, None),
        }
    }

    fn disarm(&mut self, py: Python<'_>) {
        if let Some((_, handle)) = self.timer.take() {
            let _ = handle.bind(py).call_method0(intern!(py, "cancel"));
        }
    }

    fn rearm(&mut self, py: Python<'_>, me: &Bound<'_, Self>) {
        if let Some(due) = self.next_due() {
            self.arm(py, me, due);
        }
    }

    // -- the connection -----------------------------------------------------------------------

    fn start_connect(&mut self, py: Python<'_>, me: &Bound<'_, Self>) {
        self.reconnect_due = false;
        let attempt = (|| -> io::Result<Option<Socket>> {
            let socket = Socket::new(
                Domain::for_address(self.address),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            socket.set_nonblocking(true)?;
            // One small request, one small reply: never wait for Nagle.
            socket.set_tcp_nodelay(true)?;
            match socket.connect(&SockAddr::from(self.address)) {
                Ok(()) => Ok(Some(socket)),
                Err(e) if e.raw_os_error().is_some_and(|c| IN_PROGRESS.contains(&c)) => {
                    Ok(Some(socket))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Some(socket)),
                Err(e) => Err(e),
            }
        })();
        match attempt {
            Ok(Some(socket)) => {
                let fd = socket.as_raw_fd();
                let deadline = Instant::now() + self.timeout;
                self.link = Link::Connecting { socket, deadline };
                let watched = self.event_loop(py).and_then(|event_loop| {
                    event_loop.call_method1(
                        intern!(py, "add_writer"),
                        (fd, me.getattr(intern!(py, "_on_connect"))?),
                    )
                });
                if let Err(err) = watched {
                    self.link = Link::Down;
                    self.connect_failed(py, me, err.to_string());
                    return;
                }
                self.arm(py, me, deadline);
            }
            Ok(None) => {}
            Err(e) => self.connect_failed(py, me, strerror(&e)),
        }
    }

    fn connect_failed(&mut self, py: Python<'_>, me: &Bound<'_, Self>, why: String) {
        let error = self.connect_error(format!("cannot connect: {why}"));
        self.next_attempt = Instant::now() + self.backoff.next_delay();
        self.last_error = Some(error.clone());
        // Every caller waiting for this attempt hears how it went, as each would have tried once.
        for future in std::mem::take(&mut self.connecting) {
            settle_err(py, future.bind(py), &error);
        }
        let queued: Vec<Op> = self.writes.drain(..).chain(self.reads.drain(..)).collect();
        for op in queued {
            Self::complete(py, op, Err(error.clone()));
        }
        self.rearm(py, me);
    }

    fn on_connected(&mut self, py: Python<'_>, me: &Bound<'_, Self>, socket: Socket) {
        let stream = TcpStream::from(socket);
        let fd = stream.as_raw_fd();
        if let Err(err) = self.watch_readable(py, me, fd) {
            self.connect_failed(py, me, err.to_string());
            return;
        }
        self.link = Link::Up {
            stream,
            last_io: Instant::now(),
        };
        self.decoder.clear();
        self.out.clear();
        self.writer_armed = false;
        self.backoff.reset();
        self.last_error = None;
        for future in std::mem::take(&mut self.connecting) {
            settle(py, future.bind(py), Ok(py.None()));
        }
        self.pump(py, me);
    }

    /// Have the loop (or the fleet's hub) call `_on_readable` when `fd` has bytes.
    fn watch_readable(&self, py: Python<'_>, me: &Bound<'_, Self>, fd: i32) -> PyResult<()> {
        if let Some((hub, token)) = &self.hub {
            return hub.register(py, fd, *token, me.clone().unbind());
        }
        self.event_loop(py)?.call_method1(
            intern!(py, "add_reader"),
            (fd, me.getattr(intern!(py, "_on_readable"))?),
        )?;
        Ok(())
    }

    fn unwatch_readable(&self, py: Python<'_>, fd: i32) {
        if let Some((hub, _)) = &self.hub {
            hub.deregister(fd);
        } else if let Ok(event_loop) = self.event_loop(py) {
            let _ = event_loop.call_method1(intern!(py, "remove_reader"), (fd,));
        }
    }

    /// Stop watching the socket and close it.
    fn unwatch(&mut self, py: Python<'_>) {
        if let Some(fd) = self.fd() {
            if matches!(self.link, Link::Up { .. }) {
                self.unwatch_readable(py, fd);
            }
            if let Ok(event_loop) = self.event_loop(py) {
                let _ = event_loop.call_method1(intern!(py, "remove_writer"), (fd,));
            }
        }
        self.writer_armed = false;
        self.out.clear();
        self.decoder.clear();
    }

    /// Drop the connection: what is in flight fails with `error`, plans that lost it fail
    /// their remaining requests, and callers still queued wait for the next attempt. `idle`:
    /// nothing was lost (the device closed an idle connection), so the next attempt is now.
    fn lose(&mut self, py: Python<'_>, me: &Bound<'_, Self>, error: &Error, idle: bool) {
        self.unwatch(py);
        self.link = Link::Down;
        let now = Instant::now();
        if idle {
            self.next_attempt = now;
        } else {
            self.losses += 1;
            self.next_attempt = now + self.backoff.next_delay();
            self.last_error = Some(error.clone());
        }
        for flight in std::mem::take(&mut self.in_flight) {
            Self::complete(py, flight.op, Err(error.clone()));
        }
        self.sweep(py);
        if !self.writes.is_empty() || !self.reads.is_empty() {
            self.reconnect_due = true;
        }
        self.disarm(py);
        if self.reconnect_due && self.next_attempt <= now {
            self.start_connect(py, me);
        } else {
            self.rearm(py, me);
        }
    }

    /// Fail the queued requests of plans that lost their connection.
    fn sweep(&mut self, py: Python<'_>) {
        for queue in [0, 1] {
            let ops: Vec<Op> = if queue == 0 {
                self.writes.drain(..).collect()
            } else {
                self.reads.drain(..).collect()
            };
            for op in ops {
                let broken = match &op.sink {
                    Sink::Plan(run, _) => lock(run).broken.clone(),
                    Sink::Future(_) => None,
                };
                match broken {
                    Some(error) => Self::complete(py, op, Err(error)),
                    None if queue == 0 => self.writes.push_back(op),
                    None => self.reads.push_back(op),
                }
            }
        }
    }

    // -- requests -----------------------------------------------------------------------------

    /// Take a request: send it now if the pipeline has room, else queue it (writes first).
    fn submit(&mut self, py: Python<'_>, me: &Bound<'_, Self>, op: Op) {
        if matches!(self.link, Link::Closed) {
            let error = self.closed_error();
            Self::complete(py, op, Err(error));
            return;
        }
        if let Link::Up { stream, last_io } = &self.link {
            if self.in_flight.is_empty() && last_io.elapsed() >= IDLE_CHECK {
                let mut byte = [0u8; 1];
                if matches!(stream.peek(&mut byte), Ok(0)) {
                    // The device closed it while idle (a restart): open anew, the call goes on.
                    let error = self.connect_error("connection lost: the device closed it".into());
                    self.lose(py, me, &error, true);
                }
            }
        }
        let write = op.write;
        match &self.link {
            Link::Up { .. }
                if self.in_flight.len() < self.depth
                    && self.writes.is_empty()
                    && self.reads.is_empty() =>
            {
                self.send(py, me, op);
                self.flush(py, me);
                return;
            }
            Link::Up { .. } | Link::Connecting { .. } => {}
            Link::Down => {
                let now = Instant::now();
                if self.next_attempt > now + self.timeout {
                    let wait = self.next_attempt - now;
                    let cause = self
                        .last_error
                        .as_ref()
                        .map_or_else(|| "not connected".to_owned(), ToString::to_string);
                    let error = self.connect_error(format!(
                        "not connected ({cause}); next attempt in {} ms",
                        wait.as_millis()
                    ));
                    Self::complete(py, op, Err(error));
                    return;
                }
                self.reconnect_due = true;
                if self.next_attempt <= now {
                    self.queue(op, write);
                    self.start_connect(py, me);
                    return;
                }
                self.arm(py, me, self.next_attempt);
            }
            Link::Closed => unreachable!("handled above"),
        }
        self.queue(op, write);
    }

    fn queue(&mut self, op: Op, write: bool) {
        if write {
            self.writes.push_back(op);
        } else {
            self.reads.push_back(op);
        }
    }

    /// Encode a request into the outgoing bytes and note it in flight.
    fn send(&mut self, py: Python<'_>, me: &Bound<'_, Self>, op: Op) {
        self.transaction = self.transaction.wrapping_add(1);
        op.job.encode(&mut self.out, self.transaction);
        let deadline = Instant::now() + self.timeout;
        self.in_flight.push_back(InFlight {
            transaction: self.transaction,
            op,
            deadline,
        });
        self.requests += 1;
        self.arm(py, me, deadline);
    }

    /// Fill the pipeline from the queues (writes first), then write.
    fn pump(&mut self, py: Python<'_>, me: &Bound<'_, Self>) {
        while matches!(self.link, Link::Up { .. }) && self.in_flight.len() < self.depth {
            let Some(op) = self.writes.pop_front().or_else(|| self.reads.pop_front()) else {
                break;
            };
            match &op.sink {
                Sink::Plan(run, _) => {
                    let broken = lock(run).broken.clone();
                    if let Some(error) = broken {
                        Self::complete(py, op, Err(error));
                        continue;
                    }
                }
                Sink::Future(future) => {
                    // A caller that gave up (cancelled) is not sent for.
                    if future
                        .bind(py)
                        .call_method0(intern!(py, "done"))
                        .and_then(|d| d.is_truthy())
                        .unwrap_or(false)
                    {
                        continue;
                    }
                }
            }
            self.send(py, me, op);
        }
        self.flush(py, me);
    }

    fn flush(&mut self, py: Python<'_>, me: &Bound<'_, Self>) {
        if self.out.is_empty() || self.writer_armed {
            return;
        }
        let Link::Up { stream, last_io } = &mut self.link else {
            return;
        };
        let result = loop {
            match (&*stream).write(&self.out) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        *last_io = Instant::now();
        match result {
            Ok(n) if n == self.out.len() => self.out.clear(),
            Ok(n) => {
                self.out.drain(..n);
                self.watch_writable(py, me);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.watch_writable(py, me),
            Err(e) => {
                let error = self.connect_error(lost(&e));
                self.lose(py, me, &error, false);
            }
        }
    }

    fn watch_writable(&mut self, py: Python<'_>, me: &Bound<'_, Self>) {
        let Some(fd) = self.fd() else { return };
        let watched = self.event_loop(py).and_then(|event_loop| {
            event_loop.call_method1(
                intern!(py, "add_writer"),
                (fd, me.getattr(intern!(py, "_on_writable"))?),
            )
        });
        match watched {
            Ok(_) => self.writer_armed = true,
            Err(err) => err.write_unraisable(py, None),
        }
    }

    /// Settle one request: its caller's future, or its slot in a plan run.
    fn complete(py: Python<'_>, op: Op, result: Result<Answer, Error>) {
        match op.sink {
            Sink::Future(future) => {
                let value = match result {
                    Ok(Answer::Words(words)) => words_to_py(py, words),
                    Ok(Answer::Done) => Ok(py.None()),
                    Ok(Answer::Pdu(pdu)) => Ok(PyBytes::new(py, &pdu).into_any().unbind()),
                    Err(error) => Err(errors::to_py(py, &error)),
                };
                settle(py, future.bind(py), value);
            }
            Sink::Plan(run, index) => {
                let finished = {
                    let mut run = lock(&run);
                    let result = result.map(|answer| match answer {
                        Answer::Words(words) => words,
                        Answer::Done | Answer::Pdu(_) => unreachable!("a plan only reads"),
                    });
                    if let Err(error) = &result {
                        if run.broken.is_none() && is_transport(error) {
                            run.broken = Some(error.clone());
                        }
                    }
                    run.replies[index] = Some(result);
                    run.remaining -= 1;
                    run.remaining == 0
                };
                if finished {
                    finish(py, &run);
                }
            }
        }
    }

    /// Every frame that is in, matched to its request.
    fn take_frames(&mut self, py: Python<'_>, me: &Bound<'_, Self>) {
        loop {
            let frame = match self.decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(why) => {
                    let error = self.protocol_error(format!("the reply stream is broken: {why}"));
                    self.lose(py, me, &error, false);
                    return;
                }
            };
            let Some(position) = self
                .in_flight
                .iter()
                .position(|f| f.transaction == frame.transaction)
            else {
                // Timeouts drop the connection, so no abandoned transaction lives on it: a reply
                // that answers nothing in flight is the device's fault, and told at once.
                let expected = self.in_flight.front().map_or_else(
                    || "none is in flight".to_owned(),
                    |f| format!("{} expected", f.transaction),
                );
                let error = self.protocol_error(format!(
                    "a reply with transaction id {} answers no request ({expected})",
                    frame.transaction
                ));
                self.lose(py, me, &error, false);
                return;
            };
            if position > 0 {
                self.fall_back(py, "it answered out of order");
            }
            let Some(flight) = self.in_flight.remove(position) else {
                return;
            };
            let unit = flight.op.job.unit();
            let answer = if frame.unit == unit {
                flight.op.job.answer(frame.pdu)
            } else {
                Err(ReplyError::Malformed(format!(
                    "asked unit {unit}, answered by unit {}",
                    frame.unit
                )))
            };
            match answer {
                Ok(answer) => Self::complete(py, flight.op, Ok(answer)),
                Err(ReplyError::Exception { function, code }) => {
                    let error = Error::Exception {
                        device: Arc::clone(&self.device),
                        unit,
                        function,
                        code,
                    };
                    Self::complete(py, flight.op, Err(error));
                }
                Err(ReplyError::Malformed(why)) => {
                    let error = self.protocol_error(why);
                    Self::complete(py, flight.op, Err(error.clone()));
                    self.lose(py, me, &error, false);
                    return;
                }
            }
        }
    }

    fn plan_run(
        &mut self,
        py: Python<'_>,
        me: &Bound<'_, Self>,
        plan: Arc<ReadPlan>,
        output: PlanOutput,
    ) {
        let count = plan.requests().len();
        let run = Arc::new(Mutex::new(PlanRun {
            plan: Arc::clone(&plan),
            replies: (0..count).map(|_| None).collect(),
            remaining: count,
            broken: None,
            output: Some(output),
        }));
        if count == 0 {
            finish(py, &run);
            return;
        }
        for (index, request) in plan.requests().iter().enumerate() {
            let op = Op {
                job: Job::Read(*request),
                sink: Sink::Plan(Arc::clone(&run), index),
                write: false,
            };
            if let Err(message) = request.validate() {
                let error = Error::Invalid {
                    device: Arc::clone(&self.device),
                    message: message.into(),
                };
                Self::complete(py, op, Err(error));
                continue;
            }
            self.submit(py, me, op);
        }
    }

    fn call(
        &mut self,
        py: Python<'_>,
        me: &Bound<'_, Self>,
        job: Job,
        write: bool,
    ) -> PyResult<Py<PyAny>> {
        let future = self.new_future(py)?.unbind();
        let invalid = match &job {
            Job::Read(request) => request.validate().err(),
            Job::Write(request) => request.validate().err(),
            Job::Raw { pdu, .. } => pdu
                .is_empty()
                .then(|| "an empty PDU".to_owned())
                .or_else(|| (pdu.len() > 253).then(|| "a PDU over 253 bytes".to_owned())),
        };
        let op = Op {
            job,
            sink: Sink::Future(future.clone_ref(py)),
            write,
        };
        if let Some(message) = invalid {
            let error = Error::Invalid {
                device: Arc::clone(&self.device),
                message: message.into(),
            };
            Self::complete(py, op, Err(error));
        } else {
            self.submit(py, me, op);
        }
        Ok(future)
    }
}

/// Plans are run by the fleet poller too.
impl TcpSession {
    /// Read through `hub` (with `token`) from now on, or through the loop again with `None`.
    pub(crate) fn attach(slf: &Bound<'_, Self>, hub: Option<(Arc<Hub>, usize)>) -> PyResult<()> {
        let py = slf.py();
        let mut guard = slf.try_borrow_mut()?;
        let me = &mut *guard;
        let fd = match &me.link {
            Link::Up { stream, .. } => Some(stream.as_raw_fd()),
            _ => None,
        };
        if let Some(fd) = fd {
            me.unwatch_readable(py, fd);
        }
        me.hub = hub;
        if let Some(fd) = fd {
            me.watch_readable(py, slf, fd)?;
        }
        Ok(())
    }

    /// Whether the session reads through `hub`.
    pub(crate) fn attached_to(&self, hub: &Arc<Hub>) -> bool {
        self.hub
            .as_ref()
            .is_some_and(|(mine, _)| Arc::ptr_eq(mine, hub))
    }

    pub(crate) fn run_plan(
        slf: &Bound<'_, Self>,
        plan: Arc<ReadPlan>,
        output: PlanOutput,
    ) -> PyResult<()> {
        let py = slf.py();
        let mut guard = slf.try_borrow_mut()?;
        let me = &mut *guard;
        me.plan_run(py, slf, plan, output);
        Ok(())
    }
}

fn finish(py: Python<'_>, run: &Arc<Mutex<PlanRun>>) {
    let (plan, replies, output) = {
        let mut run = lock(run);
        let replies: Vec<Result<Words, Error>> = run
            .replies
            .iter_mut()
            .map(|reply| reply.take().expect("every request answered"))
            .collect();
        (Arc::clone(&run.plan), replies, run.output.take())
    };
    let timestamp = SystemTime::now();
    if let Some(PlanOutput::Callback(callback)) = output {
        callback(py, Replies { replies, timestamp });
        return;
    }
    let readings = plan.decode(replies, timestamp);
    match output {
        Some(PlanOutput::Values(future)) => {
            let result = readings_to_py(py, &readings);
            settle(py, future.bind(py), result);
        }
        Some(PlanOutput::Points(future, keys, slot)) => {
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(move |py| {
                without_collector(py, || readings_to_points(py, &keys, &readings))
            }));
            settle(py, future.bind(py), Ok(py.None()));
        }
        Some(PlanOutput::Callback(_)) | None => {}
    }
}

fn lock(run: &Mutex<PlanRun>) -> MutexGuard<'_, PlanRun> {
    run.lock().unwrap_or_else(PoisonError::into_inner)
}

fn is_transport(error: &Error) -> bool {
    matches!(
        error,
        Error::Timeout { .. }
            | Error::Connect { .. }
            | Error::Protocol { .. }
            | Error::Closed { .. }
    )
}

/// An OS error's text without Rust's " (os error N)" tail, as Python's `os.strerror` says it.
pub(crate) fn strerror(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn lost(error: &io::Error) -> String {
    if matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
    ) {
        "connection lost: the device closed it".to_owned()
    } else {
        format!("connection lost: {}", strerror(error))
    }
}

/// Settle `future`, unless it is done already (its caller cancelled).
fn settle(py: Python<'_>, future: &Bound<'_, PyAny>, result: PyResult<Py<PyAny>>) {
    // Trying is cheaper than asking first: a cancelled future refuses with InvalidStateError.
    let outcome = match result {
        Ok(value) => future.call_method1(intern!(py, "set_result"), (value,)),
        Err(err) => future.call_method1(intern!(py, "set_exception"), (err.into_value(py),)),
    };
    drop(outcome);
}

fn settle_err(py: Python<'_>, future: &Bound<'_, PyAny>, error: &Error) {
    settle(py, future, Err(errors::to_py(py, error)));
}

#[pymethods]
impl TcpSession {
    /// `address`: a resolved `ip:port`. `name`: how errors name the device. `max_in_flight`:
    /// requests kept on the wire at once (1: one at a time). `warn(message)` is called when
    /// the device turns out unable to pipeline.
    #[new]
    #[pyo3(signature = (address, *, name, timeout, max_in_flight=1, warn=None, backoff_base=0.1, backoff_max=10.0, backoff_seed=None))]
    fn new(
        py: Python<'_>,
        address: &str,
        name: String,
        timeout: f64,
        max_in_flight: usize,
        warn: Option<Py<PyAny>>,
        backoff_base: f64,
        backoff_max: f64,
        backoff_seed: Option<u64>,
    ) -> PyResult<Self> {
        let address: SocketAddr = address.parse().map_err(|e| {
            errors::config_error(py, format!("{name}: {address:?} is not an ip:port ({e})"))
        })?;
        if max_in_flight == 0 {
            return Err(errors::config_error(
                py,
                format!("{name}: max_in_flight must be 1 or more"),
            ));
        }
        let backoff = Backoff::new(BackoffConfig {
            base: seconds(py, "backoff_base", backoff_base)?,
            max: seconds(py, "backoff_max", backoff_max)?,
            seed: backoff_seed,
            ..BackoffConfig::default()
        });
        Ok(Self {
            device: Arc::from(name.as_str()),
            address,
            timeout: seconds(py, "timeout", timeout)?,
            asked_depth: max_in_flight,
            depth: max_in_flight,
            warn,
            event_loop: None,
            create_future: None,
            link: Link::Down,
            decoder: Decoder::new(),
            out: Vec::new(),
            writer_armed: false,
            transaction: 0,
            in_flight: VecDeque::new(),
            writes: VecDeque::new(),
            reads: VecDeque::new(),
            connecting: Vec::new(),
            backoff,
            next_attempt: Instant::now(),
            last_error: None,
            reconnect_due: false,
            timer: None,
            losses: 0,
            requests: 0,
            hub: None,
        })
    }

    /// Connect now (ignoring the backoff's schedule) on the running loop; the session belongs
    /// to that loop from then on. Awaitable; raises `ConnectError`.
    fn connect<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        let mut guard = slf.try_borrow_mut()?;
        let me = &mut *guard;
        if matches!(me.link, Link::Closed) {
            me.link = Link::Down;
        }
        let same = me
            .event_loop
            .as_ref()
            .is_some_and(|l| l.bind(py).is(&event_loop));
        if !same {
            if !matches!(me.link, Link::Down) {
                let error = me.connect_error("connection lost: moved to another event loop".into());
                me.lose(py, slf, &error, true);
                me.link = Link::Down;
            }
            me.create_future = Some(event_loop.getattr("create_future")?.unbind());
            me.event_loop = Some(event_loop.unbind());
            me.timer = None;
        }
        let future = me.new_future(py)?;
        match me.link {
            Link::Up { .. } => settle(py, &future, Ok(py.None())),
            Link::Connecting { .. } => me.connecting.push(future.clone().unbind()),
            Link::Down => {
                me.connecting.push(future.clone().unbind());
                me.start_connect(py, slf);
            }
            Link::Closed => unreachable!("reopened above"),
        }
        Ok(future)
    }

    /// Close the connection; everything waiting fails with `ConnectError`. Safe to call twice.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let mut guard = slf.try_borrow_mut()?;
        let me = &mut *guard;
        me.unwatch(py);
        me.disarm(py);
        me.link = Link::Closed;
        me.reconnect_due = false;
        let error = me.closed_error();
        for future in std::mem::take(&mut me.connecting) {
            settle_err(py, future.bind(py), &error);
        }
        let ops: Vec<Op> = std::mem::take(&mut me.in_flight)
            .into_iter()
            .map(|f| f.op)
            .chain(me.writes.drain(..))
            .chain(me.reads.drain(..))
            .collect();
        for op in ops {
            Self::complete(py, op, Err(error.clone()));
        }
        Ok(())
    }

    /// Read `count` items of `area` (`coil`, `di`, `ir`, `hr`) from `start`: an awaitable of a
    /// list of ints (registers) or bools (bits).
    fn read(
        slf: &Bound<'_, Self>,
        unit: u8,
        area: &str,
        start: u16,
        count: u16,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let request = ReadRequest::new(unit, parse_area(py, area)?, start, count);
        slf.try_borrow_mut()?
            .call(py, slf, Job::Read(request), false)
    }

    /// Write holding registers: FC6 for one word, FC16 for several.
    fn write_registers(
        slf: &Bound<'_, Self>,
        unit: u8,
        start: u16,
        words: Vec<u16>,
    ) -> PyResult<Py<PyAny>> {
        let request = if words.len() == 1 {
            WriteRequest::Register {
                unit,
                address: start,
                value: words[0],
            }
        } else {
            WriteRequest::Registers {
                unit,
                address: start,
                values: words,
            }
        };
        slf.try_borrow_mut()?
            .call(slf.py(), slf, Job::Write(request), true)
    }

    /// Write coils: FC5 for one, FC15 for several.
    fn write_coils(
        slf: &Bound<'_, Self>,
        unit: u8,
        start: u16,
        bits: Vec<bool>,
    ) -> PyResult<Py<PyAny>> {
        let request = if bits.len() == 1 {
            WriteRequest::Coil {
                unit,
                address: start,
                value: bits[0],
            }
        } else {
            WriteRequest::Coils {
                unit,
                address: start,
                values: bits,
            }
        };
        slf.try_borrow_mut()?
            .call(slf.py(), slf, Job::Write(request), true)
    }

    /// Send a request PDU encoded by the caller; an awaitable of the reply's PDU (bytes). An
    /// exception reply raises `DeviceError`. `write`: queue it with the writes (served first);
    /// reads of identity (17, 43) wait with the reads.
    #[pyo3(signature = (unit, pdu, write=true))]
    fn transact(slf: &Bound<'_, Self>, unit: u8, pdu: Vec<u8>, write: bool) -> PyResult<Py<PyAny>> {
        slf.try_borrow_mut()?
            .call(slf.py(), slf, Job::Raw { unit, pdu }, write)
    }

    /// Run a plan: an awaitable of `(values, errors)` (see `ModbusClient.execute`).
    fn execute(slf: &Bound<'_, Self>, plan: &NativePlan) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let mut guard = slf.try_borrow_mut()?;
        let me = &mut *guard;
        let future = me.new_future(py)?.unbind();
        me.plan_run(
            py,
            slf,
            Arc::clone(&plan.plan),
            PlanOutput::Values(future.clone_ref(py)),
        );
        Ok(future)
    }

    /// Run a plan whose tags have keys: an awaitable of `(points, failures)` (see
    /// `ModbusClient.read_points`).
    fn read_points<'py>(
        slf: &Bound<'py, Self>,
        plan: &NativePlan,
    ) -> PyResult<Bound<'py, Deferred>> {
        let py = slf.py();
        let keys = plan.keys(py)?;
        let mut guard = slf.try_borrow_mut()?;
        let me = &mut *guard;
        let future = me.new_future(py)?.unbind();
        let slot = Slot::default();
        let output = PlanOutput::Points(future.clone_ref(py), keys, Arc::clone(&slot));
        me.plan_run(py, slf, Arc::clone(&plan.plan), output);
        Bound::new(py, Deferred::new(future, slot))
    }

    /// The pipelining depth in use (falls to 1 when the device cannot take more).
    #[getter]
    fn max_in_flight(&self) -> usize {
        self.depth
    }

    #[getter]
    fn connected(&self) -> bool {
        matches!(self.link, Link::Up { .. })
    }

    /// What the session has been through: `connected`, `requests` sent, connections `losses`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = PyDict::new(py);
        stats.set_item("connected", matches!(self.link, Link::Up { .. }))?;
        stats.set_item("requests", self.requests)?;
        stats.set_item("losses", self.losses)?;
        Ok(stats)
    }

    pub(crate) fn _on_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let mut guard = slf.try_borrow_mut()?;
        let me = &mut *guard;
        let mut buffer = [0u8; 8192];
        let mut eof = false;
        let mut failure: Option<io::Error> = None;
        {
            let Link::Up { stream, last_io } = &mut me.link else {
                return Ok(());
            };
            let mut stream: &TcpStream = stream;
            let mut got = Vec::new();
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        got.extend_from_slice(&buffer[..n]);
                        if n < buffer.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            *last_io = Instant::now();
            me.decoder.feed(&got);
        }
        me.take_frames(py, slf);
        if !matches!(me.link, Link::Up { .. }) {
            return Ok(());
        }
        if let Some(e) = failure {
            let error = me.connect_error(lost(&e));
            me.lose(py, slf, &error, false);
        } else if eof {
            // Said as the Python engine says it (a frame cut short is the same event to a caller).
            let what = "connection lost: the device closed it";
            let idle = me.in_flight.is_empty() && !me.decoder.unfinished();
            let error = me.connect_error(what.to_owned());
            me.lose(py, slf, &error, idle);
        } else {
            me.pump(py, slf);
        }
        Ok(())
    }

    fn _on_writable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let mut guard = slf.try_borrow_mut()?;
        let me = &mut *guard;
        if let (Some(fd), Ok(event_loop)) = (me.fd(), me.event_loop(py)) {
            event_loop.call_method1(intern!(py, "remove_writer"), (fd,))?;
        }
        me.writer_armed = false;
        me.flush(py, slf);
        Ok(())
    }

    fn _on_connect(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let mut guard = slf.try_borrow_mut()?;
        let me = &mut *guard;
        let Link::Connecting { socket, .. } = std::mem::replace(&mut me.link, Link::Down) else {
            return Ok(());
        };
        if let Ok(event_loop) = me.event_loop(py) {
            event_loop.call_method1(intern!(py, "remove_writer"), (socket.as_raw_fd(),))?;
        }
        match socket.take_error() {
            Ok(None) => me.on_connected(py, slf, socket),
            Ok(Some(e)) | Err(e) => me.connect_failed(py, slf, strerror(&e)),
        }
        Ok(())
    }

    fn _on_timer(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let now = Instant::now();
        let resting = {
            let me = slf.try_borrow()?;
            me.hub.is_some() && me.in_flight.front().is_some_and(|f| f.deadline <= now)
        };
        if resting {
            // The hub may be resting with the reply already in: take it before calling a timeout.
            Self::_on_readable(slf)?;
        }
        let mut guard = slf.try_borrow_mut()?;
        let me = &mut *guard;
        me.timer = None;
        if let Link::Connecting { deadline, socket } = &me.link {
            if *deadline <= now {
                let fd = socket.as_raw_fd();
                if let Ok(event_loop) = me.event_loop(py) {
                    event_loop.call_method1(intern!(py, "remove_writer"), (fd,))?;
                }
                me.link = Link::Down;
                let why = format!("no connection within {} ms", me.timeout.as_millis());
                me.connect_failed(py, slf, why);
                return Ok(());
            }
        }
        if me.in_flight.front().is_some_and(|f| f.deadline <= now) {
            let Some(front) = me.in_flight.front() else {
                return Ok(());
            };
            let error = Error::Timeout {
                device: Arc::clone(&me.device),
                unit: front.op.job.unit(),
                function: front.op.job.function(),
                after: me.timeout,
            };
            if me.in_flight.len() > 1 {
                me.fall_back(
                    py,
                    "it left a request unanswered while others were in flight",
                );
            }
            // Drop the connection: a late reply must never be taken for a later request's.
            me.lose(py, slf, &error, false);
            return Ok(());
        }
        if me.reconnect_due && matches!(me.link, Link::Down) && me.next_attempt <= now {
            me.start_connect(py, slf);
            return Ok(());
        }
        me.rearm(py, slf);
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "TcpSession({:?}, max_in_flight={})",
            &*self.device, self.depth
        )
    }
}
