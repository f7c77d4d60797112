"""The strict scenario model of a Modbus device: its keys and the checks of its register map."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, ModelWrapValidatorHandler, Tag, model_validator
from pydantic_core import InitErrorDetails
from typing_extensions import Self

from bifrost.errors import ConfigError
from bifrost.modbus.address import check_fits, parse_address
from bifrost.tags import ByteOrder, DataType, parse_type
from bifrost.values import WireFormat, words_for
from simulators.recording.spec import ReplaySpec
from simulators.scenario import (
    DeviceModel,
    KnownTag,
    StrictMapEntry,
    addressed_entries,
    map_entry_kind,
    scenario_error,
    with_problems,
)

MapValue = Annotated[
    Annotated[str, Tag("Address")] | Annotated[StrictMapEntry, Tag("Entry")],
    Discriminator(
        map_entry_kind,
        custom_error_type="map_entry",
        custom_error_message="expected an address such as hr:0, or a mapping with address: and optionally "
        "type, byte_order, scale, offset, writable",
    ),
]


@dataclass(frozen=True)
class _Span:
    """Where one map entry sits: an area, a range of registers or bits, and a bit of a register."""

    tag: str
    area: str
    start: int
    end: int  # exclusive
    bit: int | None

    def overlaps(self, other: _Span) -> bool:
        if self.area != other.area or self.end <= other.start or other.end <= self.start:
            return False
        return self.bit is None or other.bit is None or self.bit == other.bit

    def __str__(self) -> str:
        if self.bit is not None:
            return f"{self.area}:{self.start}.{self.bit}"
        return f"{self.area}:{self.start}" if self.end - self.start == 1 else f"{self.area}:{self.start}-{self.end - 1}"


def _modbus_map_problems(raw_map: dict[Any, Any]) -> list[InitErrorDetails]:
    """Addresses, area/type agreement and overlapping registers of one Modbus device's map."""
    errors: list[InitErrorDetails] = []
    taken: list[_Span] = []
    for entry in addressed_entries(raw_map):
        tag, text, loc, wire = entry.tag, entry.text, entry.loc, entry.wire
        try:
            address = parse_address(text)
            if address.type is not None or address.byte_order is not None:
                raise ConfigError(
                    f"{text!r}: a map address is area:offset[.bit]; give the type with type: and the "
                    "byte order with byte_order:"
                )
            if wire is None:
                continue  # no type to check against; the missing type is reported where it belongs
            try:
                dtype, length = parse_type(wire)
            except ValueError:
                continue  # a bad type is reported where it is written
            check_fits(
                address, WireFormat(dtype, length=length or 0, bit=address.bit if dtype is DataType.BOOL else None)
            )
        except ConfigError as exc:
            errors.append(scenario_error(loc, str(exc), text))
            continue
        if (problem := entry.scale_problem(dtype)) is not None:
            errors.append(problem)
        size = 1 if address.is_bit else words_for(dtype, length or 0)
        span = _Span(tag, address.area.value, address.offset, address.offset + size, address.bit)
        clash = next((other for other in taken if other.overlaps(span)), None)
        if clash is not None:
            errors.append(scenario_error(loc, f"{span} overlaps {clash.tag!r} at {clash}", text))
        taken.append(span)
    return errors


class ModbusDeviceModel(DeviceModel):
    """A Modbus device: TCP, RTU over TCP, or RTU on a pseudo-terminal, at a unit id."""

    protocol: Literal["modbus"]
    transport: Literal["tcp", "rtu+tcp", "rtu"] = Field(
        default="tcp",
        description="tcp (Modbus TCP), rtu+tcp (RTU frames on TCP) or rtu (RTU on a pseudo-terminal, which has "
        "no listen address)",
    )
    unit: int | None = Field(default=None, ge=0, le=255)
    byte_order: ByteOrder = ByteOrder.ABCD
    map: dict[KnownTag, MapValue] = Field(default_factory=dict)
    replay: ReplaySpec | None = Field(
        default=None, description="serve this device from a cassette (docs/replay.md) instead of from the plant"
    )

    def _problems(self) -> list[InitErrorDetails]:
        if self.transport == "rtu" and self.listen is not None:
            return [
                scenario_error(
                    ("listen",),
                    "an rtu device is served on a pseudo-terminal, so it has no listen address "
                    "(use transport: rtu+tcp for RTU frames on TCP)",
                    self.listen,
                )
            ]
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _addresses(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # Overlaps are between entries, so they are found here, on the raw map, and reported per entry
        # alongside any other problem of the device.
        errors = (
            _modbus_map_problems(data["map"]) if isinstance(data, dict) and isinstance(data.get("map"), dict) else []
        )
        result: Self = with_problems(cls.__name__, data, handler, errors)
        return result


__all__ = ["MapValue", "ModbusDeviceModel"]
