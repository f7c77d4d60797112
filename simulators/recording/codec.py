"""What recording and replay need from a protocol, and the registry each protocol adds itself to.

The cassette, the importer, replay and diff name no protocol: they reach one through its `Codec`,
found by the protocol's name (`codec_for("modbus")`). A codec decodes with the protocol's own sans-IO
codec (for Modbus, bifrost.modbus.pdu): recording never has a parser of its own. A new protocol
(S7, OPC UA) writes a Codec and calls `register_codec()` in its module, listed in `_BUILTIN` so that
it is imported when first asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Hashable
from typing import Any, Protocol


class Image(Protocol):
    """A device's memory as a capture showed it: learned from exchanges, answering requests from it."""

    def learn(self, unit: int, request: bytes, response: bytes) -> None:
        """Take the values an exchange shows (a read's answer, a write that was accepted)."""

    def answer(self, unit: int, request: bytes) -> bytes | None:
        """The response to `request` from what was learned (a write changes the memory), or None when
        the request touches anything the capture never showed."""


class Codec(Protocol):
    """One protocol's part in recording and replay. Requests and responses are raw protocol data
    units as bytes (for Modbus: the PDU, function code first, no MBAP header or CRC)."""

    protocol: str

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


_CODECS: dict[str, Codec] = {}
_BUILTIN = {"modbus": "simulators.recording.modbus", "opcua": "simulators.recording.opcua"}


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


__all__ = ["Codec", "Image", "codec_for", "register_codec"]
