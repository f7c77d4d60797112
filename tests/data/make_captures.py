"""Make the loopback captures in tests/data/ with tcpdump (run as root: `python tests/data/make_captures.py`).

Not run by the tests, which read the files this writes: tcpdump is needed only to make them again.
Each capture is a real client and a real server on 127.0.0.1, through the kernel's loopback:

- modbus_tcp_sim.pcap: pymodbus's client and Bifrost's simulator (tests/data/pump_station.yaml)
- modbus_tcp_pymodbus.pcap: pymodbus's client and pymodbus's server, on a port that is not 502
- modbus_rtu_over_tcp.pcap: pymodbus's client (RTU framer over TCP) and Bifrost's simulator (rtu+tcp)
- modbus_tcp_sim.pcapng: the first one as pcapng, converted by Wireshark's editcap when installed
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer

from simulators.host import SimHost
from simulators.scenario import load_scenario

HERE = Path(__file__).resolve().parent


def capture(path: Path, port: int, traffic: Callable[[], Awaitable[None]]) -> None:
    tcpdump = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-U", "-B", "16384", "-s", "0", "-w", str(path), f"tcp port {port}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert tcpdump.stderr is not None
    for line in tcpdump.stderr:  # it says "listening on lo" once it captures
        if "listening on" in line:
            break
    asyncio.run(traffic())
    time.sleep(2.0)  # a script, not a test: tcpdump delivers its buffer about once a second
    tcpdump.send_signal(signal.SIGTERM)  # it writes what it holds, then exits
    tcpdump.wait(10)
    print(f"{path.name}: {path.stat().st_size} bytes")


async def poll(port: int, framer: FramerType = FramerType.SOCKET, *, rounds: int = 3) -> None:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, framer=framer, timeout=2)
    await client.connect()
    for _ in range(rounds):
        await client.read_holding_registers(0, count=3, device_id=1)
        await client.read_input_registers(0, count=2, device_id=1)
        await client.read_coils(0, count=2, device_id=1)
        await client.read_discrete_inputs(0, count=1, device_id=1)
    await client.write_register(2, 1500, device_id=1)
    await client.write_coil(1, True, device_id=1)
    await client.read_holding_registers(0, count=3, device_id=1)
    await client.read_coils(0, count=2, device_id=1)
    await client.read_holding_registers(40, count=1, device_id=1)  # unmapped: exception 2
    client.close()


def with_simulator(transport: str, path: Path, framer: FramerType) -> None:
    scenario = load_scenario(HERE / "pump_station.yaml")
    if transport != "tcp":
        data = scenario.model_dump(by_alias=True, exclude_none=True)
        data["devices"]["plc1"]["transport"] = transport
        from simulators.scenario import Scenario

        scenario = Scenario.model_validate(data)
    with SimHost(scenario, any_port=True) as host:
        port = int(host.url("plc1").split(":")[2].split("?")[0])
        capture(path, port, lambda: poll(port, framer))


def with_pymodbus(path: Path) -> None:
    async def traffic() -> None:
        block = ModbusSequentialDataBlock(1, [425, 0, 1450, 7, 8])
        bits = ModbusSequentialDataBlock(1, [True, False])
        inputs = ModbusSequentialDataBlock(1, [120, 65524])
        device = ModbusDeviceContext(hr=block, ir=inputs, co=bits, di=ModbusSequentialDataBlock(1, [False]))
        server = ModbusTcpServer(ModbusServerContext(devices=device, single=True), address=("127.0.0.1", PYMODBUS_PORT))
        await server.serve_forever(background=True)
        try:
            await poll(PYMODBUS_PORT)
        finally:
            await server.shutdown()

    capture(path, PYMODBUS_PORT, traffic)


PYMODBUS_PORT = 15020  # a fixed port only here, where tcpdump's filter must name it before the server starts


def main() -> None:
    with_simulator("tcp", HERE / "modbus_tcp_sim.pcap", FramerType.SOCKET)
    with_pymodbus(HERE / "modbus_tcp_pymodbus.pcap")
    with_simulator("rtu+tcp", HERE / "modbus_rtu_over_tcp.pcap", FramerType.RTU)
    if shutil.which("editcap"):
        subprocess.run(
            ["editcap", "-F", "pcapng", str(HERE / "modbus_tcp_sim.pcap"), str(HERE / "modbus_tcp_sim.pcapng")],
            check=True,
        )
    else:
        print("editcap not found: modbus_tcp_sim.pcapng not made", file=sys.stderr)


if __name__ == "__main__":
    main()
