"""A service message's request or response header read and patched by its binary encoding (OPC UA
Part 6, 5.2), without decoding the service: what a replay does for every request it answers, where
asyncua's codec would take far longer than the answer itself. No I/O.

`request_key` is a request less what changes from run to run in its header (the session's token, the
time, the handle, the audit id, the timeout hint): two requests with equal keys are equal as
`OpcuaCodec.match_key` sees them too (which decodes, blanks and encodes again), so it is a fast first
look, and a key found nowhere is looked up again through the codec. `answered` gives a recorded
response the handle and time of the request it now answers.
"""

from __future__ import annotations

import struct
import time

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_UNIX_EPOCH = 11_644_473_600  # seconds from OPC UA's DateTime zero (1601) to the Unix epoch


def _node_id_end(body: bytes, at: int) -> int:
    """Where the binary NodeId at `at` ends (ValueError: none there)."""
    encoding = body[at] & 0x3F
    if encoding == 0:
        return at + 2  # two-byte
    if encoding == 1:
        return at + 4  # four-byte
    if encoding == 2:
        return at + 7  # numeric
    if encoding == 4:
        return at + 19  # GUID
    if encoding in (3, 5):  # string, ByteString: namespace, then Int32 length and bytes
        (length,) = _I32.unpack_from(body, at + 3)
        return at + 7 + max(0, int(length))
    raise ValueError(f"NodeId encoding {encoding}")


def request_key(body: bytes) -> tuple[bytes, int] | None:
    """(the request without its volatile header fields, its RequestHandle), or None when the header
    cannot be read so."""
    try:
        typed = at = _node_id_end(body, 0)  # the type id
        at = _node_id_end(body, at)  # AuthenticationToken
        (handle,) = _U32.unpack_from(body, at + 8)  # after the Timestamp
        diagnostics = body[at + 12 : at + 16]  # ReturnDiagnostics
        (audit,) = _I32.unpack_from(body, at + 16)  # AuditEntryId, a String
        at += 20 + max(0, audit) + 4  # and the TimeoutHint
        kept = at  # AdditionalHeader (an ExtensionObject) and the service's parameters
        if _node_id_end(body, at) > len(body):
            return None
    except (IndexError, ValueError, struct.error):
        return None
    return body[:typed] + diagnostics + body[kept:], handle


def answered(response: bytes, handle: int) -> bytes | None:
    """`response` with `handle` for its RequestHandle and now for its Timestamp (None: not a response
    header)."""
    try:
        at = _node_id_end(response, 0)  # the type id; then Timestamp, RequestHandle
    except (IndexError, ValueError, struct.error):
        return None
    if len(response) < at + 12:
        return None
    now = int((time.time() + _UNIX_EPOCH) * 10_000_000)
    return response[:at] + _I64.pack(now) + _U32.pack(handle & 0xFFFFFFFF) + response[at + 12 :]


__all__ = ["answered", "request_key"]
