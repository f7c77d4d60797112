"""Faults that act on a whole device, carried out at their time: `FaultWatch`.

Most faults act when something happens (a connection arrives, a request is read, a reply written),
so they need no watching. Three act on the device as a whole at a moment of plant time: a `reboot`
drops the device's connections and sets its tags back when it starts, a certain `refuse` (or a
reboot's boot time) closes the listening socket while it lasts, and a `freeze` keeps the values as
they were when it began. A FaultWatch makes them happen on time rather than at the next connection
or request:

- at the exact time of each scenario event that may switch one on or off (`at`, `every`; a `clear`);
- after each plant tick if such an event has a `when` (the plant checks conditions on its ticks);
- when a fault is added, cleared or reset at run time (`FaultSet.on_change`);
- at the end of the `for` of such a fault in force (the earliest end, re-armed as they pass).

Each time it polls every device's FaultSet (a reboot due is carried out then) and calls `act()`,
which the host uses to close or reopen listening sockets and to take a freeze's snapshot. The timers
sit on the plant's clock, so on a VirtualClock they run inside `advance()`, on the advancing thread,
right after the plant's own timers of the same time: when `advance()` returns, the reboot has happened.

A plant reset cancels every timer of its clock: call `arm()` again after one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from simulators.clock import Timer

if TYPE_CHECKING:
    from simulators.faults.faultset import PlantFaults
    from simulators.plant import Plant

log = logging.getLogger(__name__)

T = TypeVar("T")
LOOP_WAIT = 5.0  # seconds a thread waits for the loop thread to carry something out

WHOLE_DEVICE_KINDS = frozenset({"reboot", "refuse", "freeze"})
"""The kinds that act on a device as a whole at a moment of plant time."""


class FaultWatch:
    """Carries out whole-device faults at their time; see the module docstring."""

    def __init__(
        self, plant: Plant[Any], hooks: PlantFaults, devices: Iterable[str], act: Callable[[], object] | None = None
    ) -> None:
        self.plant = plant
        self.hooks = hooks
        self.devices = tuple(devices)
        self._act = act
        self._timers: list[Timer] = []
        self._end_timer: Timer | None = None
        self._end_at: float | None = None
        self._unsubscribe: list[Callable[[], object]] = []
        self._lock = threading.RLock()
        self._armed = False
        self.checks = 0  # how many times it looked (for tests)

    # --- arming -------------------------------------------------------------------------------------------

    def arm(self) -> None:
        """Set the timers for the scenario's events (again, after a plant reset) and listen to run-time
        changes; then look once, for what is in force already (an event at time 0)."""
        with self._lock:
            self._cancel_timers()
            clock = self.plant.clock
            ticks = False
            for event in self.plant.scenario.events:
                if not self._concerns(event):
                    continue
                if event.at is not None:
                    if event.at > 0:
                        self._timers.append(clock.call_at(event.at, self.check))
                elif event.every is not None:
                    self._timers.append(clock.call_every(event.every, self.check, start=event.every))
                elif event.when is not None:
                    ticks = True
            if ticks:
                tick = self.plant.tick
                self._timers.append(clock.call_every(tick, self.check, start=tick))
            if not self._unsubscribe:
                for device in self.devices:
                    self._unsubscribe.append(self.hooks.device(device).on_change(self.check))
            self._armed = True
        self.check()

    def disarm(self) -> None:
        """Cancel every timer and stop listening (the host stops)."""
        with self._lock:
            self._armed = False
            self._cancel_timers()
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            self._unsubscribe.clear()

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._end_timer is not None:
            self._end_timer.cancel()
        self._end_timer = None
        self._end_at = None

    def _concerns(self, event: Any) -> bool:
        fault = event.fault
        if fault is not None and fault.device in self.devices and fault.kind in WHOLE_DEVICE_KINDS:
            return True
        clear = event.clear
        return clear is not None and clear.device in self.devices and clear.kind in (None, *WHOLE_DEVICE_KINDS)

    # --- looking ------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Carry out what is due now: reboots, then the host's `act()`; re-arm the next end. Any thread.

        No lock is held while acting: a reboot and `act()` may wait for the host's loop thread.
        """
        with self._lock:
            if not self._armed:
                return
            self.checks += 1
        for device in self.devices:
            self.hooks.device(device).poll()
        if self._act is not None:
            try:
                self._act()
            except Exception:
                log.exception("acting on whole-device faults failed")
        with self._lock:
            if self._armed:
                self._arm_end()

    def _arm_end(self) -> None:
        clock = self.plant.clock
        now = clock.now()
        ends = [
            end
            for device in self.devices
            for fault in self.hooks.device(device).active()
            if fault.spec.kind in WHOLE_DEVICE_KINDS and (end := fault.end) is not None and end > now
        ]
        end = min(ends, default=None)
        if end == self._end_at:
            return
        if self._end_timer is not None:
            self._end_timer.cancel()
        self._end_timer = None if end is None else clock.call_at(end, self.check)
        self._end_at = end


def call_on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], T], timeout: float = LOOP_WAIT) -> T | None:
    """`fn()` on `loop`'s thread: at once if this is that thread, else there, waiting for it (at most
    `timeout` seconds). None, without calling it, if the loop is not running (a stopped host)."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        return fn()
    if loop.is_closed() or not loop.is_running():
        return None
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            done.set_result(fn())
        except BaseException as exc:
            done.set_exception(exc)

    try:
        loop.call_soon_threadsafe(run)
    except RuntimeError:  # closed meanwhile
        return None
    try:
        return done.result(timeout)
    except concurrent.futures.TimeoutError:
        log.warning("the host's loop thread did not carry out %r within %s s", fn, timeout)
        return None


__all__ = ["LOOP_WAIT", "WHOLE_DEVICE_KINDS", "FaultWatch", "call_on_loop"]
