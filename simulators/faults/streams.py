"""Transport faults around a server's byte streams: `wrap_streams(faults, reader, writer)`.

The wrapped reader carries requests (upstream), the wrapped writer replies (downstream); each has a
Lane of the FaultSet. Both cut their bytes into frames first, with the FaultSet's framer (the
front-end's, simulators.faults.frames), so a fault acts per frame and a `match` sees the request a reply
answers; with no framer the bytes go on as the chunks they came in. With no fault in force the bytes go
straight through, so a device pays little for being wrapped. The wrappers speak the `Reader` and
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
from simulators.faults.frames import CHUNKS, NO_PAIRING, Pairing, Piece, Splitter
from simulators.faults.lanes import HIGH_WATER, Lane
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
    """Requests as the server reads them, after the upstream faults.

    While no upstream fault is in force it reads straight through (the frames are only noted, for
    the replies' matches). From the first read that finds one, a pump task reads ahead, so each chunk's
    delay counts from when it really arrived, and the server reads what the lane lets through.
    """

    def __init__(self, faults: FaultSet, inner: Reader, connection: _Connection, pairing: Pairing) -> None:
        self._faults = faults
        self._inner = inner
        self._connection = connection
        self._pairing = pairing
        framer = faults.framer
        self._splitter: Splitter = CHUNKS if framer is None else framer.splitter("requests")
        self._out: asyncio.StreamReader | None = None
        self._task: asyncio.Task[None] | None = None
        self._unread = 0  # bytes through the lane that the server has not read yet
        self._read_some = asyncio.Event()
        self.lane = Lane(faults, "upstream", self._feed, connection.end)

    async def read(self, n: int = -1) -> bytes:
        if self._out is None:
            # Straight through, unless a fault would act; a frame half read keeps it so until it is whole.
            if self._splitter.pending or not self._faults.transport_possible("upstream"):
                data = await self._inner.read(n)
                if self._connection.ended is not None:
                    return b""
                if self._faults.quiet() and self._splitter.whole_frame(data):
                    # No fault at all: nothing will look for this request, and a whole frame leaves
                    # the splitter as it was. The quiet path of a device that has no fault in force.
                    return data
                for _, frame in self._splitter.feed(data):
                    self._pairing.request(frame)
                return data
            self._out = asyncio.StreamReader(limit=2**20)
            self._task = asyncio.get_running_loop().create_task(self._pump())
        data = await self._out.read(n)
        self._unread = max(0, self._unread - len(data))
        self._read_some.set()
        return data

    def _feed(self, data: bytes) -> None:
        if self._out is not None:
            self._unread += len(data)
            self._out.feed_data(data)

    async def _room(self) -> None:
        # Reading ahead is bounded: by what the lane holds back, and by what it let through that the
        # server has not read (a server waiting for its replies to drain reads nothing).
        await self.lane.room()
        while self._unread > HIGH_WATER:
            self._read_some.clear()
            await self._read_some.wait()

    async def _pump(self) -> None:
        try:
            while True:
                await self._room()
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
            if self._out is not None and not self._out.at_eof():
                self._out.feed_eof()

    def _relay(self, pieces: list[Piece]) -> None:
        for piece, frame in pieces:
            self._pairing.request(frame)
            self.lane.push(piece, frame)

    def stop(self) -> None:
        self.lane.close()
        if self._task is not None and not self._task.done() and self._task is not asyncio.current_task():
            self._task.cancel()
        if self._out is not None and not self._out.at_eof():
            self._out.feed_eof()


class FaultyWriter:
    """Replies as the client gets them, after the downstream faults.

    A server writes whole replies (or, under `truncate`, part of one on purpose), so each write is cut
    on its own, with no state carried from one write to the next.
    """

    def __init__(self, faults: FaultSet, inner: Writer, connection: _Connection, pairing: Pairing) -> None:
        self._framer = faults.framer
        self._inner = inner
        self._connection = connection
        self._pairing = pairing
        self.lane = Lane(faults, "downstream", inner.write, connection.end)
        self._closing = False
        self._closer: asyncio.Task[None] | None = None

    def write(self, data: bytes) -> None:
        if self._closing or self._connection.ended is not None:
            return
        if self.lane.clear and self.lane.faults.quiet():
            self._inner.write(data)  # no fault at all and nothing held back: straight through
            return
        data = data if type(data) is bytes else bytes(data)
        if self._framer is None:
            self.lane.push(data)
            return
        for piece, frame in self._framer.cut_whole(data, "responses"):
            self.lane.push(piece, self._pairing.reply(frame))

    async def drain(self) -> None:
        # A full lane (replies held back by latency, say) is drained like a full socket buffer: the
        # server stops reading this connection until it has room, so a client that pipelines and
        # never reads cannot make it hold more than HIGH_WATER of replies.
        if self._connection.ended is None:
            await self.lane.room()
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
    pairing = NO_PAIRING if faults.framer is None else faults.framer.pairing()
    connection.reader = FaultyReader(faults, reader, connection, pairing)
    connection.faulty_writer = FaultyWriter(faults, writer, connection, pairing)
    return connection.reader, connection.faulty_writer


__all__ = ["FaultyReader", "FaultyWriter", "abort_with_reset", "wrap_streams"]
