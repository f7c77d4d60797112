//! An OPC UA client over the `open62541` crate's [`AsyncClient`]: one Read of many nodes, Write,
//! Browse with continuation points, subscriptions with monitored items, security and users.
//!
//! Service calls are futures completed by the C client's own background thread (the crate's): a
//! call sends its request from whichever thread polls it first, and the response's callback wakes
//! it. Nothing here needs an async runtime; only [`Client::connect`] blocks (the C connect is
//! synchronous), so callers run it on a thread they can spare.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

use open62541::{
    ua, AsyncClient, AsyncSubscription, Certificate, ClientBuilder, DataType as _,
    MonitoredItemCreateRequestBuilder, MonitoredItemHandle, PrivateKey, SubscriptionBuilder,
};

use crate::ffi;
use crate::read::{PreparedRead, ReadValues};
use crate::value::Value;

const POLICY_URI_PREFIX: &str = "http://opcfoundation.org/UA/SecurityPolicy#";
/// 100 ns ticks from 1601-01-01 (OPC UA's DateTime epoch) to 1970-01-01.
const UNIX_EPOCH_TICKS: i64 = 116_444_736_000_000_000;
const BAD_TIMEOUT: u32 = 0x800A_0000;
/// Statuses that say the session (or the channel under it) is gone, not that one request failed.
const SESSION_LOST: [&str; 11] = [
    "BadSessionIdInvalid",
    "BadSessionClosed",
    "BadSessionNotActivated",
    "BadSecureChannelIdInvalid",
    "BadSecureChannelClosed",
    "BadConnectionClosed",
    "BadServerHalted",
    "BadShutdown",
    "BadNotConnected",
    "BadCommunicationError",
    "BadDisconnect",
];

/// How a client call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The server cannot be reached, refused the session, or the session is gone.
    Connect(String),
    /// No answer within the timeout.
    Timeout(String),
    /// The whole service call failed with this Bad status.
    Status { message: String, code: u32 },
    /// The server answered something this client cannot use.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(m) | Self::Timeout(m) | Self::Protocol(m) => f.write_str(m),
            Self::Status { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for ClientError {}

/// Message security of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    None,
    Sign,
    SignAndEncrypt,
}

impl SecurityMode {
    /// The mode named `name` (`None`, `Sign`, `SignAndEncrypt`).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "None" => Some(Self::None),
            "Sign" => Some(Self::Sign),
            "SignAndEncrypt" => Some(Self::SignAndEncrypt),
            _ => None,
        }
    }
}

/// The client's certificate (PEM or DER), its private key and the ApplicationUri in it.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    pub certificate: Vec<u8>,
    pub private_key: Vec<u8>,
    pub application_uri: String,
}

/// How to open a session.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `opc.tcp://host:port/path`.
    pub url: String,
    /// Every request's timeout (and the connect's).
    pub timeout: Duration,
    /// The security policy's name (`None`, `Basic256Sha256`, `Aes128_Sha256_RsaOaep`...).
    pub policy: String,
    pub mode: SecurityMode,
    /// Needed for any policy but None.
    pub certificate: Option<ClientCertificate>,
    /// (user, password); anonymous when `None`.
    pub user: Option<(String, String)>,
}

/// A NodeId's identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identifier {
    Numeric(u32),
    String(String),
    /// The 16 bytes of a Guid, in its text order (Data1..Data3 big-endian, then Data4).
    Guid([u8; 16]),
    Opaque(Vec<u8>),
}

/// A NodeId by namespace index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeRef {
    pub namespace: u16,
    pub identifier: Identifier,
}

impl NodeRef {
    pub(crate) fn to_ua(&self) -> Result<ua::NodeId, ClientError> {
        let ns = self.namespace;
        Ok(match &self.identifier {
            Identifier::Numeric(n) => ua::NodeId::numeric(ns, *n),
            Identifier::String(s) => {
                if s.contains('\0') {
                    return Err(ClientError::Protocol(format!(
                        "the NodeId string {s:?} holds a NUL character, which open62541 cannot send"
                    )));
                }
                ua::NodeId::string(ns, s)
            }
            Identifier::Guid(b) => {
                let d1 = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                let d2 = u16::from_be_bytes([b[4], b[5]]);
                let d3 = u16::from_be_bytes([b[6], b[7]]);
                let mut d4 = [0u8; 8];
                d4.copy_from_slice(&b[8..]);
                ua::NodeId::guid(ns, ua::Guid::new(d1, d2, d3, d4))
            }
            Identifier::Opaque(b) => ua::NodeId::byte_string(ns, b),
        })
    }

    fn from_ua(node: &ua::NodeId) -> Self {
        let namespace = node.namespace_index();
        let identifier = if let Some((_, n)) = node.as_numeric() {
            Identifier::Numeric(n)
        } else if let Some((_, s)) = node.as_string() {
            Identifier::String(s.as_str().unwrap_or_default().to_owned())
        } else if let Some((_, g)) = node.as_guid() {
            Identifier::Guid(guid_bytes(g))
        } else if let Some((_, b)) = node.as_byte_string() {
            Identifier::Opaque(b.as_bytes().unwrap_or_default().to_vec())
        } else {
            Identifier::Numeric(0)
        };
        Self {
            namespace,
            identifier,
        }
    }
}

fn guid_bytes(g: &ua::Guid) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&g.data1().to_be_bytes());
    out[4..6].copy_from_slice(&g.data2().to_be_bytes());
    out[6..8].copy_from_slice(&g.data3().to_be_bytes());
    out[8..].copy_from_slice(&g.data4());
    out
}

/// A value read, as plain Rust data.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Null,
    Boolean(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    String(String),
    /// Seconds since the Unix epoch.
    DateTime(f64),
    Guid([u8; 16]),
    Bytes(Vec<u8>),
    Node(NodeRef),
    QualifiedName(u16, String),
    /// A LocalizedText's text.
    Text(String),
    StatusCode(u32),
    Array(Vec<Datum>),
    /// A type this client does not unpack (structures, enumerations...): its type's NodeId number.
    Unsupported(u32),
}

/// One DataValue: the value, its Variant type (ns=0 id; `None` when empty), the StatusCode and the
/// source and server timestamps (Unix seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadValue {
    pub value: Datum,
    pub variant: Option<u32>,
    pub status: u32,
    pub source_timestamp: Option<f64>,
    pub server_timestamp: Option<f64>,
}

/// A hierarchical forward reference found by Browse.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub node: NodeRef,
    pub browse_name: (u16, String),
    pub display_name: String,
    /// The NodeClass mask value (1 Object, 2 Variable, 4 Method...).
    pub node_class: u32,
}

/// A monitored item to create.
#[derive(Debug, Clone)]
pub struct MonitorItem {
    /// The client handle notifications carry back.
    pub handle: u32,
    pub node: NodeRef,
    /// > 0: a DataChangeFilter with this absolute deadband.
    pub deadband: f64,
}

pub(crate) fn unix_seconds(time: Option<&ua::DateTime>) -> Option<f64> {
    let ticks = time?.clone().into_raw();
    // The null DateTime (and anything before 1601) means "no timestamp".
    (ticks > 0).then(|| (ticks - UNIX_EPOCH_TICKS) as f64 / 1e7)
}

macro_rules! unpack {
    ($variant:expr, $id:expr, { $( $n:literal => $ty:ty => $conv:expr ),* $(,)? }) => {
        match $id {
            $(
                $n => {
                    if $variant.is_scalar() {
                        $variant.as_scalar::<$ty>().map_or(Datum::Null, $conv)
                    } else {
                        $variant.to_array::<$ty>().map_or(Datum::Array(Vec::new()), |a| {
                            Datum::Array(a.as_slice().iter().map($conv).collect())
                        })
                    }
                }
            )*
            other => Datum::Unsupported(other),
        }
    };
}

fn text(s: &ua::String) -> String {
    s.as_str().unwrap_or_default().to_owned()
}

/// A variant as a [`Datum`] and its type id.
pub(crate) fn datum(variant: &ua::Variant) -> (Datum, Option<u32>) {
    if variant.is_empty() {
        return (Datum::Null, None);
    }
    let Some(id) = variant.type_id().and_then(ua::NodeId::as_ns0) else {
        return (Datum::Unsupported(0), Some(0));
    };
    let value = unpack!(variant, id, {
        1 => ua::Boolean => |v: &ua::Boolean| Datum::Boolean(v.value()),
        2 => ua::SByte => |v: &ua::SByte| Datum::Int(i64::from(v.value())),
        3 => ua::Byte => |v: &ua::Byte| Datum::UInt(u64::from(v.value())),
        4 => ua::Int16 => |v: &ua::Int16| Datum::Int(i64::from(v.value())),
        5 => ua::UInt16 => |v: &ua::UInt16| Datum::UInt(u64::from(v.value())),
        6 => ua::Int32 => |v: &ua::Int32| Datum::Int(i64::from(v.value())),
        7 => ua::UInt32 => |v: &ua::UInt32| Datum::UInt(u64::from(v.value())),
        8 => ua::Int64 => |v: &ua::Int64| Datum::Int(v.value()),
        9 => ua::UInt64 => |v: &ua::UInt64| Datum::UInt(v.value()),
        10 => ua::Float => |v: &ua::Float| Datum::Float(f64::from(v.value())),
        11 => ua::Double => |v: &ua::Double| Datum::Float(v.value()),
        12 => ua::String => |v: &ua::String| Datum::String(text(v)),
        13 => ua::DateTime => |v: &ua::DateTime| {
            unix_seconds(Some(v)).map_or(Datum::Null, Datum::DateTime)
        },
        14 => ua::Guid => |v: &ua::Guid| Datum::Guid(guid_bytes(v)),
        15 => ua::ByteString => |v: &ua::ByteString| {
            Datum::Bytes(v.as_bytes().unwrap_or_default().to_vec())
        },
        17 => ua::NodeId => |v: &ua::NodeId| Datum::Node(NodeRef::from_ua(v)),
        18 => ua::ExpandedNodeId => |v: &ua::ExpandedNodeId| Datum::Node(NodeRef::from_ua(v.node_id())),
        19 => ua::StatusCode => |v: &ua::StatusCode| Datum::StatusCode(v.clone().into_raw()),
        20 => ua::QualifiedName => |v: &ua::QualifiedName| {
            Datum::QualifiedName(v.namespace_index(), text(v.name()))
        },
        21 => ua::LocalizedText => |v: &ua::LocalizedText| Datum::Text(text(v.text())),
    });
    (value, Some(id))
}

fn read_value(data: &open62541::DataValue<ua::Variant>) -> ReadValue {
    let (value, variant) = data.value().map_or((Datum::Null, None), datum);
    ReadValue {
        value,
        variant,
        status: data.status().map_or(0, ua::StatusCode::into_raw),
        source_timestamp: unix_seconds(data.source_timestamp()),
        server_timestamp: unix_seconds(data.server_timestamp()),
    }
}

/// One session to one server.
#[derive(Debug)]
pub struct Client {
    /// `None` once the watchdog found the connection lost and let the C client go.
    inner: Arc<Mutex<Option<Arc<AsyncClient>>>>,
    url: String,
    timeout: Duration,
    /// Set once a call found the session gone: every later call says so at once.
    lost: Arc<AtomicBool>,
}

impl Client {
    /// Open a secure channel and an activated session. Blocks until then (or the timeout).
    ///
    /// # Errors
    ///
    /// [`ClientError::Connect`] naming why: unreachable, no such endpoint, refused user...
    pub fn connect(options: &ClientOptions) -> Result<Self, ClientError> {
        let url = options.url.clone();
        if url.contains('\0') {
            return Err(ClientError::Connect(format!(
                "{url:?}: the URL holds a NUL"
            )));
        }
        let policy_uri = format!("{POLICY_URI_PREFIX}{}", options.policy);
        let mode = mode_of(options.mode);
        let builder = builder(options, &policy_uri)?;
        let client = builder.connect(&url).map_err(|e| {
            let code = e.status_code().into_raw();
            let name = ffi::status_name(code);
            let why = match name {
                "BadTimeout" => format!(
                    "cannot connect: no answer in {:.3} s (BadTimeout)",
                    options.timeout.as_secs_f64()
                ),
                _ if !offers(options, &policy_uri, &mode) => format!(
                    "the server offers no endpoint with security {} and mode {:?} ({name})",
                    options.policy, options.mode
                ),
                "BadConnectionClosed"
                | "BadConnectionRejected"
                | "BadDisconnect"
                | "BadNotConnected"
                | "BadCommunicationError" => {
                    format!("cannot connect ({name})")
                }
                "BadIdentityTokenInvalid" | "BadIdentityTokenRejected" | "BadUserAccessDenied" => {
                    format!("the server refused the session: it refused the user ({name})")
                }
                _ => format!("the server refused the session ({name})"),
            };
            ClientError::Connect(format!("{url}: {why}"))
        })?;
        let this = Self {
            inner: Arc::new(Mutex::new(Some(Arc::new(client.into_async())))),
            url,
            timeout: options.timeout,
            lost: Arc::new(AtomicBool::new(false)),
        };
        this.watch();
        Ok(this)
    }

    /// The URL this client connected to.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the channel is open and the session activated (takes the C client's lock, so it
    /// also waits for a response being processed to be done).
    #[must_use]
    pub fn healthy(&self) -> bool {
        if self.lost.load(Ordering::Relaxed) {
            return false;
        }
        let Some(client) = self.current() else {
            return false;
        };
        let ok = healthy(&client);
        if !ok {
            self.lost.store(true, Ordering::Relaxed);
        }
        ok
    }

    fn current(&self) -> Option<Arc<AsyncClient>> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Let the C client go as soon as its connection is seen lost. The C client would reconnect
    /// on its own (the crate offers no way to set its `noReconnect`), holding a half-open
    /// connection to a server that is shutting down; the engine's contract is to report the loss
    /// and let the connection open a new session instead. One light thread per session, which
    /// looks at the state every 25 ms (the C client has its own thread per session already).
    fn watch(&self) {
        let inner = Arc::clone(&self.inner);
        let lost = Arc::clone(&self.lost);
        let spawned = std::thread::Builder::new()
            .name("bifrost-opcua-watch".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(25));
                let client = inner.lock().unwrap_or_else(PoisonError::into_inner).clone();
                let Some(client) = client else {
                    return; // disconnected
                };
                if lost.load(Ordering::Relaxed) || !healthy(&client) {
                    lost.store(true, Ordering::Relaxed);
                    let taken = inner.lock().unwrap_or_else(PoisonError::into_inner).take();
                    drop(client);
                    if let Some(taken) = taken {
                        release(taken);
                    }
                    return;
                }
            });
        if spawned.is_err() {
            self.lost.store(true, Ordering::Relaxed);
        }
    }
}

/// The C client's configuration for `options`.
fn builder(options: &ClientOptions, policy_uri: &str) -> Result<ClientBuilder, ClientError> {
    let url = &options.url;
    let mut builder = match (&options.certificate, options.policy.as_str()) {
        (_, "None") => ClientBuilder::default(),
        (Some(cert), _) => ClientBuilder::default_encryption(
            &Certificate::from_bytes(&cert.certificate),
            &PrivateKey::from_bytes(&cert.private_key),
        )
        .map_err(|e| ClientError::Connect(format!("{url}: the client certificate: {e}")))?
        .client_description(
            ua::ApplicationDescription::init()
                .with_application_uri(&cert.application_uri)
                .with_application_name("", "Bifrost")
                .with_application_type(ua::ApplicationType::CLIENT),
        ),
        (None, policy) => {
            return Err(ClientError::Connect(format!(
                "{url}: security {policy} needs a client certificate"
            )))
        }
    };
    let mode = mode_of(options.mode);
    let policy = ua::String::new(policy_uri)
        .map_err(|e| ClientError::Connect(format!("{url}: policy {policy_uri:?}: {e}")))?;
    builder = builder
        .timeout(options.timeout)
        .security_mode(mode.clone())
        .security_policy_uri(policy)
        // Like asyncua's client, trust the server's certificate (no trust list to manage).
        .accept_all()
        .requested_session_timeout(Duration::from_secs(60))
        // The connection notices losses itself (on a call, or by a subscription's silence).
        .connectivity_check_interval(None);
    if let Some((user, password)) = &options.user {
        if user.contains('\0') || password.contains('\0') {
            return Err(ClientError::Connect(format!(
                "{url}: the user or password holds a NUL"
            )));
        }
        builder = builder.user_identity_token(&ua::UserIdentityToken::UserName(
            ua::UserNameIdentityToken::new(user, password),
        ));
    }
    Ok(builder)
}

fn mode_of(mode: SecurityMode) -> ua::MessageSecurityMode {
    match mode {
        SecurityMode::None => ua::MessageSecurityMode::NONE,
        SecurityMode::Sign => ua::MessageSecurityMode::SIGN,
        SecurityMode::SignAndEncrypt => ua::MessageSecurityMode::SIGNANDENCRYPT,
    }
}

/// Whether the server at `url` answers GetEndpoints with an endpoint of this policy and mode
/// (asked after a failed connect, to say why it failed); `true` when it cannot be asked.
fn offers(options: &ClientOptions, policy_uri: &str, mode: &ua::MessageSecurityMode) -> bool {
    // A server may refuse GetEndpoints over a channel of this very mode (that is the question):
    // then ask over SignAndEncrypt, then over None.
    let asks = [
        options.clone(),
        ClientOptions {
            mode: SecurityMode::SignAndEncrypt,
            ..options.clone()
        },
        ClientOptions {
            policy: "None".into(),
            mode: SecurityMode::None,
            ..options.clone()
        },
    ];
    for ask in &asks {
        let uri = format!("{POLICY_URI_PREFIX}{}", ask.policy);
        let Ok(endpoints) = builder(ask, &uri).and_then(|b| {
            b.get_endpoints(&options.url)
                .map_err(|e| ClientError::Protocol(e.to_string()))
        }) else {
            continue;
        };
        return endpoints.as_slice().iter().any(|endpoint| {
            endpoint.security_mode() == mode
                && endpoint.security_policy_uri().as_str() == Some(policy_uri)
        });
    }
    true
}

/// Whether the channel is open and the session activated.
fn healthy(client: &AsyncClient) -> bool {
    let state = client.state();
    // The crate exposes the states only through Debug (their inner values are private).
    let ok = state.connect_status.is_good()
        && format!("{:?}", state.session_state).contains(&format!(
            "{:?}",
            open62541_sys::UA_SessionState::UA_SESSIONSTATE_ACTIVATED
        ))
        && format!("{:?}", state.channel_state).contains(&format!(
            "{:?}",
            open62541_sys::UA_SecureChannelState::UA_SECURECHANNELSTATE_OPEN
        ));
    ok
}

/// Close a C client once no call holds it any more (each call ends within its timeout).
fn release(mut client: Arc<AsyncClient>) {
    loop {
        match Arc::try_unwrap(client) {
            Ok(owned) => return block_on(owned.disconnect()),
            Err(shared) => {
                client = shared;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl Client {
    fn check(&self, service: &str) -> Result<Arc<AsyncClient>, ClientError> {
        match self.current() {
            Some(client) if !self.lost.load(Ordering::Relaxed) => Ok(client),
            _ => Err(ClientError::Connect(format!(
                "{}: {service}: the session is gone (connection lost)",
                self.url
            ))),
        }
    }

    /// One Read call (TimestampsToReturn Both) of `attribute` of every node, in order.
    ///
    /// # Errors
    ///
    /// A [`ClientError`] when the whole call fails.
    pub fn read(
        &self,
        nodes: &[NodeRef],
        attribute: u32,
    ) -> Result<
        impl Future<Output = Result<Vec<ReadValue>, ClientError>> + Send + 'static,
        ClientError,
    > {
        let call = self.read_prepared(&PreparedRead::new(nodes, attribute)?)?;
        Ok(async move {
            let values = call.await?;
            Ok((0..values.len()).map(|i| values.value(i)).collect())
        })
    }

    /// Send a prepared Read (again): its values, unpacked by the caller as it needs them.
    ///
    /// # Errors
    ///
    /// A [`ClientError`] when the whole call fails.
    pub fn read_prepared(
        &self,
        read: &PreparedRead,
    ) -> Result<impl Future<Output = Result<ReadValues, ClientError>> + Send + 'static, ClientError>
    {
        let client = self.check("Read")?;
        // The crate's call takes the request by value; a copy is one allocation per NodeId,
        // cheaper than converting the NodeIds again.
        let request = read.request.clone();
        let this = self.shadow();
        let count = read.count;
        Ok(async move {
            let response = client
                .service_request(request)
                .await
                .map_err(|e| this.error("Read", &e))?;
            let values = ReadValues::new(response);
            if values.len() != count {
                return Err(ClientError::Protocol(format!(
                    "{}: Read of {count} nodes answered {} results",
                    this.url,
                    values.len()
                )));
            }
            Ok(values)
        })
    }

    /// One Write call of the Value attribute of every node; the StatusCode of each, in order.
    ///
    /// # Errors
    ///
    /// A [`ClientError`] when the whole call fails.
    pub fn write(
        &self,
        items: &[(NodeRef, Value)],
    ) -> Result<impl Future<Output = Result<Vec<u32>, ClientError>> + Send + 'static, ClientError>
    {
        let client = self.check("Write")?;
        let values = items
            .iter()
            .map(|(node, value)| {
                // No status or timestamps in the DataValue: many servers refuse to have those written.
                Ok(ua::WriteValue::init()
                    .with_node_id(&node.to_ua()?)
                    .with_attribute_id(&ua::AttributeId::VALUE)
                    .with_value(&ua::DataValue::new(value.to_variant())))
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        let request = ua::WriteRequest::init().with_nodes_to_write(&values);
        let this = self.shadow();
        let count = items.len();
        Ok(async move {
            let response = client
                .service_request(request)
                .await
                .map_err(|e| this.error("Write", &e))?;
            let statuses: Vec<u32> = response
                .results()
                .map(|r| r.as_slice().iter().map(|s| s.clone().into_raw()).collect())
                .unwrap_or_default();
            if statuses.len() != count {
                return Err(ClientError::Protocol(format!(
                    "{}: Write of {count} nodes answered {} results",
                    this.url,
                    statuses.len()
                )));
            }
            Ok(statuses)
        })
    }

    /// Every hierarchical forward reference of `node`, following continuation points.
    ///
    /// # Errors
    ///
    /// [`ClientError::Status`] with the status when the server refuses to browse the node.
    pub fn browse(
        &self,
        node: &NodeRef,
    ) -> Result<
        impl Future<Output = Result<Vec<Reference>, ClientError>> + Send + 'static,
        ClientError,
    > {
        let client = self.check("Browse")?;
        let description = ua::BrowseDescription::default().with_node_id(&node.to_ua()?);
        let this = self.shadow();
        let shown = format!("{node:?}");
        Ok(async move {
            let refused = |e: &open62541::Error, what: &str| match e {
                open62541::Error::Server(status) if !SESSION_LOST.contains(&status.name()) => {
                    let code = status.clone().into_raw();
                    ClientError::Status {
                        message: format!(
                            "{}: {what} of {shown} failed: {}",
                            this.url,
                            ffi::status_name(code)
                        ),
                        code,
                    }
                }
                other => this.error(what, other),
            };
            let (mut references, mut next) = client
                .browse(&description)
                .await
                .map_err(|e| refused(&e, "Browse"))?;
            let mut out: Vec<Reference> = Vec::new();
            loop {
                out.extend(references.iter().map(|r| Reference {
                    node: NodeRef::from_ua(r.node_id().node_id()),
                    browse_name: (
                        r.browse_name().namespace_index(),
                        text(r.browse_name().name()),
                    ),
                    display_name: {
                        let shown = text(r.display_name().text());
                        if shown.is_empty() {
                            text(r.browse_name().name())
                        } else {
                            shown
                        }
                    },
                    node_class: r.node_class().clone().into_raw().0,
                }));
                let Some(point) = next.take() else {
                    return Ok(out);
                };
                let mut results = client
                    .browse_next(&[point])
                    .await
                    .map_err(|e| this.error("BrowseNext", &e))?;
                let result = results.pop().ok_or_else(|| {
                    ClientError::Protocol(format!("{}: BrowseNext answered no result", this.url))
                })?;
                (references, next) = result.map_err(|e| refused(&e, "BrowseNext"))?;
            }
        })
    }

    /// Create a subscription publishing every `interval`, with `items` sampled at that interval
    /// (queue size 1, discard oldest), reporting on status or value changes.
    ///
    /// # Errors
    ///
    /// A [`ClientError`] when CreateSubscription or CreateMonitoredItems fails as a whole.
    pub fn subscribe(
        &self,
        interval: Duration,
        items: Vec<MonitorItem>,
    ) -> Result<impl Future<Output = Result<Subscription, ClientError>> + Send + 'static, ClientError>
    {
        let client = self.check("CreateSubscription")?;
        let nodes = items
            .iter()
            .map(|item| item.node.to_ua())
            .collect::<Result<Vec<_>, ClientError>>()?;
        let this = self.shadow();
        Ok(async move {
            let (response, subscription) = SubscriptionBuilder::default()
                .requested_publishing_interval(Some(interval))
                .requested_max_keep_alive_count(std::num::NonZeroU32::new(KEEPALIVE_COUNT))
                .requested_lifetime_count(KEEPALIVE_COUNT * 3)
                .publishing_enabled(true)
                .create(&client)
                .await
                .map_err(|e| this.error("CreateSubscription", &e))?;
            let interval = response
                .revised_publishing_interval()
                .ok()
                .filter(|d| !d.is_zero())
                .unwrap_or(interval);
            let keepalive = match response.revised_max_keep_alive_count() {
                0 => KEEPALIVE_COUNT,
                n => n,
            };
            let inbox = Arc::new(Inbox::default());
            let mut statuses = vec![0u32; items.len()];
            let mut handles = Vec::new();
            // One CreateMonitoredItems call per deadband (the crate sets one filter per call);
            // callers give one deadband for all items, so this is one call.
            let mut deadbands: Vec<f64> = items.iter().map(|i| i.deadband).collect();
            deadbands.sort_by(f64::total_cmp);
            deadbands.dedup();
            for deadband in deadbands {
                let picked: Vec<usize> = (0..items.len())
                    .filter(|&i| items[i].deadband.total_cmp(&deadband).is_eq())
                    .collect();
                let mut builder = MonitoredItemCreateRequestBuilder::new(
                    picked.iter().map(|&i| nodes[i].clone()),
                )
                .sampling_interval(Some(interval))
                .queue_size(1)
                .discard_oldest(true);
                if deadband > 0.0 {
                    builder = builder.filter(ffi::data_change_filter(deadband));
                }
                let client_handles: Vec<u32> = picked.iter().map(|&i| items[i].handle).collect();
                let results = subscription
                    .create_monitored_items_callback(builder, |index| {
                        let inbox = Arc::clone(&inbox);
                        let handle = client_handles[index];
                        move |value: open62541::DataValue<ua::Variant>| {
                            inbox.push(handle, read_value(&value));
                        }
                    })
                    .await
                    .map_err(|e| this.error("CreateMonitoredItems", &e))?;
                for (&i, result) in picked.iter().zip(results) {
                    match result {
                        Ok((_, handle)) => handles.push(handle),
                        Err(e) => statuses[i] = e.status_code().into_raw(),
                    }
                }
            }
            Ok(Subscription {
                inbox,
                statuses,
                interval,
                keepalive,
                _items: handles,
                server_side: Mutex::new(Some(subscription)),
                lost: Arc::clone(&this.lost),
            })
        })
    }

    /// A copy of what the futures need to name and report errors, without the client itself.
    fn shadow(&self) -> Shadow {
        Shadow {
            url: self.url.clone(),
            timeout: self.timeout,
            lost: Arc::clone(&self.lost),
        }
    }

    /// Close the session and the channel, blocking until done (run it on a thread that may
    /// block). Calls still in flight keep the C client alive until they end (each within its
    /// timeout); then it closes.
    pub fn disconnect_blocking(self) {
        self.lost.store(true, Ordering::Relaxed);
        let taken = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(client) = taken {
            release(client);
        }
    }
}

/// Run a future to its end on this thread (the crate's `disconnect` is async but needs no
/// runtime: it waits for its background thread).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// The attribute with OPC UA id `id`, for the ids the engine reads.
pub(crate) fn attribute_id(id: u32) -> Result<ua::AttributeId, ClientError> {
    Ok(match id {
        1 => ua::AttributeId::NODEID,
        2 => ua::AttributeId::NODECLASS,
        3 => ua::AttributeId::BROWSENAME,
        4 => ua::AttributeId::DISPLAYNAME,
        13 => ua::AttributeId::VALUE,
        14 => ua::AttributeId::DATATYPE,
        17 => ua::AttributeId::ACCESSLEVEL,
        other => {
            return Err(ClientError::Protocol(format!(
                "reading attribute {other} is not supported"
            )))
        }
    })
}

const KEEPALIVE_COUNT: u32 = 10;

/// What a call's future keeps of its client.
struct Shadow {
    url: String,
    timeout: Duration,
    lost: Arc<AtomicBool>,
}

impl Shadow {
    fn error(&self, service: &str, error: &open62541::Error) -> ClientError {
        let code = error.status_code().into_raw();
        let name = ffi::status_name(code);
        if code == BAD_TIMEOUT {
            return ClientError::Timeout(format!(
                "{}: no answer to {service} in {:.3} s (BadTimeout)",
                self.url,
                self.timeout.as_secs_f64()
            ));
        }
        if SESSION_LOST.contains(&name) {
            self.lost.store(true, Ordering::Relaxed);
            return ClientError::Connect(format!(
                "{}: {service}: the session is gone ({name})",
                self.url
            ));
        }
        if let open62541::Error::Internal(what) = error {
            return ClientError::Protocol(format!("{}: {service}: {what}", self.url));
        }
        ClientError::Status {
            message: format!("{}: {service} failed: {name}", self.url),
            code,
        }
    }
}

/// Notifications as the C client's background thread delivers them.
#[derive(Default)]
struct Inbox {
    state: Mutex<InboxState>,
}

#[derive(Default)]
struct InboxState {
    queue: VecDeque<(u32, ReadValue)>,
    waker: Option<Waker>,
}

impl Inbox {
    fn push(&self, handle: u32, value: ReadValue) {
        let waker = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.queue.push_back((handle, value));
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A live subscription.
pub struct Subscription {
    inbox: Arc<Inbox>,
    /// Per item, the StatusCode of its CreateMonitoredItems result.
    pub statuses: Vec<u32>,
    /// The revised publishing interval.
    pub interval: Duration,
    /// The revised keep-alive count.
    pub keepalive: u32,
    _items: Vec<MonitoredItemHandle>,
    server_side: Mutex<Option<AsyncSubscription>>,
    lost: Arc<AtomicBool>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("statuses", &self.statuses)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Ready once a notification is queued (or at once when one is). Takes nothing: a caller
    /// that gives up waiting loses no notification.
    pub fn ready(&self) -> impl Future<Output = ()> + Send + 'static {
        let inbox = Arc::clone(&self.inbox);
        poll_fn(move |cx| {
            let mut state = inbox.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.queue.is_empty() {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
    }

    /// The notifications queued, in the order received. Call [`Client::healthy`] first: it waits
    /// for a publish response being delivered, so a message is taken whole.
    #[must_use]
    pub fn take(&self) -> Vec<(u32, ReadValue)> {
        let mut state = self
            .inbox
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.queue.drain(..).collect()
    }

    /// Whether the session under this subscription was seen lost.
    #[must_use]
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Delete the subscription on the server (in the background, without waiting).
    pub fn close(&self) {
        drop(
            self.server_side
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}
