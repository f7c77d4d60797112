"""A reader of pcap and pcapng capture files: packets out, with their time and link type. No decoding.

Our own, because it is small and fast (the whole file is read once and indexed with `struct`: a packet
is its time, link type and offsets, well under a microsecond each, and its bytes are never copied
whole) and because scapy, the library of the field, reads ~1.5k packets/s and would
be a heavy dependency of the importer. It reads:

- pcap (libpcap): both byte orders, microsecond (0xA1B2C3D4) and nanosecond (0xA1B23C4D) stamps;
- pcapng: section header blocks in either byte order (a file may hold several sections), interface
  description blocks with their link type and `if_tsresol`, enhanced and simple packet blocks, and
  the obsolete packet block. Other blocks (name resolution, statistics, custom) are skipped.

Errors name the file and the byte offset at fault (`CaptureError`). A file cut short in its last
packet (a capture killed while writing) gives the packets before it and a `truncated` note.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bifrost.errors import BifrostError

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER = 0x1A2B3C4D
_IDB, _OPB, _SPB, _EPB = 1, 2, 3, 6


class CaptureError(BifrostError, ValueError):
    """A capture file that cannot be read; the message names the file and the offset."""


@dataclass
class Capture:
    """The packets of one file. `records` are (time in seconds since the epoch, link type, start, end)
    each, the packet being `data[start:end]`: nothing is copied per packet until a reader asks."""

    path: str
    format: str  # "pcap" or "pcapng"
    data: bytes = b""
    records: list[tuple[float, int, int, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def packets(self) -> list[tuple[float, int, bytes]]:
        """(time, link type, bytes) of each packet, copied out of the file."""
        data = self.data
        return [(when, linktype, data[start:end]) for when, linktype, start, end in self.records]


def read_capture(path: str | Path) -> Capture:
    """Every packet of a pcap or pcapng file (the format is told by its first four bytes)."""
    data = Path(path).read_bytes()
    name = str(path)
    if len(data) < 4:
        raise CaptureError(f"{name}: {len(data)} bytes is no capture file (pcap or pcapng)")
    if struct.unpack_from("<I", data)[0] == PCAPNG_SHB:
        return _read_pcapng(name, data)
    magic_le = struct.unpack_from("<I", data)[0]
    magic_be = struct.unpack_from(">I", data)[0]
    if PCAP_MAGIC_US in (magic_le, magic_be) or PCAP_MAGIC_NS in (magic_le, magic_be):
        return _read_pcap(name, data)
    raise CaptureError(f"{name}: offset 0: magic 0x{magic_be:08X} is neither pcap nor pcapng")


def iter_packets(path: str | Path) -> Iterator[tuple[float, int, bytes]]:
    capture = read_capture(path)
    data = capture.data
    for when, linktype, start, end in capture.records:
        yield when, linktype, data[start:end]


def _read_pcap(name: str, data: bytes) -> Capture:
    if len(data) < 24:
        raise CaptureError(f"{name}: offset 0: a pcap header is 24 bytes, the file has {len(data)}")
    order = "<" if struct.unpack_from("<I", data)[0] in (PCAP_MAGIC_US, PCAP_MAGIC_NS) else ">"
    magic, _major, _minor, _zone, _sigfigs, _snaplen, linktype = struct.unpack_from(order + "IHHiIII", data)
    # The top bits of the link-type field carry FCS flags in newer files; the type is the low 16 bits.
    linktype &= 0xFFFF
    scale = 1e-9 if magic == PCAP_MAGIC_NS else 1e-6
    capture = Capture(name, "pcap", data)
    append = capture.records.append
    unpack = struct.Struct(order + "III").unpack_from
    offset, size = 24, len(data)
    while offset + 16 <= size:
        seconds, fraction, included = unpack(data, offset)
        start = offset + 16
        end = start + included
        if end > size:
            capture.notes.append(f"{name}: offset {offset}: the last packet is cut short (truncated capture)")
            return capture
        append((seconds + fraction * scale, linktype, start, end))
        offset = end
    if offset != size:
        capture.notes.append(f"{name}: offset {offset}: {size - offset} bytes after the last packet (truncated)")
    return capture


def _read_pcapng(name: str, data: bytes) -> Capture:
    capture = Capture(name, "pcapng", data)
    packets = capture.records
    size = len(data)
    offset = 0
    order = "<"
    interfaces: list[tuple[int, float]] = []  # (link type, seconds per timestamp unit)
    while offset + 12 <= size:
        block_type = struct.unpack_from(order + "I", data, offset)[0]
        if block_type == PCAPNG_SHB:
            # The byte-order magic says how to read this section, its own length included.
            magic = struct.unpack_from("<I", data, offset + 8)[0]
            if magic == PCAPNG_BYTE_ORDER:
                order = "<"
            elif struct.unpack_from(">I", data, offset + 8)[0] == PCAPNG_BYTE_ORDER:
                order = ">"
            else:
                raise CaptureError(f"{name}: offset {offset}: section header without the byte-order magic")
            interfaces = []
        length = struct.unpack_from(order + "I", data, offset + 4)[0]
        if length < 12 or length % 4:
            raise CaptureError(f"{name}: offset {offset}: block length {length} (at least 12, a multiple of 4)")
        if offset + length > size:
            capture.notes.append(f"{name}: offset {offset}: the last block is cut short (truncated capture)")
            break
        body = offset + 8
        if block_type == _IDB:
            linktype = struct.unpack_from(order + "H", data, body)[0]
            interfaces.append((linktype, _tsresol(data, order, body + 8, offset + length - 4)))
        elif block_type in (_EPB, _OPB):
            if block_type == _EPB:
                interface, high, low, included, _original = struct.unpack_from(order + "IIIII", data, body)
                start = body + 20
            else:
                interface, _drops, high, low, included, _original = struct.unpack_from(order + "HHIIII", data, body)
                start = body + 20
            if interface >= len(interfaces):
                raise CaptureError(f"{name}: offset {offset}: packet of interface {interface}, which is not described")
            linktype, unit = interfaces[interface]
            if start + included > offset + length - 4:
                raise CaptureError(f"{name}: offset {offset}: captured length {included} runs past its block")
            packets.append((((high << 32) | low) * unit, linktype, start, start + included))
        elif block_type == _SPB:
            if not interfaces:
                raise CaptureError(f"{name}: offset {offset}: simple packet block before any interface")
            original = struct.unpack_from(order + "I", data, body)[0]
            included = min(original, length - 16)
            # A simple packet block has no time: it takes the previous packet's.
            when = packets[-1][0] if packets else 0.0
            packets.append((when, interfaces[0][0], body + 4, body + 4 + included))
        offset += length
    else:
        if offset != size:
            capture.notes.append(f"{name}: offset {offset}: {size - offset} bytes after the last block (truncated)")
    return capture


def _tsresol(data: bytes, order: str, offset: int, end: int) -> float:
    """Seconds per timestamp unit from an interface's options (microseconds unless if_tsresol says)."""
    while offset + 4 <= end:
        code, length = struct.unpack_from(order + "HH", data, offset)
        if code == 0:
            break
        if code == 9 and length >= 1:
            value = data[offset + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0**-value
        offset += 4 + (length + 3) // 4 * 4
    return 1e-6


__all__ = ["Capture", "CaptureError", "iter_packets", "read_capture"]
