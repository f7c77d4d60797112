"""The strict scenario model of an S7 device: its keys and the checks of its map."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, ModelWrapValidatorHandler, field_validator, model_validator
from pydantic import Tag as Choice
from pydantic_core import InitErrorDetails
from typing_extensions import Self

from bifrost.errors import ConfigError
from bifrost.s7.address import format_for_tag, parse_address
from bifrost.s7.pdu import MAX_PDU, MIN_PDU, Area
from bifrost.tags import Tag, parse_type
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

AREA_NAMES = {Area.FLAGS: "M", Area.INPUTS: "I", Area.OUTPUTS: "Q"}
DEFAULT_SIZES = {"M": 256, "I": 128, "Q": 128}
"""Bytes of the flag and process-image areas when a scenario declares none (or maps past them)."""
_SIZE_KEY = re.compile(r"^(DB[1-9]\d*|M|I|Q)$")


MapValue = Annotated[
    Annotated[str, Choice("Address")] | Annotated[StrictMapEntry, Choice("Entry")],
    Discriminator(
        map_entry_kind,
        custom_error_type="map_entry",
        custom_error_message="expected an S7 address such as DB1.DBD0, or a mapping with address: and optionally "
        "type, scale, offset, writable",
    ),
]


def area_key(area: Area, db: int) -> str:
    """`DB1`, `M`, `I`, `Q`: how a scenario's `sizes` and the traffic log name an area."""
    return f"DB{db}" if area is Area.DB else AREA_NAMES.get(area, area.name)


def _s7_map_problems(raw_map: dict[Any, Any]) -> list[InitErrorDetails]:
    """Addresses, address/type agreement and overlaps of one S7 device's map."""
    errors: list[InitErrorDetails] = []
    taken: list[tuple[str, str, int, int, int | None]] = []  # tag, area, start, end, bit
    for entry in addressed_entries(raw_map):
        tag, text, loc, wire = entry.tag, entry.text, entry.loc, entry.wire
        try:
            address = parse_address(text)
            if wire is None:
                continue
            try:
                dtype, length = parse_type(wire)
            except ValueError:
                continue  # reported where the type is written
            fmt = format_for_tag(Tag(name=tag, address=text, type=dtype, length=length), address)
        except ConfigError as exc:
            errors.append(scenario_error(loc, str(exc), text))
            continue
        if (problem := entry.scale_problem(dtype)) is not None:
            errors.append(problem)
        area = area_key(address.area, address.db)
        span = (tag, area, address.start, address.start + fmt.size, address.bit)
        for other in taken:
            if other[1] == area and other[2] < span[3] and span[2] < other[3]:
                if span[4] is not None and other[4] is not None and span[4] != other[4]:
                    continue  # two bits of one byte
                errors.append(scenario_error(loc, f"{text} overlaps {other[0]!r} in {area}", text))
                break
        taken.append(span)
    return errors


class S7DeviceModel(DeviceModel):
    """A Siemens S7 CPU on ISO-on-TCP (port 102 on a real one)."""

    protocol: Literal["s7"]
    rack: int = Field(default=0, ge=0, le=7, description="rack of the CPU a client names in its TSAP")
    slot: int = Field(default=1, ge=0, le=31, description="slot of the CPU (1 on S7-1200/1500, 2 on S7-300)")
    pdu_size: int = Field(
        default=480, ge=MIN_PDU, le=MAX_PDU, description="the largest PDU this CPU negotiates (240, 480 or 960)"
    )
    max_amq: int = Field(default=1, ge=1, le=16, description="jobs a client may have in flight")
    sizes: dict[str, int] = Field(
        default_factory=dict,
        description="bytes of areas, e.g. {DB1: 64, M: 256}; a DB no tag maps exists only when declared here",
    )
    map: dict[KnownTag, MapValue] = Field(default_factory=dict)
    replay: ReplaySpec | None = Field(
        default=None, description="serve this CPU from a cassette (docs/replay.md) instead of from the plant"
    )

    @field_validator("sizes")
    @classmethod
    def _known_areas(cls, sizes: dict[str, int]) -> dict[str, int]:
        for key, size in sizes.items():
            if not _SIZE_KEY.match(key):
                raise ValueError(f"{key!r} is not an area: DB<n>, M, I or Q")
            if not 0 <= size <= 65536:
                raise ValueError(f"{key}: {size} bytes is not 0..65536")
        return sizes

    @model_validator(mode="wrap")
    @classmethod
    def _addresses(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        errors = _s7_map_problems(data["map"]) if isinstance(data, dict) and isinstance(data.get("map"), dict) else []
        result: Self = with_problems(cls.__name__, data, handler, errors)
        return result


__all__ = ["AREA_NAMES", "DEFAULT_SIZES", "S7DeviceModel", "area_key"]
