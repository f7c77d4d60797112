//! The simulator's OPC UA server: variables from a node list, values pushed in from outside in
//! batches, client writes handed back, security, users, faults and a per-service event log.
//!
//! Every call into the C library happens on the server's own run thread (see `ffi.rs`); this
//! side only shares plain Rust state with it, behind mutexes, so a push of values never waits
//! for the C server's lock.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write as _};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ffi;
use crate::value::{Value, ValueType};

/// How long a client's write waits for the owner to take it (see [`Server::drain_writes`]).
const WRITE_ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// The most service events kept before the oldest are dropped (nobody draining them).
const EVENT_CAP: usize = 100_000;

/// A security policy the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityPolicy {
    None,
    Basic256Sha256,
}

impl SecurityPolicy {
    /// The policy named `name` (`None`, `Basic256Sha256`).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "None" => Some(Self::None),
            "Basic256Sha256" => Some(Self::Basic256Sha256),
            _ => None,
        }
    }
}

/// A username/password user.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
    /// A user without write rights gets `BadUserAccessDenied` on every write.
    pub can_write: bool,
}

/// One served variable.
#[derive(Debug, Clone)]
pub struct Variable {
    /// Its NodeId, `ns=<index>;s=<id>`, `ns=<index>;i=<n>` or `nsu=<uri>;...` (the namespace is
    /// added when it is not there yet).
    pub node_id: String,
    /// Its place under the device folder: `["tank", "level"]` is `Objects/<device>/tank/level`.
    /// The last part is its browse and display name.
    pub path: Vec<String>,
    pub value_type: ValueType,
    pub writable: bool,
    /// EngineeringUnits (a property with an EUInformation) when given.
    pub unit: Option<String>,
    pub initial: Value,
}

/// Everything a server is made from.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (`127.0.0.1`, `0.0.0.0`).
    pub host: String,
    /// Port to listen on; 0 picks a free one ([`Server::port`] tells which).
    pub port: u16,
    /// Endpoint path (`/bifrost`, or empty).
    pub path: String,
    /// The URL the server advertises as its discovery URL (a proxy in front of it); by default
    /// `opc.tcp://<host>:<bound port><path>`.
    pub advertised_url: Option<String>,
    /// ApplicationUri; must match the certificate's URI (a generated one does).
    pub application_uri: String,
    pub application_name: String,
    /// Namespace URIs to register first, in order (the first one gets index 2).
    pub namespaces: Vec<String>,
    /// The device folder under Objects.
    pub device: String,
    pub security: Vec<SecurityPolicy>,
    /// Server certificate and private key (DER or PEM); required for Basic256Sha256.
    pub certificate: Option<(Vec<u8>, Vec<u8>)>,
    /// Username/password users; anonymous logins are allowed only when there are none.
    pub users: Vec<User>,
    pub variables: Vec<Variable>,
}

/// A client's write, handed to the owner of the server to apply.
#[derive(Debug, Clone)]
pub struct ClientWrite {
    /// Index of the variable in [`ServerConfig::variables`].
    pub index: usize,
    pub value: Value,
    /// The user who wrote it (`None`: anonymous).
    pub user: Option<String>,
}

/// One service request the server answered, for the traffic log.
#[derive(Debug, Clone)]
pub struct ServiceEvent {
    /// Seconds since the Unix epoch when the request arrived.
    pub at: f64,
    /// `Read`, `Write`, `Browse`, `CreateMonitoredItems`, `Publish`...
    pub service: String,
    pub request_id: u32,
    pub channel_id: u32,
    /// The session's NodeId (`None` before a session exists).
    pub session: Option<String>,
    /// The variables the request touched: (index in [`ServerConfig::variables`], status code).
    pub nodes: Vec<(usize, u32)>,
}

/// A status that chosen variables answer instead of their value (the `exception` fault).
#[derive(Debug, Clone)]
pub struct StatusFault {
    /// Variables it applies to (`None`: all).
    pub nodes: Option<Vec<usize>>,
    /// The status code answered.
    pub status: u32,
    /// Chance that one operation is answered so (1.0: always).
    pub probability: f64,
    /// Operations left to answer so (`None`: no limit).
    pub count: Option<u64>,
    /// Seed of the draws (`probability` < 1).
    pub seed: u64,
}

pub(crate) struct Meta {
    pub value_type: ValueType,
    /// A one-dimensional array of `value_type` (its initial value is one).
    pub array: bool,
    pub writable: bool,
}

pub(crate) struct NodeState {
    pub value: Value,
    pub status: u32,
    /// UA DateTime (100 ns ticks since 1601).
    pub source_time: i64,
}

struct ArmedFault {
    fault: StatusFault,
    mask: Option<Vec<bool>>,
    rng: u64,
}

#[derive(Default)]
struct WriteQueue {
    pending: VecDeque<(u64, ClientWrite)>,
    next_seq: u64,
    /// Every write up to this sequence number has been taken.
    taken: u64,
}

/// State shared between the owner's threads and the server's run thread.
pub(crate) struct Shared {
    pub meta: Vec<Meta>,
    pub users: HashMap<String, User>,
    states: Mutex<Vec<NodeState>>,
    fault: Mutex<Option<ArmedFault>>,
    writes: Mutex<WriteQueue>,
    write_taken: Condvar,
    events: Mutex<VecDeque<ServiceEvent>>,
    pub log_services: AtomicBool,
    pub stopping: AtomicBool,
    wake_writer: UnixStream,
    wake_reader: UnixStream,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// UA DateTime ticks for a Unix time in seconds.
#[must_use]
pub fn ua_time(unix_seconds: f64) -> i64 {
    const UNIX_EPOCH_TICKS: i64 = 116_444_736_000_000_000;
    UNIX_EPOCH_TICKS + (unix_seconds * 1e7) as i64
}

pub(crate) fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Shared {
    /// The value a read of variable `index` answers: (value, status, source time), or the status
    /// a fault makes it answer instead.
    pub(crate) fn read(&self, index: usize) -> Result<(Value, u32, i64), u32> {
        if let Some(status) = self.fault_status(index) {
            return Err(status);
        }
        let states = lock(&self.states);
        let s = &states[index];
        Ok((s.value.clone(), s.status, s.source_time))
    }

    /// Whether the armed status fault answers this operation on `index`, and with what status.
    pub(crate) fn fault_status(&self, index: usize) -> Option<u32> {
        let mut guard = lock(&self.fault);
        let armed = guard.as_mut()?;
        if let Some(mask) = &armed.mask {
            if !mask.get(index).copied().unwrap_or(false) {
                return None;
            }
        }
        if armed.fault.count == Some(0) {
            return None;
        }
        if armed.fault.probability < 1.0 {
            // xorshift64*: a seeded draw, so a scenario's seed gives the same faults every run.
            armed.rng ^= armed.rng >> 12;
            armed.rng ^= armed.rng << 25;
            armed.rng ^= armed.rng >> 27;
            let draw =
                (armed.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
            if draw >= armed.fault.probability {
                return None;
            }
        }
        if let Some(count) = armed.fault.count.as_mut() {
            *count -= 1;
        }
        Some(armed.fault.status)
    }

    /// A client's write of `value` to `index`: stored (reads see it at once), handed to the owner,
    /// and answered once the owner has taken it (so the plant has it before the client hears back).
    pub(crate) fn client_write(&self, index: usize, value: Value, user: Option<String>) {
        {
            let mut states = lock(&self.states);
            let s = &mut states[index];
            s.value = value.clone();
            s.status = 0;
            s.source_time = ua_time(now_unix());
        }
        let mut q = lock(&self.writes);
        q.next_seq += 1;
        let seq = q.next_seq;
        q.pending
            .push_back((seq, ClientWrite { index, value, user }));
        self.wake();
        let (q, _) = self
            .write_taken
            .wait_timeout_while(q, WRITE_ACK_TIMEOUT, |q| {
                q.taken < seq && !self.stopping.load(Ordering::Relaxed)
            })
            .unwrap_or_else(PoisonError::into_inner);
        drop(q);
    }

    pub(crate) fn push_event(&self, event: ServiceEvent) {
        let mut events = lock(&self.events);
        if events.len() >= EVENT_CAP {
            events.pop_front();
        }
        events.push_back(event);
        drop(events);
        // The owner drains events where it drains writes: wake it for them too.
        self.wake();
    }

    fn wake(&self) {
        // A full socket buffer already means "wake up": a failed write loses nothing.
        let _ = (&self.wake_writer).write(&[1]);
    }
}

/// A running server. Dropping it stops it.
pub struct Server {
    shared: std::sync::Arc<Shared>,
    runner: Option<ffi::Runner>,
    port: u16,
    url: String,
    namespaces: Vec<String>,
    node_ids: Vec<String>,
}

/// Why a server could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl Server {
    /// Build the address space and start serving; returns once the socket listens.
    ///
    /// # Errors
    ///
    /// A node that cannot be added (bad NodeId, duplicate), a certificate that does not load, a
    /// port that cannot be bound.
    pub fn start(config: ServerConfig) -> Result<Self, StartError> {
        if config.security.contains(&SecurityPolicy::Basic256Sha256) && config.certificate.is_none()
        {
            return Err(StartError(
                "Basic256Sha256 needs a server certificate and private key".into(),
            ));
        }
        for v in &config.variables {
            if v.initial.value_type() != v.value_type {
                return Err(StartError(format!(
                    "{}: initial value {:?} is not a {}",
                    v.node_id, v.initial, v.value_type
                )));
            }
            if v.path.is_empty() {
                return Err(StartError(format!("{}: empty browse path", v.node_id)));
            }
        }
        let (wake_reader, wake_writer) =
            UnixStream::pair().map_err(|e| StartError(format!("wake socket: {e}")))?;
        wake_reader
            .set_nonblocking(true)
            .and_then(|()| wake_writer.set_nonblocking(true))
            .map_err(|e| StartError(format!("wake socket: {e}")))?;
        let now = ua_time(now_unix());
        let shared = std::sync::Arc::new(Shared {
            meta: config
                .variables
                .iter()
                .map(|v| Meta {
                    value_type: v.value_type,
                    array: v.initial.is_array(),
                    writable: v.writable,
                })
                .collect(),
            users: config
                .users
                .iter()
                .map(|u| (u.name.clone(), u.clone()))
                .collect(),
            states: Mutex::new(
                config
                    .variables
                    .iter()
                    .map(|v| NodeState {
                        value: v.initial.clone(),
                        status: 0,
                        source_time: now,
                    })
                    .collect(),
            ),
            fault: Mutex::new(None),
            writes: Mutex::new(WriteQueue::default()),
            write_taken: Condvar::new(),
            events: Mutex::new(VecDeque::new()),
            log_services: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            wake_writer,
            wake_reader,
        });
        let started =
            ffi::Runner::start(config, std::sync::Arc::clone(&shared)).map_err(StartError)?;
        Ok(Self {
            shared,
            port: started.port,
            url: started.url,
            namespaces: started.namespaces,
            node_ids: started.node_ids,
            runner: Some(started.runner),
        })
    }

    /// The port the server listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The endpoint URL it advertises.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's namespace array (index 0 is the OPC UA namespace).
    #[must_use]
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Each variable's NodeId as the server holds it (`ns=<index>;...`), in config order.
    #[must_use]
    pub fn node_ids(&self) -> &[String] {
        &self.node_ids
    }

    /// Set values from outside: (index, value, status code, source time as UA DateTime).
    /// A value of the wrong type for its variable (or a scalar for an array's, or the other way
    /// round) is skipped and its index returned.
    #[must_use]
    pub fn set_values(&self, batch: Vec<(usize, Value, u32, i64)>) -> Vec<usize> {
        let mut rejected = Vec::new();
        let mut states = lock(&self.shared.states);
        for (index, value, status, source_time) in batch {
            match states.get_mut(index) {
                Some(s)
                    if self.shared.meta[index].value_type == value.value_type()
                        && self.shared.meta[index].array == value.is_array() =>
                {
                    s.value = value;
                    s.status = status;
                    s.source_time = source_time;
                }
                _ => rejected.push(index),
            }
        }
        rejected
    }

    /// The value, status and source time variable `index` holds now.
    #[must_use]
    pub fn value(&self, index: usize) -> Option<(Value, u32, i64)> {
        let states = lock(&self.shared.states);
        states
            .get(index)
            .map(|s| (s.value.clone(), s.status, s.source_time))
    }

    /// Take the client writes not taken yet; the clients that wrote them get their answer now.
    #[must_use]
    pub fn drain_writes(&self) -> Vec<ClientWrite> {
        let mut q = lock(&self.shared.writes);
        let drained: Vec<ClientWrite> = q.pending.drain(..).map(|(_, w)| w).collect();
        q.taken = q.next_seq;
        drop(q);
        self.shared.write_taken.notify_all();
        drained
    }

    /// Take the service events logged so far (only while [`Server::set_log_services`] is on).
    #[must_use]
    pub fn drain_events(&self) -> Vec<ServiceEvent> {
        lock(&self.shared.events).drain(..).collect()
    }

    /// Log every service request as a [`ServiceEvent`] (off by default: it costs a little per
    /// request).
    pub fn set_log_services(&self, on: bool) {
        self.shared.log_services.store(on, Ordering::Relaxed);
        if !on {
            lock(&self.shared.events).clear();
        }
    }

    /// Arm (or with `None`, clear) the status fault.
    pub fn set_status_fault(&self, fault: Option<StatusFault>) {
        let n = self.shared.meta.len();
        *lock(&self.shared.fault) = fault.map(|fault| ArmedFault {
            mask: fault.nodes.as_ref().map(|nodes| {
                let mut mask = vec![false; n];
                for &i in nodes {
                    if let Some(m) = mask.get_mut(i) {
                        *m = true;
                    }
                }
                mask
            }),
            rng: fault.seed | 1,
            fault,
        });
    }

    /// Close every session and secure channel (a reboot: clients must reconnect).
    pub fn drop_sessions(&self) {
        if let Some(runner) = &self.runner {
            runner.drop_sessions();
        }
    }

    /// A file descriptor that turns readable when client writes wait in [`Server::drain_writes`]
    /// (or, while services are logged, events in [`Server::drain_events`]);
    /// read it empty with [`Server::clear_wake`].
    #[must_use]
    pub fn wake_fd(&self) -> RawFd {
        self.shared.wake_reader.as_raw_fd()
    }

    /// Empty the wake socket.
    pub fn clear_wake(&self) {
        let mut buf = [0u8; 256];
        loop {
            match io::Read::read(&mut &self.shared.wake_reader, &mut buf) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }

    /// Stop serving: sessions end, the socket closes. Returns once the run thread has exited.
    pub fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared.write_taken.notify_all();
        if let Some(runner) = self.runner.take() {
            runner.stop();
        }
    }

    /// Whether the server is still running.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.runner.as_ref().is_some_and(ffi::Runner::is_running)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A self-signed certificate and private key (DER) for `application_uri`, valid for the given
/// host names and IP addresses.
///
/// # Errors
///
/// When the C library cannot make one.
pub fn generate_certificate(
    application_uri: &str,
    hosts: &[String],
) -> Result<(Vec<u8>, Vec<u8>), String> {
    ffi::generate_certificate(application_uri, hosts)
}

/// The numeric status code named `name` (`BadNodeIdUnknown`, `Good`, `UncertainLastUsableValue`).
#[must_use]
pub fn status_code(name: &str) -> Option<u32> {
    ffi::status_codes().get(name).copied()
}

/// The name of status code `code`.
#[must_use]
pub fn status_name(code: u32) -> &'static str {
    ffi::status_name(code)
}
