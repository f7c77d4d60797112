"""How relayed bytes are cut into frames for the faults, without changing a byte: the `Framer`.

Faults act per frame (a latency delays a reply, a drop loses one, a match picks some requests), so the
lanes need the bytes in frames and, for a reply, the request it answers. The core knows no protocol:
each front-end gives a `Framer` with its listeners (`ListenerInfo.framing`, from its ProtocolServer in
simulators.protocols). Modbus cuts MBAP and RTU frames (simulators/modbus/frames.py); S7 and OPC UA
frames carry their length in a header, which `LengthFramer` reads.

Relaying must not repair anything: bytes that are no frame (a broken stream, RTU noise) pass on
unchanged, as pieces of their own that no match can pick. A listener whose front-end gives no framer
relays plain chunks; the faults that need frames (`FRAME_KINDS`, and any transport fault with a match)
are refused there, naming the fault and the device.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias

from simulators.hooks import RequestInfo

Expect = Literal["requests", "responses"]
Piece: TypeAlias = "tuple[bytes, object | None]"
"""Bytes to relay, and the frame they are (None: bytes that are no frame), in the framer's own type."""

RequestRef: TypeAlias = "RequestInfo | object | None"
"""A request as a match needs it: decoded already, a frame decoded only if a match asks, or unknown."""

FRAME_KINDS = frozenset({"drop", "corrupt"})
"""Transport faults that act on whole frames (lose one, flip bits in one): a stream cut into plain chunks
would lose or damage half a frame, which is no fault a real network commits."""


class Splitter(Protocol):
    """Cuts one direction of a stream into frames and the bytes between them, byte for byte.

    `feed(data)` returns what is complete; a partial frame waits for more."""

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of a frame."""
        ...

    def feed(self, data: bytes) -> list[Piece]: ...

    def whole_frame(self, data: bytes) -> bool:
        """Whether `data` is one whole frame with nothing held: feeding it would change nothing here."""
        ...

    def rest(self) -> list[Piece]:
        """Every held byte, given out as it is; for a writer's whole writes."""
        ...

    def flush(self) -> list[Piece]:
        """The line went quiet (a frame that is not known to be unfinished is given out)."""
        ...


class Pairing(Protocol):
    """Which request a reply answers."""

    def request(self, frame: object | None) -> None: ...

    def reply(self, frame: object | None) -> object | None:
        """The request `frame` answers (forgotten once answered); None if unknown."""
        ...


class Framer(Protocol):
    """What a front-end tells the lanes about its byte streams."""

    @property
    def name(self) -> str:
        """Such as "mbap", "rtu", "tpkt", "opcua" (for messages)."""
        ...

    def splitter(self, expect: Expect) -> Splitter: ...

    def cut_whole(self, data: bytes, expect: Expect) -> list[Piece]:
        """A write that holds whole frames (or bytes cut short on purpose), as pieces; no state kept."""
        ...

    def pairing(self) -> Pairing: ...

    def info(self, request: RequestRef) -> RequestInfo | None:
        """What a match sees of a request (one of this framer's frames, or a RequestInfo); None when it
        does not decode."""
        ...


# --- frames with their length in a header (TPKT, OPC UA) ---------------------------------------------


class _Chunks:
    """No framer: every chunk passes as bytes that are no frame."""

    pending = 0

    def feed(self, data: bytes) -> list[Piece]:
        return [(bytes(data), None)] if data else []

    def whole_frame(self, data: bytes) -> bool:
        return False

    def rest(self) -> list[Piece]:
        return []

    def flush(self) -> list[Piece]:
        return []


class _NoPairing:
    def request(self, frame: object | None) -> None:
        pass

    def reply(self, frame: object | None) -> object | None:
        return None


CHUNKS = _Chunks()
NO_PAIRING = _NoPairing()


class LengthSplitter:
    """Frames whose header gives their whole length: `length(header)` is it (None: the bytes are no
    frame, and the stream can no longer be cut: the rest passes as it comes)."""

    def __init__(self, header: int, length: Callable[[bytes], int | None]) -> None:
        self._header = header
        self._length = length
        self._raw = bytearray()
        self._broken = False

    @property
    def pending(self) -> int:
        return len(self._raw)

    def _size(self, data: bytes | bytearray, at: int) -> int | None:
        size = self._length(bytes(data[at : at + self._header]))
        return size if size is not None and size >= self._header else None

    def whole_frame(self, data: bytes) -> bool:
        return not self._raw and not self._broken and len(data) >= self._header and self._size(data, 0) == len(data)

    def feed(self, data: bytes) -> list[Piece]:
        if self._broken:
            return [(bytes(data), None)] if data else []
        if self.whole_frame(data):
            return [(bytes(data), bytes(data))]  # the usual read: one whole frame
        raw = self._raw
        raw += data
        out: list[Piece] = []
        while len(raw) >= self._header:
            size = self._size(raw, 0)
            if size is None:
                self._broken = True
                out.append((bytes(raw), None))
                raw.clear()
                break
            if len(raw) < size:
                break
            frame = bytes(raw[:size])
            out.append((frame, frame))
            del raw[:size]
        return out

    def rest(self) -> list[Piece]:
        out: list[Piece] = [(bytes(self._raw), None)] if self._raw else []
        self._raw.clear()
        return out

    def flush(self) -> list[Piece]:
        return []  # the length says a frame is unfinished: silence does not end it


class KeyedPairing:
    """Replies paired with requests by a key both carry (a PDU reference, a request id); a frame without
    one pairs with nothing."""

    _LIMIT = 1024  # a client that never reads its replies must not grow this without bound

    def __init__(self, key: Callable[[bytes], int | None]) -> None:
        self._key = key
        self._by_key: OrderedDict[int, object] = OrderedDict()

    def request(self, frame: object | None) -> None:
        if not isinstance(frame, bytes):
            return
        key = self._key(frame)
        if key is None:
            return
        self._by_key[key] = frame
        if len(self._by_key) > self._LIMIT:
            self._by_key.popitem(last=False)

    def reply(self, frame: object | None) -> object | None:
        if not isinstance(frame, bytes):
            return None
        key = self._key(frame)
        return None if key is None else self._by_key.pop(key, None)


@dataclass(frozen=True)
class LengthFramer:
    """A Framer for frames that carry their length in a fixed header (`header` bytes): TPKT, OPC UA.

    Frames are their bytes; `key` pairs a reply with its request; `describe` decodes a request frame for
    a match (None when it does not decode, or cannot be read: an encrypted message)."""

    name: str
    header: int
    length: Callable[[bytes], int | None]
    key: Callable[[bytes], int | None]
    describe: Callable[[bytes], RequestInfo | None]

    def splitter(self, expect: Expect) -> LengthSplitter:
        return LengthSplitter(self.header, self.length)

    def cut_whole(self, data: bytes, expect: Expect) -> list[Piece]:
        splitter = self.splitter(expect)
        return splitter.feed(data) + splitter.rest()

    def pairing(self) -> KeyedPairing:
        return KeyedPairing(self.key)

    def info(self, request: RequestRef) -> RequestInfo | None:
        if request is None:
            return None
        if isinstance(request, bytes):
            try:
                return self.describe(request)
            except (ValueError, IndexError):
                return None
        return request  # type: ignore[return-value]  # a RequestInfo already


def frame_unit(request: RequestRef) -> int | None:
    """The unit a frame or request is addressed to, where the protocol has one."""
    unit = getattr(request, "unit", None)
    return unit if isinstance(unit, int) else None


__all__ = [
    "CHUNKS",
    "FRAME_KINDS",
    "NO_PAIRING",
    "Expect",
    "Framer",
    "KeyedPairing",
    "LengthFramer",
    "LengthSplitter",
    "Pairing",
    "Piece",
    "RequestRef",
    "Splitter",
    "frame_unit",
]
