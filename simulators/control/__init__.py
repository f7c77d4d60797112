"""Drive a running simulator from anywhere: the HTTP control API of `bifrost-sim serve --control`, its
live dashboard, and `RemoteHost`, the same surface as SimHost over that API.

    server = ControlServer(host, "127.0.0.1:0").start()    # what `serve --control` does
    remote = RemoteHost(server.url)                          # in a test, in another process or machine

`control.api` holds the endpoints (FastAPI, extra `control`), `control.dashboard` the page at `/`,
`control.remote` the client (httpx).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from bifrost._extras import require
from bifrost.errors import ConfigError

if TYPE_CHECKING:
    from simulators.host import SimHost

TOKEN_VARIABLE = "BIFROST_CONTROL_TOKEN"
_START_TIMEOUT = 10.0


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere: treat as reachable


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--control {address!r}: expected HOST:PORT, such as 127.0.0.1:8020 (port 0: any free port)")
    return host.strip("[]") or "127.0.0.1", int(port)


class ControlServer:
    """The control API and dashboard of one SimHost, served by uvicorn on a thread of its own."""

    def __init__(
        self, host: SimHost, address: str = "127.0.0.1:0", *, token: str | None = None, shard: str | None = None
    ) -> None:
        self.sim = host
        self.bind, self.port = split_address(address)
        self.token = token if token is not None else os.environ.get(TOKEN_VARIABLE) or None
        if not is_loopback(self.bind) and not self.token:
            raise ConfigError(
                f"--control {address}: an address beyond loopback needs a token: --control-token TOKEN "
                f"or the environment variable {TOKEN_VARIABLE}"
            )
        self.shard = shard
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "") else ("[::1]" if self.bind == "::" else self.bind)
        shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"http://{shown}:{self.port}"

    def start(self) -> ControlServer:
        require("fastapi", "control")
        require("uvicorn", "control")
        import uvicorn

        from simulators.control.api import create_app
        from simulators.control.dashboard import page

        app = create_app(self.sim, token=self.token, shard=self.shard, dashboard=page)
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        try:
            sock = socket.create_server((self.bind, self.port), family=family, reuse_port=False)
        except OSError as exc:
            raise ConfigError(f"--control {self.bind}:{self.port}: cannot listen: {exc.strerror or exc}") from None
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="bifrost-control", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:  # uvicorn offers no event for it
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"the control API on {self.url} did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(_START_TIMEOUT)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def __getattr__(name: str) -> Any:
    if name == "RemoteHost":  # the client needs only httpx, not the server's stack
        from simulators.control.remote import RemoteHost

        return RemoteHost
    raise AttributeError(name)


__all__ = ["TOKEN_VARIABLE", "ControlServer", "RemoteHost", "is_loopback", "split_address"]
