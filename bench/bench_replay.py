"""Record and replay, against peers measured in the same run. Prints, never asserts:

1. Import: Modbus frames per second from a pcap into a cassette (`import_capture`: read, reassemble,
   frame, pair), against scapy reading the same file and decoding each packet with its Modbus layer
   (scapy.contrib.modbus, on port 502 — the only port it knows). Target: >= 100k frames/s.
   Then S7 frames per second (TPKT, COTP, S7 PDU cut; paired by PDU reference), against scapy reading
   the same file to its TCP payloads (scapy has no S7comm layer).
2. Serving: requests per second a replayed device answers, against the simulated device it was
   recorded from, each on a SimHost, with the same lean raw-socket client (one request on the wire
   at a time). Target: a ratio of about 1.
3. Serving OPC UA: Reads per second of one node, the native client (open62541) against the simulated
   device, and against its replay (recorded through the proxy) in `request` mode (the relay answers
   each Read from the cassette) and in `image` mode (the relay passes each on to the replay's server).

    python3 bench/bench_replay.py [--exchanges N] [--requests N]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def _packet(src: tuple[bytes, int], dst: tuple[bytes, int], seq: int, payload: bytes) -> bytes:
    tcp = struct.pack(">HHIIBBHHH", src[1], dst[1], seq, 0, 5 << 4, 0x18, 65535, 0, 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src[0], dst[0])
    return b"\x00" * 12 + b"\x08\x00" + ip + tcp


def make_capture(path: Path, exchanges: int) -> int:
    """A pcap of one Modbus/TCP connection polling hr:0-9 `exchanges` times; returns the frame count."""
    from bifrost.modbus import pdu
    from bifrost.modbus.framing import encode_mbap

    client, server = (bytes((10, 0, 0, 9)), 40000), (bytes((10, 0, 0, 5)), 502)
    request = pdu.encode_request(pdu.ReadHoldingRegistersRequest(0, 10))
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    seq = {"c": 1, "s": 1}
    when = 1_700_000_000.0
    for index in range(exchanges):
        tid = index & 0xFFFF
        answer = pdu.encode_response(pdu.ReadHoldingRegistersResponse(tuple(range(index % 100, index % 100 + 10))))
        for side, frame in (("c", encode_mbap(tid, 1, request)), ("s", encode_mbap(tid, 1, answer))):
            src, dst = (client, server) if side == "c" else (server, client)
            packet = _packet(src, dst, seq[side], frame)
            seq[side] += len(frame)
            when += 0.0001
            out.append(struct.pack("<IIII", int(when), int(when % 1 * 1e6), len(packet), len(packet)) + packet)
    path.write_bytes(b"".join(out))
    return 2 * exchanges


def make_s7_capture(path: Path, exchanges: int) -> int:
    """A pcap of one S7 connection (COTP connect, setup) reading DB1.DBB0 x10 `exchanges` times."""
    from bifrost.s7 import framing, pdu

    client, server = (bytes((10, 0, 0, 9)), 40001), (bytes((10, 0, 0, 5)), 102)
    connection = framing.ClientConnection(0, 1)
    cpu = framing.ServerConnection()
    frames = [("c", connection.connect_request())]
    cpu.receive_data(frames[0][1])
    cpu.next_event()
    frames.append(("s", cpu.accept()))
    setup = pdu.SetupRequest(480, 1, 1)
    frames += [
        ("c", framing.encode_tpkt(framing.encode_cotp_data(pdu.encode_request(1, setup)))),
        ("s", framing.encode_tpkt(framing.encode_cotp_data(pdu.encode_response(1, pdu.SetupResponse(480, 1, 1))))),
    ]
    read = pdu.ReadRequest((pdu.VarSpec(pdu.Area.DB, 0, 10, db=1),))
    for index in range(exchanges):
        reference = (index + 2) & 0xFFFF
        answer = pdu.ReadResponse((pdu.ItemData(0xFF, pdu.DataTransport.BYTE, bytes((index % 256,)) * 10),))
        frames.append(("c", framing.encode_tpkt(framing.encode_cotp_data(pdu.encode_request(reference, read)))))
        frames.append(("s", framing.encode_tpkt(framing.encode_cotp_data(pdu.encode_response(reference, answer)))))
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    seq = {"c": 1, "s": 1}
    when = 1_700_000_000.0
    for side, frame in frames:
        src, dst = (client, server) if side == "c" else (server, client)
        packet = _packet(src, dst, seq[side], frame)
        seq[side] += len(frame)
        when += 0.0001
        out.append(struct.pack("<IIII", int(when), int(when % 1 * 1e6), len(packet), len(packet)) + packet)
    path.write_bytes(b"".join(out))
    return 2 * exchanges


def _rates(frames: int, run: Callable[[], object]) -> tuple[float, float]:
    """Frames per second of `run()` by the wall clock and by this process's CPU time (time.process_time,
    which a loaded machine's other processes do not inflate)."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return frames / (time.perf_counter() - wall), frames / max(time.process_time() - cpu, 1e-9)


def bench_import(exchanges: int, rounds: int = 3) -> None:
    from simulators.recording.importer import import_capture

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "poll.pcap"
        frames = make_capture(path, exchanges)
        assert len(import_capture(path)[0]) == exchanges
        # The best of a few rounds: on a shared machine the slowest say more about the neighbours.
        ours = max(_rates(frames, lambda: import_capture(path)) for _ in range(rounds))
        cassette, _ = import_capture(path)
        written = _rates(frames, lambda: cassette.save(Path(folder) / "poll.jsonl"))
        try:
            from scapy.contrib import modbus  # noqa: F401 - binds its layers to port 502
            from scapy.utils import rdpcap
        except ImportError:
            print(f"import: bifrost {ours[0]:,.0f} frames/s (scapy not installed: pip install 'bifrost[bench]')")
            return
        sample = min(frames, 20_000)  # scapy is slow: a sample of the same file
        decoded = 0

        def scapy_run() -> None:
            nonlocal decoded
            for packet in rdpcap(str(path), count=sample):
                layer = packet.getlayer("ModbusADURequest") or packet.getlayer("ModbusADUResponse")
                if layer is not None:
                    layer.payload.fields  # noqa: B018 - decode the PDU as a user of scapy would
                    decoded += 1

        theirs = _rates(sample, scapy_run)
        assert decoded == sample
    print(
        f"import {frames:,} frames (best of {rounds}): bifrost {ours[0]:,.0f} frames/s wall, {ours[1]:,.0f} CPU; "
        f"scapy {theirs[0]:,.0f} wall, {theirs[1]:,.0f} CPU on {sample:,}; "
        f"ratio {ours[0] / theirs[0]:.0f}x wall, {ours[1] / theirs[1]:.0f}x CPU (target >= 100k frames/s)"
    )
    print(f"writing the cassette: {written[0]:,.0f} frames/s wall, {written[1]:,.0f} CPU")


def bench_import_s7(exchanges: int, rounds: int = 3) -> None:
    from simulators.recording.importer import import_capture

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s7.pcap"
        frames = make_s7_capture(path, exchanges)
        assert len(import_capture(path)[0]) == exchanges + 1  # and the setup communication
        ours = max(_rates(frames, lambda: import_capture(path)) for _ in range(rounds))
        try:
            from scapy.layers.inet import TCP
            from scapy.utils import rdpcap
        except ImportError:
            print(f"import S7: bifrost {ours[0]:,.0f} frames/s (scapy not installed: pip install 'bifrost[bench]')")
            return
        sample = min(frames, 20_000)
        theirs = _rates(sample, lambda: [bytes(p[TCP].payload) for p in rdpcap(str(path), count=sample) if TCP in p])
    print(
        f"import S7 {frames:,} frames (best of {rounds}): bifrost {ours[0]:,.0f} frames/s wall, {ours[1]:,.0f} CPU; "
        f"scapy (TCP payloads only, no S7 layer) {theirs[0]:,.0f} wall, {theirs[1]:,.0f} CPU on {sample:,}; "
        f"ratio {ours[0] / theirs[0]:.0f}x wall, {ours[1] / theirs[1]:.0f}x CPU"
    )


def _poll(url: str, requests: int) -> float:
    from bifrost.modbus import pdu
    from bifrost.modbus.framing import encode_mbap

    host, port = url.split("//")[1].split("?")[0].rsplit(":", 1)
    frame = encode_mbap(1, 1, pdu.encode_request(pdu.ReadHoldingRegistersRequest(0, 3)))
    with socket.create_connection((host, int(port))) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(200):  # warm up
            sock.sendall(frame)
            sock.recv(4096)
        start = time.perf_counter()
        for _ in range(requests):
            sock.sendall(frame)
            sock.recv(4096)
        return requests / (time.perf_counter() - start)


def bench_serving(requests: int) -> None:
    from simulators import SimHost
    from simulators.hooks import NoFaults
    from simulators.recording.record import save_traffic
    from simulators.recording.serve import replay_scenario

    plant = ROOT / "tests" / "data" / "pump_station.yaml"
    with tempfile.TemporaryDirectory() as folder:
        cassette = Path(folder) / "pump.jsonl"
        with SimHost(plant, any_port=True, hooks=NoFaults()) as simulated:
            _poll(simulated.url("plc1"), 10)
            save_traffic(simulated.devices["plc1"], cassette)
            with SimHost(replay_scenario(cassette), any_port=True, hooks=NoFaults()) as replayed:
                # Rounds in turn, the median of each: a shared machine's noise falls on both alike.
                simulated_rates, replayed_rates = [], []
                for _ in range(5):
                    simulated_rates.append(_poll(simulated.url("plc1"), requests))
                    replayed_rates.append(_poll(replayed.url("plc1"), requests))
                simulated_rate = statistics.median(simulated_rates)
                replayed_rate = statistics.median(replayed_rates)
    print(
        f"serve {requests:,} reads: replayed {replayed_rate:,.0f} requests/s, simulated {simulated_rate:,.0f} "
        f"requests/s; ratio {replayed_rate / simulated_rate:.2f}"
    )


OPCUA_PLANT = """\
scenario: tank
tags:
  tank.level: {type: float64, init: 42.5}
devices:
  ua1: {protocol: opcua, listen: 127.0.0.1:0, map: {tank.level: "ns=2;s=tank.level"}}
"""


def _read_opcua(url: str, requests: int) -> float:
    import asyncio

    import bifrost

    async def run() -> float:
        async with bifrost.connect(url, engine="native") as plc:
            for _ in range(50):  # warm up
                await plc.read("ns=2;s=tank.level")
            start = time.perf_counter()
            for _ in range(requests):
                await plc.read("ns=2;s=tank.level")
            return requests / (time.perf_counter() - start)

    return asyncio.run(run())


def bench_serving_opcua(requests: int) -> None:
    import asyncio

    from simulators import SimHost
    from simulators.hooks import NoFaults
    from simulators.proxy import Proxy
    from simulators.recording.record import ProxyRecorder
    from simulators.recording.serve import replay_scenario

    with tempfile.TemporaryDirectory() as folder:
        plant, cassette = Path(folder) / "tank.yaml", Path(folder) / "tank.jsonl"
        plant.write_text(OPCUA_PLANT)
        with SimHost(plant, any_port=True, hooks=NoFaults()) as simulated:
            url = simulated.url("ua1")
            host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)

            async def record() -> None:
                with ProxyRecorder(cassette, device="ua1", protocol="opcua") as recorder:
                    async with Proxy((host, int(port)), log=recorder, protocol="opcua") as proxy:
                        await asyncio.to_thread(_read_opcua, f"opc.tcp://127.0.0.1:{proxy.address[1]}/bifrost", 10)

            asyncio.run(record())
            rates: dict[str, list[float]] = {"simulated": [], "request": [], "image": []}
            with (
                SimHost(replay_scenario(cassette), any_port=True, hooks=NoFaults()) as by_request,
                SimHost(replay_scenario(cassette, mode="image"), any_port=True, hooks=NoFaults()) as by_image,
            ):
                for _ in range(5):  # rounds in turn, the median of each
                    rates["simulated"].append(_read_opcua(url, requests))
                    rates["request"].append(_read_opcua(by_request.url("ua1"), requests))
                    rates["image"].append(_read_opcua(by_image.url("ua1"), requests))
    simulated_rate, request_rate, image_rate = (statistics.median(rates[k]) for k in ("simulated", "request", "image"))
    print(
        f"serve {requests:,} OPC UA reads: replayed {request_rate:,.0f} reads/s (request mode, answered by the "
        f"relay), {image_rate:,.0f} (image mode, by its server); simulated {simulated_rate:,.0f} reads/s; "
        f"ratios {request_rate / simulated_rate:.2f} and {image_rate / simulated_rate:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=100_000, help="exchanges in the capture (2 frames each)")
    parser.add_argument("--requests", type=int, default=2_000, help="requests per server and round")
    args = parser.parse_args()
    bench_import(args.exchanges)
    bench_import_s7(args.exchanges // 4)
    bench_serving(args.requests)
    bench_serving_opcua(args.requests)


if __name__ == "__main__":
    main()
