"""An OPC UA cassette served as a virtual server: the simulator's own OPC UA server, not replayed bytes.

A secure channel and a session cannot be replayed byte for byte: their tokens, nonces and sequence
numbers are new on every connection. So the replay is a real server — the simulator's C open62541
server (bifrost._native.OpcuaServer), which runs the channel, the session, browsing and
subscriptions itself — whose variables are the nodes the capture showed (their NodeIds as captured,
their types from the captured Variants, their namespaces from a captured read of the server's
NamespaceArray when there is one). In front of it, a relay (simulators.recording.opcua_relay) shows
each request (security None only) to the cassette's answers (simulators.recording.opcua_answers,
which says what each mode, `strict`, `request` and `image`, does with a Read or Write): the relay
passes it on to the server, with the variables' values set first, or answers it itself (a recorded
response, a refusal, the real device's answer in `new_episodes`). Protocol faults (exception,
bad_quality, freeze, reboot) act on the replay as on a simulated device
(simulators.recording.opcua_replay_faults).

A miss — a Read or Write the cassette cannot answer — is kept in `misses`, naming the request; the
pytest plugin fails the test with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bifrost.errors import ConfigError
from simulators.recording.cassette import Cassette, load_cassette
from simulators.recording.opcua_answers import (
    OPCUA_MODES,
    OpcuaAnswers,
    Push,
    ReplayedNode,
    is_read,
    refusal_status,
    source_time,
)
from simulators.recording.opcua_relay import FORWARD, RelayedConnection, Verdict
from simulators.recording.opcua_replay_faults import ReplayFaults
from simulators.recording.replay import Miss

log = logging.getLogger(__name__)


class OpcuaReplayServer:
    """The nodes of one device of an OPC UA cassette, served (see the module docstring). `start` and
    `stop` on an event loop's thread; `url` is where clients connect."""

    def __init__(
        self,
        cassette: Cassette | str | Path,
        *,
        device: str | None = None,
        mode: str = "request",
        timing: str = "fast",
        speed: float = 1.0,
        unknown: int | str | None = "default",
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/bifrost",
    ) -> None:
        if mode not in OPCUA_MODES:
            raise ConfigError(f"OPC UA replay mode must be one of {', '.join(OPCUA_MODES)}, not {mode!r}")
        if timing not in ("fast", "recorded"):
            raise ConfigError(f"replay timing must be fast or recorded, not {timing!r}")
        if not speed > 0:
            raise ConfigError(f"replay speed must be above 0, not {speed}")
        loaded = cassette if isinstance(cassette, Cassette) else load_cassette(Path(cassette))
        entries = [entry for entry in loaded.entries if entry.protocol == "opcua"]
        devices = list(dict.fromkeys(entry.device for entry in entries))
        if device is None:
            if len(devices) > 1:
                raise ConfigError(
                    f"the cassette records {len(devices)} OPC UA devices ({', '.join(devices)}): name one"
                )
            device = devices[0] if devices else "device"
        elif device not in devices:
            raise ConfigError(f"the cassette records no OPC UA device {device!r} (it records {', '.join(devices)})")
        self.device = device
        self.mode = mode
        self.host = host
        self.port_wanted = port
        self.path = path
        self.answers = OpcuaAnswers(
            [entry for entry in entries if entry.device == device],
            device=device,
            mode=mode,
            timing=timing,
            speed=speed,
            refusal=refusal_status(unknown, device),
        )
        self.faults = ReplayFaults()
        self._recorded: dict[int, tuple[int, float]] = {}  # each variable's last status and time, unfaulted
        self._native: Any = None
        self._server: asyncio.Server | None = None
        self._sock: socket.socket | None = None
        self._starting: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # --- what the cassette shows (simulators.recording.opcua_answers) -------------------------------

    @property
    def nodes(self) -> dict[str, ReplayedNode]:
        return self.answers.nodes

    @property
    def notes(self) -> list[str]:
        return self.answers.notes

    @property
    def misses(self) -> list[Miss]:
        return self.answers.misses

    @property
    def served(self) -> int:
        return self.answers.served

    @property
    def fallback(self) -> Callable[[bytes], bytes | None] | None:
        """Asked what the cassette cannot answer: a service message in, the device's answer out
        (blocking; the pytest plugin's `new_episodes`, simulators.recording.opcua_forward)."""
        return self.answers.fallback

    @fallback.setter
    def fallback(self, ask: Callable[[bytes], bytes | None] | None) -> None:
        self.answers.fallback = ask

    # --- serving ------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError(f"{self.device}: the replay is not started")
        return int(self._sock.getsockname()[1])

    @property
    def native(self) -> Any:
        """The C server (bifrost._native.OpcuaServer), None when not started."""
        return self._native

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"opc.tcp://{shown}:{self.port}{self.path}"

    def _variables(self) -> list[tuple[str, list[str], str, bool, None, Any]]:
        out: list[tuple[str, list[str], str, bool, None, Any]] = []
        paths: set[tuple[str, ...]] = set()
        for node in self.nodes.values():
            identifier = node.node_id.split(";", 1)[-1].split("=", 1)[-1]
            parts = tuple(part for part in identifier.split(".") if part) or (identifier,)
            if parts in paths:  # the same name in two namespaces: keep both, apart
                parts = (*parts[:-1], f"{parts[-1]} ({node.node_id})")
            paths.add(parts)
            value = self.answers.initial(node).Value.Value
            out.append((node.node_id, list(parts), node.type, node.writable, None, value))
        return out

    def _namespace_uris(self) -> tuple[str, list[str]]:
        """The application URI (namespace 1) and the URIs of namespaces 2.. that the nodes use."""
        highest = 1
        for node_id in self.nodes:
            if node_id.startswith("ns="):
                highest = max(highest, int(node_id[3:].split(";", 1)[0]))
        known = self.answers.namespaces
        application = known[1] if len(known) > 1 else f"urn:bifrost:replay:{self.device}"
        uris = [
            known[i] if i < len(known) else f"urn:bifrost:replay:{self.device}:ns{i}" for i in range(2, highest + 1)
        ]
        return application, uris or [f"urn:bifrost:replay:{self.device}:ns2"]

    def start(self, loop: asyncio.AbstractEventLoop, *, advertised_url: str | None = None) -> None:
        """Listen now (the URL is known at once) and serve on `loop`, which must be running it soon."""
        from bifrost._native import OpcuaServer

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port_wanted))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"{self.device}: cannot listen on {self.host}:{self.port_wanted}: {exc}") from None
        sock.listen(128)
        sock.setblocking(False)
        self._sock = sock
        application, uris = self._namespace_uris()
        try:
            self._native = OpcuaServer(
                host="127.0.0.1",
                port=0,
                path=self.path,
                device=self.device.replace(":", "_"),
                variables=self._variables(),
                namespaces=uris,
                application_uri=application,
                security=["None"],
                advertised_url=advertised_url or self.url,
            )
        except (OSError, ValueError, RuntimeError) as exc:
            self.stop()
            raise ConfigError(f"{self.device}: cannot serve the replay: {exc}") from None
        self._loop = loop
        loop.add_reader(self._native.wake_fd(), self._take_writes)
        self.reset()

        async def serve() -> None:
            self._server = await asyncio.start_server(self._client, sock=sock)

        self._starting = loop.create_task(serve())

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        elif self._sock is not None:
            self._sock.close()
        self._sock = None
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.close()
        native, self._native = self._native, None
        if native is not None:
            if self._loop is not None:
                self._loop.remove_reader(native.wake_fd())
            native.stop()

    def disconnect(self) -> int:
        """Drop every client connection (and the server's sessions); how many there were."""
        writers = list(self._writers)
        for writer in writers:
            with contextlib.suppress(Exception):
                writer.close()
        self._writers.clear()
        if self._native is not None:
            self._native.drop_sessions()
        return len(writers) // 2

    def reset(self) -> None:
        """Back to the start of the cassette: every node's first value again; misses cleared."""
        self._push(self.answers.reset())

    def _push(self, pushes: list[Push] | tuple[Push, ...]) -> None:
        if pushes and self._native is not None:
            self._native.set_values([self._pushed(index, data_value) for index, data_value in pushes])

    def _pushed(self, index: int, data_value: Any) -> tuple[int, Any, int, float]:
        value = data_value.Value.Value if data_value.Value is not None else None
        if value is None:  # a recorded status with no value: keep the value, show the status
            current = self._native.value(index)
            value = current[0] if current else None
        status, at = int(data_value.StatusCode.value), source_time(data_value)
        self._recorded[index] = (status, at)
        return (index, value, self.faults.status(index, status), at)

    def _take_writes(self) -> None:
        native = self._native
        if native is None:
            return
        native.clear_wake()
        # Taken: the server answers the client; it already holds the value, Good, unless a bad_quality says.
        now = time.time()
        batch = []
        for index, value, _user in native.drain_writes():
            self._recorded[index] = (0, now)
            if self.faults.status(index, 0):
                batch.append((index, value, self.faults.status(index, 0), now))
        if batch:
            native.set_values(batch)

    # --- protocol faults (simulators.recording.opcua_replay_faults), as OpcuaDeviceServer takes them --

    def indexes(self, node: str | None) -> list[int] | None:
        """The variables a fault's `match: {node: ...}` names: a NodeId as captured (`ns=2;s=tank.level`),
        or with its namespace URI (`nsu=urn:...;s=tank.level`)."""
        if node is None:
            return None
        wanted = {node}
        if node.startswith("nsu=") and self._native is not None:
            uri, _, rest = node[4:].partition(";")
            namespaces = list(self._native.namespaces)
            if uri in namespaces:
                wanted.add(f"ns={namespaces.index(uri)};{rest}")
        found = [index for index, node_id in enumerate(self.nodes) if node_id in wanted]
        if not found:
            shown = ", ".join(list(self.nodes)[:8]) or "none"
            raise ConfigError(f"device {self.device}: no node {node!r} is replayed (the cassette shows {shown})")
        return found

    def set_exception(
        self, status: int, nodes: list[int] | None, probability: float, count: int | None, seed: int
    ) -> None:
        self.faults.exception = True
        self.faults.exception_nodes = frozenset(nodes) if nodes is not None else None
        if self._native is not None:
            self._native.set_status_fault(nodes, status, probability, count, seed)

    def clear_exception(self) -> None:
        self.faults.exception, self.faults.exception_nodes = False, None
        if self._native is not None:
            self._native.clear_status_fault()

    def set_quality(self, status: int, nodes: list[int] | None) -> None:
        """Every matched variable's status is `status` (0: the recorded statuses back)."""
        self.faults.quality = status
        self.faults.quality_nodes = frozenset(nodes) if nodes is not None else None
        native = self._native
        if native is None:
            return
        batch = []
        for index in range(len(self.nodes)):
            held = native.value(index)
            if held is None or held[0] is None:
                continue
            recorded, at = self._recorded.get(index, (held[1], time.time()))
            status_now = self.faults.status(index, recorded)
            if status_now != held[1]:
                batch.append((index, held[0], status_now, at))
        if batch:
            native.set_values(batch)

    def freeze(self, on: bool) -> None:
        self.faults.frozen = on

    def reboot(self) -> None:
        """Sessions dropped; the cassette back at its start (its misses kept)."""
        if self._native is not None:
            self._native.drop_sessions()
        self.faults.frozen = False
        self._push(self.answers.rewind())

    def assert_no_misses(self) -> None:
        misses = list(self.misses)
        if misses:
            shown = "\n".join("  " + miss.describe() for miss in misses[:20])
            raise AssertionError(f"{len(misses)} request(s) the cassette cannot answer:\n{shown}")

    # --- the relay in front of the server (simulators.recording.opcua_relay) -----------------------

    async def respond(self, body: bytes) -> Verdict:
        """What the relay does with one request: the answers' decision, its values pushed into the
        server; a miss asked of the fallback (on a worker thread: it blocks) when there is one.
        Under a freeze a Read is the server's, from the values it holds; a recorded answer of a node
        an exception or bad_quality is on is the server's too, the cassette's values pushed first."""
        faults = self.faults
        if faults.frozen and is_read(body):
            return FORWARD  # no turn of the cassette taken: no value moves
        step = self.answers.decide(body)
        self._push(step.pushes)
        if not step.ask:
            if step.recorded and (faults.exception or faults.quality) and faults.to_server(self.answers.touched(body)):
                return Verdict(delay=step.verdict.delay)
            return step.verdict
        ask = self.answers.fallback
        assert ask is not None
        try:
            live = await asyncio.get_running_loop().run_in_executor(None, ask, body)
        except Exception as exc:  # the device's trouble must not end the client's connection
            log.warning("%s: the device did not answer a request the cassette cannot: %s", self.device, exc)
            live = None
        return self.answers.asked(body, live)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        native = self._native
        if native is None:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", native.port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            await RelayedConnection(self.respond, (reader, writer), (up_reader, up_writer)).run()
        finally:
            self._writers.difference_update((writer, up_writer))


def replay_server(name: str, spec: Any, host: str, port: int, path: str) -> OpcuaReplayServer:
    """The server of a scenario's `replay:` OPC UA device (a ReplaySpec), as simulators.opcua serves it."""
    cassette, device = spec.load(name)
    return OpcuaReplayServer(
        cassette,
        device=device,
        mode=spec.mode,
        timing=spec.timing,
        speed=spec.speed,
        unknown=spec.unknown,
        host=host,
        port=port,
        path=path,
    )


class OpcuaReplay:
    """An `OpcuaReplayServer` on an event loop of its own thread: `with OpcuaReplay(FILE) as r: r.url`."""

    def __init__(self, cassette: Cassette | str | Path, **options: Any) -> None:
        self.server = OpcuaReplayServer(cassette, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bifrost-opcua-replay", daemon=True)

    def _call(self, make: Callable[[], Any]) -> Any:
        async def run() -> Any:
            result = make()
            if asyncio.iscoroutine(result):
                return await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def start(self) -> OpcuaReplay:
        self._thread.start()
        try:
            self._call(lambda: self.server.start(self._loop))
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def misses(self) -> list[Miss]:
        return self.server.misses

    def reset(self) -> None:
        self._call(self.server.reset)

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self.server.stop)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> OpcuaReplay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["OPCUA_MODES", "OpcuaReplay", "OpcuaReplayServer", "ReplayedNode", "replay_server"]
