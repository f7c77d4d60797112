"""OPC UA server side by side with asyncua's, in one run:

    python3 bench/bench_opcua.py [--repeat 10] [--seconds 3] [--variables 100]

- start + stop: our simulator's server (C open62541 through bifrost._native) against asyncua's
  Server, each with `--variables` variables, both started and stopped on the same loop;
- reads of 100 values per Read call, by asyncua's client, against our server and against asyncua's
  server (the client's own cost is in both; the ratio is the servers').

The servers run on a thread of their own (asyncua's on its own loop there), the client on the main
loop: a client and a server on one loop is what asyncua #1603 warns against. A benchmark prints; it
never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Awaitable
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


async def reads_per_second(url: str, ns_uri: str, count: int, seconds: float) -> float:
    from asyncua import Client, ua

    async with Client(url) as client:
        idx = await client.get_namespace_index(ns_uri)
        nodes = [client.get_node(f"ns={idx};s=v{i}") for i in range(count)]
        params = ua.ReadParameters()
        params.NodesToRead = [ua.ReadValueId(NodeId=n.nodeid, AttributeId=ua.AttributeIds.Value) for n in nodes]
        await client.uaclient.read(params)  # warm-up
        done, deadline = 0, time.perf_counter() + seconds
        t0 = time.perf_counter()
        while time.perf_counter() < deadline:
            await client.uaclient.read(params)
            done += 1
        return done / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--variables", type=int, default=100)
    args = parser.parse_args()
    bg = Background()
    try:
        ours, theirs = time_start_stop(args.repeat, args.variables, bg)
        print(
            f"start+stop, {args.variables} variables: ours {ours * 1e3:.1f} ms, asyncua {theirs * 1e3:.0f} ms"
            f"  -> {theirs / ours:.0f}x faster"
        )
        server = ours_start(args.variables)
        try:
            ours_rate = asyncio.run(reads_per_second(server.url, NS, args.variables, args.seconds))
        finally:
            server.stop()
        peer = bg.run(asyncua_start(args.variables))
        try:
            url = f"opc.tcp://127.0.0.1:{asyncua_port(peer)}/"
            theirs_rate = asyncio.run(reads_per_second(url, NS, args.variables, args.seconds))
        finally:
            bg.run(peer.stop())
        print(
            f"asyncua client, Read of {args.variables} values: against ours {ours_rate:.0f}/s, "
            f"against asyncua's server {theirs_rate:.0f}/s  -> {ours_rate / theirs_rate:.2f}x"
        )
    finally:
        bg.close()


if __name__ == "__main__":
    main()
