"""The pure-Python Modbus engine: asyncio over TCP, RTU over TCP, or RTU on a serial port.

Requests on one connection are serialised (one on the wire at a time, behind an asyncio.Lock), so
several tasks may share a connection safely. Every call has a timeout. After a timeout the
connection is dropped (a serial port is reopened with its input flushed), so a late reply is never
taken as the answer to a later request, and no abandoned transaction lives on a connection: a reply
whose transaction id answers no request is the device's fault, a ProtocolError, as on the native
engine. A lost connection is reopened on the next call, with exponential backoff and jitter between
failed attempts; a connection the device closed while idle (a restart) is reopened at once and the
call goes on. The messages of every error are the native engine's, word for word.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Sequence
from typing import Any, Protocol

from bifrost.errors import ConnectError, DeviceError, ProtocolError
from bifrost.errors import TimeoutError as BifrostTimeout
from bifrost.modbus import framing, pdu
from bifrost.modbus.address import Area
from bifrost.modbus.engine import Engine
from bifrost.modbus.planner import ReadRequest
from bifrost.urls import Endpoint

log = logging.getLogger("bifrost.modbus.python")

# An idle TCP connection older than this is peeked at before a request is written to it, so that a
# device that restarted (and closed it) is noticed before the request goes to a dead socket.
IDLE_CHECK = 0.010


def _why(exc: BaseException) -> str:
    """An OS error as the native engine says it: the errno's text ("Connection refused"), not
    asyncio's ("Connect call failed ('127.0.0.1', 502)")."""
    if isinstance(exc, OSError) and not isinstance(exc, socket.gaierror) and exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


_READS: dict[Area, Any] = {
    Area.COIL: pdu.ReadCoilsRequest,
    Area.DISCRETE_INPUT: pdu.ReadDiscreteInputsRequest,
    Area.INPUT_REGISTER: pdu.ReadInputRegistersRequest,
    Area.HOLDING_REGISTER: pdu.ReadHoldingRegistersRequest,
}


class Backoff:
    """Exponential backoff with jitter: base, 2*base, 4*base ... up to `maximum`, each +/- `jitter`."""

    def __init__(self, base: float = 0.1, maximum: float = 10.0, jitter: float = 0.2, seed: int | None = None) -> None:
        self.base, self.maximum, self.jitter = base, maximum, jitter
        self.attempts = 0
        self._random = random.Random(seed)

    def next_delay(self) -> float:
        ceiling: float = min(self.maximum, self.base * 2.0**self.attempts)
        self.attempts += 1
        return ceiling * (1 + self.jitter * (2 * self._random.random() - 1))

    def reset(self) -> None:
        self.attempts = 0


class _Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class _Line:
    """An open byte stream to the device: asyncio streams over TCP, or a serial port."""

    def __init__(self, reader: asyncio.StreamReader, writer: _Writer, on_close: Any = None) -> None:
        self.reader, self.writer, self._on_close = reader, writer, on_close
        self.last_io = time.monotonic()

    def closed_by_peer(self) -> bool:
        """Whether the device closed this (TCP) connection: EOF seen, or waiting unread (a peek)."""
        if self.reader.at_eof():
            return True
        get_extra_info = getattr(self.writer, "get_extra_info", None)
        sock = get_extra_info("socket") if get_extra_info is not None else None
        if sock is None or time.monotonic() - self.last_io < IDLE_CHECK:
            return False
        try:
            with sock.dup() as peer:
                return bool(peer.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"")
        except OSError:
            return False  # nothing to read (EAGAIN): alive

    def close(self) -> None:
        # Stop watching the descriptor before closing it: a serial port read after close raises.
        if self._on_close is not None:
            self._on_close()
        with contextlib.suppress(Exception):
            self.writer.close()


class PythonEngine(Engine):
    name = "python"

    def __init__(self, endpoint: Endpoint, *, timeout: float, backoff: Backoff | None = None) -> None:
        super().__init__(endpoint, timeout=timeout)
        self.framing: framing.Framing = "mbap" if endpoint.scheme == "modbus" else "rtu"
        self.backoff = backoff or Backoff()
        self._line: _Line | None = None
        self._conn: framing.ClientConnection | None = None
        self._lock = asyncio.Lock()
        self._next_attempt = 0.0
        self._last_failure: str | None = None
        self._closed = False

    # -- connection ---------------------------------------------------------------------------

    async def open(self) -> None:
        self._closed = False
        async with self._lock:
            await self._connect()

    async def close(self) -> None:
        self._closed = True
        self._drop()

    def _drop(self) -> None:
        if self._line is not None:
            self._line.close()
        self._line = None
        self._conn = None

    def _lose(self, cause: str) -> None:
        """Drop the connection after a failure; the next attempt waits for the backoff."""
        self._drop()
        self._last_failure = cause  # the whole message, naming the device, as the native engine's
        self._next_attempt = time.monotonic() + self.backoff.next_delay()

    async def _connect(self) -> None:
        try:
            if self.endpoint.scheme == "modbus+rtu":
                line = await asyncio.wait_for(self._open_serial(), self.timeout)
            else:
                port = self.endpoint.port or 502
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.endpoint.host, port), self.timeout)
                line = _Line(reader, writer)
        except asyncio.TimeoutError as exc:
            raise ConnectError(self._failed_connect(f"no connection within {self.timeout * 1000:.0f} ms")) from exc
        except (OSError, ImportError) as exc:
            raise ConnectError(self._failed_connect(_why(exc))) from exc
        self.backoff.reset()
        self._line = line
        self._conn = framing.ClientConnection(self.framing, unit=self.endpoint.params["unit"])

    def _failed_connect(self, why: str) -> str:
        """Note a failed attempt and schedule the next; the error's message."""
        message = self._last_failure = f"{self.device}: cannot connect: {why}"
        self._next_attempt = time.monotonic() + self.backoff.next_delay()
        return message

    async def _open_serial(self) -> _Line:
        import serial  # pyserial, a core dependency; imported here as only RTU needs it

        params = self.endpoint.params
        port = serial.Serial(
            self.endpoint.path,
            baudrate=params["baud"],
            parity=params["parity"],
            stopbits=params["stopbits"],
            bytesize=params["bytesize"],
            timeout=0,
        )
        port.reset_input_buffer()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()

        def readable() -> None:
            try:
                data = port.read(port.in_waiting or 1)
            except (OSError, serial.SerialException) as exc:
                reader.set_exception(exc)
                loop.remove_reader(port.fileno())
                return
            if data:
                reader.feed_data(data)

        loop.add_reader(port.fileno(), readable)
        return _Line(reader, port, on_close=lambda: loop.remove_reader(port.fileno()))

    async def _ensure_open(self) -> tuple[_Line, framing.ClientConnection]:
        if self._closed:
            raise ConnectError(f"{self.device}: the client is closed")
        if self._line is not None and self.framing == "mbap" and self._line.closed_by_peer():
            # The device closed the idle connection (it restarted): nothing was lost, open anew now.
            self._drop()
        if self._line is None or self._conn is None:
            wait = self._next_attempt - time.monotonic()
            if wait > self.timeout:
                cause = self._last_failure or "not connected"
                raise ConnectError(f"{self.device}: not connected ({cause}); next attempt in {int(wait * 1000)} ms")
            if wait > 0:
                await asyncio.sleep(wait)  # the backoff itself, not a wait for an event
            await self._connect()
        assert self._line is not None and self._conn is not None
        return self._line, self._conn

    # -- requests -----------------------------------------------------------------------------

    async def call(self, unit: int, request: pdu.RequestPdu) -> pdu.ResponsePdu:
        """Send one request and return its answer; an exception response raises DeviceError."""
        async with self._lock:
            line, conn = await self._ensure_open()
            frame = conn.send(request, unit=unit)
            transaction_id = conn.last_transaction_id
            assert transaction_id is not None
            try:
                line.writer.write(frame)
                response = await asyncio.wait_for(self._reply(line, conn, transaction_id), self.timeout)
            except asyncio.TimeoutError:
                conn.abandon(transaction_id)
                message = (
                    f"{self.device}: no answer from unit {unit} to {pdu.function_name(request.function)} "
                    f"within {self.timeout:g} s"
                )
                # Drop the connection, so that its late reply can never be taken for a later one.
                self._lose(message)
                raise BifrostTimeout(message) from None
            except (ConnectError, ProtocolError) as exc:
                self._lose(str(exc))
                raise
            except OSError as exc:
                message = f"{self.device}: connection lost: {_why(exc)}"
                self._lose(message)
                raise ConnectError(message) from exc
            finally:
                line.last_io = time.monotonic()
        if isinstance(response, pdu.ExceptionResponse):
            raise DeviceError(f"{self.device}: unit {unit}: {response.message}", code=int(response.code))
        return response

    async def _reply(self, line: _Line, conn: framing.ClientConnection, transaction_id: int) -> pdu.ResponsePdu:
        while True:
            event = conn.next_event()
            if event is None:
                data = await line.reader.read(4096)
                if not data:
                    raise ConnectError(f"{self.device}: connection lost: the device closed it")
                conn.receive_data(data)
                continue
            if isinstance(event, framing.Response) and event.transaction_id == transaction_id:
                return event.response
            if (
                isinstance(event, (framing.MismatchedReply, framing.MalformedReply))
                and event.transaction_id == transaction_id
            ):
                raise ProtocolError(f"{self.device}: protocol error: {event.reason}")
            if isinstance(event, framing.BrokenStream):
                raise ProtocolError(f"{self.device}: protocol error: the reply stream is broken: {event.reason}")
            if isinstance(event, framing.UnexpectedReply) and event.transaction_id is not None:
                # Timeouts drop the connection, so no abandoned transaction lives on it: a reply that
                # answers nothing is the device's fault, told at once rather than waited out.
                raise ProtocolError(
                    f"{self.device}: protocol error: a reply with transaction id {event.transaction_id} "
                    f"answers no request ({transaction_id} expected)"
                )
            # Stale, unexpected or damaged frames are not our answer: note them and keep waiting.
            log.debug("%s: ignored %s", self.device, event)

    async def transact(self, unit: int, request: pdu.RequestPdu) -> pdu.ResponsePdu:
        return await self.call(unit, request)

    async def read(self, request: ReadRequest) -> Sequence[int] | Sequence[bool]:
        response = await self.call(request.unit, _READS[request.area](request.start, request.count))
        values: Sequence[int] | Sequence[bool] = response.values  # type: ignore[union-attr]
        return values[: request.count]

    async def write_registers(self, unit: int, start: int, words: Sequence[int]) -> None:
        if len(words) == 1:
            await self.call(unit, pdu.WriteSingleRegisterRequest(start, words[0]))
        else:
            await self.call(unit, pdu.WriteMultipleRegistersRequest(start, tuple(words)))

    async def write_coils(self, unit: int, start: int, bits: Sequence[bool]) -> None:
        if len(bits) == 1:
            await self.call(unit, pdu.WriteSingleCoilRequest(start, bool(bits[0])))
        else:
            await self.call(unit, pdu.WriteMultipleCoilsRequest(start, tuple(bits)))
