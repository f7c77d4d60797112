"""What an OPC UA replay answers, from its cassette: the decision per Read or Write, without I/O.

The replay's server (simulators.recording.opcua_replay) answers the channel, session, browse and
subscription services itself; what is decided here are the data services — Read and Write requests
that name a node outside namespace 0. (A request of namespace-0 nodes alone — the server's own: its
NamespaceArray, ServerStatus, the state a client's watchdog polls — is the server's in every mode and
is not counted, so a client's timer does not throw the order out.) Per mode:

- `strict`: the data requests must come in the order recorded, each equal to the next recorded one
  (equal as `OpcuaCodec.match_key` sees it: handles, timestamps, tokens and nonces blanked). Each is
  answered with its recorded response (the handle the client gave); one out of order, never recorded,
  or after the last is refused with a ServiceFault (BadUnexpectedError, or the status `unknown` names)
  and is a miss naming what the cassette expected there.
- `request` (the default): an equal request gets its recorded responses in turn (the last again after);
  a request never recorded as such, of nodes the capture showed, is answered by the server from its
  variables, each node's Reads stepping through the values recorded for it in order. A node the capture
  never showed is a miss: BadNodeIdUnknown for it (the server has no such node), or the whole request
  refused with `unknown`'s status when one is given.
- `image`: the server answers every data request from the last value the capture showed of each node;
  Writes change it. A node never shown is a miss, as in `request`.

A recorded answer's values are pushed into the server's variables too, so subscriptions and later reads
see them. A miss goes to `fallback` when there is one (the pytest plugin's `new_episodes`: the real
device, through the recording proxy), and is not a miss then.

The server serves variables that are scalars of the 12 types in SERVED_TYPES or one-dimensional
arrays of them; a node the capture shows with another value (a matrix, a structure, a ByteString) is
not in its address space, which `notes` says, but a Read recorded as such is still answered from the
cassette in `request` and `strict` modes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from simulators.recording.cassette import Entry
from simulators.recording.opcua import (
    VALUE_ATTRIBUTE,
    OpcuaCodec,
    decode,
    learned,
    node_text,
    request_text,
    service_name,
    status_text,
)
from simulators.recording.opcua_headers import answered, request_key
from simulators.recording.opcua_relay import FORWARD, Verdict
from simulators.recording.replay import Miss

SERVED_TYPES = frozenset(
    {"Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double", "String"}
)
OPCUA_MODES = ("strict", "request", "image")
NAMESPACE_ARRAY = ("i=2255", VALUE_ATTRIBUTE)
BAD_UNEXPECTED_ERROR = 0x80010000
BAD_COMMUNICATION_ERROR = 0x80050000
# The type ids (four-byte NodeIds, ns 0) a Read and a Write request start with: 631 and 673.
_READ_OR_WRITE = (b"\x01\x00" + (631).to_bytes(2, "little"), b"\x01\x00" + (673).to_bytes(2, "little"))
_CODEC = OpcuaCodec()

Push = tuple[int, Any]
"""(index of the variable in the server, the asyncua DataValue it now holds)."""


@dataclass
class ReplayedNode:
    """One variable of the replay: its recorded Read values in order, with each one's latency."""

    node_id: str
    type: str
    values: list[tuple[Any, float | None]] = field(default_factory=list)
    last: Any = None
    writable: bool = False
    refused: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    """The decision on one request: what the relay does (`verdict`), the values to push into the
    server's variables first (`pushes`), whether to ask the real device instead (`ask`), and whether
    the verdict is a recorded answer (`recorded`: a fault in force may send it to the server instead)."""

    verdict: Verdict = FORWARD
    pushes: tuple[Push, ...] = ()
    ask: bool = False
    recorded: bool = False


def _data(request: bytes) -> tuple[Any, str, list[Any]] | None:
    """The request decoded, its service and items, when it is a Read or Write of some node outside
    namespace 0 (what the modes decide); None for anything else."""
    if request[:4] not in _READ_OR_WRITE:
        return None
    try:
        asked = decode(request)
    except ValueError:
        return None
    name = service_name(asked)
    if name not in ("Read", "Write"):
        return None
    items = list((asked.Parameters.NodesToRead if name == "Read" else asked.Parameters.NodesToWrite) or [])
    if all(node_text(item.NodeId).startswith("i=") for item in items):
        return None  # the server's own nodes (or none at all: the server says BadNothingToDo)
    return asked, name, items


def _raw_key(request: bytes) -> bytes | None:
    found = request_key(request)
    return None if found is None else found[0]


def _kind(variant: Any) -> str:
    type_name = str(variant.VariantType.name)
    value = variant.Value
    if isinstance(value, list):
        dimensions = variant.Dimensions
        shape = "x".join(map(str, dimensions)) if dimensions and len(dimensions) > 1 else str(len(value))
        return f"an array of {type_name} ({shape} values)"
    return type_name


class OpcuaAnswers:
    """The answers of one device of an OPC UA cassette (see the module docstring). Thread-safe."""

    def __init__(
        self,
        entries: list[Entry],
        *,
        device: str,
        mode: str = "request",
        timing: str = "fast",
        speed: float = 1.0,
        refusal: int | None = None,
    ) -> None:
        self.device = device
        self.mode = mode
        self.timing = timing
        self.speed = speed
        self.refusal = refusal
        """The status a miss is refused with (None: strict's BadUnexpectedError; the server's own
        BadNodeIdUnknown in the other modes)."""
        self.fallback: Callable[[bytes], bytes | None] | None = None
        self.notes: list[str] = []
        self.misses: list[Miss] = []
        self.served = 0
        self.nodes: dict[str, ReplayedNode] = {}
        self.unserved: dict[str, str] = {}
        self.namespaces: list[str] = []
        self._lock = threading.Lock()
        self._learn(entries)
        self.index = {node_id: i for i, node_id in enumerate(self.nodes)}
        self.recorded = [entry for entry in entries if _data(entry.request) is not None]
        """The data exchanges (see the module docstring), in the order recorded."""
        # Each recorded request by its match key, and by its raw key (opcua_headers: the fast look).
        self._keys: list[Hashable] = [_CODEC.match_key(0, entry.request) for entry in self.recorded]
        self._raw: list[bytes | None] = [_raw_key(entry.request) for entry in self.recorded]
        self._by_key: dict[Hashable, list[int]] = {}
        self._by_raw: dict[bytes, Hashable] = {}
        for index, (key, raw) in enumerate(zip(self._keys, self._raw, strict=True)):
            self._by_key.setdefault(key, []).append(index)
            if raw is not None:
                self._by_raw[raw] = key
        self._prepared: dict[int, tuple[bytes | None, tuple[Push, ...]]] = {}
        self._image_steps: dict[bytes, Step] = {}  # image mode: the same request, the same (stateless) step
        self._cursor = 0
        self._turns: dict[Hashable, int] = {}
        self._node_turns: dict[str, int] = {}

    # --- what the cassette shows --------------------------------------------------------------------

    def _learn(self, entries: list[Entry]) -> None:
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
                dimensions = variant.Dimensions or []
                if type_name not in SERVED_TYPES or len(dimensions) > 1:
                    self.unserved.setdefault(node_id, _kind(variant))
                    continue
                if isinstance(variant.Value, list):
                    type_name += "[]"  # a one-dimensional array of a served type: served too
                node = self.nodes.get(node_id)
                if node is None:
                    node = self.nodes[node_id] = ReplayedNode(node_id, type_name)
                if type_name != node.type:
                    self.unserved.setdefault(node_id, f"{type_name} after {node.type}")
                    continue
                node.last = data_value
                if writes:
                    node.writable = True
                else:
                    node.values.append((data_value, entry.latency))
        for node_id, kind in self.unserved.items():
            if node_id not in self.nodes:
                self.notes.append(
                    f"{node_id}: {kind}: not in the server's address space (it serves scalars of "
                    f"{len(SERVED_TYPES)} types and one-dimensional arrays of them), so browsing, "
                    "subscriptions, image mode and Reads never recorded as such do not see it; a Read or "
                    "Write recorded as such is still answered from the cassette in request and strict modes"
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

    def initial(self, node: ReplayedNode) -> Any:
        """The DataValue the node starts with: its first recorded Read (`request`, `strict`), else the last."""
        if self.mode != "image" and node.values:
            return node.values[0][0]
        return node.last

    def reset(self) -> list[Push]:
        """Back to the start of the cassette; misses cleared. The values to push into the server."""
        with self._lock:
            self.misses = []
            self.served = 0
        return self.rewind()

    def rewind(self) -> list[Push]:
        """Back to the start of the cassette, the misses kept (a reboot). The values to push."""
        with self._lock:
            self._cursor = 0
            self._turns.clear()
            self._node_turns.clear()
            return [(i, self.initial(node)) for i, node in enumerate(self.nodes.values())]

    def touched(self, request: bytes) -> tuple[str, set[int]] | None:
        """A data request's service (Read or Write) and the variables it names; None for any other."""
        found = _data(request)
        if found is None:
            return None
        _, name, items = found
        indexes = (self.index.get(node_text(item.NodeId)) for item in items)
        return name, {index for index in indexes if index is not None}

    # --- one request --------------------------------------------------------------------------------

    def decide(self, request: bytes) -> Step:
        """What to do with one request from a client (see the module docstring)."""
        if request[:4] not in _READ_OR_WRITE:
            return Step()
        fast = request_key(request)
        raw = fast[0] if fast is not None else None
        if fast is not None:
            with self._lock:
                step = self._fast(*fast)
                if step is not None:
                    self.served += 1
                    return step
        found = _data(request)
        if found is None:
            return Step()
        asked, name, items = found
        handle = int(asked.RequestHeader.RequestHandle)
        with self._lock:
            self.served += 1
            if self.mode == "strict":
                return self._strict(request, handle)
            if self.mode == "request":
                key = _CODEC.match_key(0, request)
                if key in self._by_key:
                    if raw is not None:
                        self._by_raw[raw] = key  # the same request again: found at the first look
                    return self._turn(key, handle)
            misses = len(self.misses)
            step = self._by_node(name, items, request)
            if self.mode == "image" and raw is not None and len(self.misses) == misses and not step.ask:
                self._image_steps[raw] = step
            return step

    def _fast(self, raw: bytes, handle: int) -> Step | None:
        """The step for a request found by its raw key, or None: decode it and look again."""
        if self.mode == "strict":
            if self._cursor < len(self.recorded) and self._raw[self._cursor] == raw:
                self._cursor += 1
                return self._recorded(self._cursor - 1, handle)
            return None
        if self.mode == "request":
            key = self._by_raw.get(raw)
            return None if key is None else self._turn(key, handle)
        return self._image_steps.get(raw)

    def _turn(self, key: Hashable, handle: int) -> Step:
        """The next recorded answer to an equal request (the last again after)."""
        indexes = self._by_key[key]
        turn = self._turns.get(key, 0)
        self._turns[key] = turn + 1
        return self._recorded(indexes[min(turn, len(indexes) - 1)], handle)

    def _delay(self, latency: float | None) -> float:
        if self.timing == "fast" or latency is None:
            return 0.0
        return latency / self.speed

    def _strict(self, request: bytes, handle: int) -> Step:
        if self._cursor >= len(self.recorded):
            return self._miss(request, f"all {len(self.recorded)} recorded Reads and Writes were replayed")
        if self._keys[self._cursor] != _CODEC.match_key(0, request):
            entry = self.recorded[self._cursor]
            try:
                expected = request_text(decode(entry.request))
            except ValueError:
                expected = entry.request.hex()
            return self._miss(request, f"out of order: Read/Write {self._cursor + 1} of the cassette is {expected}")
        self._cursor += 1
        return self._recorded(self._cursor - 1, handle)

    def _recorded(self, index: int, handle: int) -> Step:
        """Recorded exchange `index`'s answer, for this request's handle; its values pushed into the
        server too."""
        entry = self.recorded[index]
        delay = self._delay(entry.latency)
        prepared = self._prepared.get(index)
        if prepared is None:
            prepared = self._prepared[index] = self._prepare(entry)
        response, pushes = prepared
        if entry.response is None:
            return Step(Verdict(forward=False, delay=delay))  # recorded unanswered: so it stays
        if response is None:
            return Step(Verdict(delay=delay))  # a recorded answer that cannot be read: the server's then
        return Step(Verdict(forward=False, answer=answered(response, handle), delay=delay), pushes, recorded=True)

    def _prepare(self, entry: Entry) -> tuple[bytes | None, tuple[Push, ...]]:
        """A recorded response as it is sent (None: unreadable), and the values it shows."""
        if entry.response is None or answered(entry.response, 0) is None:
            return None, ()
        pushes = []
        for (node_id, attribute), data_value in learned(entry.request, entry.response):
            index = self.index.get(node_id)
            if index is not None and attribute == VALUE_ATTRIBUTE:
                pushes.append((index, data_value))
        return entry.response, tuple(pushes)

    def _by_node(self, name: str, items: list[Any], request: bytes) -> Step:
        unknown: list[str] = []
        pushes: list[Push] = []
        delay = 0.0
        for item in items:
            node_id = node_text(item.NodeId)
            node = self.nodes.get(node_id)
            if node is None:
                if node_id in self.unserved:
                    unknown.append(f"{node_id} ({self.unserved[node_id]}, answered only as recorded)")
                elif not node_id.startswith("i="):
                    unknown.append(node_id)
                continue
            if name == "Write" and not node.writable:
                unknown.append(f"{node_id} (never written in the capture)")
            if name != "Read" or self.mode != "request" or int(item.AttributeId) != VALUE_ATTRIBUTE:
                continue
            if not node.values:
                continue  # only ever written: it reads back what was written
            turn = self._node_turns.get(node_id, 0)
            self._node_turns[node_id] = turn + 1
            data_value, latency = node.values[min(turn, len(node.values) - 1)]
            pushes.append((self.index[node_id], data_value))
            if latency is not None:
                delay = max(delay, latency)
        if unknown:
            why = f"never {'read' if name == 'Read' else 'written'} in the capture: {', '.join(unknown)}"
            step = self._miss(request, why)
            if step.ask or step.verdict is not FORWARD:
                return step
        return Step(Verdict(delay=self._delay(delay)), tuple(pushes))

    def _miss(self, request: bytes, reason: str) -> Step:
        if self.fallback is not None:
            return Step(ask=True)
        self.misses.append(Miss(self.device, 0, request, reason, "opcua"))
        strict = self.mode == "strict"
        status = self.refusal if self.refusal is not None else BAD_UNEXPECTED_ERROR if strict else None
        if status is None:
            return Step()  # the server answers: BadNodeIdUnknown for the nodes it does not have
        return Step(Verdict(forward=False, answer=_CODEC.error_response(request, status)))

    def asked(self, request: bytes, live: bytes | None) -> Verdict:
        """The real device's answer to a miss (None: it gave none), as the relay sends it on."""
        if live is not None:
            return Verdict(forward=False, answer=live)
        with self._lock:
            why = "not in the cassette, and the device did not answer"
            self.misses.append(Miss(self.device, 0, request, why, "opcua"))
        return Verdict(forward=False, answer=_CODEC.error_response(request, BAD_COMMUNICATION_ERROR))


def is_read(request: bytes) -> bool:
    """Whether a service message is a Read request (by its type id: nothing decoded)."""
    return request[:4] == _READ_OR_WRITE[0]


def source_time(data_value: Any) -> float:
    stamp = data_value.SourceTimestamp
    return float(stamp.timestamp()) if stamp is not None else time.time()


def refusal_status(unknown: int | str | None, device: str) -> int | None:
    """The status an OPC UA replay refuses a miss with, from a replay spec's `unknown`: "default"
    (None here: see OpcuaAnswers.refusal), a Bad status name, or a Bad status code."""
    from bifrost.errors import ConfigError

    if unknown == "default":
        return None
    if isinstance(unknown, str):
        from bifrost._native import opcua_status_code

        code = opcua_status_code(unknown)
        if code is None:
            raise ConfigError(f"device {device}: replay unknown {unknown!r} is no OPC UA status name")
    elif isinstance(unknown, int):
        code = unknown
    else:
        raise ConfigError(
            f"device {device}: replay unknown cannot be null for OPC UA: a miss is refused with a status "
            "(a Bad status name such as BadUnexpectedError, or 'default')"
        )
    if not code & 0x80000000:
        raise ConfigError(f"device {device}: replay unknown {status_text(code)} is no Bad status: a miss is refused")
    return code


__all__ = [
    "OPCUA_MODES",
    "SERVED_TYPES",
    "OpcuaAnswers",
    "ReplayedNode",
    "Step",
    "is_read",
    "refusal_status",
    "source_time",
]
