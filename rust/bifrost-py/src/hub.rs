//! `Hub`: the sockets of a fleet's sessions behind one epoll, and the loop woken once for all.
//!
//! Registered one by one with the asyncio loop, fifty sockets answering one after another wake
//! the loop fifty times a cycle: a wake-up (a context switch, the loop's Python round) costs as
//! much as the reply it brings. The fleet poller moves its sessions' sockets into one epoll of
//! its own (`mio`), which alone is watched by the loop: one callback takes every reply that is
//! in. While a cycle still waits for replies the hub then rests for a short window before it
//! listens again (a NIC's interrupt moderation): the replies that come meanwhile are taken in
//! one wake-up. A cycle's batch is only handed over once its last reply is in, so the window
//! delays the batch by at most that much and no reply is read later than the batch needs.
//!
//! A rest that gathers fewer than two replies ends the resting for the rest of the cycle: the
//! devices answer further apart than the window, and a rest would only add a wake-up.
//!
//! Session timeouts stay on the loop's timers; a session whose deadline falls in a window reads
//! its socket before it calls a timeout (see `TcpSession::_on_timer`).

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use pyo3::intern;
use pyo3::prelude::*;

use crate::session::TcpSession;

struct State {
    poll: Poll,
    events: Events,
    sessions: Vec<Option<Py<TcpSession>>>,
    /// The loop watches the epoll (false while resting).
    watching: bool,
    resume: Option<Py<PyAny>>,
    closed: bool,
}

pub(crate) struct Hub {
    state: Mutex<State>,
    epoll: RawFd,
    event_loop: Py<PyAny>,
    driver: Mutex<Option<Py<HubDriver>>>,
    /// A cycle waits for replies: rest between wake-ups.
    cycle_open: AtomicBool,
    /// The resting window in nanoseconds (0: never rest).
    window: AtomicU64,
    /// A rest of this cycle found fewer than two replies in: the device answer further apart
    /// than the window, and resting would only add a timer's wake-up to each reply's.
    wasted: AtomicBool,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the loop calls: the hub's callbacks (a Python-callable face of an `Arc<Hub>`).
#[pyclass(frozen, module = "bifrost._native")]
pub(crate) struct HubDriver {
    hub: Arc<Hub>,
}

#[pymethods]
impl HubDriver {
    fn _on_ready(&self, py: Python<'_>) {
        self.hub.on_ready(py, false);
    }

    fn _resume(&self, py: Python<'_>) {
        self.hub.resume(py);
    }
}

impl Hub {
    /// A hub on `event_loop` for `sessions` sessions (tokens 0..sessions), watched by the loop.
    pub(crate) fn new(
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
        sessions: usize,
    ) -> PyResult<Arc<Self>> {
        let poll = Poll::new()?;
        let epoll = poll.as_raw_fd();
        let hub = Arc::new(Self {
            state: Mutex::new(State {
                poll,
                events: Events::with_capacity(sessions.clamp(16, 1024)),
                sessions: (0..sessions).map(|_| None).collect(),
                watching: false,
                resume: None,
                closed: false,
            }),
            epoll,
            event_loop: event_loop.clone().unbind(),
            driver: Mutex::new(None),
            cycle_open: AtomicBool::new(false),
            window: AtomicU64::new(0),
            wasted: AtomicBool::new(false),
        });
        let driver = Py::new(
            py,
            HubDriver {
                hub: Arc::clone(&hub),
            },
        )?;
        *hub.driver.lock().unwrap_or_else(PoisonError::into_inner) = Some(driver);
        hub.watch(py)?;
        Ok(hub)
    }

    fn driver(&self, py: Python<'_>) -> Option<Py<HubDriver>> {
        self.driver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|d| d.clone_ref(py))
    }

    fn watch(&self, py: Python<'_>) -> PyResult<()> {
        let Some(driver) = self.driver(py) else {
            return Ok(());
        };
        let callback = driver.bind(py).getattr(intern!(py, "_on_ready"))?;
        self.event_loop
            .bind(py)
            .call_method1(intern!(py, "add_reader"), (self.epoll, callback))?;
        lock(&self.state).watching = true;
        Ok(())
    }

    /// `session` (token `token`) reads from `fd` through the hub from now on.
    pub(crate) fn register(
        &self,
        py: Python<'_>,
        fd: RawFd,
        token: usize,
        session: Py<TcpSession>,
    ) -> PyResult<()> {
        let mut state = lock(&self.state);
        state
            .poll
            .registry()
            .register(&mut SourceFd(&fd), Token(token), Interest::READABLE)?;
        if let Some(slot) = state.sessions.get_mut(token) {
            *slot = Some(session);
        }
        drop(state);
        let _ = py;
        Ok(())
    }

    pub(crate) fn deregister(&self, fd: RawFd) {
        let state = lock(&self.state);
        // A socket already closed left the epoll by itself.
        let _ = state.poll.registry().deregister(&mut SourceFd(&fd));
    }

    /// Rest between wake-ups while a cycle is open, for `window` (zero: never).
    pub(crate) fn set_window(&self, window: Duration) {
        self.window.store(
            u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn set_cycle_open(&self, open: bool) {
        self.cycle_open.store(open, Ordering::Relaxed);
        if open {
            self.wasted.store(false, Ordering::Relaxed);
        }
    }

    /// Take every reply that is in; then rest, if a cycle waits and resting pays. `resumed`: after
    /// a rest, which is judged by what it gathered.
    fn on_ready(&self, py: Python<'_>, resumed: bool) {
        let mut taken = 0;
        loop {
            let (ready, full) = {
                let mut state = lock(&self.state);
                if state.closed {
                    return;
                }
                let State {
                    poll,
                    events,
                    sessions,
                    ..
                } = &mut *state;
                if let Err(err) = poll.poll(events, Some(Duration::ZERO)) {
                    if err.kind() != std::io::ErrorKind::Interrupted {
                        PyErr::from(err).write_unraisable(py, None);
                        return;
                    }
                }
                let mut ready = Vec::new();
                for event in events.iter() {
                    if let Some(Some(session)) = sessions.get(event.token().0) {
                        ready.push(session.clone_ref(py));
                    }
                }
                let full = ready.len() >= events.capacity();
                (ready, full)
            };
            // No lock held here: a session that loses its connection deregisters its socket.
            taken += ready.len();
            for session in &ready {
                if let Err(err) = TcpSession::_on_readable(session.bind(py)) {
                    err.write_unraisable(py, None);
                }
            }
            if !full {
                break;
            }
        }
        if resumed && taken < 2 {
            self.wasted.store(true, Ordering::Relaxed);
        }
        let window = self.window.load(Ordering::Relaxed);
        if window > 0
            && self.cycle_open.load(Ordering::Relaxed)
            && !self.wasted.load(Ordering::Relaxed)
        {
            self.rest(py, Duration::from_nanos(window));
        }
    }

    /// Stop listening for `window`; the replies that come meanwhile are taken together.
    fn rest(&self, py: Python<'_>, window: Duration) {
        let Some(driver) = self.driver(py) else {
            return;
        };
        let event_loop = self.event_loop.bind(py);
        let armed = (|| -> PyResult<Py<PyAny>> {
            event_loop.call_method1(intern!(py, "remove_reader"), (self.epoll,))?;
            let callback = driver.bind(py).getattr(intern!(py, "_resume"))?;
            Ok(event_loop
                .call_method1(intern!(py, "call_later"), (window.as_secs_f64(), callback))?
                .unbind())
        })();
        let mut state = lock(&self.state);
        match armed {
            Ok(handle) => {
                state.watching = false;
                state.resume = Some(handle);
            }
            Err(err) => {
                drop(state);
                err.write_unraisable(py, None);
                let _ = self.watch(py);
            }
        }
    }

    fn resume(&self, py: Python<'_>) {
        {
            let mut state = lock(&self.state);
            state.resume = None;
            if state.closed || state.watching {
                return;
            }
        }
        if let Err(err) = self.watch(py) {
            err.write_unraisable(py, None);
            return;
        }
        self.on_ready(py, true);
    }

    /// Stop: the loop no longer watches the epoll. Sessions must have been moved off it.
    pub(crate) fn close(&self, py: Python<'_>) {
        let (watching, resume) = {
            let mut state = lock(&self.state);
            state.closed = true;
            state.sessions.iter_mut().for_each(|s| *s = None);
            (
                std::mem::replace(&mut state.watching, false),
                state.resume.take(),
            )
        };
        if let Some(handle) = resume {
            let _ = handle.bind(py).call_method0(intern!(py, "cancel"));
        }
        if watching {
            let _ = self
                .event_loop
                .bind(py)
                .call_method1(intern!(py, "remove_reader"), (self.epoll,));
        }
        // The driver holds the hub: let go of it, so both can be freed.
        self.driver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}
