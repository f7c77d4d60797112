"""Stubs of the Rust extension module `bifrost._native` (checked by mypy.stubtest)."""

from collections.abc import Awaitable, Sequence
from typing import final

from bifrost.errors import BifrostError

__all__ = ["ModbusClient", "NativePlan", "NativeSubscription", "__version__", "decode", "encode"]

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
class NativePlan:
    """A read plan built once: requests (unit, area, start, count) and tags
    (request, offset, dtype, byte order, length, scale, offset, bit)."""

    def __new__(
        cls,
        requests: Sequence[tuple[int, str, int, int]],
        tags: Sequence[tuple[int, int, str, str, int, float, float, int | None]],
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
    def execute(self, plan: NativePlan) -> Awaitable[tuple[list[_Value | None], list[BifrostError | None]]]: ...
    def subscribe(self, plan: NativePlan, interval: float, deadband: float = 0.0) -> NativeSubscription: ...
