"""What recording and replay need from a protocol, and the registry each protocol adds itself to.

The cassette, the importer, the recording proxy, replay and diff name no protocol: they reach one
through its `Codec`, found by the protocol's name (`codec_for("modbus")`). A codec decodes with the
protocol's own sans-IO codec (for Modbus bifrost.modbus.pdu, for S7 bifrost.s7.pdu): recording never
has a parser of its own. A new protocol writes a Codec and calls `register_codec()` in its module,
listed in `_BUILTIN` so that it is imported when first asked for.

A codec has four parts:

- the cassette's: decode, describe and render a request and its response, and say when two requests
  are equal (`match_key`), what refuses one (`error_response`, `is_error`) and what a capture teaches
  about the device's memory (`new_image`);
- the wire's, for pcap import and the recording proxy: recognise a connection from its client's first
  bytes (`sniff`, giving one of the codec's `framings`), cut a direction's bytes into frames (`frames`
  for a whole captured stream, `cutter` as bytes arrive), and pair requests with responses (`pair`; by
  the protocol's own id where it has one: Modbus's transaction id, S7's PDU reference);
- the traffic log's (`log_exchange`): a simulated device's exchange as raw requests and responses;
- replay's (`replay_devices`, `is_handshake`): the scenario devices that serve a recorded device (the
  front-end whose server answers from a Replayer), and the requests that front-end's connection
  machinery answers itself (S7's setup communication), which replay leaves out.
"""

from __future__ import annotations

import importlib
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    from simulators.recording.tcp import Direction

Expect = Literal["requests", "responses"]

Frame = tuple[float, int | None, int, bytes]
"""A frame as an import keeps it: (time of the packet completing it, pairing id or None, unit, PDU).
A plain tuple: an import makes one per frame, and pairing and the cassette need nothing more."""

Pair = tuple[Frame | None, Frame | None]
"""A request and its response; (None, response) is an answer that matches no request."""


class Cut(NamedTuple):
    """A piece of a relayed stream, cut by a codec's `cutter` without changing a byte.

    `pdu` is the protocol data unit the piece carries (what a cassette stores), None when the piece is
    no request or response (a connection's set-up, bytes that are no frame); `text` then says what it
    is. `unit` and `ident` (the pairing id) are the frame's, None where it has none."""

    piece: bytes
    unit: int | None = None
    ident: int | None = None
    pdu: bytes | None = None
    text: str = ""


class Cutter(Protocol):
    """Cuts one direction of a relayed connection into pieces as bytes arrive (the recording proxy's)."""

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of a frame."""

    def feed(self, data: bytes) -> list[Cut]: ...

    def flush(self) -> list[Cut]:
        """The stream ended or went quiet: every held byte, as it is."""


class Image(Protocol):
    """A device's memory as a capture showed it: learned from exchanges, answering requests from it."""

    def learn(self, unit: int, request: bytes, response: bytes) -> None:
        """Take the values an exchange shows (a read's answer, a write that was accepted)."""

    def answer(self, unit: int, request: bytes) -> bytes | None:
        """The response to `request` from what was learned (a write changes the memory), or None when
        the request touches anything the capture never showed."""


class Codec(Protocol):
    """One protocol's part in recording and replay. Requests and responses are raw protocol data
    units as bytes (for Modbus: the PDU, function code first, no MBAP header or CRC; for S7: the S7
    PDU, from its 0x32, without TPKT and COTP)."""

    protocol: str
    framings: tuple[str, ...]
    """The ways its bytes travel ("mbap", "rtu"; "s7"), the first the default."""
    default_unknown: int
    """The code a request the cassette cannot answer is refused with by default (Modbus: exception 2)."""

    # --- the cassette ---------------------------------------------------------------------------------

    def decode_request(self, request: bytes) -> dict[str, Any]:
        """The request as readable fields (for the cassette and diff); never raises."""

    def decode_response(self, response: bytes, request: bytes) -> dict[str, Any]:
        """The response as readable fields; never raises (a malformed one says so in an `error`)."""

    def describe(self, request: bytes, response: bytes | None) -> str:
        """One line for people: `read hr:0-1 -> 0001 0002`."""

    def render(self, request: bytes, response: bytes | None) -> tuple[dict[str, Any], str, dict[str, Any] | None, str]:
        """What a cassette line shows, decoding each PDU once: the request's fields and text, the
        response's fields (None when there is none) and text."""

    def match_key(self, unit: int, request: bytes) -> Hashable:
        """What makes two requests "equal" for replay by request (Modbus: unit and PDU bytes)."""

    def error_response(self, request: bytes, code: int) -> bytes:
        """The protocol's refusal of `request` with `code` (Modbus: an exception response)."""

    def is_error(self, response: bytes) -> bool:
        """Whether a response is a refusal (Modbus: an exception response)."""

    def new_image(self) -> Image: ...

    # --- the wire -------------------------------------------------------------------------------------

    def sniff(self, data: bytes) -> str | None:
        """The framing of a connection whose client's first bytes are `data`; None: not this protocol."""

    def opens_request(self, framing: str, data: bytes) -> bool:
        """Whether a side's first bytes begin with a request (who is the client, without a SYN)."""

    def frames(
        self, framing: str, side: Direction, expect: Expect, notes: list[str], who: str, origin: float
    ) -> list[Frame]:
        """The frames of one captured direction, each with the time of the packet that completed it;
        what cannot be cut is said in `notes` (`who`: "client" or "server"; times from `origin`)."""

    def pair(self, framing: str, asked: Sequence[Frame], answered: Sequence[Frame]) -> list[Pair]:
        """Requests with their responses (both in time order); answers matching no request first."""

    def cutter(self, framing: str, expect: Expect) -> Cutter: ...

    def pairs_by_id(self, framing: str) -> bool:
        """Whether a response names its request (an id), or answers the one before it (RTU)."""

    def unwrap(self, framing: str, data: bytes, expect: Expect) -> bytes | None:
        """The PDU of one whole frame as relayed (a Cut's piece); None when the bytes are no frame."""

    # --- the traffic log and replay -------------------------------------------------------------------

    def log_exchange(self, exchange: Any, device: Any) -> tuple[int, bytes, bytes | None] | None:
        """A traffic log's exchange (simulators.traffic) of `device` as (unit, request, response)
        PDUs; None when it is no exchange to keep (a refused connection)."""

    def is_handshake(self, request: bytes) -> bool:
        """Whether the front-end's connection answers this request itself (replay leaves it out)."""

    def replay_devices(
        self, device: str, units: Sequence[int], listen: str, transport: str, replay: dict[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """The scenario devices serving `device` of a cassette: name -> device mapping, each with the
        `replay` table given (its cassette, mode, timing...)."""


_CODECS: dict[str, Codec] = {}
_BUILTIN = {
    "modbus": "simulators.recording.modbus",
    "s7": "simulators.recording.s7",
    "opcua": "simulators.recording.opcua",
}


def register_codec(codec: Codec) -> None:
    _CODECS[codec.protocol] = codec


def codec_for(protocol: str) -> Codec:
    """The codec of `protocol`; a ValueError naming the protocols known when there is none."""
    codec = _CODECS.get(protocol)
    if codec is None and protocol in _BUILTIN:
        importlib.import_module(_BUILTIN[protocol])
        codec = _CODECS.get(protocol)
    if codec is None:
        known = ", ".join(sorted(set(_CODECS) | set(_BUILTIN)))
        raise ValueError(f"no recording codec for protocol {protocol!r} (known: {known})")
    return codec


def known_codecs() -> list[Codec]:
    """Every codec, the built-in ones imported: the order in which an import tries them on a
    connection (protocols with a distinctive first packet before Modbus, whose MBAP header is only
    two zero bytes and a length)."""
    for protocol in _BUILTIN:
        codec_for(protocol)
    builtin = list(_BUILTIN)

    def order(codec: Codec) -> tuple[bool, int, str]:
        # Fixed, not the order modules happened to be imported in: reports and messages list them alike.
        rank = builtin.index(codec.protocol) if codec.protocol in builtin else len(builtin)
        return (codec.protocol == "modbus", rank, codec.protocol)

    return sorted(_CODECS.values(), key=order)


def codec_of_framing(framing: str) -> Codec:
    """The codec whose framings include `framing` ("mbap", "rtu", "s7"); a ValueError naming them."""
    for codec in known_codecs():
        if framing in codec.framings:
            return codec
    known = ", ".join(name for codec in known_codecs() for name in codec.framings)
    raise ValueError(f"no protocol travels as {framing!r} (known: {known})")


def pair_by_id(asked: Sequence[Frame], answered: Sequence[Frame]) -> list[Pair]:
    """Requests and responses by their pairing id; a repeated id pairs with its oldest open request.

    Both lists are in time order: they are merged in one pass, an answer pairing only with a request
    seen before it. The answers matching no request come first, then every request with its answer."""
    if len(asked) == len(answered) and all(
        request[1] == response[1] and request[0] <= response[0]
        for request, response in zip(asked, answered, strict=True)
    ):
        # Each request's answer is the one in its place (the common capture): the merge below would pair
        # them so, since every earlier request of the same id is answered before.
        return list(zip(asked, answered, strict=True))
    answers: list[Frame | None] = [None] * len(asked)
    waiting: dict[int | None, list[int]] = {}
    out: list[Pair] = []
    next_request, count = 0, len(asked)
    for response in answered:
        when = response[0]
        while next_request < count and asked[next_request][0] <= when:
            transaction_id = asked[next_request][1]
            queue = waiting.get(transaction_id)
            if queue is None:
                waiting[transaction_id] = [next_request]
            else:
                queue.append(next_request)
            next_request += 1
        queue = waiting.get(response[1])
        if queue:
            answers[queue.pop(0)] = response
        else:
            out.append((None, response))
    out.extend(zip(asked, answers, strict=True))
    return out


__all__ = [
    "Codec",
    "Cut",
    "Cutter",
    "Expect",
    "Frame",
    "Image",
    "Pair",
    "codec_for",
    "codec_of_framing",
    "known_codecs",
    "pair_by_id",
    "register_codec",
]
