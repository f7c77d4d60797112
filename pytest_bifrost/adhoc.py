"""Scenarios built in memory for ad-hoc devices (`bifrost_modbus_server`), with no file to write."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

from bifrost.errors import ConfigError

if TYPE_CHECKING:
    from simulators.scenario import Scenario

SOURCE = "bifrost_modbus_server"
# Keys of an inline tag that say where the device serves it; every other key describes the plant tag.
MAP_KEYS = frozenset({"address", "byte_order", "scale", "offset"})


def modbus_scenario_data(
    tags: Mapping[str, Mapping[str, Any]], *, name: str, unit: int, byte_order: str
) -> dict[str, Any]:
    """The scenario (as file data) of one Modbus device serving `tags` on any free port."""
    plant_tags: dict[str, Any] = {}
    device_map: dict[str, Any] = {}
    problems = []
    for tag, spec in tags.items():
        if not isinstance(spec, Mapping) or "address" not in spec:
            problems.append(
                f"{SOURCE}: tags.{tag}: expected a table with an address and a type, as in "
                "{'type': 'float32', 'address': 'hr:0', 'init': 12.5, 'writable': True}"
            )
            continue
        plant_tags[tag] = {key: value for key, value in spec.items() if key not in MAP_KEYS}
        entry = {key: value for key, value in spec.items() if key in MAP_KEYS}
        device_map[tag] = entry["address"] if len(entry) == 1 else entry
    if problems:
        raise ConfigError("\n".join(problems), problems=problems)
    return {
        "scenario": f"{SOURCE}-{name}",
        "tags": plant_tags,
        "devices": {
            name: {
                "protocol": "modbus",
                "listen": "127.0.0.1:0",
                "unit": unit,
                "byte_order": byte_order,
                "map": device_map,
            }
        },
    }


def identity(data: Mapping[str, Any]) -> str:
    """A stable key for the session's host registry: equal specs share one running simulator."""
    return json.dumps(data, sort_keys=True, default=repr)


def build_scenario(data: Mapping[str, Any]) -> Scenario:
    """Validate scenario data with the scenario file's own checks; problems name the field, not a
    line of a file the test never wrote."""
    from simulators.scenario import load_scenario

    text = yaml.safe_dump(dict(data), sort_keys=False)
    try:
        return load_scenario(SOURCE, text)
    except ConfigError as exc:
        problems = [re.sub(rf"^{SOURCE}:\d+:\d+: ", f"{SOURCE}: ", line) for line in exc.problems]
        raise ConfigError("\n".join(problems), problems=problems) from None
