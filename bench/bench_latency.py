"""Injected latency on the system clock: the distribution a client measures against the one asked for.

A raw Modbus TCP responder answers FC3 at once; a client sends requests one after another: straight
to it, through a `Proxy` without faults (its own cost), and through one with `latency,delay=20ms,
jitter=5ms`. The added latency of a request is its round trip less the fault-free proxy's median.
What is left over is how late the loop's timers fire: asyncio's epoll loop rounds its timeouts up to
whole milliseconds, and a busy machine adds its own scheduling delay.
Asked: uniform in [delay - jitter, delay + jitter]. Prints mean, p50, p95 and stdev of both, side by
side; never asserts: `python bench/bench_latency.py [--count N] [--delay 20ms] [--jitter 5ms]`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time

from bifrost.modbus.framing import encode_mbap
from simulators.faults import FaultSpec
from simulators.proxy import Proxy

REPLY_PDU = bytes([3, 4, 0, 1, 0, 2])


async def responder(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while header := await reader.readexactly(7):
            length = int.from_bytes(header[4:6], "big")
            await reader.readexactly(length - 1)
            writer.write(encode_mbap(int.from_bytes(header[:2], "big"), header[6], REPLY_PDU))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def round_trips(port: int, count: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times = []
    for transaction in range(count):
        request = encode_mbap(transaction & 0xFFFF, 1, bytes([3, 0, 0, 0, 2]))
        started = time.perf_counter()
        writer.write(request)
        await reader.readexactly(7 + len(REPLY_PDU))
        times.append(time.perf_counter() - started)
    writer.close()
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def row(name: str, mean: float, p50: float, p95: float, stdev: float) -> str:
    return f"{name:<28}{mean * 1e3:>9.3f}{p50 * 1e3:>9.3f}{p95 * 1e3:>9.3f}{stdev * 1e3:>9.3f}"


async def main(count: int, delay: float, jitter: float) -> None:
    server = await asyncio.start_server(responder, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    spec = FaultSpec.of("latency", delay=delay, jitter=jitter)
    async with Proxy(("127.0.0.1", port)) as plain, Proxy(("127.0.0.1", port), faults=[spec], seed=1) as proxy:
        await round_trips(plain.address[1], 50)  # warm up
        direct = await round_trips(port, count)
        relayed = await round_trips(plain.address[1], count)
        proxied = await round_trips(proxy.address[1], count)
    server.close()
    # The proxy's own cost is measured without a fault, so what is left is the injected latency.
    base = statistics.median(relayed)
    added = [trip - base for trip in proxied]
    # Uniform on [delay - jitter, delay + jitter]: the distribution the fault draws from.
    asked_stdev = jitter / math.sqrt(3)
    print(f"latency {spec}: {count} requests, one after another, on the system clock (ms)")
    print(f"{'':<28}{'mean':>9}{'p50':>9}{'p95':>9}{'stdev':>9}")
    print(row("asked", delay, delay, delay - jitter + 0.95 * 2 * jitter, asked_stdev))
    print(
        row(
            "measured (added)",
            statistics.fmean(added),
            percentile(added, 0.5),
            percentile(added, 0.95),
            statistics.pstdev(added),
        )
    )
    print(row("round trip, direct", statistics.fmean(direct), statistics.median(direct), percentile(direct, 0.95), 0))
    print(row("round trip, proxy no fault", statistics.fmean(relayed), base, percentile(relayed, 0.95), 0.0))
    if delay:
        print(f"measured mean / asked mean: {statistics.fmean(added) / delay:.3f}")
    print(f"min / max added: {min(added) * 1e3:.3f} / {max(added) * 1e3:.3f} ms (asked within ±{jitter * 1e3:g} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="requests on each path")
    parser.add_argument("--delay", default="20ms")
    parser.add_argument("--jitter", default="5ms")
    args = parser.parse_args()
    asked = FaultSpec.of("latency", delay=args.delay, jitter=args.jitter)
    asyncio.run(main(args.count, asked.number("delay"), asked.number("jitter")))
