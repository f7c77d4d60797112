"""A fault-injecting, logging proxy in front of a real device: `bifrost-sim proxy`.

`Proxy` relays TCP between clients and one target (a PLC in the field, or another simulator), each
client on its own connection to the target. It cuts both directions into frames without changing a
byte — Modbus with bifrost's framers (MBAP, or RTU over TCP with `framing="rtu"`), S7 and OPC UA
(`protocol=`) into whole messages with their recording codec's cutter — logs each request and reply,
and applies the faults of its FaultSet:

- transport faults through a Lane per direction, as around a simulator's streams; `refuse` closes the
  listening socket while every connection would be refused (a probable one resets some connections as
  they arrive), and opens it again on the same port when it ends;
- protocol faults as a device would commit them: `exception` and `bad_quality` answer the client with
  an exception frame and do not forward the request; `wrong_transaction` and `truncate` rewrite the
  reply; `freeze` answers reads from the replies seen before the freeze; `reboot` drops every
  connection and refuses new ones for its `for`.

For S7 and OPC UA the front-end's dialect (simulators/s7/proxying.py, simulators/opcua/proxying.py)
says what a match sees of a request, builds the refusal the proxy answers in the device's place (as our
simulator of the protocol sends it), and keeps the OPC UA channel's sequence numbers unbroken when the
proxy answers or loses a message.

Faults come from `--fault` specs, or from a scenario whose fault events name the device `proxy`; run-
time ones from `proxy.faults.add(...)`. Time is the FaultSet's clock (a VirtualClock in tests makes
every delay exact).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import signal
import socket
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import typer

from bifrost.errors import ConfigError
from bifrost.modbus.framing import Frame, Framing
from bifrost.modbus.pdu import (
    MalformedFrame,
    ReadCoilsRequest,
    ReadDiscreteInputsRequest,
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    RequestPdu,
    decode_request,
    decode_response,
    function_name,
)
from simulators.clock import Clock, SystemClock
from simulators.faults import FaultSet, FaultSpec, Lane
from simulators.faults.streams import abort_with_reset
from simulators.hooks import Action, RequestInfo
from simulators.modbus.faults import exception_frame, rewrite_reply
from simulators.modbus.frames import Splitter, framer_for
from simulators.modbus.requests import ModbusRequestInfo
from simulators.proxying import Dialect, DialectSession, dialect_for
from simulators.recording.codec import Codec, Cut, codec_for

log = logging.getLogger(__name__)

PROXY_DEVICE = "proxy"  # the device name a scenario's fault events use for the proxy
READ_SIZE = 65536
_READS = (ReadCoilsRequest, ReadDiscreteInputsRequest, ReadHoldingRegistersRequest, ReadInputRegistersRequest)
_FREEZE_CACHE = 1024  # replies kept for freeze, least recently used dropped first
_POLL = 0.05  # plant seconds between checks of faults that start or end with time


def parse_address(text: str, what: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) as (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what}: expected HOST:PORT such as 127.0.0.1:1502, not {text!r}")
    return host.strip("[]"), int(port)


@dataclass
class TrafficRecord:
    """One line of the proxy's log: a request, a reply, or what happened to a connection."""

    t: float  # plant seconds (the FaultSet's clock)
    connection: int
    event: str  # "request", "response", "connect", "disconnect", "refused", "error"
    unit: int | None = None
    transaction_id: int | None = None
    function: int | None = None
    summary: str = ""
    data: bytes = b""
    faults: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 6),
            "connection": self.connection,
            "event": self.event,
            "unit": self.unit,
            "transaction_id": self.transaction_id,
            "function": self.function,
            "summary": self.summary,
            "data": self.data.hex(),
            "faults": list(self.faults),
        }

    def __str__(self) -> str:
        parts = [f"{self.t:10.3f}", f"#{self.connection}", {"request": "->", "response": "<-"}.get(self.event, "--")]
        if self.transaction_id is not None:
            parts.append(f"tid={self.transaction_id}")
        if self.unit is not None:
            parts.append(f"unit={self.unit}")
        parts.append(self.summary if self.event in ("request", "response") else f"{self.event} {self.summary}")
        if self.faults:
            parts.append(f"[{', '.join(self.faults)}]")
        return " ".join(parts)


TrafficLog = Callable[[TrafficRecord], object]


T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class _Cutting(Protocol[T_co]):
    """What the pump cuts a direction with: a Modbus Splitter, or a recording codec's Cutter."""

    @property
    def pending(self) -> int: ...

    def feed(self, data: bytes) -> Sequence[T_co]: ...

    def flush(self) -> Sequence[T_co]: ...


def _in_values(dialect: DialectSession, kinds: tuple[str, ...]) -> bool:
    """Whether the faults that hit a request ask for a value status rather than a refusal."""
    return dialect.value_status and "bad_quality" in kinds and "exception" not in kinds


def _frame(frame: object) -> Frame | None:
    return frame if isinstance(frame, Frame) else None  # a Splitter's frames are bifrost's Modbus Frames


def _truncated(piece: bytes, action: Action) -> bytes:
    # After any other rewrite, as the Modbus one (simulators.modbus.faults.rewrite_reply) cuts last.
    return piece if action.truncate is None else piece[: max(0, action.truncate)]


def _describe_request(frame: Frame) -> tuple[RequestPdu | None, str]:
    try:
        request = decode_request(frame.pdu)
    except MalformedFrame as exc:
        return None, f"malformed request: {exc}"
    return request, repr(request)


def _describe_response(frame: Frame, request: RequestPdu | None) -> str:
    try:
        return repr(decode_response(frame.pdu, request))
    except MalformedFrame as exc:
        return f"malformed reply ({function_name(frame.pdu[0] & 0x7F)}): {exc}"


@dataclass
class _Pending:
    """A request relayed to the target, waiting for its reply."""

    frame: Frame | None  # None: another protocol's request (its dialect's)
    request: RequestPdu | None
    info: RequestInfo | None
    action: Action | None = None
    kinds: tuple[str, ...] = ()
    key: Hashable | None = None  # another protocol's read, as freeze keeps its answer


@dataclass
class _Session:
    """One client connection and its connection to the target."""

    number: int
    client_reader: asyncio.StreamReader
    client_writer: asyncio.StreamWriter
    target_reader: asyncio.StreamReader | None = None
    target_writer: asyncio.StreamWriter | None = None
    upstream: Lane | None = None
    downstream: Lane | None = None
    pending: OrderedDict[int | None, _Pending] = field(default_factory=OrderedDict)
    dialect: DialectSession | None = None
    ended: str | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Proxy:
    """Relays TCP from `listen` to `target` through a FaultSet; see the module docstring.

    `async with Proxy(("127.0.0.1", port), faults=["latency,delay=200ms"]) as proxy:` then connect to
    `proxy.address`. `faults` is a FaultSet, or specs for a new one on `clock` (default: a SystemClock).
    """

    def __init__(
        self,
        target: tuple[str, int] | str,
        *,
        listen: tuple[str, int] | str = ("127.0.0.1", 0),
        faults: FaultSet | Iterable[FaultSpec | str] = (),
        framing: Framing = "mbap",
        clock: Clock | None = None,
        seed: int | str | None = None,
        log: TrafficLog | None = None,
        connect_timeout: float = 5.0,
        protocol: str = "modbus",
    ) -> None:
        self.protocol = protocol
        # Another protocol's bytes are cut by its recording codec (simulators.recording.codec) into whole
        # messages, relayed and logged one by one; its front-end's dialect says what the faults see of
        # them and how the proxy answers in the device's place.
        self._codec: Codec | None = None if protocol == "modbus" else codec_for(protocol)
        self._dialect: Dialect | None = None if protocol == "modbus" else dialect_for(protocol)
        self.target = parse_address(target, "--target") if isinstance(target, str) else target
        self._listen = parse_address(listen, "--listen") if isinstance(listen, str) else listen
        if isinstance(faults, FaultSet):
            self.faults = faults
        else:
            self.faults = FaultSet(
                PROXY_DEVICE,
                clock=clock if clock is not None else SystemClock(),
                seed=seed,
                framer=framer_for(framing),
            )
            for spec in faults:
                self.faults.add(spec)
        self.framing: Framing = framing
        self.faults.framer = framer_for(framing) if self._dialect is None else self._dialect.framer
        self._log = log
        self.connect_timeout = connect_timeout
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None
        self._sessions: dict[int, _Session] = {}
        self._numbers = itertools.count(1)
        self._frozen: OrderedDict[Hashable, bytes] = OrderedDict()  # Modbus: (unit, PDU); else the dialect's
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: asyncio.Task[None] | None = None
        self._reopening: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], object]] = []
        self._stopped = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """Where the proxy listens (the port is the bound one when asked for port 0)."""
        if self._address is None:
            raise RuntimeError("the proxy is not started")
        return self._address

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> Proxy:
        self._loop = asyncio.get_running_loop()
        self._stopped.clear()
        clock = self.faults.clock
        if isinstance(clock, SystemClock):
            clock.attach(self._loop)  # a scenario's events run on its timers
        self._address = self._listen
        if not self.faults.closes_listener():
            await self._open()
        else:
            self._address = self._reserve_port()
        self._unsubscribe.append(self.faults.on_change(self._faults_changed))
        self._unsubscribe.append(self.faults.on_reboot(self._reboot))
        self._poller = self._loop.create_task(self._poll())
        return self

    def _reserve_port(self) -> tuple[str, int]:
        # Refusing from the start: a port is still chosen (and released), so the address can be printed.
        host, port = self._listen
        with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
            sock.bind((host, port))
            return host, int(sock.getsockname()[1])

    async def _open(self) -> None:
        host, port = self._address or self._listen
        sock = socket.socket(_family(host), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)  # from here the kernel queues connections, before the server accepts them
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._address = (host, int(sock.getsockname()[1]))
        self._server = await asyncio.start_server(self._accept, sock=sock)

    def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # closes the listening socket now: new connections are refused

    def _faults_changed(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._sync_listener()
        else:
            loop.call_soon_threadsafe(self._sync_listener)

    def _sync_listener(self) -> None:
        """Close or reopen the listening socket as the faults say (on the loop thread)."""
        if self._stopped.is_set() or self._loop is None:
            return
        refusing = self.faults.closes_listener()
        if refusing and self._server is not None:
            log.info("refusing connections")
            self._close_listener()
        elif not refusing and self._server is None and (self._reopening is None or self._reopening.done()):
            self._reopening = self._loop.create_task(self._reopen())

    async def _reopen(self) -> None:
        try:
            await self._open()
            log.info("accepting connections again on %s:%s", *self.address)
        except OSError as exc:
            log.error("cannot listen on %s:%s again: %s", *self.address, exc)

    async def _poll(self) -> None:
        # Faults that come and go with time (a scenario event, a `for`): checked every _POLL plant seconds.
        while not self._stopped.is_set():
            await self.faults.timing.sleep(_POLL)
            self.faults.poll()
            self._sync_listener()

    async def settle(self) -> None:
        """Wait until the listening socket is as the faults say (after a refuse ends, it reopens)."""
        self._sync_listener()
        if self._reopening is not None:
            await self._reopening

    async def stop(self) -> None:
        """Stop listening, drop every connection, and stop the clock's timers driving."""
        self._stopped.set()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        for task in (self._poller, self._reopening):
            if task is not None and not task.done():
                task.cancel()
        self._close_listener()
        for session in list(self._sessions.values()):
            self._end(session, "stop")
        tasks = [task for session in self._sessions.values() for task in session.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sessions.clear()
        clock = self.faults.clock
        if isinstance(clock, SystemClock):
            clock.detach()

    async def serve_forever(self) -> None:
        """Run until `stop()` is called (or the task is cancelled)."""
        await self._stopped.wait()

    async def __aenter__(self) -> Proxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- connections --------------------------------------------------------------------------------------

    def _record(self, session: _Session | None, event: str, **fields: Any) -> None:
        if self._log is None:
            return
        record = TrafficRecord(self.faults.now(), session.number if session else 0, event, **fields)
        try:
            self._log(record)
        except Exception:
            log.exception("the traffic log failed")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(next(self._numbers), reader, writer)
        if self._dialect is not None:
            session.dialect = self._dialect.session()
        peer = writer.get_extra_info("peername")
        if self.faults.refusing():
            self._record(session, "refused", summary=f"from {_peer(peer)} (refuse)", faults=("refuse",))
            abort_with_reset(writer)
            return
        try:
            target = await asyncio.wait_for(asyncio.open_connection(*self.target), self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            self._record(session, "error", summary=f"cannot reach {self.target[0]}:{self.target[1]}: {exc!r}")
            writer.close()
            return
        session.target_reader, session.target_writer = target
        self._sessions[session.number] = session
        self._record(session, "connect", summary=f"from {_peer(peer)}")
        target_writer = session.target_writer
        session.upstream = Lane(self.faults, "upstream", target_writer.write, lambda how: self._end(session, how))
        session.downstream = Lane(self.faults, "downstream", writer.write, lambda how: self._end(session, how))
        loop = asyncio.get_running_loop()
        session.tasks = [
            loop.create_task(self._client_to_target(session)),
            loop.create_task(self._target_to_client(session)),
        ]
        try:
            await asyncio.gather(*session.tasks, return_exceptions=True)
        finally:
            self._end(session, "closed")
            self._sessions.pop(session.number, None)

    def _end(self, session: _Session, how: str) -> None:
        """End a session: "reset" sends the client an RST, anything else closes (the target gently)."""
        if session.ended is not None:
            return
        session.ended = how
        for lane in (session.upstream, session.downstream):
            if lane is not None:
                lane.close()
        if how == "reset":
            abort_with_reset(session.client_writer)
        else:
            session.client_writer.close()
        if session.target_writer is not None:
            session.target_writer.close()
        for task in session.tasks:
            if task is not asyncio.current_task() and not task.done():
                task.cancel()
        self._record(session, "disconnect", summary=how)

    async def _pump(
        self, session: _Session, reader: asyncio.StreamReader, cutter: _Cutting[T], handle: Callable[[T], None]
    ) -> None:
        """One direction until its end: bytes read, cut (a Modbus Splitter's pieces, another protocol's
        codec's cuts), each cut handed on as it is complete."""
        try:
            while session.ended is None:
                quiet = 0.02 if cutter.pending and self.framing == "rtu" and self._codec is None else None
                try:
                    data = await asyncio.wait_for(reader.read(READ_SIZE), quiet)
                except asyncio.TimeoutError:
                    for cut in cutter.flush():  # an RTU frame that will not be finished
                        handle(cut)
                    continue
                for cut in cutter.feed(data) if data else cutter.flush():
                    handle(cut)
                if not data:
                    break
        except (ConnectionError, OSError) as exc:
            self._record(session, "error", summary=repr(exc))
        except Exception as exc:  # a bug here must end only this connection, and say so
            log.exception("connection #%d: cannot relay", session.number)
            self._record(session, "error", summary=f"internal error: {exc!r}")

    def _relayed_request(self, session: _Session, cut: Cut) -> None:
        assert self._codec is not None and session.dialect is not None and session.upstream is not None
        dialect, upstream = session.dialect, session.upstream
        info = dialect.info(cut)
        if cut.pdu is None:
            hit = upstream.push(dialect.forward(cut.piece), None)
            self._record(session, "request", summary=cut.text, data=cut.piece, faults=hit)
            return
        decided = None if info is None or dialect.handshake(info) else self.faults.decide(info)
        action, kinds = decided if decided is not None else (None, ())
        fields: dict[str, Any] = {
            "unit": cut.unit,
            "transaction_id": cut.ident,
            "function": None if info is None else info.function,
            "summary": self._codec.describe(cut.pdu, None),
            "data": cut.piece,
        }
        if action is not None and action.exception is not None and not _in_values(dialect, kinds):
            # Answered here, as the device would: the request never reaches the target.
            assert info is not None
            reply = dialect.refusal(cut, info, action.exception)
            if reply is not None:
                dialect.withheld(cut.piece)
                self._record(session, "request", **fields, faults=kinds)
                self._answer(session, _truncated(dialect.rewrite(reply, action), action), cut, info, kinds)
                return
            kinds = (*kinds, "not applied: the proxy cannot answer on this channel")
        # freeze: reads answered as before it (or as the first one during it was), from here. Where a
        # key costs a decode (OPC UA), answers are kept only while some fault is in force.
        keep = info is not None and (dialect.cheap_keys or not self.faults.quiet())
        key = dialect.freeze_key(cut, info) if keep and info is not None else None
        frozen = key is not None and self.faults.is_frozen()
        cached = self._frozen.get(key) if frozen else None
        if cached is not None:
            assert info is not None
            reply = dialect.frozen_answer(cut, cached)
            if reply is not None:
                dialect.withheld(cut.piece)
                kinds = (*kinds, "freeze")
                self._record(session, "request", **fields, faults=kinds)
                done = action or Action()
                self._answer(
                    session, _truncated(dialect.rewrite(reply, done), done), cut, info, kinds, "as before the freeze"
                )
                return
        pending = _Pending(None, None, info, action, kinds, key)
        session.pending[cut.ident] = pending
        while len(session.pending) > _FREEZE_CACHE:
            session.pending.popitem(last=False)
        hit = upstream.push(dialect.forward(cut.piece), info)
        if "drop" in hit:
            dialect.withheld(cut.piece)
        self._record(session, "request", **fields, faults=(*kinds, *hit))

    def _answer(
        self, session: _Session, reply: bytes, cut: Cut, info: RequestInfo, kinds: tuple[str, ...], how: str = ""
    ) -> None:
        """Another protocol's answer from here, logged as the device's would be."""
        assert self._codec is not None and session.dialect is not None and session.downstream is not None
        hit = session.downstream.push(reply, info)
        if "drop" in hit:
            session.dialect.lost(reply)
        answer = self._codec.unwrap(self._codec.framings[0], reply, "responses")
        summary = self._codec.describe(cut.pdu or b"", answer)
        fields = {"unit": cut.unit, "transaction_id": cut.ident, "function": info.function}
        self._record(
            session,
            "response",
            **fields,
            summary=f"{summary}, {how or 'from the proxy'}",
            data=reply,
            faults=(*kinds, *hit),
        )

    def _relayed_reply(self, session: _Session, cut: Cut) -> None:
        assert session.dialect is not None and session.downstream is not None
        dialect, downstream = session.dialect, session.downstream
        piece = dialect.deliver(cut.piece)
        if cut.pdu is None:
            hit = downstream.push(piece, None)
            if "drop" in hit:
                dialect.lost(piece)
            self._record(session, "response", summary=cut.text, data=piece, faults=hit)
            return
        pending = session.pending.pop(cut.ident, None)
        info = pending.info if pending is not None else None
        action = pending.action if pending is not None else None
        kinds = pending.kinds if pending is not None else ()
        key = pending.key if pending is not None else None
        if key is not None and (not self.faults.is_frozen() or key not in self._frozen):
            self._frozen[key] = cut.pdu  # a freeze that finds none keeps the first answer it sees
            self._frozen.move_to_end(key)
            while len(self._frozen) > _FREEZE_CACHE:
                self._frozen.popitem(last=False)
        if action is not None and info is not None and _in_values(dialect, kinds):
            rewritten = dialect.bad_quality(piece, cut.pdu, info, self._bad_quality_status())
            if rewritten is None:
                kinds = (*kinds, "not applied: no Read answer in one chunk")
            piece = rewritten if rewritten is not None else piece
        if action is not None:
            piece = _truncated(dialect.rewrite(piece, action), action)
        hit = downstream.push(piece, info)
        if "drop" in hit:
            dialect.lost(piece)
        fields = {"unit": cut.unit, "transaction_id": cut.ident, "function": None if info is None else info.function}
        shown = f"{len(cut.pdu)}-byte answer"
        self._record(session, "response", **fields, summary=shown, data=piece, faults=(*kinds, *hit))

    def _bad_quality_status(self) -> int | None:
        for fault in self.faults.active():
            if fault.spec.kind == "bad_quality":
                code = fault.spec.params.get("code")
                return None if code is None else int(code)
        return None

    async def _client_to_target(self, session: _Session) -> None:
        if self._codec is not None:
            cuts = self._codec.cutter(self._codec.framings[0], "requests")
            await self._pump(session, session.client_reader, cuts, lambda cut: self._relayed_request(session, cut))
        else:
            pieces = Splitter(self.framing, "requests")
            await self._pump(
                session, session.client_reader, pieces, lambda piece: self._request(session, piece[0], _frame(piece[1]))
            )
        # The client is done sending: let what is on its way arrive, then close the target side too. A
        # PLC rarely closes on its own, and it has few connection slots: one kept for a client that
        # left is one the next client cannot have. (A reply still on its way has no one to read it.)
        if session.upstream is not None and session.ended is None:
            await session.upstream.drained()
        self._end(session, "client closed")

    async def _target_to_client(self, session: _Session) -> None:
        assert session.target_reader is not None
        if self._codec is not None:
            cuts = self._codec.cutter(self._codec.framings[0], "responses")
            await self._pump(session, session.target_reader, cuts, lambda cut: self._relayed_reply(session, cut))
        else:
            pieces = Splitter(self.framing, "responses")
            await self._pump(
                session, session.target_reader, pieces, lambda piece: self._reply(session, piece[0], _frame(piece[1]))
            )
        if session.downstream is not None and session.ended is None:
            await session.downstream.drained()  # delayed replies still reach the client
        self._end(session, "target closed")

    # --- requests and replies --------------------------------------------------------------------------

    def _request(self, session: _Session, piece: bytes, frame: Frame | None) -> None:
        upstream, downstream = session.upstream, session.downstream
        assert upstream is not None and downstream is not None
        if frame is None:
            self._record(session, "request", summary=f"{len(piece)} bytes that are no frame", data=piece)
            upstream.push(piece, None)
            return
        request, summary = _describe_request(frame)
        info = None if request is None else ModbusRequestInfo(frame.unit, request)
        decided = self.faults.decide(info)
        action, kinds = decided if decided is not None else (None, ())
        fields: dict[str, Any] = {
            "unit": frame.unit,
            "transaction_id": frame.transaction_id,
            "function": frame.pdu[0],
            "summary": summary,
            "data": piece,
        }
        function = frame.pdu[0] & 0x7F
        if action is not None and action.exception is not None:
            # Answered here, as the device would: the request never reaches the target.
            self._record(session, "request", **fields, faults=kinds)
            reply = exception_frame(self.framing, frame.unit, function, action.exception, frame.transaction_id)
            summary = f"exception {action.exception} to {function_name(function)}, from the proxy"
            self._send_reply(session, rewrite_reply(action, reply, self.framing), frame, info, summary, kinds)
            return
        cached = self._frozen.get((frame.unit, frame.pdu)) if self.faults.is_frozen() else None
        if cached is not None and isinstance(request, _READS):
            self._record(session, "request", **fields, faults=(*kinds, "freeze"))
            reply = rewrite_reply(action or Action(), _frame_bytes(self.framing, frame, cached), self.framing)
            summary = f"{_describe_response(Frame(frame.unit, cached), request)}, as before the freeze"
            self._send_reply(session, reply, frame, info, summary, (*kinds, "freeze"))
            return
        pending = _Pending(frame, request, info, action, kinds)
        session.pending[frame.transaction_id] = pending
        while len(session.pending) > _FREEZE_CACHE:
            session.pending.popitem(last=False)
        hit = upstream.push(piece, info)
        self._record(session, "request", **fields, faults=(*kinds, *hit))

    def _send_reply(
        self,
        session: _Session,
        reply: bytes,
        frame: Frame,
        info: RequestInfo | None,
        summary: str,
        kinds: tuple[str, ...],
    ) -> None:
        """Answer the client from here (the request never reaches the target)."""
        assert session.downstream is not None
        hit = session.downstream.push(reply, info)
        fields = {"unit": frame.unit, "transaction_id": frame.transaction_id, "function": frame.pdu[0]}
        self._record(session, "response", **fields, summary=summary, data=reply, faults=(*kinds, *hit))

    def _reply(self, session: _Session, piece: bytes, frame: Frame | None) -> None:
        downstream = session.downstream
        assert downstream is not None
        if frame is None:
            hit = downstream.push(piece, None)
            self._record(session, "response", summary=f"{len(piece)} bytes that are no frame", data=piece, faults=hit)
            return
        key = frame.transaction_id if self.framing == "mbap" else None
        pending = session.pending.pop(key, None)
        if pending is None and self.framing == "rtu" and session.pending:
            pending = session.pending.popitem(last=True)[1]
        request = pending.request if pending is not None else None
        info = pending.info if pending is not None else None
        fields: dict[str, Any] = {
            "unit": frame.unit,
            "transaction_id": frame.transaction_id,
            "function": frame.pdu[0],
            "summary": _describe_response(frame, request),
        }
        asked = pending.frame if pending is not None else None
        if asked is not None and isinstance(request, _READS) and not self.faults.is_frozen() and frame.pdu[0] < 0x80:
            self._frozen[(asked.unit, asked.pdu)] = frame.pdu
            self._frozen.move_to_end((asked.unit, asked.pdu))
            while len(self._frozen) > _FREEZE_CACHE:
                self._frozen.popitem(last=False)
        action = pending.action if pending is not None else None
        kinds = pending.kinds if pending is not None else ()
        if action is not None and action.drop:
            self._record(session, "response", **fields, data=piece, faults=kinds)
            return
        if action is not None:
            piece = rewrite_reply(action, piece, self.framing)
        hit = downstream.push(piece, info)
        self._record(session, "response", **fields, data=piece, faults=(*kinds, *hit))

    def _reboot(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def drop_all() -> None:
            for session in list(self._sessions.values()):
                self._end(session, "reboot")
            self._frozen.clear()
            self._sync_listener()

        loop.call_soon_threadsafe(drop_all)


def _frame_bytes(framing: Framing, request: Frame, pdu: bytes) -> bytes:
    from bifrost.modbus.framing import encode_mbap, encode_rtu

    if framing == "rtu":
        return encode_rtu(request.unit, pdu)
    return encode_mbap(request.transaction_id or 0, request.unit, pdu)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _peer(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


# --- the command ------------------------------------------------------------------------------------------


def _faults_from_scenario(path: Path, seed: int | None, framing: Framing = "mbap") -> FaultSet:
    from simulators.plant import Plant
    from simulators.scenario import load_scenario

    scenario = load_scenario(path)
    if PROXY_DEVICE not in scenario.devices:
        raise ConfigError(
            f"{path}: the proxy takes its faults from events that name the device {PROXY_DEVICE!r}; "
            f"declare it under devices (e.g. `{PROXY_DEVICE}: {{protocol: modbus}}`)"
        )
    for index, event in enumerate(scenario.events):
        if event.fault is not None and event.fault.device == PROXY_DEVICE:
            FaultSpec.from_mapping(
                {"kind": event.fault.kind, **event.fault.model_dump(by_alias=True, exclude_none=True)},
                where=f"{path}: events[{index}].fault: ",
            )
    plant = Plant(scenario, SystemClock())
    return FaultSet(PROXY_DEVICE, plant=plant, seed=seed, framer=framer_for(framing))


async def run(
    *,
    listen: str,
    target: str,
    faults: list[str],
    scenario: Path | None,
    seed: int | None,
    log_file: Path | None,
    rtu: bool,
    out: IO[str],
    record: Path | None = None,
    record_device: str | None = None,
    append: bool = False,
    protocol: str = "modbus",
) -> None:
    """The `proxy` command: start, print `listening on HOST:PORT`, relay until SIGINT or SIGTERM."""
    if protocol != "modbus":
        try:
            codec_for(protocol)
        except ValueError as exc:
            raise ConfigError(f"--protocol: {exc}") from None
    framing: Framing = "rtu" if rtu else "mbap"
    fault_set = (
        _faults_from_scenario(scenario, seed, framing)
        if scenario is not None
        else FaultSet(PROXY_DEVICE, clock=SystemClock(), seed=seed, framer=framer_for(framing))
    )
    for text in faults:
        fault_set.add(FaultSpec.parse(text))
    sink: IO[str] | None = log_file.open("a", encoding="utf-8") if log_file is not None else None

    recorder = None
    if record is not None:
        from simulators.recording.record import ProxyRecorder  # record and replay: docs/replay.md

        recorder = ProxyRecorder(
            record, device=record_device or target, framing=framing, append=append, protocol=protocol
        )

    def write(line: TrafficRecord) -> None:
        if recorder is not None:
            recorder(line)
        if sink is not None:
            sink.write(json.dumps(line.as_json()) + "\n")
            sink.flush()
        else:
            print(line, file=out, flush=True)

    proxy = Proxy(target, listen=listen, faults=fault_set, framing=framing, log=write, protocol=protocol)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await proxy.start()
        host, port = proxy.address
        print(f"listening on {host}:{port}", file=out, flush=True)
        for spec in fault_set.active():
            print(f"fault: {spec.spec}", file=out, flush=True)
        await stop.wait()
    finally:
        await proxy.stop()
        if sink is not None:
            sink.close()
        if recorder is not None:
            recorder.close()


def command(
    listen: str = typer.Option("127.0.0.1:1502", help="HOST:PORT to listen on; port 0 picks a free one."),
    target: str = typer.Option(..., help="HOST:PORT of the device to relay to."),
    fault: list[str] = typer.Option(  # noqa: B008 - typer's idiom
        [], "--fault", help="KIND[,key=value...], e.g. latency,delay=200ms,jitter=20ms (repeatable)."
    ),
    scenario: Path | None = typer.Option(None, help="A scenario whose fault events name the device 'proxy'."),  # noqa: B008
    seed: int | None = typer.Option(None, help="Seed of the faults' random draws (default: the scenario's, or 0)."),
    log_file: Path | None = typer.Option(None, "--log", help="Write the traffic as JSON lines to this file."),  # noqa: B008
    rtu: bool = typer.Option(False, "--rtu", help="The traffic is RTU frames over TCP, not Modbus TCP."),
    record: Path | None = typer.Option(  # noqa: B008
        None, "--record", help="Record every exchange to this cassette (docs/replay.md)."
    ),
    record_device: str | None = typer.Option(
        None, "--record-device", help="The device name in the cassette (default: the target's HOST:PORT)."
    ),
    append: bool = typer.Option(False, "--append", help="Add to the cassette instead of replacing it."),
    protocol: str = typer.Option(
        "modbus",
        help="modbus | s7 | opcua: what the traffic is. Every fault acts on each; OPC UA's exception, "
        "bad_quality, freeze and matches need security None (docs/faults.md).",
    ),
) -> None:
    """Relay Modbus TCP, S7 or OPC UA to a device through injected faults, logging each request and reply.

    Prints `listening on HOST:PORT` first; stops cleanly on Ctrl-C and SIGTERM.
    """
    try:
        asyncio.run(
            run(
                listen=listen,
                target=target,
                faults=fault,
                scenario=scenario,
                seed=seed,
                log_file=log_file,
                rtu=rtu,
                out=sys.stdout,
                record=record,
                record_device=record_device,
                append=append,
                protocol=protocol,
            )
        )
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


__all__ = ["PROXY_DEVICE", "Proxy", "TrafficLog", "TrafficRecord", "command", "parse_address", "run"]
