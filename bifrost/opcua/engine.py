"""What an OPC UA client engine does. `OpcuaConnection` (client.py) does the rest, the same for every
engine: tag names and addresses, namespace URIs, splitting reads by the server's operation limits,
value types, quality and timestamps, timeouts, and re-creating the session and its subscriptions
after a connection loss.

An engine speaks in NodeIds by namespace index (`NodeId.namespace_uri` is always None here: the
connection resolves URIs first) and in raw 32-bit StatusCodes. It raises bifrost's errors:
ConnectError when the server cannot be reached or the session is gone (the connection then closes
the engine and opens it again), TimeoutError, DeviceError(code) when a whole service call fails with
a Bad status, and ProtocolError.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import NamedTuple

from bifrost.opcua.nodes import NodeId, QualifiedName
from bifrost.tags import DataPoint
from bifrost.urls import Endpoint

SECURITY_POLICIES = ("None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss")
SECURITY_MODES = ("None", "Sign", "SignAndEncrypt")


class VariantType(IntEnum):
    """OPC UA built-in type ids (Part 6, 5.1.2): a Variant's type, and a DataType NodeId in ns=0."""

    BOOLEAN = 1
    SBYTE = 2
    BYTE = 3
    INT16 = 4
    UINT16 = 5
    INT32 = 6
    UINT32 = 7
    INT64 = 8
    UINT64 = 9
    FLOAT = 10
    DOUBLE = 11
    STRING = 12
    DATETIME = 13
    GUID = 14
    BYTESTRING = 15
    XMLELEMENT = 16
    NODEID = 17
    EXPANDEDNODEID = 18
    STATUSCODE = 19
    QUALIFIEDNAME = 20
    LOCALIZEDTEXT = 21


class AttributeId(IntEnum):
    NODE_ID = 1
    NODE_CLASS = 2
    BROWSE_NAME = 3
    DISPLAY_NAME = 4
    VALUE = 13
    DATA_TYPE = 14
    ACCESS_LEVEL = 17


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """How to open the session: the security policy and mode, the client's certificate and key
    (PEM or DER files), and a user; anonymous when `user` is None."""

    policy: str = "None"
    mode: str = "None"
    certificate: Path | None = None
    private_key: Path | None = None
    user: str | None = None
    password: str | None = None


class ReadResult(NamedTuple):
    """One DataValue: the value as Python sees it (bool, int, float, str, or for other built-in types
    datetime, uuid.UUID, bytes, NodeId, a list for arrays; None when the server sent none), its
    Variant type, the StatusCode, and the source and server timestamps (seconds since the epoch).

    A NamedTuple rather than a frozen dataclass: a Read makes one per value, and a frozen dataclass's
    __init__ (a setattr per field) cost the native engine as much as its Read call."""

    value: object
    variant: int | None
    status: int
    source_timestamp: float | None = None
    server_timestamp: float | None = None


# A point of a read plan: its key, the index of the node it reads, the tag's (scale, offset) or None.
PlannedPoint = tuple[str, int, "tuple[float, float] | None"]


@dataclass(frozen=True, slots=True)
class WriteItem:
    """A value to write to a node's Value attribute, as a Variant of `variant` type."""

    node: NodeId
    value: object
    variant: VariantType


# NodeClass (Part 3, 8.29) by its number, as Reference.node_class names it.
NODE_CLASSES = {
    1: "Object",
    2: "Variable",
    4: "Method",
    8: "ObjectType",
    16: "VariableType",
    32: "ReferenceType",
    64: "DataType",
    128: "View",
}


@dataclass(frozen=True, slots=True)
class Reference:
    """A hierarchical forward reference from a browsed node: the child, as the server describes it."""

    node: NodeId
    browse_name: QualifiedName
    display_name: str
    node_class: str  # Object, Variable, Method, ObjectType, VariableType, ReferenceType, DataType, View


@dataclass(frozen=True, slots=True)
class MonitorRequest:
    """A monitored item on a node's Value: `handle` is the client handle notifications carry back;
    `deadband` > 0 asks for a DataChangeFilter with an absolute deadband."""

    handle: int
    node: NodeId
    deadband: float = 0.0


class EngineSubscription(ABC):
    """A live OPC UA subscription of one engine session."""

    statuses: Sequence[int]  # per MonitorRequest, the StatusCode of its CreateMonitoredItems result

    @abstractmethod
    async def next_batch(self) -> list[tuple[int, ReadResult]]:
        """The data changes of the next notification message, as (client handle, value), in the
        order sent. Raises ConnectError when the session or the subscription is lost, including when
        no message (nor keep-alive) came within the keep-alive time plus the engine's timeout."""

    @abstractmethod
    async def close(self) -> None:
        """Delete the subscription on the server if it can still be reached; safe to call twice."""


class Engine(ABC):
    """One OPC UA session to one server, owned by one OpcuaConnection."""

    name: str

    def __init__(self, endpoint: Endpoint, *, timeout: float, options: SessionOptions) -> None:
        self.endpoint = endpoint
        self.device = endpoint.url
        self.timeout = timeout
        self.options = options

    def _url(self) -> str:
        """The server's URL as OPC UA spells it (an IPv6 host in brackets), without bifrost's options."""
        host = f"[{self.endpoint.host}]" if ":" in self.endpoint.host else self.endpoint.host
        return f"opc.tcp://{host}:{self.endpoint.port}{self.endpoint.path}"

    @abstractmethod
    async def open(self) -> None:
        """Open a secure channel and an activated session, or raise ConnectError (naming the server
        and why: unreachable, no endpoint with this policy and mode, the user refused...)."""

    @abstractmethod
    async def close(self) -> None:
        """Close the session and the channel; safe to call twice and after a connection loss."""

    @abstractmethod
    async def read(self, nodes: Sequence[NodeId], attribute: AttributeId = AttributeId.VALUE) -> list[ReadResult]:
        """One Read service call (TimestampsToReturn Both) of `attribute` of every node, in order.
        Values of the DataType attribute come back as NodeIds."""

    def prepare_read(self, nodes: Sequence[NodeId], points: Sequence[PlannedPoint]) -> object | None:
        """A plan for `read_points`: one Read of `nodes`, and per point (in the order of the result)
        its key, the index of its node and the tag's (scale, offset) or None. None when this engine
        has no such plans: the connection then reads with `read` and makes the points itself."""
        return None

    def read_points(self, plan: object, timeout: float, message: str) -> Awaitable[dict[str, DataPoint]]:
        """One Read of a `prepare_read` plan, its points made as the connection makes them from a
        `read` (quality from the StatusCode, `variants.decode`, source timestamp, else the server's,
        else now; a value a DataPoint cannot carry is a BAD point of None at now). Bounded by the
        engine itself: bifrost's TimeoutError(`message`) when no answer came within `timeout`."""
        raise NotImplementedError(f"the {self.name} engine makes no read plans")

    @abstractmethod
    async def write(self, items: Sequence[WriteItem]) -> list[int]:
        """One Write service call; the StatusCode of each item, in order."""

    @abstractmethod
    async def browse(self, node: NodeId) -> list[Reference]:
        """Every hierarchical forward reference of `node` (following continuation points);
        DeviceError with the status when the server refuses to browse it."""

    @abstractmethod
    async def subscribe(self, interval: float, items: Sequence[MonitorRequest]) -> EngineSubscription:
        """Create a subscription publishing every `interval` seconds, with `items` sampled at that
        interval (queue size 1, discard oldest), reporting on status or value changes."""

    @abstractmethod
    def status_name(self, code: int) -> str:
        """The symbolic name of a StatusCode (`BadNodeIdUnknown`), or its hex form when unknown."""
