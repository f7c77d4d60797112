"""An asyncua server as the independent peer of the OPC UA client tests, on 127.0.0.1 port 0.

The server runs on its own event-loop thread (a client and a server on one loop deadlock under
pytest, asyncua #1603), so async tests, on their own loops, talk to it over a real socket. Start-ups
cost 1.4-2.4 s each, so the plain server is shared by the session (per xdist worker) and tests leave
its values as they found them or use their own nodes.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.util
import threading
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bifrost.opcua import certs

asyncua = pytest.importorskip("asyncua")
ua = asyncua.ua

NAMESPACE = "urn:bifrost:test"
ENGINES = ["asyncua"] + (["native"] if importlib.util.find_spec("bifrost.opcua._native_engine") else [])
MAX_NODES_PER_READ = 7
MANY = 25

# Every built-in type a Bifrost tag maps to, with the value the server starts with.
TYPES: dict[str, tuple[str, Any]] = {
    "Boolean": ("Boolean", True),
    "SByte": ("SByte", -8),
    "Byte": ("Byte", 200),
    "Int16": ("Int16", -1234),
    "UInt16": ("UInt16", 54321),
    "Int32": ("Int32", -100_000),
    "UInt32": ("UInt32", 4_000_000_000),
    "Int64": ("Int64", -(2**40)),
    "UInt64": ("UInt64", 2**64 - 1),
    "Float": ("Float", 1.5),
    "Double": ("Double", -2.25),
    "String": ("String", "bifrost"),
}
USERS = {"operator": "secret"}
EXTRAS: dict[str, Any] = {
    "DateTime": ua.Variant(datetime.datetime(2026, 12, 2, 13, 30, 0, 250_000), ua.VariantType.DateTime),
    "Guid": ua.Variant(uuid.UUID("72962b91-fa75-4ae6-8d28-b404dc7daf63"), ua.VariantType.Guid),
    "ByteString": ua.Variant(b"\x00\xffbifrost", ua.VariantType.ByteString),
    "LocalizedText": ua.Variant(ua.LocalizedText("Tank 1", "en"), ua.VariantType.LocalizedText),
    "QualifiedName": ua.Variant(ua.QualifiedName("level", 1), ua.VariantType.QualifiedName),
    "NodeId": ua.Variant(ua.NodeId("tank.level", 1), ua.VariantType.NodeId),
    "StatusCode": ua.Variant(ua.StatusCode(0x80340000), ua.VariantType.StatusCode),
    "Array": ua.Variant([1, 2, 3], ua.VariantType.Int32),
    "Empty": ua.Variant(None, ua.VariantType.Null),
}


class LoopThread:
    """An asyncio loop on a daemon thread; `run(coro)` runs a coroutine there and returns its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def stop(self) -> None:
        # End what is left (asyncua's session timers, relays) before the loop goes, so none is
        # destroyed pending.
        async def cancel_rest() -> None:
            rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        self.run(cancel_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class _Users:
    """asyncua's user manager hook: only the known users, with their passwords."""

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole

        if username is not None and USERS.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


@dataclass
class AsyncuaPeer:
    """An asyncua server with a plant-like tree under Objects/plc1 (namespace urn:bifrost:test)."""

    secure: bool = False
    cert_dir: Path | None = None
    port: int = 0
    index: int = 0
    reads: list[list[str]] = field(default_factory=list)  # the NodeIds of each Read request from a client
    _runner: LoopThread | None = None
    _server: Any = None
    nodes: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/bifrost"

    def node_id(self, name: str) -> str:
        return f"ns={self.index};s={name}"

    def start(self) -> AsyncuaPeer:
        self._runner = self._runner or LoopThread()
        self.port, self.index = self._runner.run(self._start())
        return self

    async def _start(self) -> tuple[int, int]:
        from asyncua.server.user_managers import PermissiveUserManager

        server = asyncua.Server(user_manager=_Users() if self.secure else PermissiveUserManager())
        await server.init()
        server.set_endpoint(f"opc.tcp://127.0.0.1:{self.port}/bifrost")
        server.set_server_name("bifrost test peer")
        if self.secure:
            assert self.cert_dir is not None
            cert, key = certs.write_certificate(self.cert_dir, "urn:bifrost:test-server", name="server")
            await server.set_application_uri("urn:bifrost:test-server")
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            server.set_identity_tokens([ua.UserNameIdentityToken])
        index = await server.register_namespace(NAMESPACE)
        objects = server.nodes.objects
        plc = await objects.add_folder(ua.NodeId("plc1", index), ua.QualifiedName("plc1", index))
        tank = await plc.add_folder(ua.NodeId("tank", index), ua.QualifiedName("tank", index))
        level = await tank.add_variable(ua.NodeId("tank.level", index), ua.QualifiedName("level", index), 40.0)
        await level.set_writable()
        types = await plc.add_folder(ua.NodeId("types", index), ua.QualifiedName("types", index))
        self.nodes = {"tank.level": level}
        for name, (vtype, value) in TYPES.items():
            var = await types.add_variable(
                ua.NodeId(f"types.{name}", index),
                ua.QualifiedName(name, index),
                ua.Variant(value, getattr(ua.VariantType, vtype)),
            )
            await var.set_writable()
            self.nodes[f"types.{name}"] = var
        readonly = await plc.add_variable(ua.NodeId("readonly", index), ua.QualifiedName("readonly", index), 7.5)
        self.nodes["readonly"] = readonly
        numeric = await plc.add_variable(ua.NodeId(1001, index), ua.QualifiedName("numeric", index), 1001)
        await numeric.set_writable()
        self.nodes["numeric"] = numeric
        many = await plc.add_folder(ua.NodeId("many", index), ua.QualifiedName("many", index))
        for i in range(MANY):
            var = await many.add_variable(
                ua.NodeId(f"many.{i}", index), ua.QualifiedName(f"v{i}", index), ua.Variant(i, ua.VariantType.Int32)
            )
            self.nodes[f"many.{i}"] = var
        for name in ("sub", "deadband", "quality"):
            var = await plc.add_variable(ua.NodeId(name, index), ua.QualifiedName(name, index), 0.0)
            await var.set_writable()
            self.nodes[name] = var
        # Values of the other built-in types, and what a DataPoint cannot carry (an array).
        extras = await objects.add_folder(ua.NodeId("extras", index), ua.QualifiedName("extras", index))
        for name, variant in EXTRAS.items():
            self.nodes[f"extras.{name}"] = await extras.add_variable(
                ua.NodeId(f"extras.{name}", index), ua.QualifiedName(name, index), variant
            )
        limit = server.get_node(ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead))
        await limit.write_value(ua.Variant(MAX_NODES_PER_READ, ua.VariantType.UInt32))

        async def count_reads(event: Any, dispatcher: Any) -> None:
            if event.is_external:
                self.reads.append([item.NodeId.to_string() for item in event.request_params.NodesToRead])

        from asyncua.common.callback import CallbackType

        async def not_writable(event: Any, dispatcher: Any) -> None:
            # asyncua answers BadUserAccessDenied for every refused write; the standard (Part 4, 5.10.4)
            # says BadNotWritable when the node's AccessLevel itself forbids writing, as open62541 does.
            for position, (request, status) in enumerate(
                zip(event.request_params.NodesToWrite, event.response_params, strict=True)
            ):
                if status.value == ua.StatusCodes.BadUserAccessDenied:
                    level = server.iserver.aspace.read_attribute_value(request.NodeId, ua.AttributeIds.AccessLevel)
                    if level.Value is not None and not level.Value.Value & ua.AccessLevel.CurrentWrite.mask:
                        event.response_params[position] = ua.StatusCode(ua.StatusCodes.BadNotWritable)

        server.subscribe_server_callback(CallbackType.PreRead, count_reads)
        server.subscribe_server_callback(CallbackType.PostWrite, not_writable)
        await server.start()
        self._server = server
        return int(server.bserver.port), int(index)

    def stop(self) -> None:
        if self._server is not None and self._runner is not None:
            self._runner.run(self._stop(self._server))
            self._server = None

    @staticmethod
    async def _stop(server: Any) -> None:
        # Stop accepting first. open62541's client reconnects the instant its connection drops; a
        # reconnection accepted during asyncua's shutdown holds `stop()` until asyncua's activation
        # watchdog closes it, 30 s later. Refused, it just retries against the restarted server.
        listener = getattr(server.bserver, "_server", None)
        if listener is not None:
            listener.close()
        await server.stop()

    def close(self) -> None:
        self.stop()
        if self._runner is not None:
            self._runner.stop()
            self._runner = None

    def set(self, name: str, value: Any, vtype: str | None = None) -> None:
        """Write a value from the server's side (as the plant would)."""
        node = self.nodes[name]
        variant = ua.Variant(value, getattr(ua.VariantType, vtype)) if vtype else value
        assert self._runner is not None
        self._runner.run(node.write_value(variant))

    def get(self, name: str) -> Any:
        assert self._runner is not None
        return self._runner.run(self.nodes[name].read_value())

    def set_status(self, name: str, value: Any, status: str) -> None:
        """Give a node a value with a non-Good status, as a server with a failing sensor does."""
        node = self.nodes[name]
        data = ua.DataValue(
            ua.Variant(value, ua.VariantType.Double), StatusCode=ua.StatusCode(getattr(ua.StatusCodes, status))
        )
        assert self._runner is not None
        self._runner.run(node.write_value(data))


@pytest.fixture(scope="session")
def opcua_server() -> Iterator[AsyncuaPeer]:
    peer = AsyncuaPeer().start()
    try:
        yield peer
    finally:
        peer.close()


@pytest.fixture(scope="session")
def secure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsyncuaPeer]:
    """Basic256Sha256 SignAndEncrypt only, users only (operator/secret), no anonymous sessions."""
    peer = AsyncuaPeer(secure=True, cert_dir=tmp_path_factory.mktemp("opcua-server-pki")).start()
    try:
        yield peer
    finally:
        peer.close()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each OPC UA client engine in turn: the same test holds both to the same behaviour."""
    return str(request.param)
