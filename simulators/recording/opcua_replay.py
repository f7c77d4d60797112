"""An OPC UA cassette served as a virtual server: the simulator's own OPC UA server, not replayed bytes.

A secure channel and a session cannot be replayed byte for byte: their tokens, nonces and sequence
numbers are new on every connection. So the replay is a real server — the simulator's C open62541
server (bifrost._native.OpcuaServer), which runs the channel, the session, browsing and
subscriptions itself — whose variables are the nodes the capture showed (their NodeIds as captured,
their types from the captured Variants, their namespaces from a captured read of the server's
NamespaceArray when there is one). In front of it, a relay reads each request (security None only)
and sets the variables' values before the server sees it:

- `request` (the default): each node's Reads are answered with its recorded values in the recorded
  order (value, status and source timestamp), the last one again after; a Write the capture saw
  accepted is accepted (and read back until the node's next recorded Read).
- `image`: every node holds the last value the capture showed it with; Writes change it.
- `strict` cannot be honoured and is refused: the server answers the channel, session, browse and
  subscription services itself, so "the recorded exchanges in order" cannot be held to for them.

A Read or Write of a node the capture never showed is a *miss*: the server has no such node and answers
BadNodeIdUnknown (for each such node; the rest of the request is answered), and the miss is kept in
`misses`, naming the request. Nodes of namespace 0 are the server's own (its NamespaceArray,
ServerStatus, ...). Values other than a scalar of the 12 types the server serves (Boolean ... Double,
String) are left out and said so in `notes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bifrost.errors import ConfigError
from simulators.recording.cassette import Cassette, Entry, load_cassette
from simulators.recording.opcua import VALUE_ATTRIBUTE, decode, learned, node_text, service_name
from simulators.recording.opcua_chunks import CHUNK_TYPES, MAX_CHUNK, ChunkFramer, Message
from simulators.recording.replay import Miss

log = logging.getLogger(__name__)

SERVED_TYPES = frozenset(
    {"Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double", "String"}
)
OPCUA_MODES = ("request", "image")
NAMESPACE_ARRAY = ("i=2255", VALUE_ATTRIBUTE)
_HEADER = struct.Struct("<3scI")
_READ = 65536
# The type ids (four-byte NodeIds, ns 0) a Read and a Write request start with: 631 and 673.
_READ_OR_WRITE = (b"\x01\x00" + (631).to_bytes(2, "little"), b"\x01\x00" + (673).to_bytes(2, "little"))


@dataclass
class ReplayedNode:
    """One variable of the replay: its recorded values, in order, with each one's recorded latency."""

    node_id: str
    type: str
    values: list[tuple[Any, float | None]] = field(default_factory=list)
    last: Any = None
    writable: bool = False
    refused: bool = False


def _source_time(data_value: Any) -> float:
    stamp = data_value.SourceTimestamp
    return float(stamp.timestamp()) if stamp is not None else time.time()


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
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/bifrost",
    ) -> None:
        if mode == "strict":
            raise ConfigError(
                "replay mode strict is not offered for OPC UA: the server answers the secure channel, "
                "session, browse and subscription services itself (their tokens, nonces and sequence "
                "numbers are new on every connection), so the recorded exchanges cannot be held to in "
                "order; use request (each node's Reads in the recorded order) or image"
            )
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
        self.timing = timing
        self.speed = speed
        self.host = host
        self.port_wanted = port
        self.path = path
        self.notes: list[str] = []
        self.misses: list[Miss] = []
        self.served = 0
        self._lock = threading.Lock()
        self.nodes: dict[str, ReplayedNode] = {}
        self.namespaces: list[str] = []
        self._learn([entry for entry in entries if entry.device == device])
        self._index = {node_id: i for i, node_id in enumerate(self.nodes)}
        self._turns: dict[str, int] = {}
        self._native: Any = None
        self._server: asyncio.Server | None = None
        self._sock: socket.socket | None = None
        self._starting: asyncio.Task[None] | None = None
        self.fallback: Any = None  # the pytest plugin sets it; an OPC UA replay asks no live device
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # --- what the cassette shows --------------------------------------------------------------------

    def _learn(self, entries: list[Entry]) -> None:
        skipped: dict[str, str] = {}
        for entry in entries:
            if entry.response is None:
                continue
            try:
                writes = service_name(decode(entry.request)) == "Write"
            except ValueError:
                continue
            if writes:
                self._refused_writes(entry)
            for (node_id, attribute), data_value in learned(entry.request, entry.response):
                if (node_id, attribute) == NAMESPACE_ARRAY:
                    self.namespaces = [str(uri) for uri in data_value.Value.Value or []]
                if attribute != VALUE_ATTRIBUTE or node_id.startswith("i="):
                    continue  # another attribute, or namespace 0: the server's own nodes
                variant = data_value.Value
                type_name = variant.VariantType.name
                if type_name not in SERVED_TYPES or isinstance(variant.Value, list):
                    kind = "an array of " + type_name if isinstance(variant.Value, list) else type_name
                    skipped.setdefault(node_id, kind)
                    continue
                node = self.nodes.get(node_id)
                if node is None:
                    node = self.nodes[node_id] = ReplayedNode(node_id, type_name)
                if type_name != node.type:
                    skipped.setdefault(node_id, f"{type_name} after {node.type}")
                    continue
                node.last = data_value
                if writes:
                    node.writable = True
                else:
                    node.values.append((data_value, entry.latency))
        for node_id, kind in skipped.items():
            if node_id not in self.nodes:
                self.notes.append(
                    f"{node_id}: not served: the server serves scalars of {len(SERVED_TYPES)} types, not {kind}"
                )
        for node in self.nodes.values():
            if self.mode == "image" and not node.refused:
                node.writable = True

    def _refused_writes(self, entry: Entry) -> None:
        try:
            asked, answered = decode(entry.request), decode(entry.response or b"")
        except ValueError:
            return
        for item, code in zip(
            asked.Parameters.NodesToWrite or [], getattr(answered, "Results", None) or [], strict=False
        ):
            node = self.nodes.get(node_text(item.NodeId))
            if node is not None and int(getattr(code, "value", 0)) & 0x80000000:
                node.refused = True

    def _initial(self, node: ReplayedNode) -> Any:
        if self.mode == "request" and node.values:
            return node.values[0][0]
        return node.last

    # --- serving ------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError(f"{self.device}: the replay is not started")
        return int(self._sock.getsockname()[1])

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
            value = self._initial(node).Value.Value
            out.append((node.node_id, list(parts), node.type, node.writable, None, value))
        return out

    def _namespace_uris(self) -> tuple[str, list[str]]:
        """The application URI (namespace 1) and the URIs of namespaces 2.. that the nodes use."""
        highest = 1
        for node_id in self.nodes:
            if node_id.startswith("ns="):
                highest = max(highest, int(node_id[3:].split(";", 1)[0]))
        known = self.namespaces
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
        with self._lock:
            self._turns.clear()
            self.misses = []
            self.served = 0
            if self._native is not None:
                self._native.set_values(
                    [self._pushed(i, self._initial(node)) for i, node in enumerate(self.nodes.values())]
                )

    def _pushed(self, index: int, data_value: Any) -> tuple[int, Any, int, float]:
        value = data_value.Value.Value if data_value.Value is not None else None
        if value is None:  # a recorded status with no value: keep the value, show the status
            current = self._native.value(index)
            value = current[0] if current else None
        return (index, value, int(data_value.StatusCode.value), _source_time(data_value))

    def _take_writes(self) -> None:
        native = self._native
        if native is None:
            return
        native.clear_wake()
        native.drain_writes()  # taken: the server answers the client; it already holds the value

    def assert_no_misses(self) -> None:
        misses = list(self.misses)
        if misses:
            shown = "\n".join("  " + miss.describe() for miss in misses[:20])
            raise AssertionError(f"{len(misses)} request(s) the cassette cannot answer:\n{shown}")

    # --- the relay in front of the server -----------------------------------------------------------

    def before(self, body: bytes) -> float:
        """What a request needs before the server answers it: values stepped, misses noted. Returns
        the recorded delay to wait (timing recorded)."""
        if body[:4] not in _READ_OR_WRITE:
            return 0.0  # the server's own business: not decoded at all
        try:
            asked = decode(body)
        except ValueError:
            return 0.0
        name = service_name(asked)
        if name not in ("Read", "Write"):
            return 0.0
        items = asked.Parameters.NodesToRead if name == "Read" else asked.Parameters.NodesToWrite
        delay = 0.0
        batch = []
        unknown: list[str] = []
        with self._lock:
            self.served += 1
            for item in items or []:
                node_id = node_text(item.NodeId)
                node = self.nodes.get(node_id)
                if node is None:
                    if not node_id.startswith("i="):
                        unknown.append(node_id)
                    continue
                if name == "Write" and not node.writable:
                    unknown.append(f"{node_id} (never written in the capture)")
                if name != "Read" or self.mode != "request" or int(item.AttributeId) != VALUE_ATTRIBUTE:
                    continue
                if not node.values:
                    continue  # only ever written: it reads back what was written
                turn = self._turns.get(node_id, 0)
                self._turns[node_id] = turn + 1
                data_value, latency = node.values[min(turn, len(node.values) - 1)]
                batch.append(self._pushed(self._index[node_id], data_value))
                if latency is not None:
                    delay = max(delay, latency)
            if batch and self._native is not None:
                self._native.set_values(batch)
            if unknown:
                why = f"never {'read' if name == 'Read' else 'written'} in the capture: {', '.join(unknown)}"
                self.misses.append(Miss(self.device, 0, body, why, "opcua"))
        return 0.0 if self.timing == "fast" else delay / self.speed

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
            await asyncio.gather(self._requests(reader, up_writer), _pump(up_reader, writer))
        finally:
            self._writers.difference_update((writer, up_writer))

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Client to server: whole chunks, each forwarded unchanged once `before` has seen its message."""
        framer = ChunkFramer()
        buffer = bytearray()
        passing = False  # not OPC UA: passed on as it is, for the server to refuse
        try:
            while data := await reader.read(_READ):
                if passing:
                    writer.write(data)
                    await writer.drain()
                    continue
                buffer += data
                while len(buffer) >= 8:
                    _, chunk, size = _HEADER.unpack_from(buffer)
                    if chunk[0] not in CHUNK_TYPES or not 8 <= size <= MAX_CHUNK:
                        writer.write(bytes(buffer))
                        buffer.clear()
                        passing = True
                        break
                    if len(buffer) < size:
                        break
                    raw = bytes(buffer[:size])
                    del buffer[:size]
                    for message in framer.feed(raw):
                        if isinstance(message, Message) and message.kind == "MSG" and not message.secured:
                            delay = self.before(message.body)
                            if delay > 0:
                                await asyncio.sleep(delay)
                    writer.write(raw)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_READ):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def replay_server(name: str, spec: Any, host: str, port: int, path: str) -> OpcuaReplayServer:
    """The server of a scenario's `replay:` OPC UA device (a ReplaySpec), as simulators.opcua serves it."""
    if spec.unknown != "default":
        raise ConfigError(
            f"device {name}: replay unknown cannot be set for OPC UA: a node the capture never showed is "
            "one the server does not have, and it answers BadNodeIdUnknown"
        )
    cassette, device = spec.load(name)
    return OpcuaReplayServer(
        cassette,
        device=device,
        mode=spec.mode,
        timing=spec.timing,
        speed=spec.speed,
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
