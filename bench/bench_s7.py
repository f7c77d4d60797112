"""S7: our client's planned multi-tag read against python-snap7's client, on the same simulated CPU,
and our simulator's start+stop against python-snap7's server, measured in the same run.

- 200 typed tags (REAL, DINT, INT, WORD, BOOL) over 3 DBs, read per cycle by: our client's
  `read_many` (merged ranges packed into as few PDUs as the negotiated 480 bytes allow);
  python-snap7's client one `db_read` per tag; and its `read_multi_vars` in chunks of 20 (its limit).
  Round trips are counted by the simulator's traffic log, so every client is counted the same way.
- One `db_read` of a REAL, repeated: requests per second for both clients.
- Start+stop of a SimHost serving one S7 device, against python-snap7's `Server.start()/stop()`.

The simulated CPU runs in a subprocess, as a real CPU is another machine: in one process its thread
and a client's would share the GIL, and each request would pay for the other's turn.

Prints, never asserts:

    python3 bench/bench_s7.py [--cycles N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import snap7
from snap7.type import Areas

import bifrost
from simulators.host import SimHost
from simulators.scenario import Scenario, load_scenario

TYPES = [("float32", 4), ("int32", 4), ("int16", 2), ("uint16", 2), ("bool", 1)]
TAGS = 200


def scenario() -> tuple[Scenario, list[tuple[str, int, int, int]]]:
    """The plant, and each tag's (name, db, offset, size) as python-snap7 reads it."""
    lines = ["scenario: bench-s7", "tags:"]
    mapping = ["devices:", "  cpu1:", "    protocol: s7", "    listen: 127.0.0.1:0", "    map:"]
    layout = []
    offsets = {1: 0, 2: 0, 3: 0}
    for index in range(TAGS):
        dtype, size = TYPES[index % len(TYPES)]
        db = 1 + index % 3
        at = offsets[db]
        name = f"t{index}"
        lines.append(f"  {name}: {{type: {dtype}, init: {1 if dtype == 'bool' else index}}}")
        address = f"DB{db}.DBX{at}.0" if dtype == "bool" else f"DB{db}:{at}"
        mapping.append(f"      {name}: {address}")
        layout.append((name, db, at, size))
        offsets[db] = at + size + 2  # a small gap, as between the members of a real DB's struct
    return load_scenario(Path("bench-s7.yaml"), text="\n".join(lines + mapping) + "\n"), layout


def port_of(url: str) -> int:
    return int(url.split("//", 1)[1].split("?")[0].rsplit(":", 1)[1])


class Served:
    """The plant served by `bench_s7.py --serve` in a subprocess; its traffic counted on request."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        self.url = self.process.stdout.readline().strip()
        self.tags = json.loads(self.process.stdout.readline())

    def count(self, command: str) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


def serve() -> None:
    """Serve the bench plant; on each line of stdin print how many exchanges were logged, then clear."""
    plant, _layout = scenario()
    with SimHost(plant, clock="virtual") as host:
        print(host.url("cpu1"), flush=True)
        print(host.devices["cpu1"].tags.model_dump_json(), flush=True)
        log = host.devices["cpu1"].log
        for _line in sys.stdin:
            print(len(log), flush=True)
            log.clear()


def measure(cycles: int) -> None:
    _plant, layout = scenario()
    names = [name for name, *_ in layout]
    served = Served()
    try:
        url = served.url
        tags = bifrost.TagMap.model_validate(served.tags)
        peer = snap7.Client()
        peer.connect("127.0.0.1", 0, 1, port_of(url))

        def per_cycle(read: object) -> tuple[float, float]:
            served.count("clear")
            started = time.perf_counter()
            for _ in range(cycles):
                read()  # type: ignore[operator]
            elapsed = time.perf_counter() - started
            return served.count("count") / cycles, elapsed / cycles * 1000

        def one_by_one() -> None:
            for _name, db, at, size in layout:
                peer.db_read(db, at, size)

        def chunks_of_20() -> None:
            items = [{"area": Areas.DB, "db_number": db, "start": at, "size": size} for _n, db, at, size in layout]
            for start in range(0, len(items), 20):
                peer.read_multi_vars(items[start : start + 20])

        results = {
            "python-snap7 db_read per tag": per_cycle(one_by_one),
            "python-snap7 read_multi_vars, chunks of 20": per_cycle(chunks_of_20),
        }

        async def ours() -> tuple[tuple[float, float], float]:
            async with bifrost.connect(url, tags=tags) as plc:
                await plc.read_many(names)  # plans once, as a poll loop does
                served.count("clear")
                started = time.perf_counter()
                for _ in range(cycles):
                    points = await plc.read_many(names)
                elapsed = time.perf_counter() - started
                assert all(point.good for point in points.values())
                many = (served.count("count") / cycles, elapsed / cycles * 1000)
                single = 2000
                started = time.perf_counter()
                for _ in range(single):
                    await plc.read("DB1:0:REAL")
                return many, single / (time.perf_counter() - started)

        results["bifrost read_many (planned)"], our_rate = asyncio.run(ours())
        single = 2000
        started = time.perf_counter()
        for _ in range(single):
            peer.db_read(1, 0, 4)
        snap7_rate = single / (time.perf_counter() - started)
        peer.disconnect()
    finally:
        served.close()

    print(f"{TAGS} tags over 3 DBs, {cycles} cycles each, on the same simulated CPU (PDU 480):")
    for label, (trips, ms) in results.items():
        print(f"  {label:<44} {trips:6.1f} round trips/cycle  {ms:8.2f} ms/cycle")
    ours_trips, ours_ms = results["bifrost read_many (planned)"]
    chunk_trips, chunk_ms = results["python-snap7 read_multi_vars, chunks of 20"]
    print(
        f"  -> {chunk_trips / ours_trips:.1f}x fewer round trips and {chunk_ms / ours_ms:.1f}x faster than chunks of 20"
    )
    print(
        f"single db_read of a REAL: bifrost {our_rate:,.0f}/s, python-snap7 {snap7_rate:,.0f}/s"
        f" ({our_rate / snap7_rate:.2f}x)"
    )


def start_stop(rounds: int = 20) -> None:
    plant = load_scenario(
        Path("one.yaml"),
        text="scenario: one\ntags: {x: {type: float32}}\ndevices:\n"
        "  cpu1: {protocol: s7, listen: '127.0.0.1:0', map: {x: DB1.DBD0}}\n",
    )
    # Each side is started, proven to listen (one client connects), and stopped, as a test does.
    ours = []
    for _ in range(rounds):
        started = time.perf_counter()
        host = SimHost(plant, clock="virtual").start()
        socket.create_connection(("127.0.0.1", port_of(host.url("cpu1")))).close()
        host.stop()
        ours.append(time.perf_counter() - started)
    theirs = []
    for _ in range(max(3, rounds // 4)):  # each of its stops waits out its accept loop's 0.1 s poll
        server = snap7.Server(log=False)
        started = time.perf_counter()
        server.start(tcp_port=0)
        socket.create_connection(("127.0.0.1", server.server_socket.getsockname()[1])).close()
        server.stop()
        theirs.append(time.perf_counter() - started)
    mine, peer = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
    print(
        f"start+stop: SimHost with one S7 device {mine:.1f} ms, python-snap7 Server {peer:.1f} ms ({peer / mine:.1f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()  # nox passes its posargs to every bench script
    logging.getLogger("snap7").setLevel(logging.CRITICAL)
    if args.serve:
        serve()
        return
    measure(args.cycles)
    start_stop()


if __name__ == "__main__":
    main()
