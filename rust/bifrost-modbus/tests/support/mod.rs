//! An in-crate Modbus device for the engine's tests: tokio-modbus's own server (TCP or RTU over
//! TCP) in front of a plain register store, with knobs for the faults the tests need.

#![allow(dead_code)] // each test binary uses a part

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

/// Addresses 0..SIZE exist in every area; beyond that the device answers exception 2.
pub const SIZE: usize = 1000;

#[derive(Debug, Clone)]
pub struct Store {
    pub coils: Vec<bool>,
    pub discrete: Vec<bool>,
    pub input: Vec<u16>,
    pub holding: Vec<u16>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            coils: vec![false; SIZE],
            discrete: vec![false; SIZE],
            input: vec![0; SIZE],
            holding: vec![0; SIZE],
        }
    }
}

/// One request as the device saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub unit: u8,
    pub function: u8,
    pub address: u16,
}

#[derive(Debug)]
struct Inner {
    units: Mutex<HashMap<u8, Store>>,
    /// Delays for the next requests, one each, in order (the reply is computed on arrival).
    delays: Mutex<VecDeque<Duration>>,
    seen: mpsc::UnboundedSender<Seen>,
}

/// The device: its stores (one per unit) and its fault knobs. Clones share them.
#[derive(Debug, Clone)]
pub struct Device {
    inner: Arc<Inner>,
}

impl Device {
    /// A device with the given units, and the receiver of every request it sees.
    pub fn new(units: &[u8]) -> (Self, mpsc::UnboundedReceiver<Seen>) {
        let (seen, log) = mpsc::unbounded_channel();
        let units = units.iter().map(|unit| (*unit, Store::default())).collect();
        let inner = Inner {
            units: Mutex::new(units),
            delays: Mutex::default(),
            seen,
        };
        (
            Self {
                inner: Arc::new(inner),
            },
            log,
        )
    }

    pub fn with_store<R>(&self, unit: u8, f: impl FnOnce(&mut Store) -> R) -> R {
        let mut units = self.inner.units.lock().unwrap();
        f(units.get_mut(&unit).expect("a unit of the device"))
    }

    pub fn delay_next(&self, delay: Duration) {
        self.inner.delays.lock().unwrap().push_back(delay);
    }

    fn answer(&self, unit: u8, request: &Request<'_>) -> Result<Response, ExceptionCode> {
        let mut units = self.inner.units.lock().unwrap();
        let store = units
            .get_mut(&unit)
            .ok_or(ExceptionCode::GatewayTargetDevice)?;
        let range = |start: u16, count: usize| {
            let start = usize::from(start);
            if start + count > SIZE {
                Err(ExceptionCode::IllegalDataAddress)
            } else {
                Ok(start..start + count)
            }
        };
        Ok(match request {
            Request::ReadCoils(start, count) => {
                Response::ReadCoils(store.coils[range(*start, usize::from(*count))?].to_vec())
            }
            Request::ReadDiscreteInputs(start, count) => Response::ReadDiscreteInputs(
                store.discrete[range(*start, usize::from(*count))?].to_vec(),
            ),
            Request::ReadInputRegisters(start, count) => Response::ReadInputRegisters(
                store.input[range(*start, usize::from(*count))?].to_vec(),
            ),
            Request::ReadHoldingRegisters(start, count) => Response::ReadHoldingRegisters(
                store.holding[range(*start, usize::from(*count))?].to_vec(),
            ),
            Request::WriteSingleCoil(address, value) => {
                let r = range(*address, 1)?;
                store.coils[r].fill(*value);
                Response::WriteSingleCoil(*address, *value)
            }
            Request::WriteMultipleCoils(address, values) => {
                let r = range(*address, values.len())?;
                store.coils[r].copy_from_slice(values);
                Response::WriteMultipleCoils(*address, values.len() as u16)
            }
            Request::WriteSingleRegister(address, value) => {
                let r = range(*address, 1)?;
                store.holding[r].fill(*value);
                Response::WriteSingleRegister(*address, *value)
            }
            Request::WriteMultipleRegisters(address, values) => {
                let r = range(*address, values.len())?;
                store.holding[r].copy_from_slice(values);
                Response::WriteMultipleRegisters(*address, values.len() as u16)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        })
    }
}

fn address_of(request: &Request<'_>) -> u16 {
    match request {
        Request::ReadCoils(a, _)
        | Request::ReadDiscreteInputs(a, _)
        | Request::ReadInputRegisters(a, _)
        | Request::ReadHoldingRegisters(a, _)
        | Request::WriteSingleCoil(a, _)
        | Request::WriteMultipleCoils(a, _)
        | Request::WriteSingleRegister(a, _)
        | Request::WriteMultipleRegisters(a, _) => *a,
        _ => 0,
    }
}

impl Service for Device {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Result<Response, ExceptionCode>> + Send>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        let SlaveRequest { slave, request } = request;
        let _ = self.inner.seen.send(Seen {
            unit: slave,
            function: request.function_code().value(),
            address: address_of(&request),
        });
        // The reply is what the device held when the request came, however late it is sent.
        let result = self.answer(slave, &request);
        let delay = self.inner.delays.lock().unwrap().pop_front();
        Box::pin(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            result
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Tcp,
    RtuOverTcp,
}

/// A running server; dropping it (or `stop`) closes the listener and every connection.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(device: &Device, framing: Framing) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, device, framing)
    }

    /// Serve again on the address of a server that was stopped.
    pub async fn restart(addr: SocketAddr, device: &Device, framing: Framing) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        Self::serve(listener, device, framing)
    }

    fn serve(listener: TcpListener, device: &Device, framing: Framing) -> Self {
        let addr = listener.local_addr().unwrap();
        let device = device.clone();
        let task = tokio::spawn(async move {
            let on_connected = |stream, _peer| {
                let device = device.clone();
                async move { Ok(Some((device, stream))) }
            };
            match framing {
                Framing::Tcp => {
                    let server = tokio_modbus::server::tcp::Server::new(listener);
                    let _ = server.serve(&on_connected, |_err| {}).await;
                }
                Framing::RtuOverTcp => {
                    let server = tokio_modbus::server::rtu_over_tcp::Server::new(listener);
                    let _ = server.serve(&on_connected, |_err| {}).await;
                }
            }
        });
        Self { addr, task }
    }

    /// Stop serving: the listener closes and every connection is dropped.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
