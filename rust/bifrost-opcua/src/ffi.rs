//! The only module with `unsafe`: the calls into C open62541 that the safe `open62541` crate does
//! not offer (own run loop with a prompt cancel, ApplicationUri, per-user access levels, service
//! notifications, callback value sources reading our shared state).
//!
//! Threading: every C call on a server is made by its run thread (startup, nodes, the loop, session
//! closing, shutdown, delete); other threads only set flags and call the event loop's `cancel`,
//! which open62541 provides precisely to interrupt a waiting loop from elsewhere. So the server
//! is used single-threaded, as the C library is built to be.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use open62541::{ua, DataType as _};
use open62541_sys as sys;

use crate::server::{now_unix, SecurityPolicy, ServerConfig, ServiceEvent, Shared};
use crate::value::Value;

const NS0_OBJECTS_FOLDER: u32 = 85;
const NS0_FOLDER_TYPE: u32 = 61;
const NS0_BASE_DATA_VARIABLE_TYPE: u32 = 63;
const NS0_PROPERTY_TYPE: u32 = 68;
const NS0_ORGANIZES: u32 = 35;
const NS0_HAS_COMPONENT: u32 = 47;
const NS0_HAS_PROPERTY: u32 = 46;
const NS0_EU_INFORMATION: u32 = 887;
const ACCESS_READ: u8 = 0x01;
const ACCESS_WRITE: u8 = 0x02;
const BASIC256SHA256_URI: &str = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256";
const NONE_URI: &str = "http://opcfoundation.org/UA/SecurityPolicy#None";
/// UNECE units, as OPC UA Part 8 names them for EUInformation.
const UNECE_URI: &str = "http://www.opcfoundation.org/UA/units/un/cefact";

fn data_type(index: u32) -> *const sys::UA_DataType {
    // SAFETY: `UA_TYPES` is the C library's static, immutable table of built-in types; the index
    // is one of its `UA_TYPES_*` constants, within bounds.
    unsafe {
        (&raw const sys::UA_TYPES)
            .cast::<sys::UA_DataType>()
            .add(index as usize)
    }
}

fn status(code: u32) -> ua::StatusCode {
    // SAFETY: a status code is a plain `u32` with no ownership.
    unsafe { ua::StatusCode::from_raw(code) }
}

/// Names of every status code the library knows, built once.
pub(crate) fn status_codes() -> &'static HashMap<&'static str, u32> {
    static CODES: OnceLock<HashMap<&'static str, u32>> = OnceLock::new();
    CODES.get_or_init(|| {
        let mut map = HashMap::new();
        // A status code is severity (2 bits) and a 12-bit sub-code above 16 bits of info bits;
        // the library names the codes of that space it knows.
        for severity in [0u32, 0x4000_0000, 0x8000_0000] {
            for sub in 0..0x1000u32 {
                let code = severity | (sub << 16);
                let name = status_name(code);
                if !name.starts_with("Unknown") {
                    map.entry(name).or_insert(code);
                }
            }
        }
        map
    })
}

pub(crate) fn status_name(code: u32) -> &'static str {
    status(code).name()
}

/// `nsu=<uri>;<id>` or `ns=<n>;<id>` or `<id>` (namespace 0) as a NodeId of this server,
/// registering a namespace URI it does not have yet.
fn parse_node_id(server: *mut sys::UA_Server, text: &str) -> Result<ua::NodeId, String> {
    let resolved;
    let text = if let Some(rest) = text.strip_prefix("nsu=") {
        let (uri, id) = rest
            .split_once(';')
            .ok_or_else(|| format!("{text}: no ';' after the namespace URI"))?;
        let index = add_namespace(server, uri)?;
        resolved = format!("ns={index};{id}");
        resolved.as_str()
    } else {
        text
    };
    ua::NodeId::from_str(text).map_err(|e| format!("{text}: not a NodeId ({e})"))
}

fn add_namespace(server: *mut sys::UA_Server, uri: &str) -> Result<u16, String> {
    let c = CString::new(uri).map_err(|_| format!("{uri:?}: NUL in namespace URI"))?;
    // SAFETY: `server` is a live server used by this thread only; the C string outlives the call,
    // which copies it.
    Ok(unsafe { sys::UA_Server_addNamespace(server, c.as_ptr()) })
}

/// What the run thread hands back once the server listens.
pub(crate) struct Started {
    pub runner: Runner,
    pub port: u16,
    pub url: String,
    pub namespaces: Vec<String>,
    pub node_ids: Vec<String>,
}

/// The handle of a running server's thread.
pub(crate) struct Runner {
    thread: JoinHandle<()>,
    event_loop: EventLoopHandle,
    stop: Arc<AtomicBool>,
    drop_sessions: Arc<AtomicBool>,
}

/// The server's event loop, only ever used to call its `cancel`.
struct EventLoopHandle(*mut sys::UA_EventLoop);

// SAFETY: the pointer is only used for `cancel`, which the POSIX event loop implements by writing
// to its self-pipe: callable from any thread while the loop exists, which the run thread
// guarantees by not deleting the server before `stop` is set and observed (see `Runner::stop`).
unsafe impl Send for EventLoopHandle {}
// SAFETY: as above; `cancel` takes no lock and changes no Rust-visible state.
unsafe impl Sync for EventLoopHandle {}

impl EventLoopHandle {
    fn cancel(&self) {
        // SAFETY: see the `Send` impl: the loop is alive until the run thread exits, and callers
        // only cancel while it has not been joined.
        unsafe {
            if let Some(cancel) = (*self.0).cancel {
                cancel(self.0);
            }
        }
    }
}

impl Runner {
    pub(crate) fn start(config: ServerConfig, shared: Arc<Shared>) -> Result<Started, String> {
        let (tx, rx) = mpsc::channel::<Result<(Started0, EventLoopHandle), String>>();
        let stop = Arc::new(AtomicBool::new(false));
        let drop_sessions = Arc::new(AtomicBool::new(false));
        let (stop2, drop2) = (Arc::clone(&stop), Arc::clone(&drop_sessions));
        let thread = std::thread::Builder::new()
            .name("bifrost-opcua".into())
            .spawn(move || run(&config, shared, &tx, &stop2, &drop2))
            .map_err(|e| format!("cannot start the server thread: {e}"))?;
        match rx.recv() {
            Ok(Ok((s, event_loop))) => Ok(Started {
                runner: Runner {
                    thread,
                    event_loop,
                    stop,
                    drop_sessions,
                },
                port: s.port,
                url: s.url,
                namespaces: s.namespaces,
                node_ids: s.node_ids,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err("the server thread ended before it started".into())
            }
        }
    }

    pub(crate) fn drop_sessions(&self) {
        self.drop_sessions.store(true, Ordering::SeqCst);
        self.event_loop.cancel();
    }

    pub(crate) fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }

    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        // The loop may be between its check of `stop` and its wait; cancelling until the thread
        // ends (a few ms) instead of once closes that window without a lock.
        while !self.thread.is_finished() {
            self.event_loop.cancel();
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = self.thread.join();
    }
}

struct Started0 {
    port: u16,
    url: String,
    namespaces: Vec<String>,
    node_ids: Vec<String>,
}

/// State the C callbacks reach through `UA_ServerConfig::context` (run thread only).
struct Ctx {
    shared: Arc<Shared>,
    /// The service being processed, to which value reads and writes add their nodes.
    current: RefCell<Option<ServiceEvent>>,
    sessions: RefCell<Vec<ua::NodeId>>,
}

/// The thread's body: build, start, loop, shut down, delete.
fn run(
    config: &ServerConfig,
    shared: Arc<Shared>,
    tx: &mpsc::Sender<Result<(Started0, EventLoopHandle), String>>,
    stop: &AtomicBool,
    drop_sessions: &AtomicBool,
) {
    let ctx = Box::new(Ctx {
        shared,
        current: RefCell::new(None),
        sessions: RefCell::new(Vec::new()),
    });
    let (server, node_ids) = match build(config, &ctx) {
        Ok(built) => built,
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    // SAFETY: `server` was just built and is used by this thread only.
    let started = unsafe { sys::UA_Server_run_startup(server) };
    if started != 0 {
        // SAFETY: the server never ran; deleting it frees it and its config.
        unsafe { sys::UA_Server_delete(server) };
        let _ = tx.send(Err(format!(
            "cannot listen on {}:{} ({})",
            config.host,
            config.port,
            status_name(started)
        )));
        return;
    }
    let info = match after_startup(server, config, node_ids) {
        Ok(info) => info,
        Err(e) => {
            // SAFETY: the server started on this thread; shut it down and free it.
            unsafe {
                sys::UA_Server_run_shutdown(server);
                sys::UA_Server_delete(server);
            }
            let _ = tx.send(Err(e));
            return;
        }
    };
    // SAFETY: the config (and its event loop) lives as long as the server, deleted below only
    // after `stop` is set, which `Runner::stop` does before its last `cancel`.
    let event_loop = EventLoopHandle(unsafe { (*sys::UA_Server_getConfig(server)).eventLoop });
    if tx.send(Ok((info, event_loop))).is_err() {
        stop.store(true, Ordering::SeqCst);
    }
    while !stop.load(Ordering::SeqCst) {
        if drop_sessions.swap(false, Ordering::SeqCst) {
            let sessions: Vec<ua::NodeId> = ctx.sessions.borrow_mut().drain(..).collect();
            for id in &sessions {
                // SAFETY: this thread owns the server; the NodeId is only read.
                unsafe { sys::UA_Server_closeSession(server, id.as_ptr()) };
            }
        }
        // SAFETY: as above. It waits for network or timer events at most ~200 ms, or until
        // `cancel` is called.
        unsafe { sys::UA_Server_run_iterate(server, true) };
    }
    // SAFETY: the server ran on this thread; shutting down closes its sockets and sessions, and
    // delete frees it. Callbacks may still run during shutdown and still find `ctx` alive.
    unsafe {
        sys::UA_Server_run_shutdown(server);
        sys::UA_Server_delete(server);
    }
    drop(ctx);
}

/// Make the server config and server, and add the address space.
fn build(config: &ServerConfig, ctx: &Ctx) -> Result<(*mut sys::UA_Server, Vec<String>), String> {
    // SAFETY: a zeroed `UA_ServerConfig` is the documented starting point (`memset(&config, 0,
    // sizeof(UA_ServerConfig))` in the C examples); the calls below fill it.
    let mut cfg: sys::UA_ServerConfig = unsafe { std::mem::zeroed() };
    cfg.logging = new_logger();
    let cert = config
        .certificate
        .as_ref()
        .map(|(c, k)| (ua::ByteString::new(c), ua::ByteString::new(k)));
    // SAFETY: `cfg` is zeroed with a logger set; the certificate (if any) is a live ByteString the
    // function copies.
    let res = unsafe {
        sys::UA_ServerConfig_setMinimal(
            &raw mut cfg,
            config.port,
            cert.as_ref().map_or(ptr::null(), |(c, _)| c.as_ptr()),
        )
    };
    if res != 0 {
        // SAFETY: cleaning a config that the library initialised (even partly) is allowed.
        unsafe { sys::UA_ServerConfig_clean(&raw mut cfg) };
        return Err(format!("server config: {}", status_name(res)));
    }
    if let Err(e) = configure(&mut cfg, config, cert.as_ref()) {
        // SAFETY: as above.
        unsafe { sys::UA_ServerConfig_clean(&raw mut cfg) };
        return Err(e);
    }
    cfg.context = ptr::from_ref(ctx).cast_mut().cast();
    // SAFETY: `cfg` is a complete config; the server takes it over (shallow copy) and cleans it.
    let server = unsafe { sys::UA_Server_newWithConfig(&raw mut cfg) };
    if server.is_null() {
        return Err("cannot create the OPC UA server".into());
    }
    match add_nodes(server, config) {
        Ok(ids) => Ok((server, ids)),
        Err(e) => {
            // SAFETY: the server was never started; delete frees it.
            unsafe { sys::UA_Server_delete(server) };
            Err(e)
        }
    }
}

/// Everything set on the config after `setMinimal`: URLs, identity, security, users, callbacks.
#[allow(clippy::too_many_lines)] // one list of settings, in the order the C library wants them
fn configure(
    cfg: &mut sys::UA_ServerConfig,
    config: &ServerConfig,
    cert: Option<&(ua::ByteString, ua::ByteString)>,
) -> Result<(), String> {
    let url = format!("opc.tcp://{}:{}{}", config.host, config.port, config.path);
    set_string_array(
        &mut cfg.serverUrls,
        &mut cfg.serverUrlsSize,
        &[url.as_str()],
    )?;
    cfg.shutdownDelay = 0.0;
    set_string(
        &mut cfg.applicationDescription.applicationUri,
        &config.application_uri,
    )?;
    let name = ua::LocalizedText::new("en", &config.application_name)
        .map_err(|e| format!("application name: {e}"))?;
    // SAFETY: the old value is owned by the config and replaced by an owned copy.
    unsafe {
        sys::UA_LocalizedText_clear(&raw mut cfg.applicationDescription.applicationName);
        cfg.applicationDescription.applicationName = name.into_raw();
    }

    let secure = config.security.contains(&SecurityPolicy::Basic256Sha256);
    if secure {
        let (c, k) = cert.ok_or("Basic256Sha256 needs a server certificate")?;
        // SAFETY: the ByteStrings are live; the function copies them into a new policy.
        let res = unsafe {
            sys::UA_ServerConfig_addSecurityPolicyBasic256Sha256(cfg, c.as_ptr(), k.as_ptr())
        };
        if res != 0 {
            return Err(format!("server certificate: {}", status_name(res)));
        }
        // A simulator accepts every client certificate: tests bring their own, self-signed.
        // SAFETY: both groups were initialised by `setMinimal`; AcceptAll replaces their checks.
        unsafe {
            sys::UA_CertificateGroup_AcceptAll(&raw mut cfg.secureChannelPKI);
            sys::UA_CertificateGroup_AcceptAll(&raw mut cfg.sessionPKI);
        }
    }
    // The endpoints are exactly the policies asked for (setMinimal added None's).
    // SAFETY: the array and its size are the config's own; it is freed and emptied together.
    unsafe {
        sys::UA_Array_delete(
            cfg.endpoints.cast(),
            cfg.endpointsSize,
            data_type(sys::UA_TYPES_ENDPOINTDESCRIPTION),
        );
    }
    cfg.endpoints = ptr::null_mut();
    cfg.endpointsSize = 0;
    for policy in &config.security {
        let (uri, modes): (&str, &[sys::UA_MessageSecurityMode]) = match policy {
            SecurityPolicy::None => (
                NONE_URI,
                &[sys::UA_MessageSecurityMode::UA_MESSAGESECURITYMODE_NONE],
            ),
            SecurityPolicy::Basic256Sha256 => (
                BASIC256SHA256_URI,
                &[
                    sys::UA_MessageSecurityMode::UA_MESSAGESECURITYMODE_SIGN,
                    sys::UA_MessageSecurityMode::UA_MESSAGESECURITYMODE_SIGNANDENCRYPT,
                ],
            ),
        };
        let uri = ua::String::new(uri).map_err(|e| e.to_string())?;
        for mode in modes {
            // SAFETY: the URI is a live string, passed by value but not taken over (copied).
            let res = unsafe {
                sys::UA_ServerConfig_addEndpoint(cfg, ua::String::to_raw_copy(&uri), mode.clone())
            };
            if res != 0 {
                return Err(format!("endpoint {policy:?}: {}", status_name(res)));
            }
        }
    }
    if !config.security.contains(&SecurityPolicy::None) {
        // GetEndpoints must still work on a None channel, and nothing else.
        cfg.securityPolicyNoneDiscoveryOnly = true;
    }

    // Users: anonymous only without users. Passwords travel encrypted with the server's key
    // when it has a secure policy; a None-only server must allow them in the clear.
    let logins: Vec<(ua::String, ua::ByteString)> = config
        .users
        .iter()
        .map(|u| {
            Ok((
                ua::String::new(&u.name).map_err(|e| e.to_string())?,
                ua::ByteString::new(u.password.as_bytes()),
            ))
        })
        .collect::<Result<_, String>>()?;
    let raw_logins: Vec<sys::UA_UsernamePasswordLogin> = logins
        .iter()
        .map(|(name, password)| sys::UA_UsernamePasswordLogin {
            // SAFETY: shallow copies, read (and deep-copied) by the call below while the owners live.
            username: unsafe { ua::String::to_raw_copy(name) },
            // SAFETY: as above.
            password: unsafe { ua::ByteString::to_raw_copy(password) },
        })
        .collect();
    let token_policy = ua::String::new(if secure { BASIC256SHA256_URI } else { NONE_URI })
        .map_err(|e| e.to_string())?;
    cfg.allowNonePolicyPassword = !secure;
    // SAFETY: the config's access control was set by setMinimal; this call clears and replaces it,
    // copying the logins and the policy URI.
    let res = unsafe {
        sys::UA_AccessControl_default(
            cfg,
            config.users.is_empty(),
            token_policy.as_ptr(),
            raw_logins.len(),
            if raw_logins.is_empty() {
                ptr::null()
            } else {
                raw_logins.as_ptr()
            },
        )
    };
    if res != 0 {
        return Err(format!("access control: {}", status_name(res)));
    }
    cfg.accessControl.getUserAccessLevel = Some(user_access_level);
    cfg.serviceNotificationCallback = Some(on_service);
    cfg.sessionNotificationCallback = Some(on_session);
    Ok(())
}

fn set_string(target: &mut sys::UA_String, value: &str) -> Result<(), String> {
    let s = ua::String::new(value).map_err(|e| format!("{value:?}: {e}"))?;
    // SAFETY: `target` is an owned string of the config: cleared, then replaced by an owned one.
    unsafe { sys::UA_String_clear(target) };
    *target = s.into_raw();
    Ok(())
}

fn set_string_array(
    target: &mut *mut sys::UA_String,
    size: &mut usize,
    values: &[&str],
) -> Result<(), String> {
    let strings: Vec<ua::String> = values
        .iter()
        .map(|v| ua::String::new(v).map_err(|e| format!("{v:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let raw: Vec<sys::UA_String> = strings
        .iter()
        // SAFETY: shallow copies, deep-copied by `UA_Array_copy` while `strings` lives.
        .map(|s| unsafe { ua::String::to_raw_copy(s) })
        .collect();
    let mut out: *mut c_void = ptr::null_mut();
    // SAFETY: the old array is the config's own (freed with its size); the new one is a deep copy
    // the config owns from now on.
    unsafe {
        sys::UA_Array_delete((*target).cast(), *size, data_type(sys::UA_TYPES_STRING));
        let res = sys::UA_Array_copy(
            raw.as_ptr().cast(),
            raw.len(),
            &raw mut out,
            data_type(sys::UA_TYPES_STRING),
        );
        if res != 0 {
            *target = ptr::null_mut();
            *size = 0;
            return Err(status_name(res).into());
        }
    }
    *target = out.cast();
    *size = raw.len();
    Ok(())
}

/// Read back the bound port and namespaces; set the advertised discovery URL.
fn after_startup(
    server: *mut sys::UA_Server,
    config: &ServerConfig,
    node_ids: Vec<String>,
) -> Result<Started0, String> {
    // SAFETY: the server is live and used by this thread only; the config is its own.
    let cfg = unsafe { &mut *sys::UA_Server_getConfig(server) };
    let urls = string_array(
        cfg.applicationDescription.discoveryUrls,
        cfg.applicationDescription.discoveryUrlsSize,
    );
    let port = urls
        .iter()
        .filter_map(|u| url_port(u))
        .find(|p| *p != 0)
        .or((config.port != 0).then_some(config.port))
        .ok_or_else(|| format!("the server listens, but on no port it reports ({urls:?})"))?;
    let url = config
        .advertised_url
        .clone()
        .unwrap_or_else(|| format!("opc.tcp://{}:{port}{}", config.host, config.path));
    set_string_array(
        &mut cfg.applicationDescription.discoveryUrls,
        &mut cfg.applicationDescription.discoveryUrlsSize,
        &[url.as_str()],
    )?;
    let mut namespaces = Vec::new();
    for i in 0..u16::MAX {
        let mut uri = ua::String::init();
        // SAFETY: the out string is an initialised, empty string the call fills (and we free).
        let res =
            unsafe { sys::UA_Server_getNamespaceByIndex(server, usize::from(i), uri.as_mut_ptr()) };
        if res != 0 {
            break;
        }
        namespaces.push(uri.as_str().unwrap_or_default().to_owned());
    }
    Ok(Started0 {
        port,
        url,
        namespaces,
        node_ids,
    })
}

fn string_array(data: *const sys::UA_String, size: usize) -> Vec<String> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: the config's array of `size` strings, read while the server is not running a loop.
    let slice = unsafe { std::slice::from_raw_parts(data, size) };
    slice
        .iter()
        .map(|s| {
            ua::String::raw_ref(s)
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn url_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("opc.tcp://")?;
    let authority = rest.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

/// Folders for the device and the dotted parts, then the variables (and their units).
fn add_nodes(server: *mut sys::UA_Server, config: &ServerConfig) -> Result<Vec<String>, String> {
    for ns in &config.namespaces {
        add_namespace(server, ns)?;
    }
    let folder_ns = match config.namespaces.first() {
        Some(ns) => add_namespace(server, ns)?,
        None => 1,
    };
    let objects = ua::NodeId::ns0(NS0_OBJECTS_FOLDER);
    let device = add_folder(server, &objects, folder_ns, &config.device)?;
    // Parents by path prefix: folders made on the way, and variables (a tag `tank` is the parent
    // of `tank.level`). Shorter paths first, so a variable claims its prefix before a folder would.
    let mut parents: HashMap<Vec<String>, (ua::NodeId, bool)> = HashMap::new();
    let mut order: Vec<usize> = (0..config.variables.len()).collect();
    order.sort_by_key(|&i| config.variables[i].path.len());
    let mut ids: Vec<Option<ua::NodeId>> = vec![None; config.variables.len()];
    for &i in &order {
        let v = &config.variables[i];
        let id = parse_node_id(server, &v.node_id)?;
        ids[i] = Some(id.clone());
        let (parent_path, leaf) = v.path.split_at(v.path.len() - 1);
        let mut parent = (device.clone(), true);
        for depth in 1..=parent_path.len() {
            let prefix = parent_path[..depth].to_vec();
            parent = if let Some(p) = parents.get(&prefix) {
                p.clone()
            } else {
                let folder = add_folder(server, &parent.0, folder_ns, &prefix[depth - 1])?;
                parents.insert(prefix, (folder.clone(), true));
                (folder, true)
            };
        }
        add_variable(server, &parent, &id, folder_ns, i, v, &leaf[0])?;
        parents.entry(v.path.clone()).or_insert((id, false));
    }
    Ok(ids
        .into_iter()
        .map(|id| id.map(|id| id.to_string()).unwrap_or_default())
        .collect())
}

fn add_folder(
    server: *mut sys::UA_Server,
    parent: &ua::NodeId,
    ns: u16,
    name: &str,
) -> Result<ua::NodeId, String> {
    let display = ua::LocalizedText::new("", name).map_err(|e| format!("{name:?}: {e}"))?;
    // SAFETY: the default attributes are a static of plain values and null pointers: a bitwise
    // copy owns nothing.
    let mut attr = unsafe { ptr::read(&raw const sys::UA_ObjectAttributes_default) };
    // SAFETY: a shallow copy; the server deep-copies it while `display` lives.
    attr.displayName = unsafe { ua::LocalizedText::to_raw_copy(&display) };
    let browse = ua::QualifiedName::new(ns, name);
    let mut out = ua::NodeId::init();
    // SAFETY: every argument is live for the call, which copies them; `out` is a null NodeId it
    // fills (owned by us after).
    let res = unsafe {
        sys::UA_Server_addObjectNode(
            server,
            ua::NodeId::to_raw_copy(&ua::NodeId::numeric(ns, 0)),
            ua::NodeId::to_raw_copy(parent),
            ua::NodeId::to_raw_copy(&ua::NodeId::ns0(NS0_ORGANIZES)),
            ua::QualifiedName::to_raw_copy(&browse),
            ua::NodeId::to_raw_copy(&ua::NodeId::ns0(NS0_FOLDER_TYPE)),
            attr,
            ptr::null_mut(),
            out.as_mut_ptr(),
        )
    };
    if res != 0 {
        return Err(format!("folder {name:?}: {}", status_name(res)));
    }
    Ok(out)
}

fn add_variable(
    server: *mut sys::UA_Server,
    parent: &(ua::NodeId, bool),
    id: &ua::NodeId,
    ns: u16,
    index: usize,
    v: &crate::server::Variable,
    name: &str,
) -> Result<(), String> {
    let display = ua::LocalizedText::new("", name).map_err(|e| format!("{name:?}: {e}"))?;
    let data_type_id = ua::NodeId::ns0(v.value_type.ns0_id());
    // SAFETY: the default attributes are a static of plain values and null pointers: a bitwise
    // copy owns nothing.
    let mut attr = unsafe { ptr::read(&raw const sys::UA_VariableAttributes_default) };
    // SAFETY: shallow copies, deep-copied by the server while the owners live.
    unsafe {
        attr.displayName = ua::LocalizedText::to_raw_copy(&display);
        attr.dataType = ua::NodeId::to_raw_copy(&data_type_id);
    }
    // -1: a scalar; 1: a one-dimensional array, whose one dimension is 0: any length.
    let mut dimensions = [0u32; 1];
    if v.initial.is_array() {
        attr.valueRank = 1;
        attr.arrayDimensionsSize = 1;
        // The server deep-copies the attributes while `dimensions` lives (to the end of this
        // function); nothing frees `attr`.
        attr.arrayDimensions = dimensions.as_mut_ptr();
    } else {
        attr.valueRank = -1;
    }
    let access = ACCESS_READ | if v.writable { ACCESS_WRITE } else { 0 };
    attr.accessLevel = access;
    attr.userAccessLevel = access;
    let browse = ua::QualifiedName::new(ns, name);
    let reference = if parent.1 {
        NS0_ORGANIZES
    } else {
        NS0_HAS_COMPONENT
    };
    let source = sys::UA_CallbackValueSource {
        read: Some(read_value),
        write: Some(write_value),
    };
    // SAFETY: every argument is live for the call, which copies them. The node context is the
    // variable's index (a number, never dereferenced).
    let res = unsafe {
        sys::UA_Server_addCallbackValueSourceVariableNode(
            server,
            ua::NodeId::to_raw_copy(id),
            ua::NodeId::to_raw_copy(&parent.0),
            ua::NodeId::to_raw_copy(&ua::NodeId::ns0(reference)),
            ua::QualifiedName::to_raw_copy(&browse),
            ua::NodeId::to_raw_copy(&ua::NodeId::ns0(NS0_BASE_DATA_VARIABLE_TYPE)),
            attr,
            source,
            index as *mut c_void,
            ptr::null_mut(),
        )
    };
    if res != 0 {
        return Err(format!(
            "variable {} ({name}): {}",
            v.node_id,
            status_name(res)
        ));
    }
    if let Some(unit) = &v.unit {
        add_unit(server, id, ns, unit)?;
    }
    Ok(())
}

/// The EngineeringUnits property (an EUInformation) of variable `id`.
fn add_unit(
    server: *mut sys::UA_Server,
    id: &ua::NodeId,
    ns: u16,
    unit: &str,
) -> Result<(), String> {
    let uri = ua::String::new(UNECE_URI).map_err(|e| e.to_string())?;
    let text = ua::LocalizedText::new("", unit).map_err(|e| format!("unit {unit:?}: {e}"))?;
    // SAFETY: shallow copies into a stack struct the variant deep-copies below.
    let eu = unsafe {
        sys::UA_EUInformation {
            namespaceUri: ua::String::to_raw_copy(&uri),
            unitId: -1,
            displayName: ua::LocalizedText::to_raw_copy(&text),
            description: ua::LocalizedText::to_raw_copy(&text),
        }
    };
    let mut value = ua::Variant::init();
    // SAFETY: `value` is an empty variant that receives a deep copy of `eu`.
    let res = unsafe {
        sys::UA_Variant_setScalarCopy(
            value.as_mut_ptr(),
            (&raw const eu).cast(),
            data_type(sys::UA_TYPES_EUINFORMATION),
        )
    };
    if res != 0 {
        return Err(format!("unit {unit:?}: {}", status_name(res)));
    }
    let display = ua::LocalizedText::new("", "EngineeringUnits").map_err(|e| e.to_string())?;
    let data_type_id = ua::NodeId::ns0(NS0_EU_INFORMATION);
    // SAFETY: the default attributes are a static of plain values and null pointers: a bitwise
    // copy owns nothing.
    let mut attr = unsafe { ptr::read(&raw const sys::UA_VariableAttributes_default) };
    // SAFETY: shallow copies, deep-copied by the server while the owners live.
    unsafe {
        attr.displayName = ua::LocalizedText::to_raw_copy(&display);
        attr.dataType = ua::NodeId::to_raw_copy(&data_type_id);
        attr.value = ua::Variant::to_raw_copy(&value);
    }
    attr.valueRank = -1;
    attr.accessLevel = ACCESS_READ;
    attr.userAccessLevel = ACCESS_READ;
    let browse = ua::QualifiedName::new(0, "EngineeringUnits");
    // SAFETY: as for the variables; the property gets a fresh numeric id in `ns`.
    let res = unsafe {
        sys::UA_Server_addVariableNode(
            server,
            ua::NodeId::to_raw_copy(&ua::NodeId::numeric(ns, 0)),
            ua::NodeId::to_raw_copy(id),
            ua::NodeId::to_raw_copy(&ua::NodeId::ns0(NS0_HAS_PROPERTY)),
            ua::QualifiedName::to_raw_copy(&browse),
            ua::NodeId::to_raw_copy(&ua::NodeId::ns0(NS0_PROPERTY_TYPE)),
            attr,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if res != 0 {
        return Err(format!("unit of {id}: {}", status_name(res)));
    }
    Ok(())
}

/// The callbacks' state, from the server's config.
///
/// # Safety
///
/// `server` must be a server built by [`build`], whose `Ctx` outlives it (the run thread drops it
/// after `UA_Server_delete`).
unsafe fn ctx<'a>(server: *mut sys::UA_Server) -> Option<&'a Ctx> {
    // SAFETY: per the contract, the config's context is our `Ctx` (or null before it is set).
    unsafe {
        let cfg = sys::UA_Server_getConfig(server);
        (*cfg).context.cast::<Ctx>().as_ref()
    }
}

/// The user a session logged in as (`None`: anonymous).
///
/// # Safety
///
/// Called from a server callback (the server is locked for this thread), with its session id.
unsafe fn session_user(
    server: *mut sys::UA_Server,
    session_id: *const sys::UA_NodeId,
) -> Option<String> {
    if session_id.is_null() {
        return None;
    }
    let key = ua::QualifiedName::new(0, "clientUserId");
    let mut out = ua::Variant::init();
    // SAFETY: per the contract; the out variant is a shallow copy owned by the session, so it is
    // read here and its memory released without freeing the contents (`into_raw` + forget).
    let res = unsafe {
        sys::UA_Server_getSessionAttribute(
            server,
            session_id,
            ua::QualifiedName::to_raw_copy(&key),
            out.as_mut_ptr(),
        )
    };
    let user = if res == 0 {
        out.as_scalar::<ua::String>()
            .and_then(|s| s.as_str().map(str::to_owned))
            .filter(|s| !s.is_empty())
    } else {
        None
    };
    // The variant's data belongs to the session: forget it instead of freeing it.
    let _ = out.into_raw();
    user
}

fn node_index(node_context: *mut c_void, shared: &Shared) -> Option<usize> {
    let index = node_context as usize;
    (index < shared.meta.len()).then_some(index)
}

fn note_node(ctx: &Ctx, index: usize, code: u32) {
    if let Some(event) = ctx.current.borrow_mut().as_mut() {
        event.nodes.push((index, code));
    }
}

unsafe extern "C" fn read_value(
    server: *mut sys::UA_Server,
    _session_id: *const sys::UA_NodeId,
    _session_context: *mut c_void,
    _node_id: *const sys::UA_NodeId,
    node_context: *mut c_void,
    include_source_timestamp: sys::UA_Boolean,
    range: *const sys::UA_NumericRange,
    value: *mut sys::UA_DataValue,
) -> sys::UA_StatusCode {
    // SAFETY: called by the server we built, on its run thread.
    let Some(ctx) = (unsafe { ctx(server) }) else {
        return sys::UA_STATUSCODE_BADINTERNALERROR;
    };
    let Some(index) = node_index(node_context, &ctx.shared) else {
        return sys::UA_STATUSCODE_BADINTERNALERROR;
    };
    if !range.is_null() {
        // Values are read whole (an array's too), as they are written: a part is refused.
        let code = sys::UA_STATUSCODE_BADINDEXRANGEINVALID;
        note_node(ctx, index, code);
        // SAFETY: `value` is the server's DataValue to fill, as below.
        unsafe {
            ua::DataValue::init()
                .with_status(&status(code))
                .move_into_raw(&mut *value);
        };
        return code;
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ctx.shared.read(index)));
    let dv = match result {
        Ok(Ok((v, code, source_time))) => {
            note_node(ctx, index, code);
            let mut dv = ua::DataValue::new(v.to_variant());
            if code != 0 {
                dv = dv.with_status(&status(code));
            }
            if include_source_timestamp {
                // SAFETY: a DateTime is a plain `i64`.
                dv = dv.with_source_timestamp(&unsafe { ua::DateTime::from_raw(source_time) });
            }
            dv
        }
        Ok(Err(code)) => {
            note_node(ctx, index, code);
            // SAFETY: `value` is the server's DataValue to fill; returning the status too is what
            // makes the server answer it (a Good return with no value reads as
            // BadWaitingForInitialData).
            unsafe {
                ua::DataValue::init()
                    .with_status(&status(code))
                    .move_into_raw(&mut *value);
            };
            return code;
        }
        Err(_) => ua::DataValue::init().with_status(&ua::StatusCode::BADINTERNALERROR),
    };
    // SAFETY: `value` is the server's (non-null, initialised, empty) DataValue to fill; it takes
    // ownership of what we move in.
    unsafe { dv.move_into_raw(&mut *value) };
    sys::UA_STATUSCODE_GOOD
}

unsafe extern "C" fn write_value(
    server: *mut sys::UA_Server,
    session_id: *const sys::UA_NodeId,
    _session_context: *mut c_void,
    _node_id: *const sys::UA_NodeId,
    node_context: *mut c_void,
    range: *const sys::UA_NumericRange,
    value: *const sys::UA_DataValue,
) -> sys::UA_StatusCode {
    // SAFETY: called by the server we built, on its run thread.
    let Some(ctx) = (unsafe { ctx(server) }) else {
        return sys::UA_STATUSCODE_BADINTERNALERROR;
    };
    let Some(index) = node_index(node_context, &ctx.shared) else {
        return sys::UA_STATUSCODE_BADINTERNALERROR;
    };
    let code = if range.is_null() {
        // SAFETY: the server passes the (non-null) written DataValue, alive for the call.
        let dv = ua::DataValue::raw_ref(unsafe { &*value });
        write_code(ctx, server, session_id, index, dv)
    } else {
        // Values are written whole: scalars have no index range, and arrays are not written in part.
        sys::UA_STATUSCODE_BADINDEXRANGEINVALID
    };
    note_node(ctx, index, code);
    code
}

fn write_code(
    ctx: &Ctx,
    server: *mut sys::UA_Server,
    session_id: *const sys::UA_NodeId,
    index: usize,
    dv: &ua::DataValue,
) -> u32 {
    if let Some(code) = ctx.shared.fault_status(index) {
        return code;
    }
    let meta = &ctx.shared.meta[index];
    let Some(value) = dv
        .value()
        .and_then(|v| Value::from_variant(v, meta.value_type, meta.array))
    else {
        return sys::UA_STATUSCODE_BADTYPEMISMATCH;
    };
    // SAFETY: we are inside the server's write callback, with its session id.
    let user = unsafe { session_user(server, session_id) };
    let shared = Arc::clone(&ctx.shared);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        shared.client_write(index, value, user);
    })) {
        Ok(()) => sys::UA_STATUSCODE_GOOD,
        Err(_) => sys::UA_STATUSCODE_BADINTERNALERROR,
    }
}

unsafe extern "C" fn user_access_level(
    server: *mut sys::UA_Server,
    _ac: *mut sys::UA_AccessControl,
    session_id: *const sys::UA_NodeId,
    _session_context: *mut c_void,
    _node_id: *const sys::UA_NodeId,
    node_context: *mut c_void,
) -> sys::UA_Byte {
    // SAFETY: called by the server we built, on its run thread.
    let Some(ctx) = (unsafe { ctx(server) }) else {
        return 0xFF;
    };
    if ctx.shared.users.is_empty() {
        return 0xFF;
    }
    // SAFETY: inside an access-control callback, with its session id.
    let user = unsafe { session_user(server, session_id) };
    let can_write = user
        .as_ref()
        .and_then(|u| ctx.shared.users.get(u))
        .is_none_or(|u| u.can_write);
    if can_write {
        return 0xFF;
    }
    // Only our variables carry an index context; a denied write is logged against them.
    if let Some(index) = node_index(node_context, &ctx.shared) {
        let writing = ctx
            .current
            .borrow()
            .as_ref()
            .is_some_and(|e| e.service == "Write");
        if writing && ctx.shared.meta[index].writable {
            note_node(ctx, index, sys::UA_STATUSCODE_BADUSERACCESSDENIED);
        }
    }
    !ACCESS_WRITE
}

fn payload_scalar<'a, T: open62541::DataType>(
    payload: &'a sys::UA_KeyValueMap,
    key: &str,
    type_index: u32,
) -> Option<&'a T> {
    let key = ua::QualifiedName::new(0, key);
    // SAFETY: the payload is the server's, alive for the callback; the result (if any) points
    // into it, with the type we asked for.
    unsafe {
        let p = sys::UA_KeyValueMap_getScalar(
            payload,
            ua::QualifiedName::to_raw_copy(&key),
            data_type(type_index),
        );
        p.cast::<T::Inner>().as_ref().map(T::raw_ref)
    }
}

fn service_name(type_id: &ua::NodeId) -> String {
    // SAFETY: looks the id up in the library's static type tables; the name is a static C string.
    let name = unsafe {
        let t = sys::UA_findDataType(type_id.as_ptr());
        if t.is_null() || (*t).typeName.is_null() {
            return type_id.to_string();
        }
        CStr::from_ptr((*t).typeName.cast::<c_char>())
    };
    let name = name.to_string_lossy();
    name.strip_suffix("Request").unwrap_or(&name).to_owned()
}

unsafe extern "C" fn on_service(
    server: *mut sys::UA_Server,
    kind: sys::UA_ApplicationNotificationType,
    payload: sys::UA_KeyValueMap,
) {
    // SAFETY: called by the server we built, on its run thread.
    let Some(ctx) = (unsafe { ctx(server) }) else {
        return;
    };
    if !ctx.shared.log_services.load(Ordering::Relaxed) {
        ctx.current.borrow_mut().take();
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match kind {
        sys::UA_ApplicationNotificationType::UA_APPLICATIONNOTIFICATIONTYPE_SERVICE_BEGIN => {
            let service =
                payload_scalar::<ua::NodeId>(&payload, "service-type", sys::UA_TYPES_NODEID)
                    .map_or_else(|| "?".to_owned(), service_name);
            let session =
                payload_scalar::<ua::NodeId>(&payload, "session-id", sys::UA_TYPES_NODEID)
                    .filter(|id| !id.is_null())
                    .map(ToString::to_string);
            let event = ServiceEvent {
                at: now_unix(),
                service,
                request_id: payload_scalar::<ua::UInt32>(
                    &payload,
                    "request-id",
                    sys::UA_TYPES_UINT32,
                )
                .map_or(0, ua::UInt32::value),
                channel_id: payload_scalar::<ua::UInt32>(
                    &payload,
                    "securechannel-id",
                    sys::UA_TYPES_UINT32,
                )
                .map_or(0, ua::UInt32::value),
                session,
                nodes: Vec::new(),
            };
            if let Some(previous) = ctx.current.borrow_mut().replace(event) {
                ctx.shared.push_event(previous);
            }
        }
        sys::UA_ApplicationNotificationType::UA_APPLICATIONNOTIFICATIONTYPE_SERVICE_END
        | sys::UA_ApplicationNotificationType::UA_APPLICATIONNOTIFICATIONTYPE_SERVICE_ASYNC => {
            if let Some(event) = ctx.current.borrow_mut().take() {
                ctx.shared.push_event(event);
            }
        }
        _ => {}
    }));
}

unsafe extern "C" fn on_session(
    server: *mut sys::UA_Server,
    kind: sys::UA_ApplicationNotificationType,
    payload: sys::UA_KeyValueMap,
) {
    // SAFETY: called by the server we built, on its run thread.
    let Some(ctx) = (unsafe { ctx(server) }) else {
        return;
    };
    let Some(id) = payload_scalar::<ua::NodeId>(&payload, "session-id", sys::UA_TYPES_NODEID)
    else {
        return;
    };
    let mut sessions = ctx.sessions.borrow_mut();
    match kind {
        sys::UA_ApplicationNotificationType::UA_APPLICATIONNOTIFICATIONTYPE_SESSION_CREATED => {
            sessions.push(id.clone());
        }
        sys::UA_ApplicationNotificationType::UA_APPLICATIONNOTIFICATIONTYPE_SESSION_CLOSED => {
            sessions.retain(|s| s != id);
        }
        _ => {}
    }
}

/// The library's log goes to stderr at the level `BIFROST_OPCUA_LOG` names (`debug`, `info`,
/// `warning`, `error`); by default it is silent, so `serve --json` keeps stdout clean.
fn new_logger() -> *mut sys::UA_Logger {
    let level: Option<u32> = match std::env::var("BIFROST_OPCUA_LOG").ok().as_deref() {
        Some("trace") => Some(0),
        Some("debug") => Some(100),
        Some("info") => Some(200),
        Some("warning") => Some(300),
        Some("error") => Some(400),
        _ => None,
    };
    let logger = Box::new(sys::UA_Logger {
        log: Some(log_message),
        context: level.map_or(ptr::null_mut(), |l| (l as usize + 1) as *mut c_void),
        clear: Some(clear_logger),
    });
    Box::into_raw(logger)
}

unsafe extern "C" fn log_message(
    context: *mut c_void,
    level: sys::UA_LogLevel,
    _category: sys::UA_LogCategory,
    msg: *const c_char,
    args: sys::va_list_,
) {
    let threshold = context as usize;
    if threshold == 0 || (level.0 as usize) + 1 < threshold {
        return;
    }
    let mut out = ua::String::init();
    // SAFETY: `msg` and `args` are the library's format string and arguments for this call;
    // `UA_String_vformat` (the library's own formatter, which knows its `%S`/`%N` extensions)
    // fills the empty string, which we own and free.
    let res = unsafe { sys::UA_String_vformat(out.as_mut_ptr(), msg, args) };
    if res == 0 {
        eprintln!("open62541: {}", out.as_str().unwrap_or_default());
    }
}

unsafe extern "C" fn clear_logger(logger: *mut sys::UA_Logger) {
    if !logger.is_null() {
        // SAFETY: made by `new_logger` with `Box::into_raw`; the library calls `clear` once.
        drop(unsafe { Box::from_raw(logger) });
    }
}

/// A self-signed certificate and key (DER) for `application_uri` and `hosts`.
pub(crate) fn generate_certificate(
    application_uri: &str,
    hosts: &[String],
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let subject = ["C=DE", "O=Bifrost", "CN=Bifrost simulator"];
    let mut alt: Vec<String> = vec![format!("URI:{application_uri}")];
    for host in hosts {
        if host.parse::<std::net::IpAddr>().is_ok() {
            alt.push(format!("IP:{host}"));
        } else {
            alt.push(format!("DNS:{host}"));
        }
    }
    let subject = ua::Array::from_slice(
        &subject
            .iter()
            .map(|s| ua::String::new(s).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let alt = ua::Array::from_slice(
        &alt.iter()
            .map(|s| ua::String::new(s).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?,
    );
    // 2048-bit RSA (the library's default is 4096): Basic256Sha256 allows 2048 to 4096, and a
    // 4096-bit key takes seconds, up to tens of them, to make on a busy CI core.
    let key_size = ua::QualifiedName::new(0, "key-size-bits");
    let bits = ua::Variant::scalar(ua::UInt16::new(2048));
    let params = ua::KeyValueMap::from_slice(&[(&key_size, &bits)]);
    let (cert, key) =
        open62541::create_certificate(&subject, &alt, &ua::CertificateFormat::DER, Some(&params))
            .map_err(|e| format!("cannot make a certificate: {e}"))?;
    Ok((cert.as_bytes().to_vec(), key.as_bytes().to_vec()))
}

/// A DataChangeFilter reporting status or value changes beyond an absolute `deadband` (the crate
/// has the type but no way to set its fields).
pub(crate) fn data_change_filter(deadband: f64) -> ua::DataChangeFilter {
    let raw = sys::UA_DataChangeFilter {
        trigger: sys::UA_DataChangeTrigger::UA_DATACHANGETRIGGER_STATUSVALUE,
        deadbandType: sys::UA_DeadbandType::UA_DEADBANDTYPE_ABSOLUTE.0,
        deadbandValue: deadband,
    };
    // SAFETY: UA_DataChangeFilter is plain data (an enum, an integer and a double, no pointers),
    // fully initialised here, so the wrapper may own it; its clear has nothing to free.
    unsafe { ua::DataChangeFilter::from_raw(raw) }
}

/// The results of a Read response, borrowed: the crate's `results()` deep-copies them all, which
/// for a read of many values costs as much as decoding the response did.
pub(crate) fn read_results(response: &ua::ReadResponse) -> &[ua::DataValue] {
    // SAFETY: `as_ptr` points at the response's `UA_ReadResponse`, alive for the borrow.
    let raw = unsafe { &*response.as_ptr() };
    if raw.resultsSize == 0 || raw.results.is_null() {
        // An empty array may be the library's sentinel pointer, which must not be read.
        return &[];
    }
    // SAFETY: the response owns `results`, an array of `resultsSize` initialised DataValues that
    // lives (unchanged: the borrow is shared) as long as `response`; `ua::DataValue` is
    // `repr(transparent)` over `UA_DataValue`, so the cast keeps layout and alignment.
    unsafe { std::slice::from_raw_parts(raw.results.cast::<ua::DataValue>(), raw.resultsSize) }
}
