"""OPC UA through the fault proxy (simulators.proxy): how requests read to the faults (their service,
and the nodes a match names, decoded only when one asks), and what the proxy writes in the stream.

The secure channel numbers its chunks, each side on its own (OPC UA Part 6, 6.7.2), and a peer closes
the channel at a gap (asyncua's client and server do). So when the proxy answers a request itself (an
`exception`: a ServiceFault with the fault's status, for the request's handle and RequestId) or a fault
loses a message (`drop`), the numbers of what follows are moved to close the gap: the client and the
device each see an unbroken sequence, as from a device that never got the request, or never answered.
That takes a channel under security None: a signed one cannot be rewritten, and there the chunks pass
as they are (no `exception`; a `drop` leaves a gap the peer will refuse).

`bad_quality` is the value status of a Read's results, as in front of our simulator: the Read is
forwarded and its answer's DataValues carry the fault's status (BadSensorFailure by default).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any

from bifrost._extras import require
from simulators.faults.frames import Framer
from simulators.hooks import Action, RequestInfo
from simulators.opcua.frames import (
    MESSAGES,
    chunks_of,
    message_chunk,
    renumbered,
    request_id,
    sequence_number,
    service_of,
)
from simulators.opcua.traffic import SERVICE_IDS
from simulators.recording.codec import Cut

HANDSHAKE = frozenset(
    SERVICE_IDS[name] for name in ("FindServers", "GetEndpoints", "CreateSession", "ActivateSession", "CloseSession")
)
"""The channel's and session's own services: no protocol fault answers them (in front of our simulator
the faults act on the variables' reads and writes, never on connecting)."""
READ = SERVICE_IDS["Read"]
SMALLEST_CHUNK = 8192  # the least receive buffer a peer may offer (Part 6, 7.1.2.3): what the proxy writes fits
BAD_QUALITY = "BadSensorFailure"  # bad_quality's status when the fault names none, as the simulator's


def _recording() -> Any:
    from simulators.recording import opcua  # asyncua's binary codec (the `opcua` extra)

    return opcua


def _status(code: int) -> int:
    # A code that is no OPC UA status (exception's default, a Modbus or S7 number): the device failed,
    # as the simulated server answers it (simulators.opcua.frontend).
    if code > 0xFF:
        return code
    from simulators.opcua.server import status_code

    return status_code("BadCommunicationError")


def _nodes(body: bytes) -> tuple[str, ...]:
    try:
        request = _recording().decode(body)
    except (ValueError, ImportError):
        return ()
    parameters = getattr(request, "Parameters", None)
    items: list[Any] = []
    for name in ("NodesToRead", "NodesToWrite", "NodesToBrowse", "ItemsToCreate"):
        items.extend(getattr(parameters, name, None) or [])
    nodes = (getattr(item, "ItemToMonitor", item).NodeId for item in items)
    return tuple(dict.fromkeys(node.to_string() for node in nodes))


class OpcuaProxiedRequest:
    """A request as fault matches see it: its service (`function`, the request's DataType id) and,
    decoded from the message only when a match names a node, the nodes it reads, writes, browses or
    monitors, as NodeId text (`ns=2;s=tank.level`)."""

    __slots__ = ("_body", "_nodes", "function")

    unit: int | None = None
    spans: tuple[tuple[str, int, int], ...] = ()

    def __init__(self, function: int, body: bytes) -> None:
        self.function = function
        self._body = body
        self._nodes: tuple[str, ...] | None = None

    @property
    def nodes(self) -> tuple[str, ...]:
        if self._nodes is None:
            self._nodes = _nodes(self._body)
        return self._nodes


def _sequenced(piece: bytes) -> int:
    return sum(1 for start, end in chunks_of(piece) if sequence_number(piece[start:end]) is not None)


class OpcuaSession:
    """One relayed connection: how far the proxy has moved each side's sequence numbers."""

    value_status = True
    cheap_keys = False  # a Read's key is the request decoded, blanked and encoded again

    def __init__(self) -> None:
        self._withheld = 0  # the client's chunks the device never saw
        self._shift = 0  # the device's numbers, as the client sees them, are this much higher
        self._last: int | None = None  # the last number the client was sent

    def info(self, cut: Cut) -> RequestInfo | None:
        if cut.pdu is None:
            return None
        service = service_of(cut.pdu)
        return None if service is None else OpcuaProxiedRequest(service, cut.pdu)

    def handshake(self, info: RequestInfo) -> bool:
        return info.function in HANDSHAKE or info.function not in SERVICE_IDS.values()

    def refusal(self, cut: Cut, info: RequestInfo, code: int) -> bytes | None:
        # cut.pdu is set only for a message under security None (simulators.recording.opcua_chunks).
        if cut.pdu is None:
            return None
        return self._inject(cut, _fault(cut.pdu, _status(code)))

    def _inject(self, cut: Cut, body: bytes) -> bytes | None:
        """A chunk answering request `cut` with `body`, numbered into the channel's answers."""
        if cut.piece[:3] != b"MSG" or self._last is None or len(body) + 24 > SMALLEST_CHUNK:
            return None
        self._last = (self._last + 1) & 0xFFFFFFFF
        self._shift += 1
        return message_chunk(cut.piece, self._last, body)

    def freeze_key(self, cut: Cut, info: RequestInfo) -> Hashable | None:
        """A Read, as equal Reads are (its handle and timestamps blanked): what `freeze` answers."""
        if info.function != READ or cut.pdu is None:
            return None
        from simulators.recording.codec import codec_for

        return ("opcua", codec_for("opcua").match_key(0, cut.pdu))

    def frozen_answer(self, cut: Cut, answer: bytes) -> bytes | None:
        """The Read answer `answer` (a service message kept from before the freeze) for request `cut`."""
        if cut.pdu is None:
            return None
        recording = _recording()
        try:
            request, response = recording.decode(cut.pdu), recording.decode(answer)
        except ValueError:
            return None
        if type(response).__name__ != "ReadResponse":
            return None
        response.ResponseHeader.RequestHandle = request.RequestHeader.RequestHandle
        return self._inject(cut, recording.encode(response))

    def forward(self, piece: bytes) -> bytes:
        if not self._withheld:
            return piece
        withheld = self._withheld
        return renumbered(piece, lambda number: number - withheld)[0]

    def withheld(self, piece: bytes) -> None:
        self._withheld += _sequenced(piece)

    def deliver(self, piece: bytes) -> bytes:
        shift = self._shift
        out, last = renumbered(piece, lambda number: number + shift)
        if last is not None:
            self._last = last
        return out

    def lost(self, piece: bytes) -> None:
        lost = _sequenced(piece)
        self._shift -= lost
        if self._last is not None:
            self._last = (self._last - lost) & 0xFFFFFFFF

    def rewrite(self, piece: bytes, action: Action) -> bytes:
        """`wrong_transaction`: the answer names another RequestId, so the client matches it to none."""
        if not action.wrong_transaction:
            return piece
        out = bytearray(piece)
        for start, end in chunks_of(piece):
            answered = request_id(piece[start:end])
            if answered is not None and piece[start : start + 3] == b"MSG":
                out[start + 20 : start + 24] = ((answered + 0x80000000) & 0xFFFFFFFF).to_bytes(4, "little")
        return bytes(out)

    def bad_quality(self, piece: bytes, body: bytes | None, info: RequestInfo, status: int | None) -> bytes | None:
        """A Read's answer (`piece`, as delivered; `body` its service message) with its results' status
        set to `status`, the values kept, in one chunk; None when it is no Read answer the proxy can
        rewrite (a ServiceFault, several chunks, a signed channel)."""
        if info.function != READ or body is None or len(chunks_of(piece)) != 1:
            return None
        from simulators.opcua.server import status_code

        recording = _recording()
        ua = require("asyncua.ua", "opcua")
        try:
            response = recording.decode(body)
        except ValueError:
            return None
        if type(response).__name__ != "ReadResponse":
            return None
        code = ua.StatusCode(status_code(status or BAD_QUALITY))
        response.Results = [dataclasses.replace(result, StatusCode=code) for result in response.Results or []]
        return message_chunk(piece, sequence_number(piece) or 0, recording.encode(response))


def _fault(request: bytes, status: int) -> bytes:
    """A ServiceFault with `status` for the request's handle (the recording codec's, over asyncua)."""
    from simulators.recording.codec import codec_for

    return codec_for("opcua").error_response(request, status)


class OpcuaProxying:
    protocol = "opcua"
    framer: Framer = MESSAGES

    def session(self) -> OpcuaSession:
        return OpcuaSession()


DIALECT = OpcuaProxying()

__all__ = ["DIALECT", "HANDSHAKE", "OpcuaProxiedRequest", "OpcuaProxying", "OpcuaSession"]
