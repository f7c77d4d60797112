"""The Modbus transports: TCP (MBAP), RTU over TCP, and RTU on a pseudo-terminal, on one asyncio loop.

Devices of a scenario that share a transport and a listen address share one listener, which routes
requests to them by unit id (all RTU devices share one pty: one serial bus). Framing is
bifrost.modbus.framing's `ServerConnection`; answering is `simulators.modbus.device.ModbusDevice`.

Speed. A request costs one callback: sockets and the pty are plain non-blocking file descriptors
watched with `loop.add_reader`, read with a small `recv`, answered with `send`, with no transport,
stream or task in between (asyncio's own transports allocate a 256 KiB buffer per read, which costs
more than answering the request). When fault hooks wrap a connection's byte streams, that connection
is served through the wrappers instead (`Reader`/`Writer`, simulators.hooks), at the cost of a task.

Robustness. A frame that does not decode gets the protocol's answer (BadRequest.answer(): exception
1, 2 or 3); RTU noise is skipped by the framer; an MBAP header that cannot be right closes that
connection. An unexpected error in one connection closes that connection and is logged; the others
are served on. Units: over Modbus TCP a listener with a single device also answers unit 0 and 255
(which clients use when the unit does not matter), and a unit it does not serve gets exception 0x0B
(gateway target failed to respond); over RTU an unknown unit is silent, as on a shared bus, and unit
0 is a broadcast: writes are done, nothing is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import time
import tty
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bifrost.errors import ConfigError
from bifrost.modbus.framing import (
    BadRequest,
    BrokenStream,
    Request,
    ServerConnection,
    encode_mbap,
    encode_rtu,
)
from bifrost.modbus.pdu import ExceptionCode, ExceptionResponse, RequestPdu, ResponsePdu, encode_response
from bifrost.tags import Value
from simulators.hooks import Action, FaultHooks, ListenerInfo, NoFaults, Reader, Writer
from simulators.modbus.device import WRITE_FUNCTIONS, ModbusDevice
from simulators.modbus.faults import modbus_code
from simulators.modbus.frames import framer_for
from simulators.modbus.requests import ModbusRequestInfo
from simulators.modbus.traffic import MODBUS
from simulators.traffic import NOTHING_WRITTEN, Exchange

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

_RECV_SIZE = 4096  # a Modbus frame is at most 260 bytes; pipelined requests come in a few reads
_HIGH_WATER = 256 * 1024  # unsent bytes above which a connection stops reading until the client reads
_REPLACED = "not answered: a newer request came first (RTU carries one at a time)"
_RTU_SILENCE = 0.1  # seconds of quiet that end an unfinished RTU frame (t3.5, generous for a pty)
_ACCEPT_PAUSE = (0.01, 1.0)  # seconds a listener stops accepting after accept() fails: first, longest
_ACCEPT_WARN_EVERY = 10.0  # seconds between warnings while accept() keeps failing


@dataclass(frozen=True)
class Endpoint:
    """Where a listener listens: a transport and, for TCP, a host and port (port 0: any free port).

    Devices with equal endpoints share one listener. `listen` is the address as the scenario wrote it,
    so that devices the scenario puts on different addresses keep their own listeners when the port
    is replaced by 0 (`--any-port`): each of them gets its own free port.
    """

    transport: str
    host: str = ""
    port: int = 0
    listen: str = ""

    def __str__(self) -> str:
        if self.transport == "rtu":
            return "a pseudo-terminal"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


# ------------------------------------------------------------------------------------------- channels


class _Channel:
    """A non-blocking file descriptor (a TCP socket or a pty master) on the loop.

    Two ways to use it: `start_raw(on_data)` calls back with every chunk read (the fast path), or it is
    the `Reader`/`Writer` the fault hooks wrap. Writing never blocks: what the kernel does not take is
    kept and sent when the descriptor is writable.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        recv: Callable[[int], bytes],
        send: Callable[[bytes | bytearray], int],
        release: Callable[[], None],
        extra: dict[str, Any],
    ) -> None:
        self._loop = loop
        self._fd = fd
        self._recv = recv
        self._send = send
        self._release = release
        self._extra = extra
        self._out = bytearray()
        self._on_data: Callable[[bytes], None] | None = None
        self.on_close: Callable[[], None] | None = None
        self._reading = False
        self._closing = False
        self._closed = False
        # for read() (stream use)
        self._in = bytearray()
        self._eof = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused = False

    # -- reading ---------------------------------------------------------------------------------

    def start_raw(self, on_data: Callable[[bytes], None]) -> None:
        self._on_data = on_data
        self.resume_reading()

    def pause_reading(self) -> None:
        self._paused = True
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def resume_reading(self) -> None:
        self._paused = False
        if not self._reading and not self._closing and not self._eof:
            self._loop.add_reader(self._fd, self._read_ready)
            self._reading = True

    def _read_ready(self) -> None:
        try:
            data = self._recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._at_eof()
            return
        on_data = self._on_data
        if on_data is not None:
            on_data(data)
            return
        self._in += data
        if len(self._in) > _HIGH_WATER:
            self.pause_reading()
        self._wake_reader()

    def _at_eof(self) -> None:
        self._eof = True
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        if self._on_data is not None:
            self.abort()
        else:
            self._wake_reader()

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self, n: int = -1) -> bytes:
        while not self._in and not self._eof and not self._closed:
            if self._paused or not self._reading:
                self.resume_reading()
            self._read_waiter = self._loop.create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        if not self._in:
            return b""
        size = len(self._in) if n < 0 else min(n, len(self._in))
        data = bytes(self._in[:size])
        del self._in[:size]
        return data

    # -- writing ---------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closing or self._closed:
            return
        if not self._out:
            try:
                sent = self._send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.abort()
                return
            if sent == len(data):
                return
            data = data[sent:]
            self._loop.add_writer(self._fd, self._write_ready)
        self._out += data
        if len(self._out) > _HIGH_WATER and self._on_data is not None:
            self.pause_reading()  # a client that does not read its answers gets no more served

    def _write_ready(self) -> None:
        try:
            sent = self._send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.abort()
            return
        del self._out[:sent]
        if self._out:
            return
        self._loop.remove_writer(self._fd)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._closing:
            self.abort()
        elif self._paused and self._on_data is not None:
            self.resume_reading()

    async def drain(self) -> None:
        if len(self._out) > _HIGH_WATER and not self._closed:
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    # -- closing ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close once what was written is sent."""
        if self._closing or self._closed:
            return
        self._closing = True
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        if not self._out:
            self.abort()

    def abort(self) -> None:
        """Close now, dropping anything unsent."""
        if self._closed:
            return
        self._closed = self._closing = True
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        if self._out:
            self._loop.remove_writer(self._fd)
            self._out.clear()
        for waiter in (self._read_waiter, self._drain_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        with contextlib.suppress(OSError):
            self._release()
        if self.on_close is not None:
            self.on_close()

    def is_closing(self) -> bool:
        return self._closing

    @property
    def closed(self) -> bool:
        return self._closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)


# ------------------------------------------------------------------------------------------- sessions


class _Session:
    """One conversation: a connection's framing state, routing requests to the listener's devices."""

    def __init__(self, listener: _Listener, channel: _Channel, client: str) -> None:
        self.listener = listener
        self.channel = channel
        self.client = client
        self.conn = ServerConnection(listener.framing)
        self.write: Callable[[bytes], None] = channel.write
        self._busy: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._silence: asyncio.TimerHandle | None = None
        self.closed = False
        channel.on_close = self._closed

    # -- I/O ---------------------------------------------------------------------------------------

    def start(self, devices: list[ModbusDevice], hooks: FaultHooks) -> None:
        reader: Reader = self.channel
        writer: Writer = self.channel
        for device in devices:
            reader, writer = hooks.wrap(reader, writer, device.name)
        if reader is self.channel and writer is self.channel:
            self.channel.start_raw(self.feed)
        else:
            self.write = writer.write
            self._task = self.listener.loop.create_task(self._pump(reader, writer))

    async def _pump(self, reader: Reader, writer: Writer) -> None:
        try:
            while not self.closed:
                if self._busy is not None:
                    await asyncio.wait((self._busy,))
                    continue
                data = await reader.read(_RECV_SIZE)
                if not data:
                    break
                self.feed(data)
                await writer.drain()
        except asyncio.CancelledError:
            raise
        except Exception:  # a fault wrapper's failure ends this connection only
            log.exception("%s: connection from %s failed", self.listener.info.address, self.client)
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            self.channel.close()

    def feed(self, data: bytes) -> None:
        if self.closed:
            return
        listener = self.listener
        if listener.pty and not listener.hooks.accepting(listener.info):
            return  # a device off the line: the bytes are lost
        try:
            self.conn.receive_data(data)
            handled = self._process()
            if listener.rtu:
                self._watch_silence(handled)
        except Exception:
            log.exception("%s: closing the connection from %s after an internal error", listener.address, self.client)
            self.close()

    def _watch_silence(self, handled: bool) -> None:
        # A chunk that completed nothing may be an unfinished frame: after a silence, it is damage.
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None
        if not handled:
            self._silence = self.listener.loop.call_later(_RTU_SILENCE, self._quiet)

    def _quiet(self) -> None:
        self._silence = None
        if not self.closed:
            self.conn.quiet()
            self._process()

    def close(self) -> None:
        if not self.closed:
            self.channel.abort()

    def _closed(self) -> None:
        self.closed = True
        if self._silence is not None:
            self._silence.cancel()
        for task in (self._busy, self._task):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()
        self.listener.sessions.discard(self)

    # -- requests ----------------------------------------------------------------------------------

    def _log(
        self,
        device: ModbusDevice,
        unit: int,
        transaction_id: int | None,
        request: RequestPdu | bytes,
        response: ResponsePdu | None,
        error: str | None,
        written: Mapping[str, Value] = NOTHING_WRITTEN,
    ) -> None:
        """One exchange in the device's traffic log, stamped with plant and wall time."""
        now = device.plant.clock.now()
        exchange = Exchange(
            now, time.time(), device.name, self.client, unit, transaction_id, request, response, error, written, MODBUS
        )
        device.log.record(exchange)

    def _process(self) -> bool:
        """Serve every event ready (until one needs waiting); whether any request was seen."""
        conn = self.conn
        seen = False
        while self._busy is None and not self.closed:
            event = conn.next_event()
            if event is None:
                break
            kind = type(event)
            if kind is Request:
                seen = True
                self._request(event)  # type: ignore[arg-type]
            elif kind is BadRequest:
                seen = True
                self._bad_request(event)  # type: ignore[arg-type]
            elif kind is BrokenStream:
                log.debug("%s: %s: %s", self.listener.info.address, self.client, event.reason)  # type: ignore[union-attr]
                self.close()
            else:
                seen = True  # a damaged RTU frame: the framer skipped it
        return seen

    def _request(self, event: Request) -> None:
        listener = self.listener
        device = listener.units.get(event.unit)
        if device is None:
            if event.broadcast:
                self._broadcast(event)
            else:
                self._no_such_unit(event, event.request.function)
            return
        action = listener.hooks.on_request(device.name, ModbusRequestInfo(event.unit, event.request))
        if action is not None:
            self._busy = listener.loop.create_task(self._act(device, event, action))
            if self._task is None:
                self.channel.pause_reading()
            return
        served, written, error = device.serve(event.request)
        response: ResponsePdu | None = served
        if self.listener.rtu and not self._waiting(event):
            response, frame, error = None, b"", _REPLACED
        else:
            frame = self.conn.send(served, to=event)
        # Logged before it is sent: a client holding its answer finds it in the log.
        self._log(device, event.unit, event.transaction_id, event.request, response, error, written)
        if frame:
            self.write(frame)

    def _broadcast(self, event: Request) -> None:
        # RTU unit 0: every device on the line does the writes; nobody answers.
        if event.request.function not in WRITE_FUNCTIONS:
            return
        for device in self.listener.devices:
            _, written, error = device.serve(event.request)
            self._log(device, 0, None, event.request, None, error or "broadcast: not answered", written)

    def _no_such_unit(self, event: Request | BadRequest, function: int | None) -> None:
        listener = self.listener
        if listener.rtu or function is None:
            self.conn.discard(event)  # another device on the bus may answer it; this one does not
            return
        response = ExceptionResponse(function, ExceptionCode.GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND)
        frame = self.conn.send(response, to=event)
        served = ", ".join(str(unit) for unit in sorted(set(listener.units)))
        error = f"no unit {event.unit} here (units served: {served})"
        request = event.request if isinstance(event, Request) else event.pdu
        for device in listener.devices:
            self._log(device, event.unit, event.transaction_id, request, response, error)
        self.write(frame)

    def _bad_request(self, event: BadRequest) -> None:
        device = self.listener.units.get(event.unit)
        if device is None:
            if not event.broadcast:
                self._no_such_unit(event, event.function)
            return
        answer = event.answer()
        if answer is not None and self.listener.rtu and not self._waiting(event):
            answer = None
        frame = self.conn.send(answer, to=event) if answer is not None else b""
        self._log(device, event.unit, event.transaction_id, event.pdu, answer, event.reason)
        if frame:
            self.write(frame)

    async def _act(self, device: ModbusDevice, event: Request, action: Action) -> None:
        """Serve a request as a fault's Action says (the slow path: it may wait)."""
        notes: list[str] = []
        response: ResponsePdu | None = None
        written = NOTHING_WRITTEN
        frame = b""
        try:
            if action.delay > 0:
                notes.append(f"delayed {action.delay:g}s")
                await self.listener.sleep(action.delay)
            if self.closed:
                return
            if action.close:
                notes.append("connection closed instead of an answer")
                self.close()
                return
            if action.exception is not None:
                code = modbus_code(action.exception)
                response = ExceptionResponse(event.request.function, code)
                notes.append(f"exception {code} by a fault")
            else:
                response, written, error = device.serve(event.request)
                if error:
                    notes.append(error)
            if event.broadcast:
                return
            if action.drop:
                self.conn.discard(event)
                notes.append("answer dropped by a fault")
                response = None
                return
            if self.listener.rtu and not self._waiting(event):
                notes.append(_REPLACED)
                response = None
                return
            if action.wrong_transaction:
                self.conn.discard(event)
                frame = self._wrong_frame(event, encode_response(response))
                notes.append(
                    "answered as another unit" if self.listener.rtu else "answered with another transaction id"
                )
            else:
                frame = self.conn.send(response, to=event)
            if action.truncate is not None:
                frame = frame[: max(0, action.truncate)]
                notes.append(f"answer cut to {len(frame)} bytes")
        except asyncio.CancelledError:
            notes.append("cancelled")
            raise
        except Exception as exc:  # a bad Action (say, exception code 0) must not stop the connection
            log.exception("%s: cannot act on %r", device.name, action)
            notes.append(f"fault action failed: {exc}")
            self.conn.discard(event)
        finally:
            self._log(
                device, event.unit, event.transaction_id, event.request, response, "; ".join(notes) or None, written
            )
            if frame and not self.closed:
                self.write(frame)
            self._busy = None
            if not self.closed:
                self.listener.loop.call_soon(self._resume)

    def _waiting(self, event: Request | BadRequest) -> bool:
        # Over RTU a request that arrives before the previous one was answered replaces it (framing's
        # rule: one request at a time on a line); the replaced one is served but not answered.
        return any(waiting is event for waiting in self.conn.waiting)

    def _resume(self) -> None:
        if self.closed:
            return
        try:
            self._process()
        except Exception:
            log.exception(
                "%s: closing the connection from %s after an internal error",
                self.listener.address,
                self.client,
            )
            self.close()
            return
        if self._busy is None and self._task is None:
            self.channel.resume_reading()

    def _wrong_frame(self, event: Request, response_pdu: bytes) -> bytes:
        if self.listener.rtu:
            unit = event.unit + 1 if event.unit < 247 else 1
            return encode_rtu(unit, response_pdu)
        assert event.transaction_id is not None
        return encode_mbap((event.transaction_id + 0x8000) & 0xFFFF, event.unit, response_pdu)


# ------------------------------------------------------------------------------------------ listeners


class _Listener:
    """One listening endpoint and the devices served there."""

    def __init__(
        self,
        endpoint: Endpoint,
        devices: list[ModbusDevice],
        hooks: FaultHooks,
        sleep: Sleep,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.endpoint = endpoint
        self.devices = devices
        self.hooks = hooks
        self.sleep = sleep
        self.loop = loop
        self.rtu = endpoint.transport in ("rtu", "rtu+tcp")
        self.pty = endpoint.transport == "rtu"
        self.framing: Any = "rtu" if self.rtu else "mbap"
        self.units: dict[int, ModbusDevice] = {}
        for device in devices:
            other = self.units.get(device.unit)
            if other is not None:
                raise ConfigError(
                    f"{device.name} and {other.name} both serve unit {device.unit} on {endpoint}: "
                    "devices sharing a listener need different units"
                )
            self.units[device.unit] = device
        if not self.rtu and len(devices) == 1:
            # A lone Modbus TCP device answers the "any unit" ids too, as most do.
            self.units.setdefault(0, devices[0])
            self.units.setdefault(255, devices[0])
        self.sessions: set[_Session] = set()
        self.info = ListenerInfo(
            "modbus", endpoint.transport, str(endpoint), tuple(d.name for d in devices), framer_for(self.framing)
        )
        self.address = ""  # what the URL says: host:port, or the pty's path
        self._socket: socket.socket | None = None
        self._pty: tuple[int, int] | None = None
        self._pause = 0.0  # the current pause after a failed accept(); 0 while accepting works
        self._paused: asyncio.TimerHandle | None = None
        self._failures = 0  # failed accepts not yet in a warning
        self._warn_at = 0.0  # loop time before which failures are only counted

    def open(self) -> None:
        if self.pty:
            self._open_pty()
        else:
            self._open_socket()

    def _open_socket(self) -> None:
        host, port = self.endpoint.host, self.endpoint.port
        names = ", ".join(device.name for device in self.devices)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, kind, proto, _, address = infos[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise ConfigError(f"{names}: cannot listen on {self.endpoint}: {exc.strerror or exc}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            why = "the address is already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise ConfigError(f"{names}: cannot listen on {self.endpoint}: {why}") from None
        self._socket = sock
        bound = sock.getsockname()
        # The address bound, as it is: a wildcard (every interface) is not shown as 127.0.0.1, which
        # would hide that other machines reach it too; SimHost warns about it and says where.
        shown = host or "0.0.0.0"
        self.address = f"[{shown}]:{bound[1]}" if ":" in shown else f"{shown}:{bound[1]}"
        self.info = ListenerInfo("modbus", self.endpoint.transport, self.address, self.info.devices, self.info.framing)
        self.loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        assert self._socket is not None
        for _ in range(64):
            try:
                sock, peer = self._socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: a later attempt may succeed
                self._accept_failed(exc)
                return
            self._pause = 0.0
            if not self.hooks.accepting(self.info):
                sock.close()
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
            extra = {"peername": peer, "sockname": sock.getsockname(), "socket": sock}
            channel = _Channel(self.loop, sock.fileno(), sock.recv, sock.send, sock.close, extra)
            self._start(channel, client)

    def _accept_failed(self, exc: OSError) -> None:
        # The connection stays in the backlog, so the socket stays readable and the loop would call
        # straight back: a busy spin that starves every client and floods the log. Stop watching the
        # socket for a pause that doubles on each failure, and warn once per interval with a count.
        sock = self._socket
        assert sock is not None
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(sock.fileno())
        first, longest = _ACCEPT_PAUSE
        self._pause = min(longest, max(first, self._pause * 2))
        if self._paused is not None:
            self._paused.cancel()
        self._paused = self.loop.call_later(self._pause, self._resume_accepting)
        self._failures += 1
        now = self.loop.time()
        if now >= self._warn_at:
            log.warning(
                "%s: cannot accept a connection: %s (%d failure(s) since the last warning); accepting again "
                "after a pause of up to %gs, and warning at most every %gs",
                self.address,
                exc.strerror or exc,
                self._failures,
                longest,
                _ACCEPT_WARN_EVERY,
            )
            self._failures = 0
            self._warn_at = now + _ACCEPT_WARN_EVERY

    def _resume_accepting(self) -> None:
        self._paused = None
        if self._socket is not None:
            self.loop.add_reader(self._socket.fileno(), self._accept)

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        try:
            tty.setraw(slave)  # no echo, no line editing: the bytes a serial line carries
            os.set_blocking(master, False)
            path = os.ttyname(slave)
        except OSError:
            os.close(master)
            os.close(slave)
            raise
        # The slave stays open here too, so that the master never reads EIO while no client has the
        # path open, and a client may open and close it as often as it likes.
        self._pty = (master, slave)
        self.address = path
        self.info = ListenerInfo("modbus", "rtu", path, self.info.devices, self.info.framing)

        def release() -> None:
            os.close(master)
            os.close(slave)

        def send(data: bytes | bytearray) -> int:
            return os.write(master, data)

        def recv(size: int) -> bytes:
            try:
                return os.read(master, size)
            except OSError as exc:
                if exc.errno == errno.EIO:
                    raise BlockingIOError from None  # no client at the other end right now
                raise

        channel = _Channel(self.loop, master, recv, send, release, {"peername": None, "path": path})
        self._start(channel, path)

    def _start(self, channel: _Channel, client: str) -> None:
        session = _Session(self, channel, client)
        self.sessions.add(session)
        session.start(self.devices, self.hooks)

    def disconnect(self) -> int:
        """Drop every connection (a pty line is never dropped: it is the device's port)."""
        if self.pty:
            return 0
        sessions = list(self.sessions)
        for session in sessions:
            session.close()
        return len(sessions)

    def close(self) -> list[asyncio.Task[None]]:
        """Stop listening and drop every connection; the tasks still to be awaited."""
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        if self._socket is not None:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(self._socket.fileno())
            self._socket.close()
            self._socket = None
        tasks = []
        for session in list(self.sessions):
            for task in (session._busy, session._task):
                if task is not None and not task.done():
                    tasks.append(task)
            session.close()
        self.sessions.clear()
        return tasks


class ModbusServer:
    """Every Modbus device of a scenario, grouped into listeners. Start and stop on the loop's thread."""

    def __init__(
        self,
        devices: list[ModbusDevice],
        endpoints: dict[str, Endpoint],
        *,
        hooks: FaultHooks | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.devices = devices
        self.endpoints = endpoints
        self.hooks: FaultHooks = hooks if hooks is not None else NoFaults()
        self.sleep: Sleep = sleep if sleep is not None else asyncio.sleep
        self.listeners: list[_Listener] = []
        self._by_device: dict[str, _Listener] = {}
        self._unsubscribe: list[Callable[[], None]] = []

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        groups: dict[Endpoint, list[ModbusDevice]] = {}
        for device in self.devices:
            groups.setdefault(self.endpoints[device.name], []).append(device)
        try:
            for endpoint, devices in groups.items():
                listener = _Listener(endpoint, devices, self.hooks, self.sleep, loop)
                listener.open()
                self.listeners.append(listener)
                for device in devices:
                    self._by_device[device.name] = listener
        except BaseException:
            for listener in self.listeners:
                listener.close()
            self.listeners.clear()
            raise
        if type(self.hooks) is not NoFaults:
            # A freeze is noticed on the plant's next change, not only at the next read.
            for device in self.devices:
                self._unsubscribe.append(device.plant.on_change(_freeze_watch(device)))

    def address(self, device: str) -> str:
        return self._by_device[device].address

    def disconnect(self, device: str) -> int:
        listener = self._by_device.get(device)
        return 0 if listener is None else listener.disconnect()

    def close(self) -> list[asyncio.Task[None]]:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        tasks = []
        for listener in self.listeners:
            tasks.extend(listener.close())
        self.listeners.clear()
        self._by_device.clear()
        return tasks


def _freeze_watch(device: ModbusDevice) -> Callable[[object], None]:
    def changed(_changes: object) -> None:
        device.check_freeze()

    return changed


__all__ = ["Endpoint", "ModbusServer"]
