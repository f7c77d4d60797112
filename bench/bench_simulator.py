"""The Modbus simulator's server CPU per request, against pymodbus's server, measured in the same run.

Each server runs in a subprocess of its own and reports its process CPU time (user + system, from
resource.getrusage) before and after the same lean raw-socket client sends it the same requests, so
the figure is what one request costs the server, kernel work on its socket included. Both servers and
the client are pinned to one CPU where the OS allows it: on a shared core the figures are steady from
run to run, where across cores wake-ups between them add noise. One request is on the wire at a time
(pymodbus's server answers only the first of pipelined requests). Three rounds, the median shown.

Then the hour-of-plant-time figure (bench/bench_plant.py). Prints, never asserts:

    python3 bench/bench_simulator.py [--requests N] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------- the servers


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _report_cpu_until_eof() -> None:
    """Answer each line on stdin with this process's CPU seconds; return at end of input."""
    for _ in sys.stdin:
        print(f"{_cpu():.6f}", flush=True)


def serve_simulator() -> None:
    from simulators import SimHost

    with SimHost("water_tank", any_port=True) as host:
        print(host.devices["plc1"].url.split(":")[2].split("?")[0], flush=True)
        _report_cpu_until_eof()


def serve_pymodbus() -> None:
    import asyncio
    import logging
    import threading
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
    from pymodbus.server import ModbusTcpServer

    # The same layout as the water tank's plc1: hr:0-6, ir:0, coil:0, di:0 (blocks count from 1).
    device = ModbusDeviceContext(
        co=ModbusSequentialDataBlock(1, [False]),
        di=ModbusSequentialDataBlock(1, [False]),
        ir=ModbusSequentialDataBlock(1, [200]),
        hr=ModbusSequentialDataBlock(1, [16928, 0, 0, 0, 16384, 0, 50]),
    )
    context = ModbusServerContext(devices=device, single=True)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def start() -> int:
        server = ModbusTcpServer(context, address=("127.0.0.1", 0))
        await server.serve_forever(background=True)
        return int(server.transport.sockets[0].getsockname()[1])

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    print(port, flush=True)
    _report_cpu_until_eof()


# ------------------------------------------------------------------------------------------ the client


class Server:
    def __init__(self, kind: str, cpu: int | None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def cpu(self) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("cpu\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


def _mbap(transaction_id: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", transaction_id & 0xFFFF, 0, len(pdu) + 1, 1) + pdu


def _receive(sock: socket.socket) -> None:
    """Read one whole MBAP frame; an exception answer is a mistake in the workload."""
    buffer = b""
    while len(buffer) < 6 or len(buffer) < 6 + struct.unpack_from(">H", buffer, 4)[0]:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    if buffer[7] & 0x80:
        raise RuntimeError(f"the server answered exception {buffer[8]}: {buffer.hex()}")


# One request on the wire at a time: pymodbus's server answers only the first of pipelined requests.
WORKLOADS: dict[str, bytes] = {
    "read hr:0-1 (tank.level, float32)": struct.pack(">BHH", 3, 0, 2),
    "read ir:0 (temp, int16 scaled 0.1)": struct.pack(">BHH", 4, 0, 1),
    "write coil:0 (pump.run)": struct.pack(">BHH", 5, 0, 0xFF00),
}


def measure(server: Server, pdu: bytes, requests: int) -> float:
    """Server CPU microseconds per request."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frames = [_mbap(transaction_id, pdu) for transaction_id in range(65536)]
        for frame in frames[:500]:  # warm up
            sock.sendall(frame)
            _receive(sock)
        before = server.cpu()
        for index in range(requests):
            sock.sendall(frames[index & 0xFFFF])
            _receive(sock)
        after = server.cpu()
    return (after - before) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server and workload; the median is shown")
    parser.add_argument("--serve", choices=["simulator", "pymodbus"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        {"simulator": serve_simulator, "pymodbus": serve_pymodbus}[args.serve]()
        return
    cpu: int | None = None
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
    print(f"server CPU per request (us), median of {args.rounds} rounds of {args.requests} requests", end="")
    print(f", client and servers on CPU {cpu}" if cpu is not None else "")
    print(f"{'workload':<40}{'simulator':>11}{'pymodbus':>10}{'ratio':>8}")
    ratios = []
    for name, pdu in WORKLOADS.items():
        figures: dict[str, list[float]] = {"simulator": [], "pymodbus": []}
        for _ in range(args.rounds):
            for kind in figures:  # interleaved, so drift in the machine's speed hits both alike
                server = Server(kind, cpu)
                try:
                    figures[kind].append(measure(server, pdu, args.requests))
                finally:
                    server.close()
        ours, theirs = (statistics.median(figures[kind]) for kind in ("simulator", "pymodbus"))
        ratios.append(ours / theirs)
        print(f"{name:<40}{ours:>11.1f}{theirs:>10.1f}{ours / theirs:>8.2f}")
    print(f"worst ratio {max(ratios):.2f} (target: 0.50 or less)")
    print()
    print("an hour of plant time on a VirtualClock (bench/bench_plant.py):")
    _hour_of_plant_time()


def _hour_of_plant_time() -> None:
    sys.path.insert(0, str(HERE))
    import bench_plant

    main_plant: Callable[[], None] = bench_plant.main
    argv, sys.argv = sys.argv, [str(HERE / "bench_plant.py"), "--repeat", "1"]
    try:
        started = time.perf_counter()
        main_plant()
        print(f"({time.perf_counter() - started:.1f} s)")
    finally:
        sys.argv = argv


if __name__ == "__main__":
    main()
