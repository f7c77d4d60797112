"""OPC UA server side by side with asyncua's, in one run:

    python3 bench/bench_opcua.py [--repeat 10] [--seconds 3] [--rounds 5] [--variables 100] [--sub-variables 1000]

- start + stop: our simulator's server (C open62541 through bifrost._native) against asyncua's
  Server, each with `--variables` variables, both started and stopped on the same loop;
- reads of 100 values per Read call: our client (`bifrost.connect(...).read_many`, native engine,
  DataPoints with quality and source timestamps) against our server; asyncua's client
  (`uaclient.read`, DataValues) against our server and against asyncua's server. The ratio
  ours/asyncua is the clients', against the same (our) server, one read in flight at a time (the
  headline), over `--rounds` rounds that alternate the clients: the median of the rounds' ratios,
  with their range; a second row has `--in-flight` reads in flight at once (asyncio.gather), the same
  number for both clients;
- subscription notifications per second: our server's 1000 variables change as fast as a plant
  thread pushes them; our client and asyncua's client, one after the other, each subscribe to all
  of them (publishing and sampling every 10 ms, queue 1) and count the values delivered.

The servers run on a thread of their own (asyncua's on its own loop there), the client on the main
loop: a client and a server on one loop is what asyncua #1603 warns against. Our server's thread is
C (open62541) and never takes the GIL, so it competes with either client only for CPU, as a server
process on the same machine would; both clients meet it alike, one after the other in one run. A
benchmark prints; it never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

NS = "urn:bifrost:bench"


def _variables(count: int) -> list[tuple[str, list[str], str, bool, str | None, float]]:
    return [(f"nsu={NS};s=v{i}", [f"v{i}"], "Double", False, None, float(i)) for i in range(count)]


def ours_start(count: int) -> Any:
    from bifrost._native import OpcuaServer

    return OpcuaServer(
        host="127.0.0.1",
        port=0,
        path="",
        device="bench",
        variables=_variables(count),
        namespaces=[NS],
        application_uri="urn:bifrost:bench-server",
    )


async def asyncua_start(count: int) -> Any:
    from asyncua import Server

    server = Server()
    await server.init()
    server.set_endpoint("opc.tcp://127.0.0.1:0/")
    idx = await server.register_namespace(NS)
    folder = await server.nodes.objects.add_folder(idx, "bench")
    for i in range(count):
        await folder.add_variable(f"ns={idx};s=v{i}", f"v{i}", float(i))
    await server.start()
    return server


def asyncua_port(server: Any) -> int:
    sockets = server.bserver._server.sockets
    return int(sockets[0].getsockname()[1])


class Background:
    """A loop on its own thread, for asyncua's server."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


def time_start_stop(repeat: int, count: int, bg: Background) -> tuple[float, float]:
    ours, theirs = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        server = ours_start(count)
        server.stop()
        ours.append(time.perf_counter() - t0)
    for _ in range(max(1, repeat // 3)):  # asyncua's takes seconds a round
        t0 = time.perf_counter()
        server = bg.run(asyncua_start(count))
        bg.run(server.stop())
        theirs.append(time.perf_counter() - t0)
    return statistics.median(ours), statistics.median(theirs)


async def _rate(read: Callable[[], Awaitable[Any]], seconds: float, in_flight: int) -> float:
    """Reads per second: `in_flight` at a time (1: one after another), each round awaited whole."""
    await read()  # warm-up
    done, deadline = 0, time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < deadline:
        if in_flight == 1:
            await read()
        else:
            await asyncio.gather(*(read() for _ in range(in_flight)))
        done += in_flight
    return done / (time.perf_counter() - t0)


async def reads_per_second(url: str, ns_uri: str, count: int, seconds: float, in_flight: int = 1) -> float:
    from asyncua import Client, ua

    async with Client(url) as client:
        idx = await client.get_namespace_index(ns_uri)
        nodes = [client.get_node(f"ns={idx};s=v{i}") for i in range(count)]
        params = ua.ReadParameters()
        params.NodesToRead = [ua.ReadValueId(NodeId=n.nodeid, AttributeId=ua.AttributeIds.Value) for n in nodes]
        return await _rate(lambda: client.uaclient.read(params), seconds, in_flight)


async def ours_reads_per_second(
    url: str, ns_uri: str, count: int, seconds: float, engine: str, in_flight: int = 1
) -> float:
    import bifrost

    names = [f"nsu={ns_uri};s=v{i}" for i in range(count)]
    async with bifrost.connect(url, engine=engine) as plc:
        # The warm-up looks the namespace and the operation limits up, and plans the read, once.
        return await _rate(lambda: plc.read_many(names), seconds, in_flight)


class Plant:
    """Changes every variable of our server as fast as it can push (a thread, as the simulator's
    plant pushes from its own clock)."""

    def __init__(self, server: Any, count: int) -> None:
        self.server = server
        self.count = count
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        step = 0
        while not self.stop.is_set():
            step += 1
            now = time.time()
            self.server.set_values([(i, float(step * 1000 + i), 0, now) for i in range(self.count)])
            time.sleep(0.001)

    def __enter__(self) -> Plant:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


async def ours_notifications_per_second(url: str, ns_uri: str, count: int, seconds: float) -> float:
    import bifrost

    names = [f"nsu={ns_uri};s=v{i}" for i in range(count)]
    async with bifrost.connect(url, engine="native") as plc:
        stream = plc.subscribe(names, interval=0.01)
        try:
            await stream.__anext__()  # the initial values
            received, deadline = 0, time.perf_counter() + seconds
            t0 = time.perf_counter()
            while time.perf_counter() < deadline:
                received += len(await stream.__anext__())
            return received / (time.perf_counter() - t0)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]


async def asyncua_notifications_per_second(url: str, ns_uri: str, count: int, seconds: float) -> float:
    from asyncua import Client

    class Counter:
        received = 0

        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            self.received += 1

    counter = Counter()
    async with Client(url) as client:
        idx = await client.get_namespace_index(ns_uri)
        sub = await client.create_subscription(10, counter)
        await sub.subscribe_data_change([client.get_node(f"ns={idx};s=v{i}") for i in range(count)], queuesize=1)
        await asyncio.sleep(0.5)  # the initial values
        start, t0 = counter.received, time.perf_counter()
        await asyncio.sleep(seconds)
        rate = (counter.received - start) / (time.perf_counter() - t0)
        await sub.delete()
        return rate


def _ratios(rounds: list[tuple[float, float]]) -> str:
    """The median of the rounds' ours/asyncua ratios, and their range."""
    ratios = sorted(ours / theirs for ours, theirs in rounds)
    return f"{statistics.median(ratios):.1f}x (rounds {ratios[0]:.1f}x to {ratios[-1]:.1f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--variables", type=int, default=100)
    parser.add_argument("--sub-variables", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=8, help="concurrent reads of the second reads row")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of each reads row")
    args = parser.parse_args()
    bg = Background()
    try:
        ours, theirs = time_start_stop(args.repeat, args.variables, bg)
        print(
            f"start+stop, {args.variables} variables: ours {ours * 1e3:.1f} ms, asyncua {theirs * 1e3:.0f} ms"
            f"  -> {theirs / ours:.0f}x faster"
        )
        server = ours_start(args.variables)
        n, flight = args.variables, args.in_flight
        # Rounds alternate the two clients, so a slow spell of the machine hits both; the ratio is the
        # median of the rounds' ratios, with their range.
        sequential: list[tuple[float, float]] = []
        concurrent: list[tuple[float, float]] = []
        try:
            for _ in range(args.rounds):
                native = asyncio.run(ours_reads_per_second(server.url, NS, n, args.seconds, "native"))
                sequential.append((native, asyncio.run(reads_per_second(server.url, NS, n, args.seconds))))
            for _ in range(args.rounds):
                native = asyncio.run(ours_reads_per_second(server.url, NS, n, args.seconds, "native", flight))
                concurrent.append((native, asyncio.run(reads_per_second(server.url, NS, n, args.seconds, flight))))
        finally:
            server.stop()
        # Our server publishes at most every 100 ms (its minimum interval): enough variables that the
        # clients, not the server, are what is measured.
        subs = args.sub_variables
        server = ours_start(subs)
        try:
            with Plant(server, subs):
                ours_subs = asyncio.run(ours_notifications_per_second(server.url, NS, subs, args.seconds))
                theirs_subs = asyncio.run(asyncua_notifications_per_second(server.url, NS, subs, args.seconds))
        finally:
            server.stop()
        peer = bg.run(asyncua_start(args.variables))
        try:
            url = f"opc.tcp://127.0.0.1:{asyncua_port(peer)}/"
            theirs_rate = asyncio.run(reads_per_second(url, NS, args.variables, args.seconds))
        finally:
            bg.run(peer.stop())
        native, ours_rate = (statistics.median(column) for column in zip(*sequential, strict=True))
        print(f"reads of {n} values per second, one Read call each, one after another ({args.rounds} rounds, medians):")
        print(f"  our client (native) -> our server      {native:8.0f} /s")
        print(f"  asyncua client      -> our server      {ours_rate:8.0f} /s")
        print(f"  asyncua client      -> asyncua server  {theirs_rate:8.0f} /s")
        print(f"  ours / asyncua client, same server: {_ratios(sequential)} (target >= 10x)")
        print(f"  our server / asyncua's, asyncua client: {ours_rate / theirs_rate:.2f}x")
        native_n, ours_rate_n = (statistics.median(column) for column in zip(*concurrent, strict=True))
        print(f"reads of {n} values per second, {flight} in flight (asyncio.gather), our server, medians:")
        print(f"  our client (native) {native_n:8.0f} /s")
        print(f"  asyncua client      {ours_rate_n:8.0f} /s")
        print(f"  ours / asyncua client: {_ratios(concurrent)}")
        print(f"subscription notifications per second, {subs} variables changing, our server:")
        print(f"  our client (native) {ours_subs:8.0f} /s")
        print(f"  asyncua client      {theirs_subs:8.0f} /s")
        print(f"  ours / asyncua client: {ours_subs / theirs_subs:.1f}x")
    finally:
        bg.close()


if __name__ == "__main__":
    main()
