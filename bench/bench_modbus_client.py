"""Modbus clients side by side, against the same responder in one run. Prints; never asserts.

    python3 bench/bench_modbus_client.py [--quick] [--rtu (only (f))]

The responder is a lean asyncio Modbus TCP server in a separate process (so its CPU is not the
client's), serving registers 0..9999 on 51 ports; its registers change on every request, so a
subscription sees every tag change on every poll. CPU is `time.process_time()` of this process,
which counts every thread, tokio's included.

(a) sequential single reads (one register, one request at a time): CPU per request and rate, for
    the native engine, the Python engine, pymodbus's async client and a raw-socket asyncio client.
    "engine" rows call the engine's read (a list of ints back); "connection" rows are
    `await plc.read("hr:0")` through the whole client (tag resolution, plan, DataPoint).
(b) read_many of 1,000 typed tags spread over 3,000 registers: native against pymodbus reading tag
    by tag and pymodbus with hand-grouped reads of 125 registers, each decoding every value.
(c) 50 devices x 100 tags polled from one process as fast as they answer, in interleaved rounds:
    tag values per client CPU-second, native against pymodbus; the user-facing figures (read_many
    and subscribe, which hand back DataPoints) beside the engine-level ones (values only), and
    `bifrost.poll` for the whole fleet in one Rust loop (changes as DataPoints, or columnar values).
(d) pipelining against a device 5 ms away (the responder answers each request 5 ms after it came,
    requests overlapping): read_many of 64 tags that need 64 requests, `?max_in_flight=8` against
    `?max_in_flight=1` (one request at a time, as every engine without pipelining), in reads/s.
(e) mask write, read/write multiple, report server id and device identification through each
    engine's connection against pymodbus's async client: CPU per call.
(f) RTU over TCP against the Bifrost simulator (one device, 100 registers): a single read, a
    read_many of 100 tags and the four calls of (e), through each engine's connection against
    pymodbus's async client with its RTU framer: CPU per call and rate.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

SIZE = 10_000
DEVICES = 50
VARIANTS = 4  # register images the responder rotates through, so values change on every read


# --- the responder (runs in its own process) -------------------------------------------------------


def _images() -> list[bytes]:
    return [struct.pack(f">{SIZE}H", *((i * 7 + k * 13) & 0xFFFF for i in range(SIZE))) for k in range(VARIANTS)]


def run_responder(ports: int, delay: float = 0.0) -> None:
    """Serve Modbus TCP (FC1-4) on `ports` ports of 127.0.0.1; print them; stop at EOF on stdin.
    With `delay`, each reply goes out `delay` seconds after its request came (a device far away)."""
    images = _images()
    bits = bytes(SIZE // 8 + 1)
    state = {"turn": 0}

    class Responder(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buffer = b""
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data: bytes) -> None:
            buffer = self.buffer + data
            out = []
            while len(buffer) >= 8:
                length = int.from_bytes(buffer[4:6], "big")
                end = 6 + length
                if len(buffer) < end:
                    break
                header, function = buffer[:4], buffer[7]
                unit = buffer[6]
                pdu = buffer[7:end]
                start, count = struct.unpack_from(">HH", buffer, 8) if len(pdu) >= 5 else (0, 0)
                buffer = buffer[end:]
                if function == 22:  # mask write: the echo
                    body = pdu
                elif function == 23:  # read/write multiple: the read part
                    body = bytes((23, 2 * count)) + images[0][2 * start : 2 * (start + count)]
                elif function == 17:  # report server id
                    body = bytes((17, 4)) + b"lea" + b"\xff"
                elif function == 43:  # device identification, basic
                    objects = b"".join(bytes((i, len(v))) + v for i, v in enumerate((b"bench", b"lean", b"1.0")))
                    body = bytes((43, 14, 1, 1, 0, 0, 3)) + objects
                elif start + count > SIZE:
                    body = bytes((function | 0x80, 2))
                elif function in (3, 4):
                    state["turn"] += 1
                    image = images[state["turn"] % VARIANTS]
                    body = bytes((function, 2 * count)) + image[2 * start : 2 * (start + count)]
                elif function in (1, 2):
                    size = (count + 7) // 8
                    body = bytes((function, size)) + bits[:size]
                else:
                    body = bytes((function | 0x80, 1))
                out.append(header + (len(body) + 1).to_bytes(2, "big") + bytes((unit,)) + body)
            self.buffer = buffer
            if out and delay:
                asyncio.get_running_loop().call_later(delay, self.transport.write, b"".join(out))
            elif out:
                self.transport.write(b"".join(out))

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        servers = [await loop.create_server(Responder, "127.0.0.1", 0) for _ in range(ports)]
        print(" ".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
        await loop.run_in_executor(None, sys.stdin.read)

    asyncio.run(serve())


def run_simulator() -> None:
    """Serve the bench's plant with Bifrost's simulator (SimHost): device `big` maps 1,000 typed tags
    over hr 0..2999 (as in (b)), devices d1..d50 map 100 uint16 tags at hr 0..99. Print the ports."""
    import tempfile

    from simulators import SimHost

    lines = ["scenario: bench", "tags:"]
    big = []
    for i, (_, offset, dtype, order) in enumerate(typed_tags()):
        lines.append(f"  t{i}: {{type: {dtype}, init: {i}}}")
        big.append(f"      t{i}: {{address: hr:{offset}, byte_order: {order}}}")
        # Every register of 0..2999 is mapped (a device answers exception 2 for any read that
        # touches an unmapped one), so the hand-grouped reads of 125 registers are valid too.
        for filler in range(offset + (1 if dtype.endswith("16") else 2), offset + 3):
            lines.append(f"  f{filler}: {{type: uint16}}")
            big.append(f"      f{filler}: hr:{filler}")
    lines += [f"  u{i}: {{type: uint16, init: {i}}}" for i in range(100)]
    # One listener, one unit per device (the simulator routes units per listener).
    lines += ["devices:", "  big:", "    protocol: modbus", "    listen: 127.0.0.1:0", "    unit: 1", "    map:", *big]
    for d in range(1, DEVICES + 1):
        lines += [f"  d{d}:", "    protocol: modbus", "    listen: 127.0.0.1:0", f"    unit: {d + 1}", "    map:"]
        lines += [f"      u{i}: hr:{i}" for i in range(100)]
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/bench.yaml"
        with open(path, "w") as file:
            file.write("\n".join(lines) + "\n")
        with SimHost(path, any_port=True) as host:
            names = ["big", *(f"d{d}" for d in range(1, DEVICES + 1))]
            ports = [host.devices[name].url.split("://", 1)[1].split("?")[0].rsplit(":", 1)[1] for name in names]
            print(" ".join(ports), flush=True)
            sys.stdin.read()


RTU_TAGS = 100


def run_rtu_simulator() -> None:
    """Serve one RTU-over-TCP device with Bifrost's simulator: tags u0..u99 at hr 0..99. Print its port."""
    import tempfile

    from simulators import SimHost

    lines = ["scenario: bench-rtu", "tags:"]
    lines += [f"  u{i}: {{type: uint16, init: {i}, writable: true}}" for i in range(RTU_TAGS)]
    lines += ["devices:", "  plc1:", "    protocol: modbus", "    transport: rtu+tcp", "    listen: 127.0.0.1:0"]
    lines += ["    unit: 1", "    map:", *[f"      u{i}: hr:{i}" for i in range(RTU_TAGS)]]
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/bench-rtu.yaml"
        with open(path, "w") as file:
            file.write("\n".join(lines) + "\n")
        with SimHost(path, any_port=True) as host:
            print(host.devices["plc1"].url.split("?")[0].rsplit(":", 1)[1], flush=True)
            sys.stdin.read()


class ResponderProcess:
    def __init__(self, ports: int, simulator: bool = False, delay: float = 0.0, rtu: bool = False) -> None:
        mode = ["--responder", str(ports), str(delay)]
        if simulator or rtu:
            mode = ["--rtu-simulator" if rtu else "--simulator"]
        self.process = subprocess.Popen(
            [sys.executable, __file__, *mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        self.ports = [int(port) for port in self.process.stdout.readline().split()]
        if not self.ports:
            self.close()
            raise RuntimeError("the peer process did not start")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


# --- helpers -------------------------------------------------------------------------------------


def url(port: int, unit: int = 1) -> str:
    return f"modbus://127.0.0.1:{port}?unit={unit}"


def engines() -> list[str]:
    found = ["native"]
    if importlib.util.find_spec("bifrost.modbus._python_engine"):
        found.append("python")
    return found


async def timed(run: Callable[[int], Awaitable[None]], count: int) -> tuple[float, float]:
    """(per second, CPU seconds per item) of `run(count)`."""
    wall, cpu = time.perf_counter(), time.process_time()
    await run(count)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return count / wall, cpu / count


async def best(run: Callable[[int], Awaitable[None]], count: int, rounds: int) -> tuple[float, float]:
    """The best of `rounds` (the least disturbed by whatever else the machine runs)."""
    results = [await timed(run, count) for _ in range(rounds)]
    return max(r[0] for r in results), min(r[1] for r in results)


def ratio(mine: float, peer: float) -> str:
    return f"{mine / peer:5.2f}x" if peer else "  n/a"


class RawClient:
    """A raw-socket Modbus TCP client: asyncio streams, MBAP frames by hand, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.tid = reader, writer, 0

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def read_holding(self, start: int, count: int) -> tuple[int, ...]:
        self.tid = (self.tid + 1) & 0xFFFF
        self.writer.write(struct.pack(">HHHBBHH", self.tid, 0, 6, 1, 3, start, count))
        head = await self.reader.readexactly(9)
        if head[7] & 0x80:
            raise RuntimeError(f"exception {head[8]}")
        body = await self.reader.readexactly(head[8])
        return struct.unpack(f">{head[8] // 2}H", body)

    def close(self) -> None:
        self.writer.close()


# --- (a) sequential single reads ----------------------------------------------------------------


async def bench_sequential(port: int, count: int, rounds: int, peer: str) -> None:
    from pymodbus.client import AsyncModbusTcpClient

    import bifrost
    from bifrost.modbus.address import Area
    from bifrost.modbus.planner import ReadRequest

    print(
        f"\n(a) [{peer}] sequential single reads: {count} requests of 1 register, best of {rounds} interleaved rounds"
    )
    runs: dict[str, Callable[[int], Awaitable[None]]] = {}
    raw = await RawClient.open(port)

    async def run_raw(n: int) -> None:
        for _ in range(n):
            await raw.read_holding(0, 1)

    runs["raw socket (asyncio streams)"] = run_raw

    request = ReadRequest(1, Area.HOLDING_REGISTER, 0, 1)
    plcs = []
    for name in engines():
        plc = bifrost.connect(url(port), engine=name)
        await plc.open()
        plcs.append(plc)
        engine = plc.engine  # type: ignore[attr-defined]

        async def run_engine(n: int, engine: Any = engine) -> None:
            for _ in range(n):
                await engine.read(request)

        async def run_connection(n: int, plc: Any = plc) -> None:
            for _ in range(n):
                await plc.read("hr:0")

        runs[f"{name} engine read"] = run_engine
        runs[f"{name} connection read"] = run_connection

    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()

    async def run_pymodbus(n: int) -> None:
        for _ in range(n):
            await client.read_holding_registers(0, count=1, device_id=1)

    runs["pymodbus async client"] = run_pymodbus

    # Rounds interleaved, so that every client meets the same moments of a shared machine.
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for run in runs.values():
        await run(200)  # warm up
    for _ in range(rounds):
        for name, run in runs.items():
            results[name].append(await timed(run, count))
    raw.close()
    client.close()
    for plc in plcs:
        await plc.close()

    rows = [(name, max(r[0] for r in got), min(r[1] for r in got)) for name, got in results.items()]
    raw_rate, raw_cpu = rows[0][1], rows[0][2]
    print(f"  {'client':34} {'req/s':>8} {'CPU us/req':>11}   {'CPU vs raw':>10} {'rate vs raw':>11}")
    for name, rate, cpu in rows:
        print(f"  {name:34} {rate:8.0f} {cpu * 1e6:11.1f}   {ratio(cpu, raw_cpu):>10} {ratio(rate, raw_rate):>11}")
    pymodbus_cpu = rows[-1][2]
    native_cpu = next(cpu for name, _, cpu in rows if name == "native engine read")
    print(f"  native engine read vs pymodbus: CPU per request {ratio(native_cpu, pymodbus_cpu).strip()}")


# --- (b) read_many of 1,000 typed tags over 3,000 registers ---------------------------------------

TYPES = ("uint16", "int16", "int32", "uint32", "float32")


def typed_tags() -> list[tuple[str, int, str, str]]:
    """1,000 tags, one every 3 registers: (address, offset, type, byte order)."""
    tags = []
    for i in range(1000):
        dtype = TYPES[i % len(TYPES)]
        order = "CDAB" if i % 2 and dtype in ("int32", "uint32", "float32") else "ABCD"
        tags.append((f"hr:{3 * i}:{dtype}:{order}", 3 * i, dtype, order))
    return tags


async def bench_read_many(port: int, rounds: int, peer: str) -> None:
    from pymodbus.client import AsyncModbusTcpClient

    import bifrost

    tags = typed_tags()
    names = [tag[0] for tag in tags]
    print(f"\n(b) [{peer}] read_many of {len(tags)} typed tags over 3,000 registers, best of {rounds}")
    rows: list[tuple[str, float, float]] = []

    async with bifrost.connect(url(port), engine="native") as plc:
        await plc.read_many(names)  # plans once, compiles the native plan once

        async def run_native(n: int) -> None:
            for _ in range(n):
                points = await plc.read_many(names)
                assert len(points) == len(names)

        rows.append(("native read_many", *await best(run_native, 5, rounds)))

    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()
    kinds = {name: getattr(client.DATATYPE, name.upper()) for name in TYPES}
    widths = {name: 1 if name.endswith("16") else 2 for name in TYPES}

    def convert(registers: Sequence[int], dtype: str, order: str) -> Any:
        word_order = "little" if order == "CDAB" else "big"
        return client.convert_from_registers(registers, kinds[dtype], word_order=word_order)  # type: ignore[arg-type]

    async def run_tag_by_tag(n: int) -> None:
        for _ in range(n):
            values = {}
            for name, offset, dtype, order in tags:
                reply = await client.read_holding_registers(offset, count=widths[dtype], device_id=1)
                assert not reply.isError(), reply
                values[name] = convert(reply.registers, dtype, order)
            assert len(values) == len(tags)

    async def run_grouped(n: int) -> None:
        for _ in range(n):
            registers: list[int] = []
            for start in range(0, 3000, 125):
                reply = await client.read_holding_registers(start, count=min(125, 3000 - start), device_id=1)
                assert not reply.isError(), reply
                registers.extend(reply.registers)
            values = {
                name: convert(registers[offset : offset + widths[dtype]], dtype, order)
                for name, offset, dtype, order in tags
            }
            assert len(values) == len(tags)

    rows.append(("pymodbus tag by tag", *await best(run_tag_by_tag, 1, rounds)))
    rows.append(("pymodbus hand-grouped (125 regs)", *await best(run_grouped, 5, rounds)))
    client.close()

    native_rate, native_cpu = rows[0][1], rows[0][2]
    print(f"  {'client':34} {'ms/read_many':>12} {'CPU ms':>8}   {'native faster':>13} {'native CPU less':>15}")
    for name, rate, cpu in rows:
        faster, less = ratio(native_rate, rate), ratio(cpu, native_cpu)
        print(f"  {name:34} {1e3 / rate:12.2f} {cpu * 1e3:8.2f}   {faster:>13} {less:>15}")


# --- (c) 50 devices x 100 tags ------------------------------------------------------------------


async def poll_for(seconds: float, tasks: list[Callable[[], Awaitable[int]]]) -> tuple[int, float, float]:
    """Run each poller in a loop for `seconds`: (tag values read, CPU seconds, wall seconds)."""
    stop = time.perf_counter() + seconds
    totals = [0] * len(tasks)

    async def loop(i: int, poll: Callable[[], Awaitable[int]]) -> None:
        while time.perf_counter() < stop:
            totals[i] += await poll()

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(loop(i, poll) for i, poll in enumerate(tasks)))
    return sum(totals), time.process_time() - cpu, time.perf_counter() - wall


async def bench_polling(
    devices: list[tuple[int, int]], seconds: float, peer: str, changing: bool, rounds: int = 3
) -> None:
    """`devices`: (port, unit) of each. Every row polls all devices for `seconds`, in `rounds`
    interleaved rounds (so every row meets the same moments of a shared machine); the best round
    counts."""
    from pymodbus.client import AsyncModbusTcpClient

    import bifrost

    names = [f"hr:{i}" for i in range(100)]
    what = f"{len(devices)} devices x {len(names)} tags"
    print(
        f"\n(c) [{peer}] {what}, polled as fast as they answer, median of {rounds} interleaved rounds of {seconds:g} s"
    )

    plcs = [bifrost.connect(url(port, unit), engine="native") for port, unit in devices]
    for plc in plcs:
        await plc.open()
    clients = [(AsyncModbusTcpClient("127.0.0.1", port=port), unit) for port, unit in devices]
    for client, _ in clients:
        await client.connect()

    Poller = Callable[[], Awaitable[int]]

    # The user-facing API: what an application gets (a dict of DataPoints per read or batch).
    def read_many(plc: Any) -> Poller:
        async def poll() -> int:
            return len(await plc.read_many(names))

        return poll

    def subscription(plc: Any) -> Poller:
        batches = plc.subscribe(names, interval=0.001)

        async def poll() -> int:
            return len(await batches.__anext__())

        poll.batches = batches  # type: ignore[attr-defined]
        return poll

    # One layer down, the same plans through the engine: values without DataPoints (execute,
    # subscribe), and the bulk path read_many stands on (read_points: DataPoints made in Rust).
    def execute(plc: Any) -> Poller:
        plan, formats = plc._plan(tuple(names))

        async def poll() -> int:
            values, _ = await plc.engine.execute(plc.planner, plan, formats)
            return len(values)

        return poll

    def read_points(plc: Any) -> Poller:
        plan, formats = plc._plan(tuple(names))

        async def poll() -> int:
            return len(await plc.engine.read_points(plc.planner, plan, formats))

        return poll

    def pymodbus_poll(client: Any, unit: int) -> Poller:
        async def poll() -> int:
            return len((await client.read_holding_registers(0, count=len(names), device_id=unit)).registers)

        return poll

    # The poll loop for the whole fleet in Rust: one batch per cycle (every tag changes on every
    # read here, so a batch of changes holds them all).
    def fleet(columnar: bool, coalesce: float | None = None) -> Poller:
        batches = bifrost.poll(plcs, names, interval=0.001, columnar=columnar, coalesce=coalesce)

        async def poll() -> int:
            batch = await batches.__anext__()
            if columnar:
                return len(batch.values)  # type: ignore[union-attr]
            return sum(len(points) for points in batch.values())  # type: ignore[union-attr]

        poll.batches = batches  # type: ignore[attr-defined]
        return poll

    rows: dict[str, Callable[[], list[Poller]]] = {}
    if changing:  # a batch of changes holds nothing once values stand still (as the simulator's do)
        rows["native bifrost.poll (DataPoints)"] = lambda: [fleet(False)]
    rows.update(
        {
            "native bifrost.poll (columnar)": lambda: [fleet(True)],
            # The same without resting between wake-ups: a wake-up per reply.
            "native bifrost.poll (columnar, coalesce=0)": lambda: [fleet(True, 0.0)],
            "native read_many (DataPoints)": lambda: [read_many(p) for p in plcs],
            "native engine execute (values)": lambda: [execute(p) for p in plcs],
            "native engine read_points (DataPoints)": lambda: [read_points(p) for p in plcs],
        }
    )
    # The poll loop in Rust (interval 1 ms): every tag changes on every read, so every poll yields
    # all of them. (Values that never change, as the simulator's here, yield nothing after the first
    # batch, so the simulator has no subscription rows.)
    if changing:
        rows["native subscribe (DataPoints)"] = lambda: [subscription(p) for p in plcs]
    rows["pymodbus read_holding_registers"] = lambda: [pymodbus_poll(c, unit) for c, unit in clients]

    # Every round runs every row, pymodbus among them: a row's ratio is taken within each round
    # (the same moments of a shared machine), and the median over the rounds is reported.
    results: dict[str, list[tuple[int, float, float]]] = {name: [] for name in rows}
    try:
        for _ in range(rounds):
            for name, make in rows.items():
                pollers = make()
                result = await poll_for(seconds, pollers)
                for poller in pollers:
                    batches = getattr(poller, "batches", None)
                    if batches is not None:
                        await batches.aclose()
                results[name].append(result)
    finally:
        for plc in plcs:
            await plc.close()
        for client, _ in clients:
            client.close()

    def rate(result: tuple[int, float, float]) -> float:
        return result[0] / result[1] if result[1] else 0.0

    peer = results["pymodbus read_holding_registers"]
    per_cpu = {name: statistics.median(rate(r) for r in got) for name, got in results.items()}
    versus = {
        name: statistics.median(rate(r) / rate(p) if rate(p) else 0.0 for r, p in zip(got, peer, strict=True))
        for name, got in results.items()
    }
    spread = {
        name: (min(v), max(v))
        for name, v in ((n, [rate(r) / rate(p) for r, p in zip(g, peer, strict=True)]) for n, g in results.items())
    }
    print(
        f"  {'client':40} {'values/s':>10} {'values/CPU-s':>13} {'reads/s':>8}   {'vs pymodbus':>11} {'(min-max)':>13}"
    )
    for name, got in results.items():
        values = statistics.median(r[0] / r[2] for r in got)
        reads = values / len(names)
        low, high = spread[name]
        print(
            f"  {name:40} {values:10.0f} {per_cpu[name]:13.0f} {reads:8.0f}   {versus[name]:10.2f}x "
            f"({low:4.2f}-{high:4.2f}x)"
        )
    pairs = [
        ("bifrost.poll columnar", "native bifrost.poll (columnar)", "native engine execute (values)"),
        ("read_many", "native read_many (DataPoints)", "native engine execute (values)"),
    ]
    if changing:
        pairs.insert(0, ("bifrost.poll", "native bifrost.poll (DataPoints)", "native engine execute (values)"))
    if changing:
        pairs.append(("subscribe", "native subscribe (DataPoints)", "native engine execute (values)"))
    for label, user, engine in pairs:
        print(
            f"  user-facing {label}: {versus[user]:.2f}x pymodbus (median of {rounds} rounds; "
            f"engine level {versus[engine]:.2f}x; user-facing / engine {ratio(per_cpu[user], per_cpu[engine]).strip()})"
        )


# --- (e) the other function codes ------------------------------------------------------------------


async def bench_functions(port: int, count: int, rounds: int) -> None:
    from pymodbus.client import AsyncModbusTcpClient

    import bifrost

    print(f"\n(e) mask write (22), read/write multiple (23), report server id (17), device id (43/14): {count} each")
    runs: dict[str, Callable[[int], Awaitable[None]]] = {}
    plcs = []
    for name in engines():
        plc = bifrost.connect(url(port), engine=name)
        await plc.open()
        plcs.append(plc)

        async def run(n: int, plc: Any = plc) -> None:
            for _ in range(n):
                await plc.mask_write("hr:5", 0xF0F2, 0x0025)
                await plc.read_write("hr:0", "hr:1", 7)
                await plc.report_server_id()
                await plc.device_identification()

        runs[f"{name} engine"] = run
    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()

    async def run_pymodbus(n: int) -> None:
        for _ in range(n):
            await client.mask_write_register(address=5, and_mask=0xF0F2, or_mask=0x0025, device_id=1)
            await client.readwrite_registers(read_address=0, read_count=1, write_address=1, values=[7], device_id=1)
            await client.report_device_id(device_id=1)
            await client.read_device_information(device_id=1)

    runs["pymodbus async client"] = run_pymodbus
    results = {name: await best(run, count, rounds) for name, run in runs.items()}
    client.close()
    for plc in plcs:
        await plc.close()
    peer_cpu = results["pymodbus async client"][1]
    print(f"  {'client':34} {'calls/s':>8} {'CPU us/call':>12}   {'CPU vs pymodbus':>15}")
    for name, (rate, cpu) in results.items():
        print(f"  {name:34} {rate * 4:8.0f} {cpu / 4 * 1e6:12.1f}   {ratio(cpu, peer_cpu):>15}")


# --- (f) RTU over TCP against the simulator ----------------------------------------------------------


async def bench_rtu(port: int, count: int, rounds: int) -> None:
    from pymodbus.client import AsyncModbusTcpClient
    from pymodbus.framer import FramerType

    import bifrost

    print(f"\n(f) RTU over TCP against the simulator: {count} calls each, best of {rounds}")
    names = [f"hr:{i}" for i in range(RTU_TAGS)]
    plcs = []
    runs: dict[str, dict[str, Callable[[int], Awaitable[None]]]] = {}
    for name in engines():
        plc = bifrost.connect(f"modbus+rtu+tcp://127.0.0.1:{port}?unit=1", engine=name)
        await plc.open()
        plcs.append(plc)

        async def read(n: int, plc: Any = plc) -> None:
            for _ in range(n):
                await plc.read("hr:0")

        async def read_many(n: int, plc: Any = plc) -> None:
            for _ in range(n):
                await plc.read_many(names)

        async def functions(n: int, plc: Any = plc) -> None:
            for _ in range(n // 4):
                await plc.mask_write("hr:5", 0xF0F2, 0x0025)
                await plc.read_write("hr:0", "hr:1", 7)
                await plc.report_server_id()
                await plc.device_identification()

        runs[f"{name} engine"] = {"read": read, "read_many": read_many, "functions": functions}
    client = AsyncModbusTcpClient("127.0.0.1", port=port, framer=FramerType.RTU)
    await client.connect()

    async def pm_read(n: int) -> None:
        for _ in range(n):
            await client.read_holding_registers(0, count=1, device_id=1)

    async def pm_read_many(n: int) -> None:
        for _ in range(n):
            await client.read_holding_registers(0, count=RTU_TAGS, device_id=1)

    async def pm_functions(n: int) -> None:
        for _ in range(n // 4):
            await client.mask_write_register(address=5, and_mask=0xF0F2, or_mask=0x0025, device_id=1)
            await client.readwrite_registers(read_address=0, read_count=1, write_address=1, values=[7], device_id=1)
            await client.report_device_id(device_id=1)
            await client.read_device_information(device_id=1)

    runs["pymodbus async client (RTU framer)"] = {"read": pm_read, "read_many": pm_read_many, "functions": pm_functions}
    labels = {
        "read": "read hr:0",
        "read_many": f"read_many of {RTU_TAGS} tags (pymodbus: one read)",
        "functions": "FC 22, 23, 17, 43/14 in turn",
    }
    try:
        for what, label in labels.items():
            n = count // 10 if what == "read_many" else count
            results = {name: await best(run[what], n, rounds) for name, run in runs.items()}
            peer_cpu = results["pymodbus async client (RTU framer)"][1]
            print(f"  {label}")
            print(f"    {'client':36} {'calls/s':>8} {'CPU us/call':>12}   {'CPU vs pymodbus':>15}")
            for name, (rate, cpu) in results.items():
                print(f"    {name:36} {rate:8.0f} {cpu * 1e6:12.1f}   {ratio(cpu, peer_cpu):>15}")
    finally:
        client.close()
        for plc in plcs:
            await plc.close()


# --- (d) pipelining against a device 5 ms away -----------------------------------------------------


async def bench_pipelining(port: int, rounds: int, delay: float) -> None:
    import bifrost

    # 64 tags 150 registers apart: no two share a request (the planner merges gaps of 8 at most).
    names = [f"hr:{150 * i}" for i in range(64)]
    print(
        f"\n(d) pipelining: read_many of {len(names)} tags in {len(names)} requests, "
        f"a device {delay * 1e3:g} ms away, best of {rounds}"
    )
    rows: list[tuple[str, float, float]] = []
    for depth in (1, 8):
        async with bifrost.connect(f"{url(port)}&max_in_flight={depth}", engine="native") as plc:
            await plc.read_many(names)

            async def run(n: int, plc: Any = plc) -> None:
                for _ in range(n):
                    points = await plc.read_many(names)
                    assert all(p.quality.value == "good" for p in points.values())

            rate, cpu = await best(run, 2, rounds)
            rows.append((f"native read_many, max_in_flight={depth}", rate * len(names), cpu / len(names)))
    print(f"  {'client':40} {'reads/s':>8} {'CPU us/read':>12}   {'vs depth 1':>10}")
    for name, rate, cpu in rows:
        print(f"  {name:40} {rate:8.0f} {cpu * 1e6:12.1f}   {ratio(rate, rows[0][1]):>10}")


async def bench(quick: bool) -> None:
    count, rounds, seconds = (500, 1, 1.0) if quick else (3000, 3, 3.0)
    print(f"client pid {os.getpid()}; native threads: {os.environ.get('BIFROST_NATIVE_THREADS', '1')}")
    responder = ResponderProcess(DEVICES + 1)
    try:
        print(f"\n=== the lean responder (pid {responder.process.pid}, {len(responder.ports)} ports) ===")
        await bench_sequential(responder.ports[0], count, rounds, "responder")
        await bench_read_many(responder.ports[0], rounds, "responder")
        await bench_polling(
            [(port, 1) for port in responder.ports[1:]],
            seconds / 3,
            "responder",
            changing=True,
            rounds=1 if quick else 5,
        )
        await bench_functions(responder.ports[0], count // 10, rounds)
    finally:
        responder.close()
    delay = 0.005
    far = ResponderProcess(1, delay=delay)
    try:
        await bench_pipelining(far.ports[0], rounds, delay)
    finally:
        far.close()
    if importlib.util.find_spec("simulators.host") is None:
        print("\nsimulators.host is not there: the Bifrost simulator is left out")
        return
    rtu = ResponderProcess(1, rtu=True)
    try:
        await bench_rtu(rtu.ports[0], count // 3, 1 if quick else 3)
    finally:
        rtu.close()
    simulator = ResponderProcess(DEVICES + 1, simulator=True)
    try:
        print(f"\n=== the Bifrost simulator (SimHost, pid {simulator.process.pid}, {len(simulator.ports)} devices) ===")
        await bench_sequential(simulator.ports[0], count // 3, 1 if quick else 2, "simulator")
        await bench_read_many(simulator.ports[0], 1 if quick else 2, "simulator")
        devices = [(port, unit) for unit, port in enumerate(simulator.ports[1:], start=2)]
        await bench_polling(devices, seconds / 3, "simulator", changing=False, rounds=2 if quick else 3)
    finally:
        simulator.close()


async def bench_rtu_only(quick: bool) -> None:
    rtu = ResponderProcess(1, rtu=True)
    try:
        await bench_rtu(rtu.ports[0], 300 if quick else 1000, 1 if quick else 3)
    finally:
        rtu.close()


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--responder":
        run_responder(int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--simulator":
        run_simulator()
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--rtu-simulator":
        run_rtu_simulator()
        return
    if "--rtu" in sys.argv:  # (f) alone
        asyncio.run(bench_rtu_only("--quick" in sys.argv))
        print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return
    started = time.perf_counter()
    asyncio.run(bench("--quick" in sys.argv))
    print(
        f"\ntotal {time.perf_counter() - started:.1f} s; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
