"""The fault lanes in front of an OPC UA device: the C server owns its socket, so the device's port is
a relay's, and each client connection is relayed to the server (on a port of its own on 127.0.0.1)
through the host's fault hooks, as simulators/proxy.py relays to a real device.

Transport faults (latency, bandwidth, slicer, stall, reset, close, corrupt, drop) act on the bytes
(`hooks.wrap`), cut into OPC UA message chunks by the listener's framer (simulators/opcua/frames.py);
`refuse` closes connections as they arrive (`hooks.accepting`). The chunks pass on unchanged (they may
be encrypted); the server's are relayed a whole chunk per write, so a fault acts on whole replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from bifrost.errors import ConfigError
from simulators.hooks import FaultHooks, ListenerInfo, Reader, Writer
from simulators.opcua.frames import HEADER, MESSAGES, message_size

log = logging.getLogger(__name__)
CHUNK = 65536


class Relay:
    """Listen on (host, port) for `device` and relay every connection to 127.0.0.1:`upstream`."""

    def __init__(self, device: str, hooks: FaultHooks, host: str, port: int) -> None:
        self.device = device
        self.hooks = hooks
        self.host = host
        self.port = port
        self.upstream = 0
        self.info = ListenerInfo("opcua", "tcp", f"{host}:{port}", (device,), MESSAGES)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[Writer] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def bind(self) -> int:
        """Bind and listen now (so the URL is known before the loop runs the server); the bound port."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"device {self.device}: cannot listen on {self.host}:{self.port}: {exc}") from None
        sock.listen(128)
        sock.setblocking(False)
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        shown = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        self.info = ListenerInfo("opcua", "tcp", f"{shown}:{self.port}", (self.device,), MESSAGES)
        return self.port

    def start(self, loop: asyncio.AbstractEventLoop, upstream: int) -> None:
        self.upstream = upstream

        async def serve() -> None:
            self._server = await asyncio.start_server(self._client, sock=self._sock)

        self._track(loop.create_task(serve()))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if not self.hooks.accepting(self.info):
            writer.close()
            return
        with contextlib.suppress(OSError):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client_reader, client_writer = self.hooks.wrap(reader, writer, self.device)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError as exc:
            log.warning("%s: the OPC UA server did not take the connection: %s", self.device, exc)
            client_writer.close()
            return
        self._writers.update((client_writer, up_writer))
        try:
            await asyncio.gather(_pump(client_reader, up_writer), _pump_messages(up_reader, client_writer))
        finally:
            for w in (client_writer, up_writer):
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.close()

    def disconnect(self) -> int:
        """Drop every relayed connection (a reboot)."""
        writers = list(self._writers)
        for w in writers:
            with contextlib.suppress(Exception):
                w.close()
        self._writers.clear()
        return len(writers) // 2

    def close(self) -> list[asyncio.Task[None]]:
        if self._server is not None:
            self._server.close()
            self._server = None
        else:
            with contextlib.suppress(Exception):
                self._sock.close()
        self.disconnect()
        return list(self._tasks)


async def _pump(reader: Reader, writer: Writer) -> None:
    """Bytes one way until the end of the stream; then close the other side."""
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _pump_messages(reader: asyncio.StreamReader, writer: Writer) -> None:
    """The server's bytes, a whole message chunk per write (the wrapped writer cuts each write on its
    own); bytes that are no chunk go on as they come."""
    try:
        while True:
            header = await reader.readexactly(HEADER)
            size = message_size(header)
            if size is None or size < HEADER:
                writer.write(header)
                await _pump(reader, writer)
                return
            writer.write(header + await reader.readexactly(size - HEADER))
            await writer.drain()
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            with contextlib.suppress(Exception):
                writer.write(exc.partial)
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
