"""Peers for the Modbus tests: a real pymodbus server, and misbehaving raw servers, on 127.0.0.1:0.

Each runs on its own event-loop thread, so sync tests, async tests on any loop and blocking clients
can all use it, and a test that stops its own loop cannot stop the peer.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest

ENGINES = ["python"] + (["native"] if importlib.util.find_spec("bifrost.modbus._native_engine") else [])


class LoopThread:
    """An asyncio loop on a daemon thread; `run(coro)` runs a coroutine there and returns its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@dataclass
class PymodbusPeer:
    host: str
    port: int
    device: Any

    def url(self, unit: int = 1) -> str:
        return f"modbus://{self.host}:{self.port}?unit={unit}"

    def registers(self, function: int, address: int, count: int) -> list[int]:
        """Registers as pymodbus's own (sync) client reads them: an independent view of the wire."""
        from pymodbus.client import ModbusTcpClient

        with ModbusTcpClient(self.host, port=self.port) as client:
            read = client.read_holding_registers if function == 3 else client.read_input_registers
            response = read(address, count=count, device_id=1)
            assert not response.isError(), response
            return list(response.registers)


@pytest.fixture
def pymodbus_server() -> Iterator[PymodbusPeer]:
    """pymodbus's TCP server, unit 1: coils, discrete inputs, input and holding registers 0..199.

    Registers start as their address + 1000 (ir) or their address (hr); coils alternate; above 199
    nothing is mapped, so reads there draw exception 2.
    """
    from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
    from pymodbus.server import ModbusTcpServer

    # pymodbus blocks count from 1 internally: a block made at 1 serves wire address 0.
    device = ModbusDeviceContext(
        co=ModbusSequentialDataBlock(1, [i % 2 == 0 for i in range(200)]),
        di=ModbusSequentialDataBlock(1, [i % 3 == 0 for i in range(200)]),
        ir=ModbusSequentialDataBlock(1, [1000 + i for i in range(200)]),
        hr=ModbusSequentialDataBlock(1, list(range(200))),
    )
    context = ModbusServerContext(devices=device, single=True)
    runner = LoopThread()

    async def start() -> tuple[Any, int]:
        server = ModbusTcpServer(context, address=("127.0.0.1", 0))
        await server.serve_forever(background=True)  # returns once it listens
        return server, server.transport.sockets[0].getsockname()[1]

    server, port = runner.run(start())
    try:
        yield PymodbusPeer("127.0.0.1", port, device)
    finally:
        runner.run(server.shutdown())
        runner.stop()


@dataclass
class RawPeer:
    """A TCP server whose behaviour per connection is a coroutine given the reader and writer."""

    port: int
    connections: int = 0

    @property
    def url(self) -> str:
        return f"modbus://127.0.0.1:{self.port}?unit=1"


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


@pytest.fixture
def raw_server() -> Iterator[Callable[[Handler], RawPeer]]:
    """Start raw misbehaving servers: `peer = raw_server(handler)`."""
    runner = LoopThread()
    servers: list[asyncio.AbstractServer] = []

    def start(handler: Handler) -> RawPeer:
        peer = RawPeer(0)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer.connections += 1
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        async def listen() -> int:
            server = await asyncio.start_server(serve, "127.0.0.1", 0)
            servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        peer.port = runner.run(listen())
        return peer

    yield start

    async def close_all() -> None:
        for server in servers:
            server.close()

    runner.run(close_all())
    runner.stop()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each Modbus client engine in turn: the same test holds both to the same behaviour."""
    return str(request.param)
