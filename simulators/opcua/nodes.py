"""How an OPC UA device projects plant tags onto variables: its map, resolved (no I/O).

`map: all` serves every tag; a map serves the tags it names, each as a NodeId string or a table
`{node, writable, type}`. A tag served without a NodeId gets `nsu=<namespace>;s=<tag name>` (by URI,
so it does not depend on the server's namespace order); its browse path is the tag name's dotted
parts under the device's folder: `Objects/<device>/tank/level`. The OPC UA type follows the tag's
type (`float32` is Float, `string[N]` is String), or the map's `type` (any built-in scalar from
Boolean to String, e.g. SByte or Byte for a small integer tag).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bifrost.errors import ConfigError
from bifrost.tags import DataType, parse_type

OPCUA_TYPES = (
    "Boolean",
    "SByte",
    "Byte",
    "Int16",
    "UInt16",
    "Int32",
    "UInt32",
    "Int64",
    "UInt64",
    "Float",
    "Double",
    "String",
)

_FROM_TAG = {
    DataType.BOOL: "Boolean",
    DataType.INT16: "Int16",
    DataType.UINT16: "UInt16",
    DataType.INT32: "Int32",
    DataType.UINT32: "UInt32",
    DataType.INT64: "Int64",
    DataType.UINT64: "UInt64",
    DataType.FLOAT32: "Float",
    DataType.FLOAT64: "Double",
    DataType.STRING: "String",
}

_INTEGER_RANGES = {
    "SByte": (-(2**7), 2**7 - 1),
    "Byte": (0, 2**8 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "UInt16": (0, 2**16 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "UInt32": (0, 2**32 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt64": (0, 2**64 - 1),
}


@dataclass(frozen=True)
class ServedNode:
    """One plant tag as one OPC UA variable."""

    tag: str
    node_id: str
    path: tuple[str, ...]
    type: str
    writable: bool
    unit: str | None


def opcua_type(tag_type: str) -> str:
    dtype, _ = parse_type(tag_type)
    return _FROM_TAG[dtype]


def wire_value(value: Any, type_name: str) -> Any:
    """A plant value as the variable's type holds it (integers saturate, like a PLC's register)."""
    if type_name == "Boolean":
        return bool(value)
    if type_name in ("Float", "Double"):
        return float(value)
    if type_name == "String":
        return str(value)
    low, high = _INTEGER_RANGES[type_name]
    number = value if isinstance(value, int) else round(float(value))  # a float would lose uint64 digits
    return max(low, min(high, number))


def resolve(
    device: str,
    namespace: str,
    entries: dict[str, tuple[str | None, bool | None, str | None]],
    tags: dict[str, Any],
) -> list[ServedNode]:
    """The variables of a device. `entries`: tag -> (node id or None, writable or None, type or None);
    `tags`: the scenario's tag specs (with `type`, `writable`, `unit`)."""
    nodes: list[ServedNode] = []
    seen: dict[str, str] = {}
    for tag, (node_id, writable, type_name) in entries.items():
        spec = tags.get(tag)
        if spec is None:
            raise ConfigError(f"device {device}: map names tag {tag!r}, which the scenario does not define")
        node = node_id or f"nsu={namespace};s={tag}"
        if node in seen:
            raise ConfigError(f"device {device}: tags {seen[node]!r} and {tag!r} both map to node {node!r}")
        seen[node] = tag
        if type_name is not None and type_name not in OPCUA_TYPES:
            raise ConfigError(
                f"device {device}: tag {tag!r}: OPC UA type {type_name!r}; expected one of {', '.join(OPCUA_TYPES)}"
            )
        nodes.append(
            ServedNode(
                tag=tag,
                node_id=node,
                path=tuple(tag.split(".")),
                type=type_name or opcua_type(spec.type),
                writable=spec.writable if writable is None else writable,
                unit=getattr(spec, "unit", None) or None,
            )
        )
    return nodes
