"""The S7 transport: ISO-on-TCP (TPKT, COTP, S7comm) on one asyncio loop, one listener per device.

Framing is bifrost.s7.framing's `ServerConnection` (which negotiates the PDU size and answers
malformed or oversized jobs as a CPU does); answering is `simulators.s7.device.S7Device`. A client
that names another rack or slot in its TSAP is refused with a COTP disconnect, as by a real CPU.

Robustness: a connection whose stream cannot be read on (a bad TPKT header, a COTP TPDU out of
turn) is closed; an unexpected error in one connection closes that connection and is logged; the
others are served on. Fault hooks wrap every connection's streams (transport faults) and are asked
about every job (protocol faults: delay, exception, drop, truncate, close).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bifrost.s7 import framing, pdu
from bifrost.s7.pdu import RequestPdu, ResponsePdu
from bifrost.tags import Value
from simulators.hooks import Action, FaultHooks, ListenerInfo, Reader, Writer, still_to_answer
from simulators.listening import ServerGroup, TcpGate, TcpListener, host_port, peer_name
from simulators.s7.device import S7Device
from simulators.s7.frames import TPKT
from simulators.s7.traffic import S7, S7RequestInfo
from simulators.traffic import NOTHING_WRITTEN, Exchange

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
_RECV = 4096


class _Session:
    def __init__(self, listener: S7Listener, reader: Reader, writer: Writer, client: str) -> None:
        self.listener = listener
        self.device = listener.device
        self.reader, self.writer = reader, writer
        self.client = client
        self.conn = framing.ServerConnection(pdu_size=self.device.pdu_size, max_amq=self.device.max_amq)
        self.closed = False

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            self.writer.close()

    def _log(
        self,
        reference: int | None,
        request: RequestPdu | bytes,
        response: ResponsePdu | None,
        error: str | None,
        written: Mapping[str, Value] = NOTHING_WRITTEN,
    ) -> None:
        device = self.device
        device.log.record(
            Exchange(
                device.plant.clock.now(),
                time.time(),
                device.name,
                self.client,
                None,
                reference,
                request,
                response,
                error,
                written,
                S7,
            )
        )

    async def run(self) -> None:
        try:
            while not self.closed:
                data = await self.reader.read(_RECV)
                if not data:
                    break
                self.conn.receive_data(data)
                while not self.closed and (event := self.conn.next_event()) is not None:
                    await self._event(event)
                if not self.closed:
                    await self.writer.drain()
        except (ConnectionError, OSError):
            pass  # the client went away
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: closing the connection from %s after an internal error", self.device.name, self.client)
        finally:
            self.close()
            self.listener.sessions.discard(self)

    async def _event(self, event: framing.ServerEvent) -> None:
        conn, device = self.conn, self.device
        if isinstance(event, framing.ConnectRequest):
            wanted = event.rack_slot
            if wanted is not None and wanted != (device.rack, device.slot):
                self.writer.write(conn.refuse())
                self._log(None, b"", None, f"COTP connect to rack {wanted[0]} slot {wanted[1]}: no CPU there")
                self.close()
                return
            self.writer.write(conn.accept())
            return
        if isinstance(event, framing.Request):
            await self._request(event)
            return
        if isinstance(event, framing.BadRequest):
            answer = event.answer
            if answer is not None and event.reference is not None:
                self.writer.write(conn.send(event.reference, answer))
            self._log(event.reference, event.pdu, answer, event.reason)
            return
        if isinstance(event, framing.Disconnected):
            with contextlib.suppress(Exception):
                self.writer.write(conn.disconnect_confirm())
            self.close()
            return
        log.debug("%s: %s: %s", device.name, self.client, event)
        self.close()  # a broken stream cannot be read on

    async def _request(self, event: framing.Request) -> None:
        conn, device = self.conn, self.device
        request = event.request
        if isinstance(request, pdu.SetupRequest):
            answer = conn.negotiate(request)
            self.writer.write(conn.send(event.reference, answer))
            self._log(event.reference, request, answer, None)
            return
        action = self.listener.hooks.on_request(device.name, S7RequestInfo(request))
        if action is None:
            response, written, error = device.serve(request, conn.pdu_size)
            frame = conn.send(event.reference, response)
            self._log(event.reference, request, response, error, written)  # before it is sent: see modbus
            self.writer.write(frame)
            return
        await self._act(event, action)

    async def _act(self, event: framing.Request, action: Action) -> None:
        device, request = self.device, event.request
        notes: list[str] = []
        response: ResponsePdu | None = None
        written: Mapping[str, Value] = NOTHING_WRITTEN
        frame = b""
        try:
            if not await still_to_answer(action, self.listener.sleep, self, notes):
                return
            if action.exception is not None:
                response = device.refuse(request, action.exception)
                notes.append(f"exception {action.exception} by a fault")
            else:
                response, written, error = device.serve(request, self.conn.pdu_size)
                if error:
                    notes.append(error)
            if action.drop:
                notes.append("answer dropped by a fault")
                response = None
                return
            reference = event.reference
            if action.wrong_transaction:
                reference = (reference + 0x8000) & 0xFFFF
                notes.append("answered with another PDU reference")
            frame = self.conn.send(reference, response)
            if action.truncate is not None:
                frame = frame[: max(0, action.truncate)]
                notes.append(f"answer cut to {len(frame)} bytes")
        except asyncio.CancelledError:
            notes.append("cancelled")
            raise
        except Exception as exc:  # a bad Action must not stop the connection
            log.exception("%s: cannot act on %r", device.name, action)
            notes.append(f"fault action failed: {exc}")
        finally:
            self._log(event.reference, request, response, "; ".join(notes) or None, written)
            if frame and not self.closed:
                self.writer.write(frame)


class S7Listener(TcpListener):
    """One device's listening socket and its connections."""

    def __init__(
        self, device: S7Device, host: str, port: int, hooks: FaultHooks, sleep: Sleep, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(
            loop, host, port, hooks, ListenerInfo("s7", "tcp", host_port(host, port), (device.name,), TPKT)
        )
        self.device = device
        self.sleep = sleep
        self.sessions: set[_Session] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def accepted(self, sock: socket.socket, peer: Any) -> None:
        # The session runs in a task of its own, which the host may cancel at stop.
        task = self.loop.create_task(self._serve(sock, peer_name(peer)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, sock: socket.socket, client: str) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=sock)
        except OSError:
            sock.close()  # gone before it was served
            return
        wrapped_reader, wrapped_writer = self.hooks.wrap(reader, writer, self.device.name)
        session = _Session(self, wrapped_reader, wrapped_writer, client)
        self.sessions.add(session)
        await session.run()

    def disconnect(self) -> int:
        sessions = list(self.sessions)
        for session in sessions:
            session.close()
        return len(sessions)

    def close(self) -> list[asyncio.Task[None]]:
        self.close_socket()
        self.disconnect()
        return [task for task in self._tasks if not task.done()]


class S7Server(ServerGroup[S7Listener]):
    """Every S7 device of a host, each on its listener. Start and stop on the loop's thread."""

    def __init__(
        self,
        devices: list[S7Device],
        endpoints: Mapping[str, tuple[str, int]],
        *,
        hooks: FaultHooks | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        super().__init__(devices, hooks)
        self.endpoints = endpoints
        self.sleep: Sleep = sleep if sleep is not None else asyncio.sleep

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        listeners = (
            (S7Listener(device, *self.endpoints[device.name], self.hooks, self.sleep, loop), [device.name])
            for device in self.devices
        )
        self.open(listeners, S7Listener.open_socket)

    def gates(self) -> list[TcpGate]:
        return [TcpGate(listener) for listener in self.listeners]


__all__ = ["S7Listener", "S7Server"]
