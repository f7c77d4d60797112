"""Transport faults around a server's byte streams: `wrap_streams(faults, reader, writer)`.

The wrapped reader carries requests (upstream), the wrapped writer replies (downstream); each has a
Lane of the FaultSet. Both cut their bytes into frames first (simulators.faults.frames), so a fault
acts per frame and a `match` sees the request a reply answers. The wrappers speak the `Reader` and
`Writer` protocols of simulators.hooks, so they chain: a listener serving several devices wraps the
wire once per device.

A `reset` sends the client a TCP RST (SO_LINGER 0, then close); a `close` closes gracefully. Either
way the server then reads the end of its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import Any

from simulators.faults.faultset import FaultSet
from simulators.faults.frames import Pairing, Splitter, request_info
from simulators.faults.lanes import Lane
from simulators.hooks import Reader, Writer

log = logging.getLogger(__name__)

READ_SIZE = 65536
RTU_QUIET = 0.02  # wall seconds without bytes after which an unfinished RTU frame is given out as it is


def abort_with_reset(writer: Writer) -> None:
    """Close so that the peer gets a TCP RST rather than a FIN (SO_LINGER on, timeout 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = getattr(writer, "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        transport.abort()  # no flush of what is buffered: a reset loses it
    else:
        writer.close()


class _Connection:
    """What the two wrappers of one connection share: the pairing, and how the connection ends."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.pairing: Pairing | None = None
        self.ended: str | None = None
        self.reader: FaultyReader | None = None
        self.faulty_writer: FaultyWriter | None = None

    def end(self, how: str) -> None:
        if self.ended is not None:
            return
        self.ended = how
        log.debug("a %s fault ends the connection", how)
        if how == "reset":
            abort_with_reset(self.writer)
        else:
            self.writer.close()
        if self.reader is not None:
            self.reader.stop()
        if self.faulty_writer is not None:
            self.faulty_writer.stop()


class FaultyReader:
    """Requests as the server reads them, after the upstream faults."""

    def __init__(self, faults: FaultSet, inner: Reader, connection: _Connection, pairing: Pairing) -> None:
        self._inner = inner
        self._connection = connection
        self._pairing = pairing
        self._out = asyncio.StreamReader(limit=2**20)
        self._splitter = Splitter(faults.framing, "requests")
        self.lane = Lane(faults, "upstream", self._out.feed_data, connection.end)
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def read(self, n: int = -1) -> bytes:
        return await self._out.read(n)

    async def _pump(self) -> None:
        try:
            while True:
                quiet = RTU_QUIET if self._splitter.pending else None
                try:
                    data = await asyncio.wait_for(self._inner.read(READ_SIZE), quiet)
                except asyncio.TimeoutError:
                    self._relay(self._splitter.flush())
                    continue
                if not data:
                    self._relay(self._splitter.flush())
                    break
                self._relay(self._splitter.feed(data))
            await self.lane.drained()
        except (ConnectionError, OSError) as exc:
            log.debug("connection lost while reading: %s", exc)
        finally:
            if not self._out.at_eof():
                self._out.feed_eof()

    def _relay(self, pieces: list[tuple[bytes, Any]]) -> None:
        for piece, frame in pieces:
            info = request_info(frame)
            self._pairing.request(frame, info)
            self.lane.push(piece, info)

    def stop(self) -> None:
        self.lane.close()
        if not self._task.done():
            self._task.cancel()
        if not self._out.at_eof():
            self._out.feed_eof()


class FaultyWriter:
    """Replies as the client gets them, after the downstream faults."""

    def __init__(self, faults: FaultSet, inner: Writer, connection: _Connection, pairing: Pairing) -> None:
        self._inner = inner
        self._connection = connection
        self._pairing = pairing
        self._splitter = Splitter(faults.framing, "responses")
        self.lane = Lane(faults, "downstream", inner.write, connection.end)
        self._closing = False
        self._closer: asyncio.Task[None] | None = None

    def write(self, data: bytes) -> None:
        if self._closing or self._connection.ended is not None:
            return
        pieces = self._splitter.feed(bytes(data))
        pieces += self._splitter.flush()  # a server writes whole replies: an RTU remainder is not waited on
        for piece, frame in pieces:
            self.lane.push(piece, self._pairing.reply(frame))

    async def drain(self) -> None:
        if self._connection.ended is None and not self._inner.is_closing():
            await self._inner.drain()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self.lane.idle:
            self._inner.close()
        else:
            # Delayed replies still go out before the FIN, as a slow network would deliver them.
            self._closer = asyncio.get_running_loop().create_task(self._close_when_sent())

    async def _close_when_sent(self) -> None:
        try:
            await self.lane.drained()
        finally:
            self._inner.close()

    async def wait_closed(self) -> None:
        if self._closer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._closer
        wait = getattr(self._inner, "wait_closed", None)
        if wait is not None:
            with contextlib.suppress(ConnectionError, OSError):
                await wait()

    def is_closing(self) -> bool:
        return self._closing or self._connection.ended is not None or self._inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def stop(self) -> None:
        self.lane.close()
        self._closing = True


def wrap_streams(faults: FaultSet, reader: Reader, writer: Writer) -> tuple[FaultyReader, FaultyWriter]:
    """`reader` and `writer` with `faults`' transport faults; call on the connection's event loop."""
    connection = _Connection(writer)
    pairing = Pairing(faults.framing)
    connection.reader = FaultyReader(faults, reader, connection, pairing)
    connection.faulty_writer = FaultyWriter(faults, writer, connection, pairing)
    return connection.reader, connection.faulty_writer


__all__ = ["FaultyReader", "FaultyWriter", "abort_with_reset", "wrap_streams"]
