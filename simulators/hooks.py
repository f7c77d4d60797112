"""Where faults plug into the simulated devices: the `FaultHooks` protocol, its `Action`, a no-op default.

The servers know nothing of fault kinds; they ask the hooks at fixed points, and `simulators.faults`
answers. The points, in the order a request meets them:

- `accepting(listener)`: a new connection arrives (TCP). False refuses it: the server closes it at once.
  On a pty (RTU on a serial line there are no connections) it is asked for every chunk of bytes, and
  while it is False the bytes are read and dropped, as by a device that is off the line.
- `wrap(reader, writer, device)`: the connection's byte streams, once per connection, for transport
  faults (latency, bandwidth, slicer, stall, reset, close, corrupt) that wrap them. A listener serving
  several devices (units) calls it once per device, chaining the wrappers: they share one wire.
- `on_request(device, request)`: each decoded request, described the same way for every protocol
  (`RequestInfo`: unit, function or service code, the address spans and nodes it touches); an `Action`
  changes how it is answered.
- `frozen(device)`: while True, reads serve the values as they were when the freeze began.

`bind(context)` comes first, once, on the host's event-loop thread before any request is served: the
context carries the plant, the loop, `sleep` on the plant's clock (so a delay of 2 s is 2 s of virtual
time under a VirtualClock) and `disconnect` (drop a device's connections, for `reboot`).
`SimHost.reset()` calls the hooks' `reset()` if they have one.

Hooks run on the event-loop thread, in the request path: they must be quick and must not block. One
exception: so that a freeze takes its snapshot when it begins rather than at the next read, `frozen()`
is also asked after each change of the plant, on the thread that changed it (a test advancing a
VirtualClock, with the plant's lock held): keep it a cheap, thread-safe read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from simulators.faults.frames import Framer
    from simulators.plant import Plant


class Reader(Protocol):
    """The read side of a byte stream, as `asyncio.StreamReader` offers it."""

    async def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes; b"" at the end of the stream."""
        ...


class Writer(Protocol):
    """The write side of a byte stream, as `asyncio.StreamWriter` offers it."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    def is_closing(self) -> bool: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Such as "peername", "sockname" and "socket" for TCP (None on a pty)."""
        ...


class RequestInfo(Protocol):
    """A request as fault matches see it, whatever the protocol. Each front-end describes its own
    requests this way (cheaply: the server builds one per request, so properties may be lazy)."""

    @property
    def unit(self) -> int | None:
        """The unit (slave) id it is addressed to, where the protocol has one."""
        ...

    @property
    def function(self) -> int | None:
        """The protocol's function or service code (Modbus 3, an S7 function, an OPC UA service id)."""
        ...

    @property
    def spans(self) -> tuple[tuple[str, int, int], ...]:
        """The address ranges it touches: (area, start, end exclusive), in the protocol's own areas."""
        ...

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node ids it names (OPC UA)."""
        ...


@dataclass(frozen=True, slots=True)
class Described:
    """A plain RequestInfo, for front-ends and tests that build one directly."""

    unit: int | None = None
    function: int | None = None
    spans: tuple[tuple[str, int, int], ...] = ()
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ListenerInfo:
    """One listening endpoint: a TCP address or a pty path, and the devices (units) served there."""

    protocol: str  # the front-end's name, e.g. "modbus"
    transport: str  # "tcp", or a protocol's own (Modbus: "rtu+tcp", "rtu")
    address: str  # "127.0.0.1:40123", or the pty's path "/dev/pts/7"
    devices: tuple[str, ...]
    framing: Framer | None = None
    """How the byte stream splits into frames, for faults that act on whole frames (the front-end's
    Framer: Modbus MBAP or RTU, S7 TPKT, OPC UA messages); None: the lanes see plain chunks, and the
    faults that need frames are refused for the devices served here."""


@dataclass(frozen=True, slots=True)
class Action:
    """How to answer one request instead of the usual way. Fields combine; the defaults change nothing.

    - `delay`: wait this many seconds of plant time, then serve the request and answer.
    - `exception`: do not serve the request; answer this code, in the protocol's own numbers (a Modbus
      exception 1..255, an OPC UA StatusCode, an S7 return code).
    - `drop`: serve the request (a write takes effect) but send no answer: the response is lost.
    - `truncate`: send only the first `truncate` bytes of the answer's frame.
    - `wrong_transaction`: answer with another transaction id (MBAP); over RTU, which has none, the
      answer comes from another unit id instead, so the client cannot take it for its own.
    - `close`: close the connection instead of answering (the request is not served).
    """

    delay: float = 0.0
    exception: int | None = None
    drop: bool = False
    truncate: int | None = None
    wrong_transaction: bool = False
    close: bool = False


class Answering(Protocol):
    """A connection that an Action's first steps may close."""

    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...


async def still_to_answer(
    action: Action, sleep: Callable[[float], Awaitable[None]], connection: Answering, notes: list[str]
) -> bool:
    """An Action's first steps, the same in every front-end: its delay (plant time), then a close in
    place of the answer. Whether the request is still to be served and answered; `notes` (the traffic
    log's) say what was done."""
    if action.delay > 0:
        notes.append(f"delayed {action.delay:g}s")
        await sleep(action.delay)
    if connection.closed:
        return False
    if action.close:
        notes.append("connection closed instead of an answer")
        connection.close()
        return False
    return True


@dataclass(frozen=True)
class HookContext:
    """What the host gives the hooks in `bind()`."""

    plant: Plant[Any]
    loop: asyncio.AbstractEventLoop
    sleep: Callable[[float], Awaitable[None]]
    """`await sleep(seconds)`: plant seconds on the plant's clock (virtual time waits for `advance`)."""
    disconnect: Callable[[str], int]
    """`disconnect(device)`: close every connection of the device's listener now; how many were closed.
    Call it on the loop thread."""
    listeners: tuple[ListenerInfo, ...]


class FaultHooks(Protocol):
    """What the servers call; see the module docstring. `reset()` is optional and called by SimHost.reset()."""

    def bind(self, context: HookContext) -> None: ...

    def accepting(self, listener: ListenerInfo) -> bool: ...

    def wrap(self, reader: Reader, writer: Writer, device: str) -> tuple[Reader, Writer]: ...

    def on_request(self, device: str, request: RequestInfo) -> Action | None: ...

    def frozen(self, device: str) -> bool: ...


class NoFaults:
    """The default hooks: every connection accepted, streams untouched, every request served normally.

    A base class for real hooks too: override what you need.
    """

    context: HookContext | None = None

    def bind(self, context: HookContext) -> None:
        self.context = context

    def accepting(self, listener: ListenerInfo) -> bool:
        return True

    def wrap(self, reader: Reader, writer: Writer, device: str) -> tuple[Reader, Writer]:
        return reader, writer

    def on_request(self, device: str, request: RequestInfo) -> Action | None:
        return None

    def frozen(self, device: str) -> bool:
        return False

    def reset(self) -> None:
        """Nothing to clear."""


__all__ = [
    "Action",
    "Answering",
    "Described",
    "FaultHooks",
    "HookContext",
    "ListenerInfo",
    "NoFaults",
    "Reader",
    "RequestInfo",
    "Writer",
    "still_to_answer",
]
