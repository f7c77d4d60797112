"""A scenario file as the OPC UA client's tag database: `map: all` and explicit node maps, read and
written by tag name against a real server."""

from __future__ import annotations

from pathlib import Path

import pytest

import bifrost
from bifrost import ConfigError, DataType, TagMap

from .conftest import NAMESPACE, TYPES, AsyncuaPeer

SCENARIO = f"""
scenario: test
tags:
  tank.level: {{type: float64, unit: "%", writable: true, behaviour: {{expr: "40"}}}}
  readonly: {{type: float64}}
  types.Int16: {{type: int16, writable: true}}
devices:
  hmi:
    protocol: opcua
    listen: 127.0.0.1:0
    namespace: {NAMESPACE}
    map: all
  panel:
    protocol: opcua
    listen: 127.0.0.1:0
    map:
      tank.level: "ns=2;s=tank.level"
      types.Int16: {{node: "nsu={NAMESPACE};s=types.Int16", writable: false}}
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "test.yaml"
    path.write_text(SCENARIO)
    return path


def test_map_all_puts_every_tag_at_its_name_in_the_namespace(scenario: Path) -> None:
    tags = TagMap.from_scenario(scenario, device="hmi")
    assert set(tags) == {"tank.level", "readonly", "types.Int16"}
    assert tags["tank.level"].address == f"nsu={NAMESPACE};s=tank.level"
    assert tags["tank.level"].type is DataType.FLOAT64
    assert tags["tank.level"].unit == "%"
    assert tags["readonly"].writable is False
    panel = TagMap.from_scenario(scenario, device="panel")
    assert panel["tank.level"].address == "ns=2;s=tank.level"
    assert panel["types.Int16"].address == f"nsu={NAMESPACE};s=types.Int16"
    assert panel["types.Int16"].writable is False


def test_the_default_namespace_is_the_scenarios(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(
        "scenario: water-tank\ntags:\n  tank.level: {type: float32}\n"
        "devices:\n  hmi: {protocol: opcua, listen: 127.0.0.1:0, map: all}\n"
    )
    assert TagMap.from_scenario(path, device="hmi")["tank.level"].address == "nsu=urn:bifrost:water-tank;s=tank.level"


@pytest.mark.asyncio
async def test_tags_by_name_against_a_server(scenario: Path, opcua_server: AsyncuaPeer, engine: str) -> None:
    tags = TagMap.from_scenario(scenario, device="hmi")
    async with bifrost.connect(opcua_server.url, tags=tags, engine=engine) as plc:
        try:
            points = await plc.read_many(["tank.level", "readonly", "types.Int16"])
            assert {name: point.value for name, point in points.items()} == {
                "tank.level": 40.0,
                "readonly": 7.5,
                "types.Int16": TYPES["Int16"][1],
            }
            await plc.write("types.Int16", 321)  # typed by the tag: an Int16 Variant
            assert opcua_server.get("types.Int16") == 321
            with pytest.raises(ConfigError, match="'readonly' is not writable"):
                await plc.write("readonly", 1.0)
        finally:
            opcua_server.set("types.Int16", TYPES["Int16"][1], "Int16")
    panel = TagMap.from_scenario(scenario, device="panel")
    async with bifrost.connect(opcua_server.url, tags=panel, engine=engine) as plc:
        assert (await plc.read("types.Int16")).value == TYPES["Int16"][1]
        with pytest.raises(ConfigError, match=r"'types\.Int16' is not writable"):
            await plc.write("types.Int16", 1)
