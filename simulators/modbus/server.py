"""The Modbus transports: TCP (MBAP), RTU over TCP, and RTU on a pseudo-terminal, on one asyncio loop.

Devices of a scenario that share a transport and a listen address share one listener, which routes
requests to them by unit id (all RTU devices share one pty: one serial bus). Framing is
bifrost.modbus.framing's `ServerConnection`; answering is `simulators.modbus.device.ModbusDevice`.

Speed. A request costs one callback: sockets and the pty are plain non-blocking file descriptors
watched with `loop.add_reader`, read with a small `recv`, answered with `send`, with no transport,
stream or task in between (asyncio's own transports allocate a 256 KiB buffer per read, which costs
more than answering the request). When fault hooks wrap a connection's byte streams, that connection
is served through the wrappers instead (`Reader`/`Writer`, simulators.hooks), at the cost of a task.

Robustness. A frame that does not decode gets the protocol's answer (BadRequest.answer(): exception
1, 2 or 3); RTU noise is skipped by the framer; an MBAP header that cannot be right closes that
connection. An unexpected error in one connection closes that connection and is logged; the others
are served on. Units: over Modbus TCP a listener with a single device also answers unit 0 and 255
(which clients use when the unit does not matter), and a unit it does not serve gets exception 0x0B
(gateway target failed to respond); over RTU an unknown unit is silent, as on a shared bus, and unit
0 is a broadcast: writes are done, nothing is answered.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import tty
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bifrost.errors import ConfigError
from simulators.hooks import FaultHooks, ListenerInfo
from simulators.listening import ServerGroup, TcpGate, TcpListener, host_port, peer_name
from simulators.modbus.channel import Channel
from simulators.modbus.device import ModbusDevice
from simulators.modbus.frames import framer_for
from simulators.modbus.session import Session

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Endpoint:
    """Where a listener listens: a transport and, for TCP, a host and port (port 0: any free port).

    Devices with equal endpoints share one listener. `listen` is the address as the scenario wrote it,
    so that devices the scenario puts on different addresses keep their own listeners when the port
    is replaced by 0 (`--any-port`): each of them gets its own free port.
    """

    transport: str
    host: str = ""
    port: int = 0
    listen: str = ""

    def __str__(self) -> str:
        return "a pseudo-terminal" if self.transport == "rtu" else host_port(self.host, self.port)


class Listener(TcpListener):
    """One listening endpoint (a TCP socket, or a pty: one serial bus) and the devices served there."""

    def __init__(
        self,
        endpoint: Endpoint,
        devices: list[ModbusDevice],
        hooks: FaultHooks,
        sleep: Sleep,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.endpoint = endpoint
        self.devices = devices
        self.sleep = sleep
        self.rtu = endpoint.transport in ("rtu", "rtu+tcp")
        self.pty = endpoint.transport == "rtu"
        self.framing: Any = "rtu" if self.rtu else "mbap"
        info = ListenerInfo(
            "modbus", endpoint.transport, str(endpoint), tuple(d.name for d in devices), framer_for(self.framing)
        )
        super().__init__(loop, endpoint.host, endpoint.port, hooks, info)
        self.units: dict[int, ModbusDevice] = {}
        for device in devices:
            other = self.units.get(device.unit)
            if other is not None:
                raise ConfigError(
                    f"{device.name} and {other.name} both serve unit {device.unit} on {endpoint}: "
                    "devices sharing a listener need different units"
                )
            self.units[device.unit] = device
        if not self.rtu and len(devices) == 1:
            # A lone Modbus TCP device answers the "any unit" ids too, as most do.
            self.units.setdefault(0, devices[0])
            self.units.setdefault(255, devices[0])
        self.sessions: set[Session] = set()
        self._pty: tuple[int, int] | None = None

    def open(self) -> None:
        if self.pty:
            self._open_pty()
        else:
            self.open_socket()

    def accepted(self, sock: socket.socket, peer: Any) -> None:
        extra = {"peername": peer, "sockname": sock.getsockname(), "socket": sock}
        self._start(Channel(self.loop, sock.fileno(), sock.recv, sock.send, sock.close, extra), peer_name(peer))

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        try:
            tty.setraw(slave)  # no echo, no line editing: the bytes a serial line carries
            os.set_blocking(master, False)
            path = os.ttyname(slave)
        except OSError:
            os.close(master)
            os.close(slave)
            raise
        # The slave stays open here too, so that the master never reads EIO while no client has the
        # path open, and a client may open and close it as often as it likes.
        self._pty = (master, slave)
        self.address = path
        self.info = ListenerInfo("modbus", "rtu", path, self.info.devices, self.info.framing)

        def release() -> None:
            os.close(master)
            os.close(slave)

        def send(data: bytes | bytearray) -> int:
            return os.write(master, data)

        def recv(size: int) -> bytes:
            try:
                return os.read(master, size)
            except OSError as exc:
                if exc.errno == errno.EIO:
                    raise BlockingIOError from None  # no client at the other end right now
                raise

        self._start(Channel(self.loop, master, recv, send, release, {"peername": None, "path": path}), path)

    def _start(self, channel: Channel, client: str) -> None:
        session = Session(self, channel, client)
        self.sessions.add(session)
        session.start(self.devices, self.hooks)

    def disconnect(self) -> int:
        """Drop every connection (a pty line is never dropped: it is the device's port)."""
        if self.pty:
            return 0
        sessions = list(self.sessions)
        for session in sessions:
            session.close()
        return len(sessions)

    def close(self) -> list[asyncio.Task[None]]:
        """Stop listening and drop every connection; the tasks still to be awaited."""
        self.close_socket()
        tasks = []
        for session in list(self.sessions):
            tasks.extend(session.tasks())
            session.close()
        self.sessions.clear()
        return tasks


class ModbusServer(ServerGroup[Listener]):
    """Every Modbus device of a scenario, grouped into listeners. Start and stop on the loop's thread."""

    def __init__(
        self,
        devices: list[ModbusDevice],
        endpoints: dict[str, Endpoint],
        *,
        hooks: FaultHooks | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        super().__init__(devices, hooks)
        self.endpoints = endpoints
        self.sleep: Sleep = sleep if sleep is not None else asyncio.sleep

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        groups: dict[Endpoint, list[ModbusDevice]] = {}
        for device in self.devices:
            groups.setdefault(self.endpoints[device.name], []).append(device)
        listeners = (
            (Listener(endpoint, devices, self.hooks, self.sleep, loop), [d.name for d in devices])
            for endpoint, devices in groups.items()
        )
        self.open(listeners, Listener.open)

    def gates(self) -> list[TcpGate]:
        """The TCP listeners' gates (a pty is the device's port: it has no listening socket)."""
        return [TcpGate(listener) for listener in self.listeners if not listener.pty]


__all__ = ["Endpoint", "Listener", "ModbusServer"]
