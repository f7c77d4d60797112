"""Frames in relayed bytes, found without changing a byte, and which request each reply answers.

Faults act per frame (a latency delays a reply, a drop loses one, a match picks some requests), so
the bytes a wrapper or the proxy relays are cut into frames with bifrost's framers. Relaying must not
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
from bifrost.modbus.pdu import MalformedFrame, decode_request
from simulators.faults.spec import RequestInfo

Piece = tuple[bytes, Frame | None]
"""Bytes to relay, and the frame they are (None: bytes that are no frame)."""


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
        self._raw += data
        return self._take(self._framer.feed(data))

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


def request_info(frame: Frame | None) -> RequestInfo | None:
    """What a match sees of a request frame; None when it does not decode."""
    if frame is None:
        return None
    try:
        return RequestInfo.of(frame.unit, decode_request(frame.pdu))
    except MalformedFrame:
        return None


class Pairing:
    """Which request a reply answers: by transaction id over MBAP, the last request over RTU."""

    _LIMIT = 1024  # a client that never reads its replies must not grow this without bound

    def __init__(self, framing: Framing) -> None:
        self._rtu = framing == "rtu"
        self._by_id: OrderedDict[int, RequestInfo | None] = OrderedDict()
        self._last: RequestInfo | None = None

    def request(self, frame: Frame | None, info: RequestInfo | None) -> None:
        if frame is None:
            return
        if self._rtu or frame.transaction_id is None:
            self._last = info
            return
        self._by_id[frame.transaction_id] = info
        self._by_id.move_to_end(frame.transaction_id)
        while len(self._by_id) > self._LIMIT:
            self._by_id.popitem(last=False)

    def reply(self, frame: Frame | None) -> RequestInfo | None:
        """The request `frame` answers (forgotten once answered); None if unknown."""
        if frame is None:
            return None
        if self._rtu or frame.transaction_id is None:
            info, self._last = self._last, None
            return info
        return self._by_id.pop(frame.transaction_id, None)


__all__ = ["Pairing", "Piece", "Splitter", "request_info"]
