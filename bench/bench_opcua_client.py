"""OPC UA clients side by side, against the same asyncua server in one run. Prints; never asserts.

    python3 bench/bench_opcua_client.py [--quick]

The server (asyncua's, 100 Double variables) runs in its own process, so its CPU is not the
clients'. Each client reads the 100 values in one Read call, as fast as the server answers, in
interleaved rounds: our client's `read_many` (DataPoints with quality and source timestamps) on
every engine built here, against asyncua's client reading the same 100 nodes in one Read
(`uaclient.read`, DataValues back). The ratio is reads per second, ours over asyncua's.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

VARIABLES = 100


def serve() -> None:
    """Serve 100 variables on 127.0.0.1, port 0; print the port; stop at EOF on stdin."""
    import logging

    import asyncua

    logging.getLogger("asyncua").setLevel(logging.ERROR)

    async def main() -> None:
        server = asyncua.Server()
        await server.init()
        server.set_endpoint("opc.tcp://127.0.0.1:0/bench")
        index = await server.register_namespace("urn:bifrost:bench")
        folder = await server.nodes.objects.add_folder(index, "bench")
        for i in range(VARIABLES):
            await folder.add_variable(asyncua.ua.NodeId(f"v{i}", index), f"v{i}", float(i))
        await server.start()
        print(server.bserver.port, index, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop()

    asyncio.run(main())


async def rate(call: Callable[[], Awaitable[Any]], seconds: float) -> float:
    await call()  # warm: plans, caches, namespace look-ups
    count = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        await call()
        count += 1
    return count / elapsed


async def bench(port: int, index: int, seconds: float, rounds: int) -> None:
    import logging

    import asyncua

    import bifrost
    from bifrost.opcua.client import native_available

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    url = f"opc.tcp://127.0.0.1:{port}/bench"
    nodes = [f"ns={index};s=v{i}" for i in range(VARIABLES)]
    engines = ["asyncua"] + (["native"] if native_available() else [])
    ours = {name: await bifrost.connect(url, engine=name) for name in engines}
    peer = asyncua.Client(url)
    await peer.connect()
    ua = asyncua.ua
    params = ua.ReadParameters()
    params.NodesToRead = [
        ua.ReadValueId(NodeId=ua.NodeId(f"v{i}", index, ua.NodeIdType.String), AttributeId=ua.AttributeIds.Value)
        for i in range(VARIABLES)
    ]
    params.TimestampsToReturn = ua.TimestampsToReturn.Both
    rows: dict[str, list[float]] = {f"bifrost ({name})": [] for name in engines}
    rows["asyncua client"] = []
    names = tuple(nodes)
    try:
        for _ in range(rounds):
            for name, connection in ours.items():
                rows[f"bifrost ({name})"].append(
                    await rate(lambda connection=connection: connection.read_many(names), seconds)  # type: ignore[misc]
                )
            rows["asyncua client"].append(await rate(lambda: peer.uaclient.read(params), seconds))
    finally:
        for connection in ours.values():
            await connection.close()
        await peer.disconnect()
    best = {name: max(values) for name, values in rows.items()}
    print(f"reads of {VARIABLES} values per second, one Read call each, against asyncua's server (best of {rounds})")
    for name, value in best.items():
        print(f"  {name:<20} {value:8.0f} /s")
    for name in engines:
        ratio = best[f"bifrost ({name})"] / best["asyncua client"]
        print(f"  ratio bifrost ({name}) / asyncua client: {ratio:.2f}x")


def main() -> None:
    if "--serve" in sys.argv:
        serve()
        return
    quick = "--quick" in sys.argv
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port, index = (int(part) for part in server.stdout.readline().split())
        asyncio.run(bench(port, index, seconds=0.5 if quick else 2.0, rounds=1 if quick else 3))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)


if __name__ == "__main__":
    main()
