"""Listening TCP sockets for the protocol front-ends, protocol-neutral.

- `listen_tcp`: bind and listen now, so a taken port is reported at once, naming the devices;
- `TcpListener`: a listening socket on the loop that accepts without a task, pauses (doubling, and
  warning at most every 10 s) while accept() fails, and hands each connection to `accepted`;
- `TcpGate`: closes a listener's socket while its devices refuse every connection (a device that is
  off: connecting fails as it does there) and reopens it on the same port after;
- `ServerGroup`: a front-end's listeners, opened all or none, with the freeze watch its devices need.

The address shown is the one bound, as it is: a wildcard (every interface) is not shown as 127.0.0.1,
which would hide that other machines reach it too; SimHost warns about it and says where.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from bifrost.errors import ConfigError
from simulators.hooks import FaultHooks, ListenerInfo, NoFaults

log = logging.getLogger(__name__)

_BACKLOG = 128
_ACCEPT_BATCH = 64  # connections taken per wake-up, so a flood cannot hold the loop
_ACCEPT_PAUSE = (0.01, 1.0)  # seconds a listener stops accepting after accept() fails: first, longest
_ACCEPT_WARN_EVERY = 10.0  # seconds between warnings while accept() keeps failing


def host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def peer_name(peer: Any) -> str:
    """A connection's peer as the traffic log names it: host:port."""
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def listen_tcp(host: str, port: int, who: str) -> tuple[socket.socket, str]:
    """A non-blocking listening socket on host:port (port 0: any free one) and the address it shows.
    `who` (the devices served there) starts the ConfigError when it cannot listen."""
    where = host_port(host, port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"{who}: cannot listen on {where}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        why = "the address is already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise ConfigError(f"{who}: cannot listen on {where}: {why}") from None
    return sock, host_port(host or "0.0.0.0", int(sock.getsockname()[1]))


class TcpListener:
    """A listening socket watched with `loop.add_reader`; subclasses serve what `accepted` gets.

    `info` is what the fault hooks see; `accepting(info)` is asked of every connection, and one it
    refuses is closed at once. Use on the loop's thread only.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int, hooks: FaultHooks, info: ListenerInfo
    ) -> None:
        self.loop = loop
        self.host, self.port = host, port
        self.hooks = hooks
        self.info = info
        self.address = ""  # host:port as bound, once open
        self._socket: socket.socket | None = None
        self._pause = 0.0  # the current pause after a failed accept(); 0 while accepting works
        self._paused: asyncio.TimerHandle | None = None
        self._failures = 0  # failed accepts not yet in a warning
        self._warn_at = 0.0  # loop time before which failures are only counted

    @property
    def listening(self) -> bool:
        return self._socket is not None

    def open_socket(self) -> None:
        """Listen (again, on `self.port`); a ConfigError names the devices and the address."""
        sock, self.address = listen_tcp(self.host, self.port, ", ".join(self.info.devices))
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        self.info = ListenerInfo(
            self.info.protocol, self.info.transport, self.address, self.info.devices, self.info.framing
        )
        self.loop.add_reader(sock.fileno(), self._accept)

    def close_socket(self) -> None:
        """Stop listening; connections already accepted are served on."""
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        sock, self._socket = self._socket, None
        if sock is not None:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(sock.fileno())
            sock.close()

    def accepted(self, sock: socket.socket, peer: Any) -> None:
        """Serve one new connection (non-blocking, TCP_NODELAY set); `peer` is what accept() gave."""
        raise NotImplementedError

    def _accept(self) -> None:
        assert self._socket is not None
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, peer = self._socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: a later attempt may succeed
                self._accept_failed(exc)
                return
            self._pause = 0.0
            if not self.hooks.accepting(self.info):
                sock.close()
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.accepted(sock, peer)

    def _accept_failed(self, exc: OSError) -> None:
        # The connection stays in the backlog, so the socket stays readable and the loop would call
        # straight back: a busy spin that starves every client and floods the log. Stop watching the
        # socket for a pause that doubles on each failure, and warn once per interval with a count.
        sock = self._socket
        assert sock is not None
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(sock.fileno())
        first, longest = _ACCEPT_PAUSE
        self._pause = min(longest, max(first, self._pause * 2))
        if self._paused is not None:
            self._paused.cancel()
        self._paused = self.loop.call_later(self._pause, self._resume_accepting)
        self._failures += 1
        now = self.loop.time()
        if now >= self._warn_at:
            log.warning(
                "%s: cannot accept a connection: %s (%d failure(s) since the last warning); accepting again "
                "after a pause of up to %gs, and warning at most every %gs",
                self.address,
                exc.strerror or exc,
                self._failures,
                longest,
                _ACCEPT_WARN_EVERY,
            )
            self._failures = 0
            self._warn_at = now + _ACCEPT_WARN_EVERY

    def _resume_accepting(self) -> None:
        self._paused = None
        if self._socket is not None:
            self.loop.add_reader(self._socket.fileno(), self._accept)


class TcpGate:
    """A TcpListener's listening socket, closed while its devices refuse every connection and reopened
    on the same port after (as the proxy does). Used on the loop thread only."""

    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        self.devices: tuple[str, ...] = tuple(listener.info.devices)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def want_closed(self, closed: bool) -> None:
        listener = self.listener
        if closed and not self._closed:
            if not listener.listening:
                return  # already stopped (the host is closing)
            listener.close_socket()
            self._closed = True
            log.info("%s: not listening (every connection is refused)", listener.info.address)
        elif not closed and self._closed:
            try:
                listener.open_socket()
            except ConfigError as exc:  # the port was taken meanwhile: tried again at the next change
                log.error("%s: cannot listen again: %s", listener.info.address, exc)
                return
            self._closed = False
            log.info("%s: listening again", listener.info.address)


class ServedDevice(Protocol):
    """What a ServerGroup needs of a front-end's device."""

    name: str

    def check_freeze(self) -> None: ...


class Listener(Protocol):
    address: str

    def disconnect(self) -> int: ...

    def close(self) -> list[asyncio.Task[None]]: ...


L = TypeVar("L", bound=Listener)


class ServerGroup(Generic[L]):
    """A front-end's listeners by device. `start` opens them all or none; under fault hooks a freeze
    is noticed on the plant's next change, not only at the next read. Start and stop on the loop's thread."""

    def __init__(self, devices: Sequence[Any], hooks: FaultHooks | None) -> None:
        self.devices = list(devices)
        self.hooks: FaultHooks = hooks if hooks is not None else NoFaults()
        self.listeners: list[L] = []
        self._by_device: dict[str, L] = {}
        self._unsubscribe: list[Callable[[], None]] = []

    def open(self, listeners: Iterable[tuple[L, Sequence[str]]], start: Callable[[L], None]) -> None:
        """Start each listener with `start`, for the device names given with it; on a failure, close
        the ones started and raise."""
        try:
            for listener, names in listeners:
                start(listener)
                self.listeners.append(listener)
                for name in names:
                    self._by_device[name] = listener
        except BaseException:
            for listener in self.listeners:
                listener.close()
            self.listeners.clear()
            self._by_device.clear()
            raise
        if type(self.hooks) is not NoFaults:
            for device in self.devices:
                self._unsubscribe.append(device.plant.on_change(_freeze_watch(device)))

    def listener(self, device: str) -> L | None:
        return self._by_device.get(device)

    def address(self, device: str) -> str:
        return self._by_device[device].address

    def disconnect(self, device: str) -> int:
        listener = self._by_device.get(device)
        return 0 if listener is None else listener.disconnect()

    def close(self) -> list[asyncio.Task[None]]:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        tasks = []
        for listener in self.listeners:
            tasks.extend(listener.close())
        self.listeners.clear()
        self._by_device.clear()
        return tasks


class GroupServer:
    """The parts of a front-end's ProtocolServer (simulators.protocols) that only pass on to its
    ServerGroup; a front-end adds `about`, `url` and `reset`."""

    devices: list[Any]
    server: Any  # a ServerGroup whose listeners have `info`, with a `gates()`

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.server.start(loop)

    @property
    def listeners(self) -> Sequence[ListenerInfo]:
        return tuple(listener.info for listener in self.server.listeners)

    def disconnect(self, device: str) -> int:
        return int(self.server.disconnect(device))

    def close(self) -> list[asyncio.Task[None]]:
        return list(self.server.close())

    def changed(self) -> None:
        for device in self.devices:
            device.check_freeze()  # a freeze keeps the values of its start, not of the next change

    def gates(self, loop: asyncio.AbstractEventLoop) -> Sequence[TcpGate]:
        return list(self.server.gates())


def _freeze_watch(device: ServedDevice) -> Callable[[object], None]:
    def changed(_changes: object) -> None:
        device.check_freeze()

    return changed


__all__ = ["GroupServer", "ServerGroup", "TcpGate", "TcpListener", "host_port", "listen_tcp", "peer_name"]
