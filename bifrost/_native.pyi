"""Stubs of the Rust extension module `bifrost._native` (checked by mypy.stubtest)."""

import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, ClassVar, final

import numpy as np
from numpy.typing import NDArray

from bifrost.errors import BifrostError
from bifrost.opcua.engine import ReadResult
from bifrost.opcua.nodes import NodeId
from bifrost.tags import Quality

__all__ = [
    "DataPoint",
    "FleetPoll",
    "ModbusClient",
    "NativeChain",
    "NativePipeline",
    "NativePlan",
    "NativePointSubscription",
    "NativeSubscription",
    "OpcuaClient",
    "OpcuaReadPlan",
    "OpcuaServer",
    "OpcuaSubscription",
    "TcpSession",
    "__version__",
    "counter_delta",
    "decode",
    "encode",
    "lttb",
    "minmax_lttb",
    "opcua_certificate",
    "opcua_status_code",
    "opcua_status_name",
    "rolling",
]

__version__: str

_Value = bool | int | float | str

def decode(
    words: Sequence[int],
    dtype: str,
    byte_order: str = "ABCD",
    *,
    length: int = 0,
    scale: float = 1.0,
    offset: float = 0.0,
    bit: int | None = None,
) -> _Value: ...
def encode(
    value: _Value,
    dtype: str,
    byte_order: str = "ABCD",
    *,
    length: int = 0,
    scale: float = 1.0,
    offset: float = 0.0,
    bit: int | None = None,
    current: int = 0,
) -> list[int]: ...

@final
class DataPoint:
    """One value read from a device: value, quality, and when it was read (seconds since the epoch).
    Re-exported as `bifrost.DataPoint`. Immutable, equal by value, quality and timestamp; unhashable."""

    __hash__: ClassVar[None]  # type: ignore[assignment]
    def __new__(cls, value: _Value | None, quality: Quality = ..., timestamp: float | None = None) -> DataPoint: ...
    @property
    def value(self) -> _Value | None: ...
    @property
    def quality(self) -> Quality: ...
    @property
    def timestamp(self) -> float: ...
    @property
    def good(self) -> bool: ...
    @property
    def datetime(self) -> datetime: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

@final
class NativePlan:
    """A read plan built once: requests (unit, area, start, count), tags
    (request, offset, dtype, byte order, length, scale, offset, bit), and optionally a key per tag."""

    def __new__(
        cls,
        requests: Sequence[tuple[int, str, int, int]],
        tags: Sequence[tuple[int, int, str, str, int, float, float, int | None]],
        keys: Sequence[str] | None = None,
    ) -> NativePlan: ...
    @property
    def request_count(self) -> int: ...
    @property
    def tag_count(self) -> int: ...

@final
class NativeSubscription:
    """Batches of (tag indices, values or None, exceptions or None) of what changed."""

    def __aiter__(self) -> NativeSubscription: ...
    def __anext__(self) -> Awaitable[tuple[list[int], list[_Value | None], list[BifrostError | None]]]: ...
    def close(self) -> None: ...

@final
class NativePointSubscription:
    """Batches of (a DataPoint per changed key, (key, exception) per failed tag)."""

    def __aiter__(self) -> NativePointSubscription: ...
    def __anext__(self) -> Awaitable[tuple[dict[str, DataPoint], list[tuple[str, BifrostError]]]]: ...
    def last(self) -> dict[str, DataPoint | BifrostError]: ...
    def close(self) -> None: ...

@final
class ModbusClient:
    """One Modbus connection (tcp, rtu_over_tcp, or a serial bus shared by path); every call is awaitable."""

    def __new__(
        cls,
        transport: str,
        address: str,
        *,
        name: str | None = None,
        timeout: float = 3.0,
        connect_timeout: float | None = None,
        backoff_base: float = 0.1,
        backoff_max: float = 10.0,
        baud: int = 19200,
        parity: str = "N",
        data_bits: int = 8,
        stop_bits: int = 1,
    ) -> ModbusClient: ...
    @property
    def device(self) -> str: ...
    @property
    def connected(self) -> bool: ...
    def stats(self) -> dict[str, int | bool]: ...
    def connect(self) -> Awaitable[None]: ...
    def close(self) -> Awaitable[None]: ...
    def read(self, unit: int, area: str, start: int, count: int) -> Awaitable[list[int] | list[bool]]: ...
    def write_registers(self, unit: int, start: int, words: Sequence[int]) -> Awaitable[None]: ...
    def write_coils(self, unit: int, start: int, bits: Sequence[bool]) -> Awaitable[None]: ...
    def transact(self, unit: int, pdu: bytes, write: bool = True) -> Awaitable[bytes]: ...
    def execute(self, plan: NativePlan) -> Awaitable[tuple[list[_Value | None], list[BifrostError | None]]]: ...
    def read_points(
        self, plan: NativePlan
    ) -> Awaitable[tuple[dict[str, DataPoint], list[tuple[int, BifrostError]]]]: ...
    def subscribe(self, plan: NativePlan, interval: float, deadband: float = 0.0) -> NativeSubscription: ...
    def subscribe_points(self, plan: NativePlan, interval: float, deadband: float = 0.0) -> NativePointSubscription: ...

_OpcuaValue = bool | int | float | str
# A served variable's value: a scalar, or (a type name ending in `[]`, `Double[]`) a list of them.
_OpcuaServed = _OpcuaValue | list[_OpcuaValue]
_OpcuaGiven = _OpcuaValue | Sequence[_OpcuaValue]

_OpcuaNode = tuple[int, int | str | bytes | uuid.UUID]

@final
class OpcuaClient:
    """One OPC UA session on C open62541's client; every service call is awaitable on the loop."""

    @staticmethod
    def connect(
        url: str,
        *,
        timeout: float,
        policy: str,
        mode: str,
        certificate: bytes | None = None,
        private_key: bytes | None = None,
        application_uri: str | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> Awaitable[OpcuaClient]: ...
    def healthy(self) -> bool: ...
    def read(self, nodes: Sequence[_OpcuaNode], attribute: int) -> Awaitable[list[ReadResult]]: ...
    def prepare_read(
        self,
        nodes: Sequence[_OpcuaNode],
        attribute: int,
        points: Sequence[tuple[str, int, tuple[float, float] | None]],
    ) -> OpcuaReadPlan: ...
    def read_points(self, plan: OpcuaReadPlan, timeout: float, message: str) -> Awaitable[dict[str, DataPoint]]: ...
    def write(self, items: Sequence[tuple[_OpcuaNode, object, int]]) -> Awaitable[list[int]]: ...
    def browse(self, node: _OpcuaNode) -> Awaitable[list[tuple[NodeId, tuple[int, str], str, int]]]: ...
    def subscribe(
        self, interval: float, items: Sequence[tuple[int, _OpcuaNode, float]]
    ) -> Awaitable[OpcuaSubscription]: ...
    def close(self) -> Awaitable[None]: ...

@final
class OpcuaReadPlan:
    """A read_many planned once: its Read request and, per point, its key, node and scaling."""

@final
class OpcuaSubscription:
    """A live subscription of an OpcuaClient: notifications queued by the C client's thread."""

    @property
    def statuses(self) -> list[int]: ...
    @property
    def interval(self) -> float: ...
    @property
    def keepalive(self) -> int: ...
    def ready(self) -> Awaitable[None]: ...
    def take(self) -> list[tuple[int, ReadResult]]: ...
    def healthy(self) -> bool: ...
    def close(self) -> None: ...

@final
class OpcuaServer:
    """The simulator's OPC UA server (C open62541 on its own thread), values pushed in from Python."""

    def __new__(
        cls,
        *,
        host: str,
        port: int,
        path: str,
        device: str,
        variables: Sequence[tuple[str, Sequence[str], str, bool, str | None, _OpcuaGiven]],
        namespaces: Sequence[str],
        application_uri: str,
        application_name: str = ...,
        security: Sequence[str] = ...,
        certificate: bytes | None = None,
        private_key: bytes | None = None,
        users: Sequence[tuple[str, str, bool]] = ...,
        advertised_url: str | None = None,
    ) -> OpcuaServer: ...
    @property
    def port(self) -> int: ...
    @property
    def url(self) -> str: ...
    @property
    def namespaces(self) -> list[str]: ...
    @property
    def node_ids(self) -> list[str]: ...
    @property
    def running(self) -> bool: ...
    def set_values(self, batch: Sequence[tuple[int, _OpcuaGiven, int, float]]) -> list[int]: ...
    def value(self, index: int) -> tuple[_OpcuaServed, int] | None: ...
    def drain_writes(self) -> list[tuple[int, _OpcuaServed, str | None]]: ...
    def drain_events(self) -> list[tuple[float, str, int, int, str | None, list[tuple[int, int]]]]: ...
    def set_log_services(self, on: bool) -> None: ...
    def set_status_fault(
        self,
        nodes: Sequence[int] | None,
        status: int,
        probability: float = 1.0,
        count: int | None = None,
        seed: int = 0,
    ) -> None: ...
    def clear_status_fault(self) -> None: ...
    def drop_sessions(self) -> None: ...
    def wake_fd(self) -> int: ...
    def clear_wake(self) -> None: ...
    def stop(self) -> None: ...

def opcua_status_code(name: str) -> int | None: ...
def opcua_status_name(code: int) -> str: ...
def opcua_certificate(application_uri: str, hosts: Sequence[str]) -> tuple[bytes, bytes]: ...

@final
class TcpSession:
    """Modbus TCP driven by the running asyncio loop: no thread hop; every call is awaitable."""

    def __new__(
        cls,
        address: str,
        *,
        name: str,
        timeout: float,
        max_in_flight: int = 1,
        warn: Callable[[str], object] | None = None,
        backoff_base: float = 0.1,
        backoff_max: float = 10.0,
        backoff_seed: int | None = None,
    ) -> TcpSession: ...
    @property
    def max_in_flight(self) -> int: ...
    @property
    def connected(self) -> bool: ...
    def stats(self) -> dict[str, int | bool]: ...
    def connect(self) -> Awaitable[None]: ...
    def close(self) -> None: ...
    def read(self, unit: int, area: str, start: int, count: int) -> Awaitable[list[int] | list[bool]]: ...
    def write_registers(self, unit: int, start: int, words: Sequence[int]) -> Awaitable[None]: ...
    def write_coils(self, unit: int, start: int, bits: Sequence[bool]) -> Awaitable[None]: ...
    def transact(self, unit: int, pdu: bytes, write: bool = True) -> Awaitable[bytes]: ...
    def execute(self, plan: NativePlan) -> Awaitable[tuple[list[_Value | None], list[BifrostError | None]]]: ...
    def read_points(
        self, plan: NativePlan
    ) -> Awaitable[tuple[dict[str, DataPoint], list[tuple[int, BifrostError]]]]: ...

@final
class FleetPoll:
    """Many TcpSessions polled in one loop: one batch per cycle (see bifrost.modbus.fleet)."""

    def __new__(
        cls,
        sessions: Sequence[TcpSession],
        plans: Sequence[NativePlan],
        names: Sequence[str],
        *,
        interval: float,
        deadband: float = 0.0,
        columnar: bool = False,
        coalesce: float | None = None,
    ) -> FleetPoll: ...
    def replace(
        self, index: int, plan: NativePlan, positions: Sequence[int], seen: Sequence[tuple[int, Any]] = ...
    ) -> None: ...
    @property
    def names(self) -> list[str]: ...
    def next(self) -> Awaitable[tuple[Any, ...] | None]: ...
    def close(self) -> None: ...

# Analytics (rust/bifrost-py/src/analytics.rs): a stage is (kind, params), as bifrost.analytics builds them.
_Stage = tuple[str, dict[str, float | int | str | None]]
_Floats = NDArray[np.float64]

@final
class NativeChain:
    """Operators in series over one series of points, its state kept between calls."""

    def __new__(cls, stages: Iterable[_Stage]) -> NativeChain: ...
    def push(self, t: float, v: float, good: bool = True) -> list[tuple[float, float]]: ...
    def process(self, t: _Floats, v: _Floats, good: NDArray[np.bool_] | None = None) -> tuple[_Floats, _Floats]: ...
    def flush(self) -> list[tuple[float, float]]: ...
    @property
    def rejected(self) -> int: ...
    @property
    def skipped(self) -> int: ...

@final
class NativePipeline:
    """The same operators for every tag, each tag with its own state."""

    def __new__(cls, stages: Iterable[_Stage]) -> NativePipeline: ...
    def apply(self, batch: dict[str, DataPoint]) -> dict[str, list[DataPoint]]: ...
    def push(self, tag: str, point: DataPoint) -> list[DataPoint]: ...
    def process(
        self, tag: str, t: _Floats, v: _Floats, good: NDArray[np.bool_] | None = None
    ) -> tuple[_Floats, _Floats]: ...
    def flush(self) -> dict[str, list[DataPoint]]: ...
    def stats(self) -> dict[str, tuple[int, int]]: ...

def lttb(x: _Floats | None, y: _Floats, n_out: int) -> NDArray[np.uint64]: ...
def minmax_lttb(x: _Floats | None, y: _Floats, n_out: int, ratio: int = 4) -> NDArray[np.uint64]: ...
def rolling(values: _Floats, window: int, stat: str = "mean") -> _Floats: ...
def counter_delta(
    values: NDArray[np.uint64], bits: int = 64, max_delta: int | None = None
) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]: ...
