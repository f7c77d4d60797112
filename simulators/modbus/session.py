"""One Modbus connection: its framing state, routing each request to the listener's devices, with the
fault hooks' actions (the slow path) and the traffic log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from bifrost.modbus.framing import BadRequest, BrokenStream, Request, ServerConnection, encode_mbap, encode_rtu
from bifrost.modbus.pdu import ExceptionCode, ExceptionResponse, RequestPdu, ResponsePdu, encode_response
from bifrost.tags import Value
from simulators.hooks import Action, FaultHooks, Reader, Writer, still_to_answer
from simulators.modbus.channel import RECV_SIZE, Channel
from simulators.modbus.device import WRITE_FUNCTIONS, ModbusDevice
from simulators.modbus.faults import modbus_code
from simulators.modbus.requests import ModbusRequestInfo
from simulators.modbus.traffic import MODBUS
from simulators.traffic import NOTHING_WRITTEN, Exchange

if TYPE_CHECKING:
    from simulators.modbus.server import Listener

log = logging.getLogger(__name__)

_REPLACED = "not answered: a newer request came first (RTU carries one at a time)"
_RTU_SILENCE = 0.1  # seconds of quiet that end an unfinished RTU frame (t3.5, generous for a pty)


class Session:
    """One conversation: a connection's framing state, routing requests to the listener's devices."""

    def __init__(self, listener: Listener, channel: Channel, client: str) -> None:
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
                data = await reader.read(RECV_SIZE)
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

    def tasks(self) -> list[asyncio.Task[None]]:
        """What still runs for this connection (the fault pump, a request being acted on)."""
        return [task for task in (self._busy, self._task) if task is not None and not task.done()]

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
            if not await still_to_answer(action, self.listener.sleep, self, notes):
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


__all__ = ["Session"]
