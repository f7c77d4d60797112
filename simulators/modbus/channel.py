"""A non-blocking file descriptor (a TCP socket or a pty master) on the asyncio loop, with no transport,
stream or task in between: the Modbus server's fast path (simulators.modbus.server says why)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

RECV_SIZE = 4096  # a Modbus frame is at most 260 bytes; pipelined requests come in a few reads
_HIGH_WATER = 256 * 1024  # unsent bytes above which a connection stops reading until the client reads


class Channel:
    """A non-blocking file descriptor (a TCP socket or a pty master) on the loop.

    Two ways to use it: `start_raw(on_data)` calls back with every chunk read (the fast path), or it is
    the `Reader`/`Writer` the fault hooks wrap. Writing never blocks: what the kernel does not take is
    kept and sent when the descriptor is writable.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        recv: Callable[[int], bytes],
        send: Callable[[bytes | bytearray], int],
        release: Callable[[], None],
        extra: dict[str, Any],
    ) -> None:
        self._loop = loop
        self._fd = fd
        self._recv = recv
        self._send = send
        self._release = release
        self._extra = extra
        self._out = bytearray()
        self._on_data: Callable[[bytes], None] | None = None
        self.on_close: Callable[[], None] | None = None
        self._reading = False
        self._closing = False
        self._closed = False
        # for read() (stream use)
        self._in = bytearray()
        self._eof = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused = False

    # -- reading ---------------------------------------------------------------------------------

    def start_raw(self, on_data: Callable[[bytes], None]) -> None:
        self._on_data = on_data
        self.resume_reading()

    def pause_reading(self) -> None:
        self._paused = True
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def resume_reading(self) -> None:
        self._paused = False
        if not self._reading and not self._closing and not self._eof:
            self._loop.add_reader(self._fd, self._read_ready)
            self._reading = True

    def _read_ready(self) -> None:
        try:
            data = self._recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._at_eof()
            return
        on_data = self._on_data
        if on_data is not None:
            on_data(data)
            return
        self._in += data
        if len(self._in) > _HIGH_WATER:
            self.pause_reading()
        self._wake_reader()

    def _at_eof(self) -> None:
        self._eof = True
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        if self._on_data is not None:
            self.abort()
        else:
            self._wake_reader()

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self, n: int = -1) -> bytes:
        while not self._in and not self._eof and not self._closed:
            if self._paused or not self._reading:
                self.resume_reading()
            self._read_waiter = self._loop.create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        if not self._in:
            return b""
        size = len(self._in) if n < 0 else min(n, len(self._in))
        data = bytes(self._in[:size])
        del self._in[:size]
        return data

    # -- writing ---------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closing or self._closed:
            return
        if not self._out:
            try:
                sent = self._send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.abort()
                return
            if sent == len(data):
                return
            data = data[sent:]
            self._loop.add_writer(self._fd, self._write_ready)
        self._out += data
        if len(self._out) > _HIGH_WATER and self._on_data is not None:
            self.pause_reading()  # a client that does not read its answers gets no more served

    def _write_ready(self) -> None:
        try:
            sent = self._send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.abort()
            return
        del self._out[:sent]
        if self._out:
            return
        self._loop.remove_writer(self._fd)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._closing:
            self.abort()
        elif self._paused and self._on_data is not None:
            self.resume_reading()

    async def drain(self) -> None:
        if len(self._out) > _HIGH_WATER and not self._closed:
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    # -- closing ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close once what was written is sent."""
        if self._closing or self._closed:
            return
        self._closing = True
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        if not self._out:
            self.abort()

    def abort(self) -> None:
        """Close now, dropping anything unsent."""
        if self._closed:
            return
        self._closed = self._closing = True
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        if self._out:
            self._loop.remove_writer(self._fd)
            self._out.clear()
        for waiter in (self._read_waiter, self._drain_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        with contextlib.suppress(OSError):
            self._release()
        if self.on_close is not None:
            self.on_close()

    def is_closing(self) -> bool:
        return self._closing

    @property
    def closed(self) -> bool:
        return self._closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)


__all__ = ["RECV_SIZE", "Channel"]
