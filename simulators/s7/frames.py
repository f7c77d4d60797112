"""S7 frames for the fault lanes: TPKT packets (RFC 1006: version 3, a 16-bit length), replies paired
with their jobs by the S7 PDU reference, jobs described to matches as the server describes them."""

from __future__ import annotations

from bifrost.s7 import framing, pdu
from simulators.faults.frames import LengthFramer
from simulators.hooks import RequestInfo
from simulators.s7.traffic import S7RequestInfo


def tpkt_length(header: bytes) -> int | None:
    if header[0] != framing.TPKT_VERSION or header[1] != 0:
        return None
    return header[2] << 8 | header[3]


def _s7(frame: bytes) -> bytes | None:
    """The S7 PDU a TPKT packet carries (a COTP data TPDU), or None."""
    tpdu = frame[framing.TPKT_HEADER :]
    if len(tpdu) < 3 or tpdu[1] & 0xF0 != framing.DT:
        return None
    s7 = tpdu[tpdu[0] + 1 :]
    return s7 if len(s7) >= 10 and s7[0] == pdu.PROTOCOL_ID else None


def pdu_reference(frame: bytes) -> int | None:
    s7 = _s7(frame)
    return None if s7 is None else s7[4] << 8 | s7[5]


def describe(frame: bytes) -> RequestInfo | None:
    s7 = _s7(frame)
    if s7 is None:
        return None
    try:
        _, request = pdu.decode_request(s7)
    except pdu.MalformedPdu:
        return None
    return S7RequestInfo(request)


TPKT = LengthFramer("tpkt", framing.TPKT_HEADER, tpkt_length, pdu_reference, describe)

__all__ = ["TPKT", "describe", "pdu_reference", "tpkt_length"]
