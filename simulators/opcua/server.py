"""One OPC UA device of a scenario, served by the C server (bifrost._native.OpcuaServer).

The C server runs on its own thread and answers every client itself; this side keeps it in step
with the plant:

- plant -> server: a plant listener pushes each batch of changed tags (with a status and a source
  timestamp) into the server's shared state; reads and subscriptions see them at once, and the
  server's sampling turns them into data-change notifications (so a VirtualClock's advance, which
  ticks the plant, publishes).
- server -> plant: a client's write is handed over through a descriptor the host loop watches
  (`loop.add_reader`); the loop sets the plant tag, and only then does the client get its answer,
  so a Modbus read made after the OPC UA write returned sees the new value.

Faults: `exception` and `bad_quality` are set into the server (a status for chosen nodes, or the
values' status); `freeze` stops the pushes; `reboot` drops every session and sets the values back
to the plant's. Transport faults act on the bytes, in lanes in front of the server (see
`simulators/opcua/front.py`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bifrost.errors import ConfigError
from simulators.opcua.nodes import ServedNode, wire_value

log = logging.getLogger(__name__)

_CERTIFICATES: dict[tuple[str, tuple[str, ...]], tuple[bytes, bytes]] = {}
_CERT_LOCK = threading.Lock()


def certificate_for(application_uri: str, hosts: Iterable[str]) -> tuple[bytes, bytes]:
    """A self-signed certificate (DER) and key for the URI and hosts, made once per process: RSA key
    generation takes a while, and a reboot or a second server of the same host reuses it."""
    from bifrost._native import opcua_certificate

    key = (application_uri, tuple(sorted(set(hosts))))
    with _CERT_LOCK:
        found = _CERTIFICATES.get(key)
        if found is None:
            found = _CERTIFICATES[key] = opcua_certificate(application_uri, list(key[1]))
        return found


def status_code(name: str | int) -> int:
    """The numeric OPC UA status for a name (`BadCommunicationError`) or a number."""
    from bifrost._native import opcua_status_code

    if isinstance(name, int):
        return name
    code = opcua_status_code(name)
    if code is None:
        raise ConfigError(f"unknown OPC UA status {name!r} (e.g. BadCommunicationError, UncertainLastUsableValue)")
    return code


def status_name(code: int) -> str:
    from bifrost._native import opcua_status_name

    return opcua_status_name(code)


ServiceEvent = tuple[float, str, int, int, "str | None", list[tuple[int, int]]]
"""(time, service, request id, channel id, session, [(variable index, status)]) as the server logs it."""


@dataclass(frozen=True)
class OpcuaSettings:
    """A device's server settings, from its scenario entry."""

    name: str
    host: str
    port: int
    path: str
    namespace: str
    security: tuple[str, ...]
    users: tuple[tuple[str, str, bool], ...]
    certificate: tuple[bytes, bytes] | None = None
    application_uri: str | None = None


class OpcuaDeviceServer:
    """Serve one device's nodes from `plant` (anything with get/set/on_change). Start and stop on the
    host's loop thread."""

    def __init__(
        self,
        settings: OpcuaSettings,
        nodes: list[ServedNode],
        plant: Any,
        *,
        on_service: Callable[[ServiceEvent], None] | None = None,
        frozen: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.nodes = nodes
        self.plant = plant
        self._index = {node.tag: i for i, node in enumerate(nodes)}
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._frozen = False
        self._quality: int = 0
        self._quality_nodes: set[int] | None = None
        self._on_service = on_service
        self._freeze_active = frozen
        self.advertised_url: str | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.settings.name}: not started")
        return int(self._server.port)

    @property
    def url(self) -> str:
        host = self.settings.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"opc.tcp://{shown}:{self.port}{self.settings.path}"

    @property
    def native(self) -> Any:
        return self._server

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        host: str | None = None,
        port: int | None = None,
        advertised_url: str | None = None,
    ) -> None:
        """Serve on the settings' host and port, or (behind a relay) on `host`:`port`, advertising
        `advertised_url` as the discovery URL."""
        from bifrost._native import OpcuaServer

        s = self.settings
        security = list(s.security)
        application_uri = s.application_uri or f"urn:bifrost:{socket.gethostname()}:{s.name}"
        certificate = s.certificate
        if certificate is None and "Basic256Sha256" in security:
            hosts = {"localhost", socket.gethostname(), "127.0.0.1"}
            if s.host not in ("", "0.0.0.0"):
                hosts.add(s.host)
            certificate = certificate_for(application_uri, hosts)
        snapshot = self.plant.snapshot()
        variables = [
            (n.node_id, list(n.path), n.type, n.writable, n.unit, wire_value(snapshot[n.tag], n.type))
            for n in self.nodes
        ]
        try:
            self._server = OpcuaServer(
                host=s.host if host is None else host,
                port=s.port if port is None else port,
                path=s.path,
                device=s.name,
                variables=variables,
                namespaces=[s.namespace],
                application_uri=application_uri,
                security=security,
                certificate=certificate[0] if certificate else None,
                private_key=certificate[1] if certificate else None,
                users=list(s.users),
                advertised_url=advertised_url,
            )
        except OSError as exc:
            raise ConfigError(f"device {s.name}: cannot serve OPC UA on {s.host}:{s.port}: {exc}") from None
        self._loop = loop
        self.advertised_url = advertised_url
        loop.add_reader(self._server.wake_fd(), self._take_writes)
        self._unsubscribe = self.plant.on_change(self._on_plant)
        if self._on_service is not None:
            self._server.set_log_services(True)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        server, self._server = self._server, None
        if server is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(server.wake_fd())
        server.stop()

    # --- plant <-> server ------------------------------------------------------------------------

    def _status_of(self, index: int) -> int:
        if self._quality and (self._quality_nodes is None or index in self._quality_nodes):
            return self._quality
        return 0

    def _on_plant(self, changes: dict[str, Any]) -> None:
        server = self._server
        if server is None or self._frozen:
            return
        if self._freeze_active is not None and self._freeze_active():
            self._frozen = True  # a freeze began before the host's loop heard of it: the values stop here
            return
        now = time.time()
        batch = []
        for tag, value in changes.items():
            i = self._index.get(tag)
            if i is not None:
                batch.append((i, wire_value(value, self.nodes[i].type), self._status_of(i), now))
        if batch:
            server.set_values(batch)

    def push_all(self) -> None:
        """Every variable from the plant again (after a reset, a thaw, a quality change)."""
        server = self._server
        if server is None:
            return
        snapshot = self.plant.snapshot()
        now = time.time()
        server.set_values(
            [(i, wire_value(snapshot[n.tag], n.type), self._status_of(i), now) for i, n in enumerate(self.nodes)]
        )

    def _take_writes(self) -> None:
        server = self._server
        if server is None:
            return
        server.clear_wake()
        for index, value, _user in server.drain_writes():
            tag = self.nodes[index].tag
            try:
                self.plant.set(tag, value)
            except Exception as exc:  # a value the tag cannot hold: the plant keeps its own
                log.warning("%s: client write of %r to %s not applied: %s", self.settings.name, value, tag, exc)
        self.drain_events()

    def drain_events(self) -> None:
        server, sink = self._server, self._on_service
        if server is None or sink is None:
            return
        for event in server.drain_events():
            sink(event)

    # --- faults ----------------------------------------------------------------------------------

    def node_id(self, index: int) -> str:
        """Variable `index`'s NodeId as the server numbers it (`ns=2;s=tank.level`)."""
        server = self._server
        return str(server.node_ids[index]) if server is not None else self.nodes[index].node_id

    def indexes(self, node: str | None) -> list[int] | None:
        """The variables a fault's `match: {node: ...}` names (a NodeId as served or a tag name)."""
        if node is None:
            return None
        ids = list(self._server.node_ids) if self._server is not None else []
        found = [
            i
            for i, n in enumerate(self.nodes)
            if node in (n.tag, n.node_id) or (i < len(ids) and ids[i] == node) or _server_id(self, i) == node
        ]
        if not found:
            raise ConfigError(f"device {self.settings.name}: no node {node!r} is served")
        return found

    def set_exception(
        self, status: int, nodes: list[int] | None, probability: float, count: int | None, seed: int
    ) -> None:
        if self._server is not None:
            self._server.set_status_fault(nodes, status, probability, count, seed)

    def clear_exception(self) -> None:
        if self._server is not None:
            self._server.clear_status_fault()

    def set_quality(self, status: int, nodes: list[int] | None) -> None:
        self._quality, self._quality_nodes = status, (set(nodes) if nodes is not None else None)
        self.push_all()

    def freeze(self, on: bool) -> None:
        self._frozen = on
        if not on:
            self.push_all()

    def reboot(self) -> None:
        """Sessions dropped; values as the plant has them (a reboot sets the plant back to init)."""
        if self._server is not None:
            self._server.drop_sessions()
        self._frozen = False
        self.push_all()


def _server_id(device: OpcuaDeviceServer, index: int) -> str:
    """`nsu=<uri>;s=x` as the server numbers it: `ns=<i>;s=x`."""
    node = device.nodes[index].node_id
    server = device.native
    if server is None or not node.startswith("nsu="):
        return node
    uri, _, rest = node[4:].partition(";")
    namespaces = list(server.namespaces)
    return f"ns={namespaces.index(uri)};{rest}" if uri in namespaces else node
