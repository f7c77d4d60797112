"""Helpers for the record-and-replay tests: the captures in tests/data/, and small captures built here."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture
def data() -> Path:
    return DATA


def tcp_packet(src: tuple[str, int], dst: tuple[str, int], seq: int, payload: bytes, flags: int = 0x18) -> bytes:
    """An Ethernet/IPv4/TCP frame (checksums left zero: readers of captures do not check them)."""
    tcp = struct.pack(">HHIIBBHHH", src[1], dst[1], seq, 0, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack(
        ">BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(tcp),
        0,
        0x4000,
        64,
        6,
        0,
        bytes(int(x) for x in src[0].split(".")),
        bytes(int(x) for x in dst[0].split(".")),
    )
    return b"\x00" * 12 + b"\x08\x00" + ip + tcp


def write_pcap(path: Path, packets: Iterable[tuple[float, bytes]], *, nanoseconds: bool = False) -> Path:
    """A pcap file (Ethernet link type) of (time, frame) packets."""
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = [struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 65535, 1)]
    for when, frame in packets:
        seconds = int(when)
        fraction = round((when - seconds) * (1e9 if nanoseconds else 1e6))
        out.append(struct.pack("<IIII", seconds, fraction, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


class Conversation:
    """One TCP connection's packets, with sequence numbers kept: `send(side, bytes)`."""

    def __init__(self, client: tuple[str, int], server: tuple[str, int], start: float = 1000.0) -> None:
        self.ends = {"client": client, "server": server}
        self.seq = {"client": 100, "server": 5000}
        self.time = start
        self.packets: list[tuple[float, bytes]] = [
            (start, tcp_packet(client, server, 99, b"", flags=0x02)),
            (start, tcp_packet(server, client, 4999, b"", flags=0x12)),
        ]

    def send(self, side: str, payload: bytes, *, at: float | None = None) -> None:
        self.time = self.time + 0.001 if at is None else at
        other = "server" if side == "client" else "client"
        self.packets.append((self.time, tcp_packet(self.ends[side], self.ends[other], self.seq[side], payload)))
        self.seq[side] += len(payload)
