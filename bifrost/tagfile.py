"""The tag-database half of a scenario file: tag types, device maps and addresses.

`bifrost` never imports `simulators`, so the client reads a scenario through these lenient models,
which ignore the simulation keys (behaviours, events, faults). `simulators.scenario` builds its
strict models on top of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bifrost._yaml import LocatedYaml, load_yaml, validation_problems
from bifrost.errors import ConfigError
from bifrost.tags import ByteOrder, Tag, TagMap, parse_type


def _check_type(name: str) -> str:
    parse_type(name)
    return name


class TagSpec(BaseModel):
    """A plant tag, free of any protocol."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str = Field(description="bool, int16, uint16, int32, uint32, int64, uint64, float32, float64 or string[N]")
    unit: str | None = None
    writable: bool = False
    description: str | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, name: str) -> str:
        return _check_type(name)


class MapEntry(BaseModel):
    """Where a device serves a tag, and how it may narrow its wire type for that device.

    `address` is the protocol's address (Modbus `hr:0`, S7 `DB1.DBD0`); an OPC UA map may say `node:`
    for the same thing (a NodeId such as `ns=1;s=Tank.Level`).
    """

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    address: str = Field(validation_alias=AliasChoices("address", "node"))
    type: str | None = None
    byte_order: ByteOrder | None = None
    scale: float = 1.0
    offset: float = 0.0
    writable: bool | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, name: str | None) -> str | None:
        return None if name is None else _check_type(name)


class DeviceSpec(BaseModel):
    """A device that projects some plant tags onto protocol addresses."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    protocol: str
    listen: str | None = None
    unit: int | None = Field(default=None, ge=0, le=255)
    byte_order: ByteOrder = ByteOrder.ABCD
    namespace: str | None = None
    map: dict[str, str | MapEntry] | Literal["all"] = Field(default_factory=dict)

    def entry(self, tag: str) -> MapEntry:
        return map_entry(self, tag)


ALL = "all"
"""`map: all`: every tag of the plant, at the address its name gives (OPC UA: `nsu=<namespace>;s=<tag>`)."""


def default_namespace(scenario: str | None) -> str:
    """The namespace URI of a scenario's OPC UA nodes unless a device names its own."""
    return f"urn:bifrost:{scenario or 'plant'}"


def mapped_tags(device: Any, tags: Mapping[str, Any]) -> list[str]:
    """The tags a device (lenient or strict model) serves, in map order; `map: all` is every tag."""
    return list(tags) if device.map == ALL else list(device.map)


def map_entry(device: Any, tag: str, scenario: str | None = None) -> MapEntry:
    """Where `device` serves `tag`: its map entry, or under `map: all` the address the tag's name gives."""
    if device.map == ALL:
        namespace = getattr(device, "namespace", None) or default_namespace(scenario)
        return MapEntry(address=f"nsu={namespace};s={tag}")
    raw = device.map[tag]
    return MapEntry(address=raw) if isinstance(raw, str) else raw


def device_tag_map(tags: Mapping[str, Any], device: Any, scenario: str | None = None) -> TagMap:
    """The client's tag database for one device of a scenario (lenient or strict models alike)."""
    byte_order = getattr(device, "byte_order", None) or ByteOrder.ABCD
    built = []
    for name in mapped_tags(device, tags):
        plant_tag = tags[name]
        entry = map_entry(device, name, scenario)
        dtype, length = parse_type(entry.type or plant_tag.type)
        built.append(
            Tag(
                name=name,
                address=entry.address,
                type=dtype,
                length=length,
                byte_order=entry.byte_order or byte_order,
                scale=entry.scale,
                offset=entry.offset,
                writable=plant_tag.writable if entry.writable is None else entry.writable,
                unit=plant_tag.unit,
                description=plant_tag.description,
            )
        )
    return TagMap.of(*built, unit=getattr(device, "unit", None))


class TagFile(BaseModel):
    """The tags and devices of a scenario file."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    tags: dict[str, TagSpec] = Field(default_factory=dict)
    devices: dict[str, DeviceSpec] = Field(default_factory=dict)
    scenario: str | None = None

    @model_validator(mode="after")
    def _maps_name_known_tags(self) -> Any:
        for device_name, device in self.devices.items():
            for tag in mapped_tags(device, self.tags):
                if tag not in self.tags:
                    raise ValueError(f"device {device_name!r} maps {tag!r}, which is not a tag of this plant")
        return self

    def tag_map(self, device: str) -> TagMap:
        """The client's tag database for one device."""
        spec = self.devices.get(device)
        if spec is None:
            known = ", ".join(sorted(self.devices)) or "(none)"
            raise ConfigError(f"no device {device!r}; the devices are: {known}")
        return device_tag_map(self.tags, spec, self.scenario)


def validate_located(model: type[BaseModel], located: LocatedYaml) -> Any:
    """Validate YAML data against a model; every mistake becomes one `file:line:col: field: why` line."""
    if not isinstance(located.data, dict):
        raise ConfigError(f"{located.source}:1:1: expected a mapping of keys (tags:, devices:, ...) at the top level")
    try:
        return model.model_validate(located.data)
    except ValidationError as exc:
        problems = validation_problems(exc, located)
        raise ConfigError("\n".join(problems), problems=problems) from None


def load_tag_file(path: str | Path) -> TagFile:
    result: TagFile = validate_located(TagFile, load_yaml(path))
    return result
