"""One direction of one connection: chunks in, the same bytes out at their faulty times.

A `Lane` takes each chunk (a frame, or bytes that are none) as it arrives, asks its FaultSet which
transport faults hit it, and decides at once what happens: lost (`drop`; `stall` from then on),
bits flipped (`corrupt`), held back (`latency`), cut in pieces with gaps (`slicer`) or paced
(`bandwidth`), or the connection ended in its place (`reset`, `close`). Deciding on arrival keeps the
delays measured from when the bytes came, and bytes never overtake each other: a chunk leaves no
earlier than the one before it, as on a TCP stream. A pump task sends pieces when due, sleeping on the
FaultSet's Timing, so on a VirtualClock every time is exact.

A chunk no fault hits, on an idle lane, is passed on at once without a task switch: a device with
no faults pays nearly nothing for being wrapped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from simulators.faults.frames import RequestRef
from simulators.faults.timing import due

if TYPE_CHECKING:
    from simulators.faults.faultset import ActiveFault, FaultSet
    from simulators.faults.spec import FaultSpec

log = logging.getLogger(__name__)

Sink = Callable[[bytes], object]
"""Where a lane's bytes go (a writer's `write`, a reader's `feed_data`)."""
EndHook = Callable[[str], object]
"""Called with "reset" or "close" when a fault ends the connection (when its turn comes)."""
Way = Literal["upstream", "downstream"]

_PACE = 100  # bandwidth pieces per second of line time: a slow line delivers bytes as it goes
HIGH_WATER = 256 * 1024
"""Bytes a lane may hold back (under latency, bandwidth, slicer) before it is full. A full lane does not
refuse bytes; `room()` waits, so whoever feeds it (a server writing replies, a reader reading requests
ahead) stops until it has sent half of them, and TCP's flow control holds the sender back from there."""


def flip_bits(data: bytes, bits: int, rng: random.Random) -> bytes:
    """`data` with `bits` distinct bits flipped, chosen by `rng`."""
    if not data:
        return data
    out = bytearray(data)
    for position in rng.sample(range(len(out) * 8), min(bits, len(out) * 8)):
        out[position // 8] ^= 1 << (position % 8)
    return bytes(out)


class Lane:
    """Bytes travelling one way through a FaultSet's transport faults; see the module docstring."""

    def __init__(self, faults: FaultSet, direction: Way, sink: Sink, on_end: EndHook | None = None) -> None:
        self.faults = faults
        self.direction = direction
        self._sink = sink
        self._on_end = on_end
        self._queue: deque[tuple[float, bytes | str]] = deque()  # (plant time, piece or "reset"/"close")
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._held = 0  # bytes of the pieces in the queue
        self._room = asyncio.Event()  # set while the lane is not full
        self._room.set()
        self._last = -math.inf  # when the last queued piece leaves
        self._line_free = -math.inf  # when a bandwidth-limited line has sent all it was given
        self._stalled_by: ActiveFault | None = None
        self._generation = faults.generation
        self.ending: str | None = None  # a reset or close is queued: nothing after it passes
        self.ended: str | None = None  # "reset", "close", or "lost" (the sink failed)

    @property
    def idle(self) -> bool:
        return not self._queue and self._task is None

    @property
    def clear(self) -> bool:
        """Nothing queued, stalled or ending, on the FaultSet's current timeline: with no fault in force,
        a chunk pushed now would be passed on at once, unchanged."""
        return (
            not self._queue
            and self._stalled_by is None
            and self.ending is None
            and self.ended is None
            and self._generation == self.faults.generation
        )

    def push(self, data: bytes, request: RequestRef = None) -> tuple[str, ...]:
        """Send `data` on through the faults; returns the kinds that hit it (for a log).

        `request` is the request `data` is or answers, if known (for faults with a match).
        """
        if not data or self.ending is not None or self.ended is not None:
            return ()
        faults = self.faults
        if faults.generation != self._generation:
            self._catch_up()
        stall = self._stalled_by
        if stall is not None:
            if faults.still_live(stall):
                faults.spend(stall)
                return ("stall",)
            self._stalled_by = None
        hits = faults.transport(self.direction, request)
        if not hits and not self._queue:
            self._send(data)
            return ()
        kinds = tuple(fault.spec.kind for fault in hits)
        specs = [fault.spec for fault in hits]
        for fault in hits:
            if fault.spec.kind == "stall":
                self._stalled_by = fault  # swallows all that follows while the stall lasts
                return kinds
        if "drop" in kinds:
            return kinds
        rng = faults.rng
        for spec in specs:
            if spec.kind == "corrupt":
                data = flip_bits(data, spec.integer("bits", 1), rng)
        now = faults.timing.now()
        delay = 0.0
        for spec in specs:
            if spec.kind == "latency":
                jitter = spec.number("jitter")
                delay += max(0.0, spec.number("delay") + (rng.uniform(-jitter, jitter) if jitter else 0.0))
        start = max(now + delay, self._last)
        end = next((kind for kind in kinds if kind in ("reset", "close")), None)
        if end is not None:
            self._queue.append((start, end))  # in place of the chunk, when its turn comes
            self.ending = end
        elif start <= now and not self._queue and not any(kind in ("slicer", "bandwidth") for kind in kinds):
            self._send(data)  # nothing to wait for (a corrupt chunk, say): no task switch
            return kinds
        else:
            self._plan(data, start, specs)
        self._wake()
        return kinds

    def _plan(self, data: bytes, start: float, specs: list[FaultSpec]) -> None:
        rates = [spec.integer("rate") for spec in specs if spec.kind == "bandwidth"]
        slicers = [spec for spec in specs if spec.kind == "slicer"]
        rate = min(rates) if rates else 0
        if slicers:
            size = min(spec.integer("size", 1) for spec in slicers)
            gap = max(spec.number("gap") for spec in slicers)
        else:
            size = max(1, rate // _PACE) if rate else len(data)
            gap = 0.0
        line = max(start, self._line_free)
        when = start
        for index in range(0, len(data), size):
            piece = data[index : index + size]
            when = start + (index // size) * gap
            if rate:
                # The line starts on this piece once it is due and the line is free; it lands when sent.
                when = max(when, line) + len(piece) / rate
                line = when
            self._queue.append((when, piece))
        self._last = when
        if rate:
            self._line_free = line
        self._held += len(data)
        if self._held > HIGH_WATER:
            self._room.clear()

    @property
    def held(self) -> int:
        """Bytes queued, not yet sent on."""
        return self._held

    async def room(self) -> None:
        """Wait while the lane is full (more than HIGH_WATER bytes held, until half of them are sent)."""
        await self._room.wait()

    def _release(self, size: int) -> None:
        self._held = max(0, self._held - size)
        if self._held <= HIGH_WATER // 2:
            self._room.set()

    def _forget(self) -> None:
        self._queue.clear()
        self._held = 0
        self._room.set()

    def _wake(self) -> None:
        if self._task is None and self._queue:
            self._idle.clear()
            self._task = asyncio.get_running_loop().create_task(self._pump())

    def _catch_up(self) -> None:
        """The FaultSet was reset (between tests, with the clock back at 0): what is held goes now, and
        times start afresh on the new timeline."""
        self._generation = self.faults.generation
        self._queue = deque((-math.inf, item) for _, item in self._queue)
        self._last = self._line_free = -math.inf
        self._stalled_by = None

    async def _pump(self) -> None:
        timing = self.faults.timing
        try:
            while self._queue:
                if self.faults.generation != self._generation:
                    self._catch_up()
                when, item = self._queue[0]
                if not due(when, timing.now()):
                    await timing.until(when)
                    continue  # look again: a reset may have come while asleep
                self._queue.popleft()
                if isinstance(item, str):
                    self._forget()
                    self.ended = item
                    if self._on_end is not None:
                        self._on_end(item)
                    break
                self._release(len(item))
                self._send(item)
        except Exception:  # a bug here must end the connection's faults loudly, not hang it
            log.exception("%s lane failed", self.direction)
            self.ended = "lost"
            self._forget()
        finally:
            self._task = None
            self._idle.set()

    def _send(self, data: bytes) -> None:
        try:
            self._sink(data)
        except (ConnectionError, OSError, RuntimeError) as exc:  # the other side has gone
            log.debug("%s lane lost: %s", self.direction, exc)
            self.ended = "lost"
            self._forget()

    async def drained(self) -> None:
        """Wait until every queued piece has left (or the lane ended)."""
        await self._idle.wait()

    def close(self) -> None:
        """Forget what is queued and stop the pump (the connection is going away)."""
        self._forget()
        task, self._task = self._task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        self._idle.set()


__all__ = ["EndHook", "Lane", "Sink", "flip_bits"]
