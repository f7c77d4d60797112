"""Records the golden S7 captures in this folder: python-snap7's client talking to python-snap7's server.

Run by hand (needs root for tcpdump and python-snap7 installed); the tests read only the .pcap files:

    python tests/data/s7/capture.py                   # all of them
    python tests/data/s7/capture.py replay_session    # one

Each exchange is one small pcap on loopback, so a test can pair requests with replies in order.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import snap7
from snap7.type import Areas, SrvArea, WordLen

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def capturing(name: str, port: int) -> Iterator[None]:
    path = HERE / f"{name}.pcap"
    dump = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-s", "0", "-w", str(path), f"tcp port {port}"],
        stderr=subprocess.PIPE,
    )
    assert dump.stderr is not None
    dump.stderr.readline()  # "listening on lo ..."
    time.sleep(0.5)  # tcpdump says it listens a little before it captures
    try:
        yield
    finally:
        time.sleep(0.3)  # let the last segments reach the capture before it stops
        dump.send_signal(signal.SIGINT)
        dump.wait()


def session(name: str, body: Callable[[snap7.Client], None]) -> None:
    server = snap7.Server(log=False)
    db1 = bytearray(range(32))
    db2 = bytearray(8)
    mk = bytearray(16)
    mk[2] = 0xA5
    server.register_area(SrvArea.DB, 1, db1)
    server.register_area(SrvArea.DB, 2, db2)
    server.register_area(SrvArea.MK, 0, mk)
    port = free_port()
    server.start(tcp_port=port)
    try:
        with capturing(name, port):
            client = snap7.Client()
            client.connect("127.0.0.1", 0, 1, port)
            try:
                body(client)
            finally:
                client.disconnect()
    finally:
        server.stop()


def attempt(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception as exc:  # the error replies are what we record
        print("  (error reply)", exc, file=sys.stderr)


def replay_session(c: snap7.Client) -> None:
    """What tests/simulators/recording/test_s7.py imports and replays: reads, a write, a read again."""
    c.db_read(1, 0, 8)
    c.read_area(Areas.MK, 0, 0, 4)
    c.db_write(1, 4, bytearray(b"\xbe\xef"))
    c.db_read(1, 0, 8)
    c.write_area(Areas.DB, 2, 8 * 1 + 3, bytearray(b"\x01"), WordLen.Bit)
    c.read_area(Areas.DB, 2, 0, 2)


def main(only: list[str]) -> None:
    if only:  # `python tests/data/s7/capture.py replay_session`: make only that one again
        for name in only:
            session(name, globals()[name])
        return
    session("setup_communication", lambda c: None)
    session("db_read", lambda c: c.db_read(1, 2, 6))
    session("db_write", lambda c: c.db_write(1, 4, bytearray(b"\x12\x34\x56")))
    session("write_bit", lambda c: c.write_area(Areas.DB, 2, 8 * 1 + 3, bytearray(b"\x01"), WordLen.Bit))

    def multi(c: snap7.Client) -> None:
        c.use_optimizer = True  # its optimizer sends one request with several items
        c.read_multi_vars(
            [
                {"area": Areas.DB, "db_number": 1, "start": 0, "size": 3},
                {"area": Areas.MK, "db_number": 0, "start": 2, "size": 2},
                {"area": Areas.DB, "db_number": 2, "start": 4, "size": 4},
            ]
        )

    session("read_multi_vars", multi)
    session("read_szl", lambda c: (c.read_szl(0x0011, 0), c.read_szl(0x001C, 0)))
    session("plc_stop_start", lambda c: (c.plc_stop(), c.plc_hot_start(), c.plc_cold_start()))

    def errors(c: snap7.Client) -> None:
        attempt(lambda: c.db_read(9, 0, 4))  # unregistered DB
        attempt(lambda: c.db_read(1, 30, 8))  # past the end of DB1
        attempt(lambda: c.db_write(1, 30, bytearray(4)))  # write past the end
        attempt(lambda: c.read_szl(0x0424, 0))  # an SZL it does not answer

    session("errors", errors)


if __name__ == "__main__":
    main(sys.argv[1:])
