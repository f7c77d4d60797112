"""Sleeping on the plant's clock, so injected delays are exact and free on a VirtualClock.

Every delay a fault adds goes through a `Timing`: `now()` and `until(when)` in plant seconds, and
`sleep(seconds)`. On a VirtualClock a sleep is a future that a `clock.call_at` timer resolves, so
bytes delayed by 200ms arrive when a test advances the clock by 200ms, at no cost in wall time. On a
SystemClock (or none) it is asyncio.sleep, scaled by the clock's speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from simulators.clock import NS, Clock, SystemClock, VirtualClock

Sleep = Callable[[float], Awaitable[None]]
"""`await sleep(seconds)`: an injectable delay."""


@dataclass(frozen=True)
class Timing:
    """Plant time for the fault machinery: what time it is, and how to wait."""

    now: Callable[[], float]
    sleep: Sleep
    until_: Callable[[float], Awaitable[None]] | None = None

    async def until(self, when: float) -> None:
        """Wait until plant time `when` (at once if it has passed)."""
        if self.until_ is not None:
            await self.until_(when)
        else:
            await self.sleep(when - self.now())

    @classmethod
    def of(cls, clock: Clock | None) -> Timing:
        """The timing of `clock`: timers on a VirtualClock, asyncio.sleep otherwise (None: the loop's time)."""
        if isinstance(clock, VirtualClock):
            virtual = clock

            async def until(when: float) -> None:
                await _virtual_until(virtual, when)

            async def sleep(seconds: float) -> None:
                await _virtual_until(virtual, virtual.now() + seconds)

            return cls(virtual.now, sleep, until)
        if clock is None:
            return cls(_loop_time, _asyncio_sleep)
        plant = clock

        async def scaled(seconds: float) -> None:
            # Plant seconds run `speed` times faster than wall seconds (read each time: speed may change).
            speed = plant.speed if isinstance(plant, SystemClock) else 1.0
            await asyncio.sleep(max(0.0, seconds) / speed)

        return cls(plant.now, scaled)


def clock_sleep(clock: Clock | None) -> Sleep:
    """`sleep(seconds)` on `clock`'s time; see the module docstring."""
    return Timing.of(clock).sleep


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


async def _asyncio_sleep(seconds: float) -> None:
    await asyncio.sleep(max(0.0, seconds))


def due(when: float, now: float) -> bool:
    """Whether plant time `when` has come at `now`, to the nanosecond clocks keep time in (so float
    noise in `now + delay` cannot leave a timer waiting for a tick that already happened)."""
    return when <= now or round(when * NS) <= round(now * NS)


async def _virtual_until(clock: VirtualClock, when: float) -> None:
    if due(when, clock.now()):
        await asyncio.sleep(0)  # still a suspension point, as asyncio.sleep(0) is
        return
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        # The clock may be advanced from another thread (a test driving a SimHost's plant):
        # the future belongs to this loop, so it is resolved there.
        if not loop.is_closed():
            loop.call_soon_threadsafe(_resolve, woken)

    timer = clock.call_when_due(when, wake)  # at once if another thread advanced past `when` meanwhile
    try:
        await woken
    finally:
        timer.cancel()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


__all__ = ["Sleep", "Timing", "clock_sleep", "due"]
