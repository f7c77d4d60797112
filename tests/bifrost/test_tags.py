"""The tag model, DataPoint, and reading a scenario as the client's tag database."""

from __future__ import annotations

import timeit
from pathlib import Path

import pytest
from pydantic import ValidationError

from bifrost import ByteOrder, DataPoint, DataType, Quality, Tag, TagMap
from bifrost.errors import ConfigError
from bifrost.tags import parse_type
from simulators import shipped_scenario


def test_string_types_carry_their_length() -> None:
    tag = Tag(name="batch", address="hr:20", type="string[8]")  # type: ignore[arg-type]
    assert (tag.type, tag.length, tag.type_name) == (DataType.STRING, 8, "string[8]")
    assert parse_type("float32") == (DataType.FLOAT32, None)
    with pytest.raises(ValueError, match="unknown type 'flaot32'; expected one of bool, int16"):
        parse_type("flaot32")
    with pytest.raises(ValueError, match="string\\[N\\]"):
        parse_type("string")


def test_a_tag_is_validated_once_when_it_is_made() -> None:
    with pytest.raises(ValidationError, match="needs a length"):
        Tag(name="s", address="hr:0", type=DataType.STRING)
    with pytest.raises(ValidationError, match="scale must not be 0"):
        Tag(name="t", address="hr:0", scale=0)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Tag(name="t", address="hr:0", colour="red")  # type: ignore[call-arg]


def test_tag_maps_are_keyed_by_name() -> None:
    tags = TagMap(tags={"level": {"address": "hr:0", "type": "float32"}})  # type: ignore[dict-item]
    assert tags["level"].name == "level"
    assert "level" in tags and list(tags) == ["level"] and len(tags) == 1
    with pytest.raises(KeyError, match="no tag 'levle'; did you mean 'level'\\? known tags: level"):
        tags["levle"]
    with pytest.raises(KeyError, match="no tag 'pressure'; known tags: level"):  # nothing close: no guess
        tags["pressure"]
    with pytest.raises(ValidationError, match="the key and the name must match"):
        TagMap(tags={"a": Tag(name="b", address="hr:0")})


def test_datapoint_is_slotted_and_cheap() -> None:
    point = DataPoint(1.5, Quality.GOOD, 10.0)
    assert not hasattr(point, "__dict__")
    assert point == DataPoint(1.5, Quality.GOOD, 10.0)
    assert point.good and point.datetime.year == 1970
    assert "value=1.5" in repr(point)
    # Not a timing threshold: only that it is a plain class and not a validating model.
    assert timeit.timeit(lambda: DataPoint(1, Quality.GOOD, 0.0), number=1000) >= 0


def test_tag_map_from_the_shipped_water_tank() -> None:
    tags = TagMap.from_scenario(shipped_scenario("water_tank"), device="plc1")
    assert tags.unit == 1
    level = tags["tank.level"]
    assert (level.address, level.type, level.byte_order, level.unit) == ("hr:0", DataType.FLOAT32, ByteOrder.ABCD, "%")
    temp = tags["temp"]
    assert (temp.address, temp.type, temp.scale) == ("ir:0", DataType.INT16, 0.1)
    assert tags["pump.run"].writable and not tags["tank.level"].writable


def test_tag_file_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "tags:\n"
        "  a: {type: flaot32}\n"
        "  b: {type: int16}\n"
        "devices:\n"
        "  plc1:\n"
        "    protocol: modbus\n"
        "    byte_order: XYZW\n"
        "    map: {b: hr:0}\n"
    )
    with pytest.raises(ConfigError) as caught:
        TagMap.from_scenario(path, device="plc1")
    problems = caught.value.problems
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{path}:2:") and "tags.a.type" in problems[0] and "flaot32" in problems[0]
    assert problems[1].startswith(f"{path}:7:") and "byte_order" in problems[1]


def test_tag_file_problems_in_yaml_itself(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("tags:\n  a: {type: int16}\n  a: {type: bool}\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:3:3: duplicate key 'a' \(first at line 2\)"):
        TagMap.from_scenario(path, device="x")
    path.write_text("tags: [unclosed\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:2:1: invalid YAML"):
        TagMap.from_scenario(path, device="x")
    with pytest.raises(ConfigError, match="cannot read"):
        TagMap.from_scenario(tmp_path / "missing.yaml", device="x")


def test_unknown_device_lists_the_devices() -> None:
    with pytest.raises(ConfigError, match="no device 'plc9'; the devices are: cpu1, hmi, plc1"):
        TagMap.from_scenario(shipped_scenario("water_tank"), device="plc9")


def test_a_type_name_reads_with_its_article() -> None:
    from bifrost.tags import with_article

    assert [with_article(name) for name in ("int16", "uint16", "float32", "int64", "bool")] == [
        "an int16",
        "a uint16",
        "a float32",
        "an int64",
        "a bool",
    ]
