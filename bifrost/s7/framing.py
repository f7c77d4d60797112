"""TPKT, COTP and the S7 connection state machines: bytes in, events out. No I/O.

In the style of h11 and of bifrost.modbus.framing: the caller owns sockets and time.

- `TpktFramer` cuts a TCP stream into TPKT packets (RFC 1006: version 3, a 16-bit length). A header
  that cannot be right reports `BrokenStream` once; the caller closes the connection.
- COTP (ISO 8073 class 0) TPDUs: connection request/confirm (CR/CC, with the TSAPs and the TPDU size),
  data (DT; a PDU may span several DTs, joined until the one marked end of TSDU), disconnect (DR/DC).
- `ClientConnection`: `connect_request()` gives the CR bytes; the CC arrives as `Connected`; then
  `setup(pdu_size, amq)` gives the setup-communication job and `Ready` carries what the CPU granted.
  `send(request)` allocates a PDU reference; answers come as `Response`, or as `StaleReply`,
  `UnexpectedReply`, `MismatchedReply`, `MalformedReply`. A request larger than the negotiated PDU
  size, or more jobs in flight than max AmQ allows, is refused with `StateError` before it is sent.
- `ServerConnection`: a CR arrives as `ConnectRequest`, answered by `accept()` or `refuse()`; then jobs
  arrive as `Request` (or `BadRequest`, carrying the error answer a CPU gives), answered by `send`.
  The server enforces the negotiated PDU size on what it receives and what it sends.

TSAPs: a client's remote TSAP is 0x01 (PG connection) and rack * 32 + slot, as `remote_tsap(rack, slot)`.
"""

from __future__ import annotations

import struct
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from bifrost.errors import BifrostError
from bifrost.s7.pdu import (
    MAX_PDU,
    MIN_PDU,
    ErrorResponse,
    MalformedPdu,
    RequestPdu,
    ResponsePdu,
    Rosctr,
    S7PduError,
    SetupRequest,
    SetupResponse,
    SzlRequest,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    response_mismatch,
)

TPKT_VERSION = 3
TPKT_HEADER = 4
MAX_TPKT = 0xFFFF

# COTP TPDU codes.
CR = 0xE0
CC = 0xD0
DR = 0x80
DC = 0xC0
DT = 0xF0
ER = 0x70
EOT = 0x80

# COTP parameter codes.
P_TPDU_SIZE = 0xC0
P_CALLING_TSAP = 0xC1
P_CALLED_TSAP = 0xC2

TPDU_SIZES = {0x07: 128, 0x08: 256, 0x09: 512, 0x0A: 1024, 0x0B: 2048, 0x0C: 4096, 0x0D: 8192}
DEFAULT_TPDU_CODE = 0x0A


class StateError(BifrostError, RuntimeError):
    """The caller used a connection out of turn or past a negotiated limit: a bug in the caller."""


def remote_tsap(rack: int, slot: int, connection_type: int = 0x01) -> int:
    """The CPU's TSAP for a rack and slot (connection type 1: PG, 2: OP, 3: S7 basic)."""
    if not 0 <= rack <= 7 or not 0 <= slot <= 31:
        raise S7PduError(f"rack {rack} / slot {slot}: a rack is 0..7 and a slot 0..31", field="rack")
    return connection_type << 8 | rack << 5 | slot


def rack_slot(tsap: int) -> tuple[int, int]:
    """The rack and slot a remote TSAP names."""
    return (tsap & 0xFF) >> 5, tsap & 0x1F


# ---------------------------------------------------------------------------------------- TPKT


@dataclass(frozen=True, slots=True)
class BrokenStream:
    """A TPKT header or COTP TPDU that cannot be right: the stream cannot be read on. Close it."""

    reason: str
    data: bytes


def encode_tpkt(payload: bytes) -> bytes:
    if len(payload) + TPKT_HEADER > MAX_TPKT:
        raise S7PduError(f"payload: {len(payload)} bytes do not fit a TPKT packet", field="payload")
    return struct.pack(">BBH", TPKT_VERSION, 0, len(payload) + TPKT_HEADER) + payload


class TpktFramer:
    """Cuts a TCP stream into TPKT payloads (COTP TPDUs); fed bytes in any split."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.broken: BrokenStream | None = None

    @property
    def unfinished(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | BrokenStream]:
        if self.broken is not None:
            return []
        buffer = self._buffer
        buffer += data
        out: list[bytes | BrokenStream] = []
        start = 0
        while len(buffer) - start >= TPKT_HEADER:
            version, _reserved, length = struct.unpack_from(">BBH", buffer, start)
            if version != TPKT_VERSION or length < TPKT_HEADER + 2:
                why = f"version {version} (TPKT is 3)" if version != TPKT_VERSION else f"length {length} (at least 6)"
                self.broken = BrokenStream(f"bad TPKT header: {why}", bytes(buffer[start:]))
                buffer.clear()
                out.append(self.broken)
                return out
            if len(buffer) - start < length:
                break
            out.append(bytes(buffer[start + TPKT_HEADER : start + length]))
            start += length
        del buffer[:start]
        return out


# ---------------------------------------------------------------------------------------- COTP


@dataclass(frozen=True, slots=True)
class Cotp:
    """One COTP TPDU. `data` is a DT's user data; the rest are CR/CC/DR fields."""

    code: int
    data: bytes = b""
    eot: bool = True
    source_ref: int = 0
    destination_ref: int = 0
    calling_tsap: bytes = b""
    called_tsap: bytes = b""
    tpdu_size: int | None = None  # the size code (0x0A: 1024 bytes)
    reason: int = 0


def encode_cotp_data(data: bytes, *, eot: bool = True) -> bytes:
    return bytes((2, DT, EOT if eot else 0)) + data


def encode_cotp_connect(
    code: int, source_ref: int, destination_ref: int, calling: bytes, called: bytes, tpdu_size: int | None
) -> bytes:
    params = b""
    if tpdu_size is not None and code == CC:
        params += bytes((P_TPDU_SIZE, 1, tpdu_size))
    params += bytes((P_CALLING_TSAP, len(calling))) + calling + bytes((P_CALLED_TSAP, len(called))) + called
    if tpdu_size is not None and code == CR:
        params += bytes((P_TPDU_SIZE, 1, tpdu_size))
    body = bytes((code,)) + struct.pack(">HHB", destination_ref, source_ref, 0) + params
    return bytes((len(body),)) + body


def encode_cotp_disconnect(code: int, source_ref: int, destination_ref: int, reason: int = 0) -> bytes:
    body = bytes((code,)) + struct.pack(">HH", destination_ref, source_ref)
    if code == DR:
        body += bytes((reason,))
    return bytes((len(body),)) + body


def decode_cotp(tpdu: bytes) -> Cotp:
    """One COTP TPDU; a ValueError says why it is none."""
    if len(tpdu) < 2 or tpdu[0] + 1 > len(tpdu) or tpdu[0] < 1:
        raise ValueError(f"COTP header length {tpdu[0] if tpdu else '?'} does not fit {len(tpdu)} bytes")
    code = tpdu[1] & 0xF0
    if code == DT:
        if tpdu[0] < 2:
            raise ValueError("a DT TPDU without its TPDU number")
        return Cotp(DT, bytes(tpdu[tpdu[0] + 1 :]), bool(tpdu[2] & EOT))
    if code in (CR, CC):
        if tpdu[0] < 6:
            raise ValueError(f"a {'CR' if code == CR else 'CC'} TPDU of {tpdu[0]} header bytes (at least 6)")
        destination_ref, source_ref = struct.unpack_from(">HH", tpdu, 2)
        fields: dict[int, bytes] = {}
        at, end = 7, tpdu[0] + 1
        while at + 2 <= end:
            kind, length = tpdu[at], tpdu[at + 1]
            if at + 2 + length > end:
                raise ValueError(f"COTP parameter 0x{kind:02X} runs past the header")
            fields[kind] = bytes(tpdu[at + 2 : at + 2 + length])
            at += 2 + length
        size = fields.get(P_TPDU_SIZE)
        return Cotp(
            code,
            source_ref=source_ref,
            destination_ref=destination_ref,
            calling_tsap=fields.get(P_CALLING_TSAP, b""),
            called_tsap=fields.get(P_CALLED_TSAP, b""),
            tpdu_size=size[0] if size else None,
        )
    if code in (DR, DC):
        if tpdu[0] < 5:
            raise ValueError("a disconnect TPDU too short for its references")
        destination_ref, source_ref = struct.unpack_from(">HH", tpdu, 2)
        reason = tpdu[6] if code == DR and tpdu[0] >= 6 else 0
        return Cotp(code, source_ref=source_ref, destination_ref=destination_ref, reason=reason)
    raise ValueError(f"COTP TPDU code 0x{tpdu[1]:02X} is not CR, CC, DR, DC or DT")


class _Assembler:
    """Joins DT TPDUs into S7 PDUs (a PDU larger than the TPDU size arrives in several)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts = bytearray()

    def add(self, cotp: Cotp) -> bytes | None:
        self._parts += cotp.data
        if len(self._parts) > self.limit:
            size = len(self._parts)
            self._parts.clear()
            raise ValueError(f"a PDU of {size}+ bytes in COTP fragments exceeds {self.limit}")
        if not cotp.eot:
            return None
        pdu = bytes(self._parts)
        self._parts.clear()
        return pdu


# -------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Connected:
    """The CPU confirmed the COTP connection (CC)."""

    tpdu_size: int


@dataclass(frozen=True, slots=True)
class Ready:
    """Setup communication done: what the CPU granted."""

    pdu_size: int
    max_amq_calling: int
    max_amq_called: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The CPU refused the connection or the setup (a DR, or an error answer to setup)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The peer sent a disconnect request or confirm."""

    reason: int


@dataclass(frozen=True, slots=True)
class Response:
    reference: int
    request: RequestPdu
    response: ResponsePdu


@dataclass(frozen=True, slots=True)
class StaleReply:
    """An answer to a request that was abandoned (after a timeout)."""

    reference: int
    request: RequestPdu
    pdu: bytes


@dataclass(frozen=True, slots=True)
class UnexpectedReply:
    reference: int | None
    pdu: bytes


@dataclass(frozen=True, slots=True)
class MismatchedReply:
    reference: int
    request: RequestPdu
    response: ResponsePdu
    reason: str


@dataclass(frozen=True, slots=True)
class MalformedReply:
    reference: int | None
    request: RequestPdu | None
    pdu: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """A client asks for a COTP connection (CR): the server `accept()`s or `refuse()`s it."""

    calling_tsap: bytes
    called_tsap: bytes
    tpdu_size: int

    @property
    def rack_slot(self) -> tuple[int, int] | None:
        if len(self.called_tsap) != 2:
            return None
        return rack_slot(int.from_bytes(self.called_tsap, "big"))


@dataclass(frozen=True, slots=True)
class Request:
    reference: int
    request: RequestPdu
    size: int  # bytes of the S7 PDU


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A job a CPU cannot take; `answer` is what it sends back (None: nothing can be answered)."""

    reference: int | None
    pdu: bytes
    reason: str
    answer: ErrorResponse | None


ClientEvent: TypeAlias = (
    Connected
    | Ready
    | Refused
    | Disconnected
    | Response
    | StaleReply
    | UnexpectedReply
    | MismatchedReply
    | MalformedReply
    | BrokenStream
)
ServerEvent: TypeAlias = ConnectRequest | Request | BadRequest | Disconnected | BrokenStream

# ---------------------------------------------------------------------------------------- client

# Client states, and what each action leads to.
IDLE = "idle"
CONNECTING = "connecting"  # CR sent
CONNECTED = "connected"  # CC received
SETTING_UP = "setting up"  # setup communication sent
READY = "ready"
CLOSED = "closed"

_CLIENT: dict[tuple[str, str], str] = {
    (IDLE, "connect"): CONNECTING,
    (CONNECTING, "cc"): CONNECTED,
    (CONNECTING, "refused"): CLOSED,
    (CONNECTED, "setup"): SETTING_UP,
    (SETTING_UP, "ready"): READY,
    (SETTING_UP, "refused"): CLOSED,
    (READY, "send"): READY,
}


class _Pending(NamedTuple):
    request: RequestPdu


class ClientConnection:
    """The client side of an S7 connection, without I/O.

    `rack`/`slot` give the remote TSAP (or pass `remote` for another, e.g. 0x0300 + slot for S7 basic);
    `local` is our TSAP. PDU references start at `first_reference` and wrap, skipping ones in flight
    or recently abandoned.
    """

    def __init__(
        self,
        rack: int = 0,
        slot: int = 1,
        *,
        remote: int | None = None,
        local: int = 0x0100,
        tpdu_size: int = DEFAULT_TPDU_CODE,
        first_reference: int = 1,
        remember_abandoned: int = 256,
    ) -> None:
        self.remote_tsap = remote_tsap(rack, slot) if remote is None else remote
        self.local_tsap = local
        self.tpdu_code = tpdu_size
        self.state = IDLE
        self.pdu_size = MIN_PDU
        self.max_amq = 1
        self._framer = TpktFramer()
        self._assembler = _Assembler(MAX_PDU * 4)
        self._events: deque[ClientEvent] = deque()
        self._next = first_reference & 0xFFFF or 1
        self._pending: dict[int, _Pending] = {}
        self._abandoned: OrderedDict[int, _Pending] = OrderedDict()
        self._remember = remember_abandoned
        self._setup_reference: int | None = None
        self._source_ref = 1
        self.last_reference: int | None = None

    @property
    def unfinished(self) -> int:
        """Bytes of a packet begun but not complete: after a timeout, drop the connection."""
        return self._framer.unfinished

    @property
    def pending(self) -> Mapping[int, RequestPdu]:
        return {reference: pending.request for reference, pending in self._pending.items()}

    def _move(self, action: str) -> None:
        key = (self.state, action)
        if key not in _CLIENT:
            raise StateError(f"cannot {action} while {self.state}")
        self.state = _CLIENT[key]

    def connect_request(self) -> bytes:
        """The COTP connection request (CR) to send first."""
        self._move("connect")
        cr = encode_cotp_connect(
            CR,
            self._source_ref,
            0,
            self.local_tsap.to_bytes(2, "big"),
            self.remote_tsap.to_bytes(2, "big"),
            self.tpdu_code,
        )
        return encode_tpkt(cr)

    def setup(self, pdu_size: int = 480, max_amq: int = 1) -> bytes:
        """The setup-communication job, once `Connected`; `Ready` then says what was granted."""
        self._move("setup")
        reference = self._allocate()
        request = SetupRequest(pdu_size, max_amq, max_amq)
        self._setup_reference = reference
        self._pending[reference] = _Pending(request)
        return self._dt(encode_request(reference, request))

    def disconnect_request(self) -> bytes:
        self.state = CLOSED
        return encode_tpkt(encode_cotp_disconnect(DR, self._source_ref, 0))

    def send(self, request: RequestPdu) -> bytes:
        """The bytes of a job; its PDU reference is then `last_reference`."""
        if self.state != READY:
            raise StateError(f"cannot send a job while {self.state}: connect and set up first")
        if len(self._pending) >= self.max_amq:
            raise StateError(f"{len(self._pending)} jobs in flight: the CPU granted max AmQ {self.max_amq}")
        reference = self._allocate()
        pdu = encode_request(reference, request)
        if len(pdu) > self.pdu_size:
            raise StateError(f"the request is {len(pdu)} bytes, more than the negotiated PDU size of {self.pdu_size}")
        self._pending[reference] = _Pending(request)
        self.last_reference = reference
        return self._dt(pdu)

    def _dt(self, pdu: bytes) -> bytes:
        return encode_tpkt(encode_cotp_data(pdu))

    def _allocate(self) -> int:
        for _ in range(0x10000):
            reference = self._next
            self._next = (reference + 1) & 0xFFFF or 1
            if reference not in self._pending and reference not in self._abandoned:
                return reference
        raise StateError("every PDU reference is in flight or recently abandoned")

    def abandon(self, reference: int | None = None) -> bool:
        """Give up on a job (None: every one); its late answer becomes a StaleReply."""
        found = False
        for ref in list(self._pending) if reference is None else [reference]:
            pending = self._pending.pop(ref, None)
            if pending is not None:
                found = True
                self._abandoned[ref] = pending
                while len(self._abandoned) > self._remember:
                    self._abandoned.popitem(last=False)
        return found

    def receive_data(self, data: bytes) -> None:
        for item in self._framer.feed(data):
            if isinstance(item, BrokenStream):
                self._events.append(item)
                continue
            self._tpdu(item)

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None

    def _tpdu(self, tpdu: bytes) -> None:
        try:
            cotp = decode_cotp(tpdu)
        except ValueError as exc:
            self._events.append(BrokenStream(str(exc), tpdu))
            self._framer.broken = self._events[-1]  # type: ignore[assignment]
            return
        if cotp.code == CC:
            if self.state != CONNECTING:
                self._events.append(UnexpectedReply(None, tpdu))
                return
            self._move("cc")
            self._events.append(Connected(TPDU_SIZES.get(cotp.tpdu_size or DEFAULT_TPDU_CODE, 1024)))
            return
        if cotp.code in (DR, DC):
            if self.state == CONNECTING:
                self._move("refused")
                self._events.append(Refused(f"the CPU refused the connection (COTP DR, reason {cotp.reason})"))
                return
            self.state = CLOSED
            self._events.append(Disconnected(cotp.reason))
            return
        if cotp.code != DT:
            self._events.append(UnexpectedReply(None, tpdu))
            return
        try:
            pdu = self._assembler.add(cotp)
        except ValueError as exc:
            self._events.append(MalformedReply(None, None, tpdu, str(exc)))
            return
        if pdu is not None:
            self._events.append(self._classify(pdu))

    def _classify(self, pdu: bytes) -> ClientEvent:
        reference = pdu[4] << 8 | pdu[5] if len(pdu) >= 6 else None
        if reference is None:
            return MalformedReply(None, None, pdu, f"{len(pdu)} bytes are no S7 PDU")
        pending = self._pending.pop(reference, None)
        if pending is None:
            abandoned = self._abandoned.get(reference)
            if abandoned is not None:
                return StaleReply(reference, abandoned.request, pdu)
            return UnexpectedReply(reference, pdu)
        try:
            _ref, response = decode_response(pdu, pending.request)
        except MalformedPdu as exc:
            return self._setup_failed(reference) or MalformedReply(reference, pending.request, pdu, str(exc))
        if reference == self._setup_reference:
            self._setup_reference = None
            if isinstance(response, SetupResponse):
                self.pdu_size = max(MIN_PDU // 2, min(response.pdu_size, MAX_PDU * 4))
                self.max_amq = max(1, min(response.max_amq_calling, response.max_amq_called))
                self._move("ready")
                return Ready(response.pdu_size, response.max_amq_calling, response.max_amq_called)
            self._move("refused")
            why = response.message if isinstance(response, ErrorResponse) else type(response).__name__
            return Refused(f"setup communication refused: {why}")
        reason = response_mismatch(pending.request, response)
        if reason is not None:
            return MismatchedReply(reference, pending.request, response, reason)
        return Response(reference, pending.request, response)

    def _setup_failed(self, reference: int) -> Refused | None:
        if reference != self._setup_reference:
            return None
        self._setup_reference = None
        self._move("refused")
        return Refused("setup communication: the CPU's answer does not decode")


# ---------------------------------------------------------------------------------------- server

S_IDLE = "idle"
S_CONNECT_REQUESTED = "connect requested"
S_CONNECTED = "connected"  # COTP up, setup communication not yet done
S_READY = "ready"
S_CLOSED = "closed"


class ServerConnection:
    """The server (CPU) side of an S7 connection, without I/O.

    `pdu_size` is the most the CPU grants; `max_amq` the jobs it takes in flight. The first job must
    be setup communication; the size granted is the smaller of the two asks. Jobs larger than the
    granted size are `BadRequest`s answered with error 0x8500; answers larger than it are refused
    with StateError (the caller answers with an item error instead).
    """

    def __init__(self, *, pdu_size: int = 480, max_amq: int = 1) -> None:
        if not MIN_PDU <= pdu_size <= MAX_PDU:
            raise S7PduError(f"pdu_size: {pdu_size} is not {MIN_PDU}..{MAX_PDU}", field="pdu_size")
        self.max_pdu_size = pdu_size
        self.max_amq = max_amq
        self.pdu_size = pdu_size
        self.state = S_IDLE
        self.tpdu_size = 1024
        self._tpdu_code = DEFAULT_TPDU_CODE
        self._client_ref = 0
        self._framer = TpktFramer()
        self._assembler = _Assembler(MAX_PDU * 4)
        self._events: deque[ServerEvent] = deque()
        self._cr: ConnectRequest | None = None

    @property
    def broken(self) -> BrokenStream | None:
        return self._framer.broken

    def receive_data(self, data: bytes) -> None:
        for item in self._framer.feed(data):
            if isinstance(item, BrokenStream):
                self._events.append(item)
            else:
                self._tpdu(item)

    def next_event(self) -> ServerEvent | None:
        return self._events.popleft() if self._events else None

    def _broken(self, reason: str, data: bytes) -> None:
        event = BrokenStream(reason, data)
        self._framer.broken = event
        self._events.append(event)

    def _tpdu(self, tpdu: bytes) -> None:
        try:
            cotp = decode_cotp(tpdu)
        except ValueError as exc:
            self._broken(str(exc), tpdu)
            return
        if cotp.code == CR:
            if self.state != S_IDLE:
                self._broken("a second COTP connection request on one connection", tpdu)
                return
            self._client_ref = cotp.source_ref
            code = cotp.tpdu_size if cotp.tpdu_size in TPDU_SIZES else DEFAULT_TPDU_CODE
            self._tpdu_code = min(code, DEFAULT_TPDU_CODE)
            self.tpdu_size = TPDU_SIZES[self._tpdu_code]
            self.state = S_CONNECT_REQUESTED
            self._cr = ConnectRequest(cotp.calling_tsap, cotp.called_tsap, self.tpdu_size)
            self._events.append(self._cr)
            return
        if cotp.code in (DR, DC):
            self.state = S_CLOSED
            self._events.append(Disconnected(cotp.reason))
            return
        if cotp.code != DT or self.state not in (S_CONNECTED, S_READY):
            self._broken(f"COTP TPDU 0x{cotp.code:02X} while {self.state}", tpdu)
            return
        try:
            pdu = self._assembler.add(cotp)
        except ValueError as exc:
            self._events.append(BadRequest(None, tpdu, str(exc), ErrorResponse(None, 0x85, 0x00, Rosctr.ACK)))
            return
        if pdu is not None:
            self._events.append(self._job(pdu))

    def _job(self, pdu: bytes) -> Request | BadRequest:
        reference = pdu[4] << 8 | pdu[5] if len(pdu) >= 6 and pdu[0] == 0x32 else None
        if len(pdu) > self.pdu_size:
            too_big = ErrorResponse(pdu[10] if len(pdu) > 10 else None, 0x85, 0x00)
            return BadRequest(reference, pdu, f"a {len(pdu)}-byte PDU exceeds the negotiated {self.pdu_size}", too_big)
        try:
            reference, request = decode_request(pdu)
        except MalformedPdu as exc:
            ref = exc.reference if exc.reference is not None else reference
            userdata = len(pdu) > 1 and pdu[1] == Rosctr.USERDATA
            answer: ErrorResponse | None = None
            if ref is not None and not userdata:
                # A CPU answers a job it cannot parse with "not implemented / frame error".
                answer = ErrorResponse(
                    exc.function, 0x81, 0x04, Rosctr.ACK if exc.function is None else Rosctr.ACK_DATA
                )
            return BadRequest(ref, pdu, str(exc), answer)
        if self.state == S_CONNECTED and not isinstance(request, SetupRequest):
            return BadRequest(
                reference,
                pdu,
                "a job before setup communication",
                None if isinstance(request, SzlRequest) else ErrorResponse(request.function, 0x81, 0x01),
            )
        return Request(reference, request, len(pdu))

    def accept(self, *, tsap: bytes | None = None) -> bytes:
        """The CC answering the connection request."""
        if self.state != S_CONNECT_REQUESTED or self._cr is None:
            raise StateError(f"no connection request to accept while {self.state}")
        self.state = S_CONNECTED
        cc = encode_cotp_connect(
            CC, 1, self._client_ref, self._cr.calling_tsap, tsap or self._cr.called_tsap, self._tpdu_code
        )
        return encode_tpkt(cc)

    def refuse(self, reason: int = 0x00) -> bytes:
        """The DR refusing the connection request (e.g. a rack/slot with no CPU)."""
        self.state = S_CLOSED
        return encode_tpkt(encode_cotp_disconnect(DR, 1, self._client_ref, reason))

    def disconnect_confirm(self) -> bytes:
        return encode_tpkt(encode_cotp_disconnect(DC, 1, self._client_ref))

    def negotiate(self, request: SetupRequest) -> SetupResponse:
        """The answer to setup communication; after it is sent the granted size holds."""
        size = max(MIN_PDU, min(request.pdu_size, self.max_pdu_size))
        amq = max(1, min(request.max_amq_calling, self.max_amq))
        return SetupResponse(size, amq, amq)

    def send(self, reference: int, response: ResponsePdu) -> bytes:
        """The bytes answering job `reference` with `response`."""
        pdu = encode_response(reference, response)
        if isinstance(response, SetupResponse):
            self.pdu_size = response.pdu_size
            self.state = S_READY
        elif len(pdu) > self.pdu_size:
            raise StateError(f"the answer is {len(pdu)} bytes, more than the negotiated PDU size of {self.pdu_size}")
        return encode_tpkt(encode_cotp_data(pdu))


__all__ = [
    "CC",
    "CR",
    "DT",
    "BadRequest",
    "BrokenStream",
    "ClientConnection",
    "ClientEvent",
    "ConnectRequest",
    "Connected",
    "Cotp",
    "Disconnected",
    "MalformedReply",
    "MismatchedReply",
    "Ready",
    "Refused",
    "Request",
    "Response",
    "ServerConnection",
    "ServerEvent",
    "StaleReply",
    "StateError",
    "TpktFramer",
    "UnexpectedReply",
    "decode_cotp",
    "encode_cotp_connect",
    "encode_cotp_data",
    "encode_cotp_disconnect",
    "encode_tpkt",
    "rack_slot",
    "remote_tsap",
]
