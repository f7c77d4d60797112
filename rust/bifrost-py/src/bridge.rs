//! How Rust work becomes an asyncio awaitable.
//!
//! The tokio runtime is pyo3-async-runtimes' (configured once, at import). A call made from
//! Python creates an asyncio future on the running loop, spawns the work on the runtime and
//! returns the future at once; the work runs on tokio's threads, which never hold the GIL.
//!
//! The way back is the hot path, so it is not pyo3-async-runtimes' `future_into_py` (which takes
//! the GIL on a blocking-pool thread and calls `call_soon_threadsafe` for every result): each
//! event loop has one [`Hub`], a queue of finished work plus a socket pair whose read end the loop
//! watches (`loop.add_reader`). Finished work is queued without the GIL, and only the push that
//! finds the queue empty writes a byte; the loop's thread then drains the whole queue in one
//! callback, converting results to Python objects there (with the GIL it holds anyway) and
//! settling their futures. Many devices finishing at once cost one wake-up.
//!
//! A loop without `add_reader` (Windows' proactor), or `BIFROST_NATIVE_WAKE=threadsafe`, gets
//! the same queue woken by `call_soon_threadsafe` from a blocking-pool thread instead.
//!
//! A result of many objects (a dict of a thousand `DataPoint`s) is better made by the task that
//! awaits it, when it resumes, than in the drain: a drain that settled fifty such results at once
//! would hold fifty thousand fresh objects the cycle collector must scan (every pyo3 object is
//! tracked by it), while a task that makes its own result and lets it go keeps the collector's
//! count low. [`deferred`] returns such an awaitable: the drain only marks its future done.

use std::future::Future;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::{PyNotImplementedError, PyRuntimeError, PyStopIteration};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::{MutexExt, PyOnceLock};
use pyo3::types::{PyWeakrefMethods, PyWeakrefReference};
use tokio::runtime::Runtime;

/// Work to finish on the loop's thread, with the GIL.
pub(crate) type Job = Box<dyn FnOnce(Python<'_>) + Send>;

/// The shared tokio runtime.
pub(crate) fn runtime() -> &'static Runtime {
    static HEARTBEAT: std::sync::Once = std::sync::Once::new();
    let runtime = pyo3_async_runtimes::tokio::get_runtime();
    HEARTBEAT.call_once(|| {
        // tokio wakes its driver whenever a timer is set sooner than the driver's next wake-up, so
        // with no timer pending every request's timeout costs a wake-up syscall. A timer that is
        // always pending (and costs ten wake-ups a second) keeps the next wake-up near, so a
        // request's timeout is set without one.
        runtime.spawn(async {
            let mut ticker = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                ticker.tick().await;
            }
        });
    });
    runtime
}

/// Configure the runtime (before its first use): `BIFROST_NATIVE_THREADS` worker threads,
/// default 1 — Modbus work is waiting on sockets, and one worker means no hand-offs between
/// threads; raise it for thousands of tags per millisecond.
pub(crate) fn configure_runtime() {
    let workers = std::env::var("BIFROST_NATIVE_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(workers)
        .thread_name("bifrost-native")
        .enable_all();
    pyo3_async_runtimes::tokio::init(builder);
}

enum Wake {
    /// The loop watches `reader`; a byte on `writer` wakes it.
    Socket {
        reader: UnixStream,
        writer: UnixStream,
    },
    /// `loop.call_soon_threadsafe(drain)`, from a thread that takes the GIL.
    /// `loop.call_soon_threadsafe(hub.drain)`, from a blocking-pool thread that takes the GIL.
    Threadsafe { event_loop: Py<PyWeakrefReference> },
}

/// The queue of finished work of one event loop.
pub(crate) struct Hub {
    jobs: Mutex<Vec<Job>>,
    wake: Wake,
}

impl Hub {
    /// Queue `job` for the loop's thread. Never takes the GIL in socket mode.
    pub(crate) fn run(self: &Arc<Self>, job: Job) {
        let first = {
            let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            jobs.push(job);
            jobs.len() == 1
        };
        if !first {
            return; // a wake-up is already on its way, and the drain takes every job queued
        }
        match &self.wake {
            Wake::Socket { writer, .. } => {
                // Full means a wake-up is pending anyway; any other failure means the loop is gone.
                let _ = (&*writer).write(&[1]);
            }
            Wake::Threadsafe { .. } => {
                let hub = Arc::clone(self);
                runtime().spawn_blocking(move || {
                    Python::attach(|py| {
                        let Wake::Threadsafe { event_loop } = &hub.wake else {
                            return;
                        };
                        let Some(event_loop) = event_loop.bind(py).upgrade() else {
                            return; // the loop is gone, and with it whoever awaited
                        };
                        let wake = || -> PyResult<()> {
                            let drain = Bound::new(
                                py,
                                HubHandle {
                                    hub: Arc::clone(&hub),
                                },
                            )?
                            .getattr(intern!(py, "drain"))?;
                            event_loop
                                .call_method1(intern!(py, "call_soon_threadsafe"), (drain,))?;
                            Ok(())
                        };
                        // A closed loop refuses: its futures can no longer be awaited anyway.
                        let _ = wake();
                    });
                });
            }
        }
    }

    fn drain(&self, py: Python<'_>) {
        if let Wake::Socket { reader, .. } = &self.wake {
            let mut buffer = [0u8; 256];
            loop {
                match (&*reader).read(&mut buffer) {
                    Ok(n) if n == buffer.len() => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // Less than a buffer, or WouldBlock: nothing more to read.
                    _ => break,
                }
            }
        }
        // Bytes first, then the queue: a job queued after the take writes a byte of its own.
        let jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(PoisonError::into_inner));
        for job in jobs {
            job(py);
        }
    }
}

/// The Python side of a hub: its `drain` is the loop's reader callback.
#[pyclass(frozen, module = "bifrost._native", name = "_Hub")]
pub(crate) struct HubHandle {
    hub: Arc<Hub>,
}

#[pymethods]
impl HubHandle {
    fn drain(&self, py: Python<'_>) {
        self.hub.drain(py);
    }
}

/// The hubs of the live loops: (a weak reference to the loop, its hub). Only touched with the GIL.
static HUBS: Mutex<Vec<(Py<PyWeakrefReference>, Arc<Hub>)>> = Mutex::new(Vec::new());
static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The running loop and its hub (made on first use).
pub(crate) fn current(py: Python<'_>) -> PyResult<(Bound<'_, PyAny>, Arc<Hub>)> {
    // The hot path: the loop this thread used last time, if it is running on this thread still.
    // asyncio's loops set `_thread_id` to the running thread's ident while they run (together
    // with the running loop) and clear it when they stop, so this check answers as
    // `get_running_loop()` would, without its cost (on Python 3.11, a getpid system call).
    // A loop without `_thread_id` takes the slow path every time.
    let cached = LAST.with_borrow(|last| {
        let (weak, hub, ident) = last.as_ref()?;
        let alive = weak.bind(py).upgrade()?;
        let running = alive.getattr(intern!(py, "_thread_id")).ok()?;
        (running.extract::<u64>().ok()? == *ident).then(|| (alive, Arc::clone(hub)))
    });
    if let Some(found) = cached {
        return Ok(found);
    }
    let event_loop = GET_RUNNING_LOOP
        .import(py, "asyncio", "get_running_loop")?
        .call0()?;
    let (event_loop, hub) = lookup(py, event_loop)?;
    let weak = PyWeakrefReference::new(&event_loop)?.unbind();
    let ident = GET_IDENT
        .import(py, "threading", "get_ident")?
        .call0()?
        .extract::<u64>()?;
    LAST.with_borrow_mut(|last| *last = Some((weak, Arc::clone(&hub), ident)));
    Ok((event_loop, hub))
}

static GET_IDENT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A loop (weakly), its hub, and the ident of the thread it ran on.
type LastLoop = (Py<PyWeakrefReference>, Arc<Hub>, u64);

thread_local! {
    /// The loop this thread used last.
    static LAST: std::cell::RefCell<Option<LastLoop>> = const { std::cell::RefCell::new(None) };
}

fn lookup<'py>(
    py: Python<'py>,
    event_loop: Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Arc<Hub>)> {
    {
        let hubs = HUBS
            .lock_py_attached(py)
            .unwrap_or_else(PoisonError::into_inner);
        for (weak, hub) in hubs.iter() {
            if weak
                .bind(py)
                .upgrade()
                .is_some_and(|alive| alive.is(&event_loop))
            {
                return Ok((event_loop, Arc::clone(hub)));
            }
        }
    }
    // No lock held while the loop runs Python code (add_reader).
    let hub = make_hub(py, &event_loop)?;
    let mut hubs = HUBS
        .lock_py_attached(py)
        .unwrap_or_else(PoisonError::into_inner);
    hubs.retain(|(weak, _)| weak.bind(py).upgrade().is_some());
    hubs.push((
        PyWeakrefReference::new(&event_loop)?.unbind(),
        Arc::clone(&hub),
    ));
    Ok((event_loop, hub))
}

fn make_hub(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<Hub>> {
    let threadsafe = std::env::var("BIFROST_NATIVE_WAKE").is_ok_and(|v| v == "threadsafe");
    if !threadsafe {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        let fd = reader.as_raw_fd();
        let hub = Arc::new(Hub {
            jobs: Mutex::new(Vec::new()),
            wake: Wake::Socket { reader, writer },
        });
        let handle = Bound::new(
            py,
            HubHandle {
                hub: Arc::clone(&hub),
            },
        )?;
        match event_loop.call_method1(
            intern!(py, "add_reader"),
            (fd, handle.getattr(intern!(py, "drain"))?),
        ) {
            Ok(_) => return Ok(hub),
            Err(err) if err.is_instance_of::<PyNotImplementedError>(py) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(Arc::new(Hub {
        jobs: Mutex::new(Vec::new()),
        wake: Wake::Threadsafe {
            event_loop: PyWeakrefReference::new(event_loop)?.unbind(),
        },
    }))
}

/// Settle `future` with `result`, unless it is already done (cancelled).
pub(crate) fn settle(py: Python<'_>, future: &Bound<'_, PyAny>, result: PyResult<Py<PyAny>>) {
    let outcome = (|| -> PyResult<()> {
        if future.call_method0(intern!(py, "done"))?.is_truthy()? {
            return Ok(());
        }
        match result {
            Ok(value) => future.call_method1(intern!(py, "set_result"), (value,))?,
            Err(err) => future.call_method1(intern!(py, "set_exception"), (err.into_value(py),))?,
        };
        Ok(())
    })();
    if let Err(err) = outcome {
        err.write_unraisable(py, Some(future));
    }
}

/// Run `work` on the runtime and return an asyncio future of its result. `work` yields a
/// conversion, run on the loop's thread, that makes the Python result (or the exception).
pub(crate) fn awaitable<F, C>(py: Python<'_>, work: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = C> + Send + 'static,
    C: FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let (event_loop, hub) = current(py)?;
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    let target = future.clone().unbind();
    runtime().spawn(async move {
        let convert = work.await;
        hub.run(Box::new(move |py| {
            let result = convert(py);
            settle(py, target.bind(py), result);
        }));
    });
    Ok(future)
}

/// How a deferred result is made, on the awaiting task's thread.
pub(crate) type Convert = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// Where a deferred result's conversion waits for the awaiting task.
pub(crate) type Slot = Arc<Mutex<Option<Convert>>>;

/// Run `work` on the runtime; return an awaitable that, once the work is done, makes the result
/// (with the conversion `work` yields) in the task that awaits it.
pub(crate) fn deferred<F, C>(py: Python<'_>, work: F) -> PyResult<Bound<'_, Deferred>>
where
    F: Future<Output = C> + Send + 'static,
    C: FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let (event_loop, hub) = current(py)?;
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    let slot: Arc<Mutex<Option<Convert>>> = Arc::default();
    let filled = Arc::clone(&slot);
    let target = future.clone().unbind();
    runtime().spawn(async move {
        let convert = work.await;
        *filled.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(convert));
        hub.run(Box::new(move |py| {
            settle(py, target.bind(py), Ok(py.None()));
        }));
    });
    Bound::new(
        py,
        Deferred {
            future: future.unbind(),
            slot,
        },
    )
}

/// An awaitable whose result is made when the awaiting task resumes (see the module's notes):
/// awaiting it waits on an asyncio future that the work's end marks done.
#[pyclass(frozen, module = "bifrost._native", name = "_Deferred")]
pub(crate) struct Deferred {
    future: Py<PyAny>,
    slot: Arc<Mutex<Option<Convert>>>,
}

impl Deferred {
    /// A deferred result for work finished elsewhere (the loop-driven session): fill `slot`, then
    /// mark `future` done.
    pub(crate) fn new(future: Py<PyAny>, slot: Slot) -> Self {
        Self { future, slot }
    }
}

#[pymethods]
impl Deferred {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Await the future (as `Future.__await__` does: mark it blocking and yield it), then make the
    /// result and return it through `StopIteration`.
    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let future = self.future.bind(py);
        if !future.call_method0(intern!(py, "done"))?.is_truthy()? {
            future.setattr(intern!(py, "_asyncio_future_blocking"), true)?;
            return Ok(future.clone().unbind());
        }
        future.call_method0(intern!(py, "result"))?; // raises CancelledError if cancelled
        let convert = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this result was awaited already"))?;
        Err(PyStopIteration::new_err((convert(py)?,)))
    }
}
