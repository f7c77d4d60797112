"""Modbus frames in relayed bytes, found without changing a byte, and which request each reply answers:
the `Framer` (simulators.faults.frames) of Modbus listeners and of the proxy, `MBAP` and `RTU`.

The bytes a wrapper or the proxy relays are cut into frames with bifrost's framers. Relaying must not
repair anything, though: bytes that are no frame (a broken MBAP stream, RTU noise) pass on unchanged,
as pieces of their own that no match can pick.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

from bifrost.modbus.framing import (
    BrokenStream,
    DamagedFrame,
    Frame,
    Framing,
    MbapFramer,
    RtuFramer,
    encode_mbap,
    encode_rtu,
)
from bifrost.modbus.pdu import MAX_PDU, MalformedFrame, decode_request
from simulators.faults.frames import Piece, RequestRef
from simulators.hooks import RequestInfo
from simulators.modbus.requests import ModbusRequestInfo


class Splitter:
    """Cuts a relayed byte stream into whole frames and the bytes between them, byte for byte.

    `feed(data)` returns what is complete; a partial frame waits for more. Over RTU nothing says how
    long a frame of an unknown function is, so `flush()` after a silence gives out whatever waits.
    """

    def __init__(self, framing: Framing, expect: Literal["requests", "responses"]) -> None:
        self.framing = framing
        self._rtu = framing == "rtu"
        self._framer: MbapFramer | RtuFramer = RtuFramer(expect) if self._rtu else MbapFramer()
        self._raw = bytearray()  # fed, not yet given out
        self._broken = False
        self._damage_given = 0  # RTU bytes the framer discarded that were given out already

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of a frame."""
        return len(self._raw)

    def feed(self, data: bytes) -> list[Piece]:
        if self._broken:
            return [(bytes(data), None)] if data else []
        if not self._raw and not self._rtu:
            frame = _one_mbap_frame(data)
            if frame is not None:
                return [(bytes(data), frame)]  # the usual read: one whole frame (the framer holds nothing)
        self._raw += data
        damaged = self._framer.discarded if isinstance(self._framer, RtuFramer) else 0
        items = self._framer.feed(data)
        if self._whole(items, damaged):
            # The common case, frames and nothing else: cut them in order, no search needed.
            out: list[Piece] = []
            start = 0
            raw = self._raw
            for item in items:
                assert isinstance(item, Frame)
                end = start + len(item.pdu) + (3 if self._rtu else 7)
                out.append((bytes(raw[start:end]), item))
                start = end
            del raw[:start]
            return out
        return self._take(items)

    def _whole(self, items: Sequence[Frame | DamagedFrame | BrokenStream], damaged: int) -> bool:
        if isinstance(self._framer, RtuFramer) and self._framer.discarded != damaged:
            return False
        return all(type(item) is Frame for item in items)

    def whole_frame(self, data: bytes) -> bool:
        """Whether `data` is one whole MBAP frame with nothing held: feeding it would change nothing here."""
        return not self._raw and not self._rtu and not self._broken and _one_mbap_frame(data) is not None

    def rest(self) -> list[Piece]:
        """Every held byte, given out as it is (RTU: after a silence); for a writer's whole writes."""
        out = self.flush()
        if self._raw:
            out.append((bytes(self._raw), None))
            self._raw.clear()
        return out

    def flush(self) -> list[Piece]:
        """The line went quiet: an unfinished RTU frame will not be finished. Gives out every held byte."""
        if not self._rtu or not self._raw:
            return []
        assert isinstance(self._framer, RtuFramer)
        out = self._take(self._framer.silence())
        if self._raw:
            out.append((bytes(self._raw), None))  # not counted by the framer, so not added to _damage_given
            self._raw.clear()
        return out

    def _take(self, items: Sequence[Frame | DamagedFrame | BrokenStream]) -> list[Piece]:
        raw = self._raw
        out: list[Piece] = []
        for item in items:
            if isinstance(item, Frame):
                encoded = (
                    encode_rtu(item.unit, item.pdu)
                    if self._rtu
                    else encode_mbap(item.transaction_id or 0, item.unit, item.pdu)
                )
                at = raw.find(encoded)
                if at < 0:  # cannot happen: the framer cut it from these bytes
                    continue
                if at:
                    out.append((bytes(raw[:at]), None))
                    self._damage_given += at
                out.append((encoded, item))
                del raw[: at + len(encoded)]
            elif isinstance(item, BrokenStream):
                # The stream can no longer be cut: the rest goes out as it comes.
                self._broken = True
                if raw:
                    out.append((bytes(raw), None))
                raw.clear()
                return out
        if self._rtu:
            assert isinstance(self._framer, RtuFramer)
            damage = self._framer.discarded - self._damage_given
            if damage > 0:
                out.append((bytes(raw[:damage]), None))
                del raw[:damage]
                self._damage_given += damage
        return out


def request_info(request: RequestRef) -> RequestInfo | None:
    """What a match sees of a request; None when it does not decode."""
    if request is None or not isinstance(request, Frame):
        return request  # type: ignore[return-value]  # a RequestInfo already
    try:
        return ModbusRequestInfo(request.unit, decode_request(request.pdu))
    except MalformedFrame:
        return None


def _one_mbap_frame(data: bytes) -> Frame | None:
    """`data` as one whole, valid MBAP frame, or None."""
    if 8 <= len(data) <= MAX_PDU + 7 and data[2] == 0 and data[3] == 0 and (data[4] << 8 | data[5]) + 6 == len(data):
        return Frame(data[6], bytes(data[7:]), data[0] << 8 | data[1])
    return None


def cut_whole(data: bytes, framing: Framing, expect: Literal["requests", "responses"]) -> list[Piece]:
    """A write that holds whole frames (or bytes cut short on purpose), as pieces; no state kept."""
    if framing == "mbap" and (frame := _one_mbap_frame(data)) is not None:
        return [(data, frame)]
    splitter = Splitter(framing, expect)
    return splitter.feed(data) + splitter.rest()


class Pairing:
    """Which request a reply answers: by transaction id over MBAP, the last request over RTU.

    Requests are kept as frames and decoded only if a fault's match asks (`request_info`).
    """

    _LIMIT = 1024  # a client that never reads its replies must not grow this without bound

    def __init__(self, framing: Framing) -> None:
        self._rtu = framing == "rtu"
        self._by_id: OrderedDict[int, Frame] = OrderedDict()
        self._last: Frame | None = None

    def request(self, frame: object | None) -> None:
        if not isinstance(frame, Frame):
            return
        if self._rtu or frame.transaction_id is None:
            self._last = frame
            return
        by_id = self._by_id
        by_id[frame.transaction_id] = frame
        if len(by_id) > self._LIMIT:
            by_id.popitem(last=False)

    def reply(self, frame: object | None) -> Frame | None:
        """The request `frame` answers (forgotten once answered); None if unknown."""
        if not isinstance(frame, Frame):
            return None
        if self._rtu or frame.transaction_id is None:
            request, self._last = self._last, None
            return request
        return self._by_id.pop(frame.transaction_id, None)


class ModbusFramer:
    """The Framer of Modbus byte streams: MBAP (Modbus/TCP) or RTU frames."""

    def __init__(self, framing: Framing) -> None:
        self.name: Framing = framing

    def splitter(self, expect: Literal["requests", "responses"]) -> Splitter:
        return Splitter(self.name, expect)

    def cut_whole(self, data: bytes, expect: Literal["requests", "responses"]) -> list[Piece]:
        return cut_whole(data, self.name, expect)

    def pairing(self) -> Pairing:
        return Pairing(self.name)

    def info(self, request: RequestRef) -> RequestInfo | None:
        return request_info(request)

    def __repr__(self) -> str:
        return f"ModbusFramer({self.name!r})"


MBAP = ModbusFramer("mbap")
RTU = ModbusFramer("rtu")


def framer_for(framing: str) -> ModbusFramer:
    """The framer of "mbap" or "rtu"."""
    return RTU if framing == "rtu" else MBAP


__all__ = ["MBAP", "RTU", "ModbusFramer", "Pairing", "Splitter", "cut_whole", "framer_for", "request_info"]
