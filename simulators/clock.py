"""Plant time, and timers that run on it.

A Clock tells plant time (`now()`, seconds since the plant started) and runs timers at plant times
(`call_at`, `call_every`), so the plant's ticks, its events and later the fault durations are written
once and run on either clock:

- `VirtualClock`: time moves only when told (`advance`, `run_until`); due timers run inside those
  calls, in time order, each with `now()` equal to its own time. Tests own time, as with trio's MockClock.
- `SystemClock`: monotonic time, optionally faster than real time (`speed`). Its timers are driven
  by an asyncio loop once `attach(loop)` is called (from any thread); `now()` never needs a loop.

Both keep time in integer nanoseconds, so ten advances of 0.1 s land exactly on 1 s and a periodic
timer never drifts.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

from bifrost import errors

log = logging.getLogger(__name__)

Callback = Callable[[], object]
NS = 1_000_000_000
_MAX_RUN_DUE = 10_000  # timers one run_due() call may run before it yields back to the loop


def _to_ns(seconds: float, what: str) -> int:
    if not math.isfinite(seconds):
        raise ValueError(f"{what} must be a finite number of seconds, not {seconds!r}")
    return round(seconds * NS)


class Timer:
    """A pending call; `cancel()` stops it (a periodic one for good)."""

    __slots__ = ("_count", "_start_ns", "callback", "cancelled", "period_ns", "when_ns")

    def __init__(self, when_ns: int, callback: Callback, period_ns: int = 0) -> None:
        self.when_ns = when_ns
        self.callback = callback
        self.period_ns = period_ns
        self.cancelled = False
        self._start_ns = when_ns
        self._count = 0

    @property
    def when(self) -> float:
        """Plant time of the next call, in seconds."""
        return self.when_ns / NS

    def cancel(self) -> None:
        self.cancelled = True

    def __repr__(self) -> str:
        every = f", every {self.period_ns / NS}s" if self.period_ns else ""
        state = ", cancelled" if self.cancelled else ""
        return f"Timer(at {self.when}s{every}{state})"


class _TimerQueue:
    """A heap of timers by (time, order of scheduling); cancelled ones are dropped as they surface."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Timer]] = []
        self._order = itertools.count()

    def push(self, timer: Timer) -> Timer:
        heapq.heappush(self._heap, (timer.when_ns, next(self._order), timer))
        return timer

    def next_ns(self) -> int | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now_ns: int, skip_missed: bool) -> tuple[int, Timer] | None:
        """The earliest timer due at `now_ns` and its time; a periodic one is put back for its next turn.

        A periodic timer keeps to its grid (start + k * period). With `skip_missed`, turns already in
        the past are skipped rather than run back to back (a real-time loop that fell behind).
        """
        when = self.next_ns()
        if when is None or when > now_ns:
            return None
        timer = heapq.heappop(self._heap)[2]
        if timer.period_ns:
            timer._count += 1
            if skip_missed:
                timer._count = max(timer._count, (now_ns - timer._start_ns) // timer.period_ns + 1)
            timer.when_ns = timer._start_ns + timer._count * timer.period_ns
            self.push(timer)
        return when, timer

    def clear(self) -> None:
        for _, _, timer in self._heap:
            timer.cancelled = True
        self._heap.clear()


class Clock(Protocol):
    """What the plant needs from a clock."""

    def now(self) -> float:
        """Seconds of plant time since the start (or the last reset)."""
        ...

    def call_at(self, when: float, callback: Callback) -> Timer:
        """Call `callback()` at plant time `when` (as soon as possible if that has passed)."""
        ...

    def call_every(self, period: float, callback: Callback, *, start: float | None = None) -> Timer:
        """Call `callback()` at `start` (default: one period from now) and every `period` after."""
        ...

    def reset(self) -> None:
        """Back to time 0, with every timer cancelled: whoever owns timers schedules them again."""
        ...


def _period_ns(period: float) -> int:
    period_ns = _to_ns(period, "period")
    if period_ns <= 0:
        raise ValueError(f"a timer's period must be positive, not {period!r}")
    return period_ns


class VirtualClock:
    """Time that moves only when told. Due timers run inside `advance()`, in time order.

    Thread-safe: timers may be set and cancelled from any thread (a SimHost's loop thread sets them
    while a test thread advances time). The timer queue and the time change under a lock; callbacks
    run outside it, on the advancing thread, so they may set timers of their own. One thread advances
    at a time: another thread's `advance()` waits for it; a callback's own `advance()` is an error.
    A timer set for a time the clock has already passed runs at the next advance.
    """

    def __init__(self) -> None:
        self._now_ns = 0
        self._queue = _TimerQueue()
        self._lock = threading.Lock()  # the queue and _now_ns
        self._advance_lock = threading.Lock()  # one advancing thread at a time
        self._advancing: int | None = None  # the ident of the thread advancing now

    def now(self) -> float:
        return self._now_ns / NS

    def call_at(self, when: float, callback: Callback) -> Timer:
        timer = Timer(_to_ns(when, "a timer's time"), callback)
        with self._lock:
            return self._queue.push(timer)

    def call_when_due(self, when: float, callback: Callback) -> Timer:
        """`call_at(when, callback)`, except that if `when` has already come, `callback()` runs at once
        on this thread (and the returned timer is spent). For waking a sleeper on another thread: a
        plain `call_at` for a time that another thread's `advance()` has just passed would wait for the
        next advance."""
        timer = Timer(_to_ns(when, "a timer's time"), callback)
        with self._lock:
            if timer.when_ns > self._now_ns:
                return self._queue.push(timer)
        timer.cancelled = True
        callback()
        return timer

    def call_every(self, period: float, callback: Callback, *, start: float | None = None) -> Timer:
        period_ns = _period_ns(period)
        with self._lock:
            first = self._now_ns + period_ns if start is None else _to_ns(start, "start")
            return self._queue.push(Timer(first, callback, period_ns))

    def next_timer(self) -> float | None:
        """Plant time of the next pending timer, if any."""
        with self._lock:
            when = self._queue.next_ns()
        return None if when is None else when / NS

    def advance(self, seconds: float) -> float:
        """Move time forward by `seconds`, running every timer that falls due on the way; the new now()."""
        step = _to_ns(seconds, "advance()")
        if step < 0:
            raise ValueError(f"time only moves forward: advance({seconds!r})")
        if self._advancing == threading.get_ident():
            raise RuntimeError("advance() was called from inside a timer callback")
        with self._advance_lock:
            self._advancing = threading.get_ident()
            try:
                self._advance(step)
            finally:
                self._advancing = None
        return self.now()

    def _advance(self, step: int) -> None:
        target = self._now_ns + step
        while True:
            with self._lock:
                due = self._queue.pop_due(target, skip_missed=False)
                if due is None:
                    # Under the same lock as the last look at the queue: a timer set from another
                    # thread is either seen above or set after time has reached the target.
                    self._now_ns = max(self._now_ns, target)
                    return
                when, timer = due
                self._now_ns = max(self._now_ns, when)
            # A callback that raises leaves time at its own timer: the caller sees where it stopped.
            timer.callback()

    def run_until(
        self, target: float | Callable[[], bool], *, step: float | None = None, limit: float = 3600.0
    ) -> float:
        """Advance to plant time `target`, or until `target()` is true; returns now().

        With a predicate, time jumps from timer to timer (on a virtual clock nothing can change in
        between) or by `step` seconds if given, and the predicate is checked after each jump. A
        predicate still false after `limit` seconds raises TimeoutError, with time left at the limit.
        """
        if not callable(target):
            if target < self.now():
                raise ValueError(f"run_until({target!r}) is in the past (now is {self.now()})")
            return self.advance(target - self.now())
        predicate = target
        if predicate():
            return self.now()
        if step is not None and step <= 0:
            raise ValueError(f"step must be positive, not {step!r}")
        deadline_ns = self._now_ns + _to_ns(limit, "limit")
        while self._now_ns < deadline_ns:
            if step is not None:
                next_ns = self._now_ns + _to_ns(step, "step")
            else:
                with self._lock:
                    pending = self._queue.next_ns()
                next_ns = deadline_ns if pending is None else max(pending, self._now_ns)
            self.advance((min(next_ns, deadline_ns) - self._now_ns) / NS)
            if predicate():
                return self.now()
        raise errors.TimeoutError(f"the condition did not hold within {limit} s of plant time (now {self.now()} s)")

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._now_ns = 0

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now()})"


class SystemClock:
    """Monotonic plant time, `speed` times faster than real time; timers run on an attached asyncio loop.

    `now()` works anywhere, with or without a loop. Timers wait until `attach(loop)` (callable from any
    thread, before or after the loop starts); from then on the loop runs each one when due. Without a
    loop, `run_due()` runs the due ones by hand. A callback that raises is logged, not propagated,
    so one bad timer cannot stop the others. Ticks that a busy loop missed are skipped, not replayed.
    """

    def __init__(self, speed: float = 1.0, *, monotonic_ns: Callable[[], int] = time.monotonic_ns) -> None:
        if not speed > 0 or not math.isfinite(speed):
            raise ValueError(f"speed must be a positive number, not {speed!r}")
        self._monotonic_ns = monotonic_ns
        self._speed = float(speed)
        self._origin_ns = monotonic_ns()
        self._base_ns = 0  # plant time at _origin_ns; lets speed change without a jump in time
        self._queue = _TimerQueue()
        self._lock = threading.RLock()  # the queue is shared by the loop thread and callers' threads
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed_ns: int | None = None

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, speed: float) -> None:
        if not speed > 0 or not math.isfinite(speed):
            raise ValueError(f"speed must be a positive number, not {speed!r}")
        with self._lock:
            self._base_ns = self._now_ns()
            self._origin_ns = self._monotonic_ns()
            self._speed = float(speed)
        self._wake()

    def _now_ns(self) -> int:
        return self._base_ns + int((self._monotonic_ns() - self._origin_ns) * self._speed)

    def now(self) -> float:
        return self._now_ns() / NS

    def call_at(self, when: float, callback: Callback) -> Timer:
        timer = Timer(_to_ns(when, "a timer's time"), callback)
        with self._lock:
            self._queue.push(timer)
        self._wake(timer.when_ns)
        return timer

    def call_every(self, period: float, callback: Callback, *, start: float | None = None) -> Timer:
        period_ns = _period_ns(period)
        first = self._now_ns() + period_ns if start is None else _to_ns(start, "start")
        timer = Timer(first, callback, period_ns)
        with self._lock:
            self._queue.push(timer)
        self._wake(timer.when_ns)
        return timer

    def next_timer(self) -> float | None:
        with self._lock:
            when = self._queue.next_ns()
        return None if when is None else when / NS

    def run_due(self) -> int:
        """Run every timer due now (the loop calls this; so may a caller without a loop). How many ran."""
        ran = 0
        while ran < _MAX_RUN_DUE:
            with self._lock:
                due = self._queue.pop_due(self._now_ns(), skip_missed=True)
            if due is None:
                break
            ran += 1
            try:
                due[1].callback()
            except Exception:
                log.exception("a timer callback failed; the clock carries on")
        return ran

    def attach(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Drive the timers from `loop` (default: the running loop). Safe to call from any thread."""
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._wake()

    def detach(self) -> None:
        """Stop driving timers from the loop (they stay pending)."""
        loop, self._loop = self._loop, None
        handle, self._handle = self._handle, None
        self._armed_ns = None
        if handle is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(handle.cancel)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._origin_ns = self._monotonic_ns()
            self._base_ns = 0
        self._wake()

    def _wake(self, when_ns: int | None = None) -> None:
        """Re-arm the loop's wake-up, from whichever thread we are on."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        armed = self._armed_ns
        if when_ns is not None and armed is not None and when_ns >= armed:
            return  # the loop already wakes up earlier than this timer is due
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._arm()
        else:
            with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing left to drive
                loop.call_soon_threadsafe(self._arm)

    def _arm(self) -> None:
        loop = self._loop
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_ns = None
        if loop is None:
            return
        with self._lock:
            when = self._queue.next_ns()
            if when is None:
                return
            delay = max(0.0, (when - self._now_ns()) / NS / self._speed)
        self._armed_ns = when
        self._handle = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed_ns = None
        try:
            self.run_due()
        finally:
            self._arm()

    def __repr__(self) -> str:
        return f"SystemClock(now={self.now():.3f}, speed={self._speed})"
