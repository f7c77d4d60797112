"""The scenario format: strict models, every mistake reported at once with file:line:col, the schema."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from bifrost.errors import ConfigError
from bifrost.tags import TagMap
from simulators import load_scenario, shipped_scenarios
from simulators.cli import app
from simulators.scenario import (
    FAULT_KINDS,
    IntegrateBehaviour,
    Scenario,
    SineBehaviour,
    checked_value,
    json_schema,
    parse_duration,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(shipped_scenarios())


def _write(tmp_path: Path, text: str, name: str = "plant.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    return caught.value.problems


MINIMAL = """
scenario: mini
tags:
  level: {type: float32}
"""


def _load(tmp_path: Path, extra: str = "", tags: str = "") -> Scenario:
    text = "scenario: mini\ntags:\n  level: {type: float32}\n  run: {type: bool, writable: true}\n" + tags + extra
    return load_scenario(_write(tmp_path, text))


def _one_problem(tmp_path: Path, text: str) -> str:
    problems = _problems(_write(tmp_path, text))
    assert len(problems) == 1, problems
    return problems[0]


# --- the shipped files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", SHIPPED)
def test_every_shipped_scenario_validates(stem: str) -> None:
    scenario = load_scenario(shipped_scenarios()[stem])
    assert scenario.devices, "each shipped plant is served by at least one device"


@pytest.mark.parametrize("stem", SHIPPED)
def test_the_strict_and_the_lenient_model_give_the_client_the_same_tag_map(stem: str) -> None:
    path = shipped_scenarios()[stem]
    scenario = load_scenario(path)
    for device in scenario.devices:
        assert scenario.tag_map(device) == TagMap.from_scenario(path, device=device)


def test_shipped_scenarios_cover_the_modbus_vocabulary() -> None:
    for stem in ("packaging_line", "boiler"):
        scenario = load_scenario(shipped_scenarios()[stem])
        tags = scenario.tag_map("plc1")
        areas = {tag.address.split(":")[0] for tag in tags.tags.values()}
        assert areas == {"coil", "di", "ir", "hr"}
        types = {tag.type_name for tag in tags.tags.values()}
        assert {"int16", "uint16", "int32", "float32", "bool"} <= types
        assert any(name.startswith("string[") for name in types)
        assert any(re.fullmatch(r"hr:\d+\.\d+", tag.address) for tag in tags.tags.values())
        assert any(tag.type_name == "int16" and tag.scale != 1 for tag in tags.tags.values())
        assert any(tag.type_name == "float32" and tag.byte_order.value == "CDAB" for tag in tags.tags.values())
        assert re.fullmatch(r"127\.0\.0\.1:\d+", scenario.devices["plc1"].listen or "")


def test_the_shipped_schema_is_up_to_date() -> None:
    shipped = (ROOT / "scenarios" / "scenario.schema.json").read_text()
    assert shipped == json_schema(), "regenerate it: bifrost-sim schema > scenarios/scenario.schema.json"
    schema = json.loads(shipped)
    assert schema["additionalProperties"] is False
    assert {"scenario", "tags", "devices", "events", "clock", "seed"} <= set(schema["properties"])


# --- every mistake at once ------------------------------------------------------------------------------

MANY_MISTAKES = """
scenario: broken
seed: 1
clock: {tick: 10 parsecs}
colour: blue
tags:
  tank.level: {type: float32, init: 40.0, behaviour: {integrate: "inflow - outflw", min: 0, max: 100}}
  pump.run:   {type: bool, writeable: true}
  inflow:     {type: flaot32, behaviour: {expr: "12.5 if pump.run else 0"}}
  outflow:    {type: float32, behaviour: {sine: {mean: 1}}}
  count:      {type: uint16, init: -5}
  temp:       {type: float32, behaviour: {wobble: 3}}
  bad name:   {type: bool}
  sneaky:     {type: int16, behaviour: {expr: "__import__('os')"}}
devices:
  plc1:
    protocol: modbus
    listen: localhost
    unit: 300
    map:
      tank.level: hr:0
      outflow: hr:1
      pump.run: coil:0
      nosuch: hr:10
      count: {address: hr:99999}
      temp: {address: ir:0, type: int16, scale: 0.1, sclae: 2}
  plc2: {protocol: modbsu}
events:
  - at: 30s
    every: 1min
    set: {pump.run: 3}
  - when: "tank.level > 95"
  - at: 1min
    fault: {device: plc9, kind: latenzy, probability: 2, delay: 200ms}
  - at: 1min
    seed: 4
"""

EXPECTED = [  # (line, field path, what the message says is expected)
    (3, "clock.tick", "expected a duration such as 250ms"),
    (4, "colour", "unknown key; expected one of: tags, devices, scenario"),
    (6, "tags['tank.level'].behaviour.integrate", "'outflw', which is not a tag; did you mean 'outflow'?"),
    (7, "tags['pump.run'].writeable", "did you mean 'writable'?"),
    (8, "tags.inflow.type", "expected one of bool, int16"),
    (9, "tags.outflow.behaviour.sine.period", "required, but missing"),
    (10, "tags.count.init", "-5 is out of range for uint16 (0..65535)"),
    (11, "tags.temp.behaviour", "expected a behaviour: a mapping with one of constant, sine"),
    (12, "tags['bad name']", "a tag name is dot-separated words"),
    (13, "tags.sneaky.behaviour.expr", "unknown function '__import__'"),
    (17, "devices.plc1.listen", "expected host:port"),
    (18, "devices.plc1.unit", "less than or equal to 255"),
    (21, "devices.plc1.map.outflow", "hr:1-2 overlaps 'tank.level' at hr:0-1"),
    (23, "devices.plc1.map.nosuch", "no tag 'nosuch'"),
    (24, "devices.plc1.map.count.address", "expected 0..65535"),
    (25, "devices.plc1.map.temp.sclae", "did you mean 'scale'?"),
    (26, "devices.plc2.protocol", "unknown protocol 'modbsu'; did you mean 'modbus'?"),
    (28, "events.0", "an event has exactly one trigger: at, every or when (got at, every)"),
    (30, "events.0.set['pump.run']", "bool takes True/False (or 0/1), not 3"),
    (31, "events.1", "an event needs an action: set, ramp, fault or clear"),
    (33, "events.2.fault.device", "no device 'plc9'; did you mean 'plc2'?"),
    (33, "events.2.fault.kind", "'latency'"),
    (33, "events.2.fault.probability", "less than or equal to 1"),
    (34, "events.3", "an event needs an action"),
    (35, "events.3.seed", "unknown key; expected one of: at, every, when, set, ramp, fault, clear"),
]


def test_a_file_with_many_mistakes_gets_one_line_per_mistake(tmp_path: Path) -> None:
    path = _write(tmp_path, MANY_MISTAKES)
    problems = _problems(path)
    assert len(problems) == len(EXPECTED), "\n".join(problems)
    for problem, (line, field, expected) in zip(problems, EXPECTED, strict=True):
        prefix = f"{path}:{line}:"
        assert problem.startswith(prefix), f"{problem!r} should start with {prefix!r}"
        assert f": {field}: " in problem, f"{problem!r} should name {field!r}"
        assert expected in problem, f"{problem!r} should say {expected!r}"


def test_problems_name_the_column_of_the_offending_key(tmp_path: Path) -> None:
    problem = _one_problem(tmp_path, "scenario: x\ntags:\n  a: {type: bool, writeable: true}\n")
    assert re.match(r".*plant\.yaml:3:19: tags\.a\.writeable: unknown key.*\(got 'writeable'\)$", problem)


def test_duplicate_keys_are_reported_with_the_other_mistakes(tmp_path: Path) -> None:
    text = "scenario: x\ntags:\n  a: {type: bool}\n  a: {type: int16, init: 99999}\n"
    problems = _problems(_write(tmp_path, text))
    assert len(problems) == 2
    assert ":4:3: duplicate key 'a' (first at line 3)" in problems[0]
    assert ":4:20: tags.a.init: " in problems[1]  # the later value is the one validated, and located


def test_yaml_syntax_errors_and_non_mappings(tmp_path: Path) -> None:
    assert "invalid YAML" in _one_problem(tmp_path, "scenario: [unclosed\n")
    assert "expected a mapping" in _one_problem(tmp_path, "- just a list\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")


def test_required_keys(tmp_path: Path) -> None:
    problems = _problems(_write(tmp_path, "seed: 3\n"))
    assert sorted(p.split(": ", 1)[1] for p in problems) == [
        "scenario: required, but missing",
        "tags: required, but missing",
    ]


def test_validating_without_a_file_still_checks_everything() -> None:
    data: dict[str, Any] = {
        "scenario": "x",
        "tags": {"a": {"type": "bool"}},
        "events": [{"when": "b", "set": {"a": True}}],
    }
    with pytest.raises(ValidationError, match="'b', which is not a tag"):
        Scenario.model_validate(data)
    data["tags"]["b"] = {"type": "bool"}
    assert Scenario.model_validate(data).events[0].trigger == "when"


# --- durations ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("2s", 2.0),
        ("1.5min", 90.0),
        ("1h", 3600.0),
        (" 10 s ", 10.0),
        (".5s", 0.5),
        (3, 3.0),
        (0.1, 0.1),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["2m", "1 hour", "-1s", "s", "", True, None, [1], "1e3s", float("inf"), -2])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_tick_must_be_positive(tmp_path: Path) -> None:
    assert "longer than zero" in _one_problem(tmp_path, MINIMAL + "clock: {tick: 0s}\n")
    assert _load(tmp_path, "clock: {tick: 250ms}\n").clock.tick == 0.25


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ("clock: {tick: 1.0e-9}\n", "clock.tick"),
        ("clock: {tick: 0.5ms}\n", "clock.tick"),
        ("devices: {}\nevents:\n  - {every: 0.000000001, set: {level: 1}}\n", "events.0.every"),
    ],
)
def test_periods_no_plant_can_keep_up_with_are_refused_saying_the_limit(tmp_path: Path, extra: str, where: str) -> None:
    problem = _one_problem(tmp_path, MINIMAL + extra)
    assert f": {where}: expected at least 1ms" in problem
    assert _load(tmp_path, "clock: {tick: 1ms}\n").clock.tick == 0.001


def test_a_clock_speed_is_bounded_by_the_shortest_period(tmp_path: Path) -> None:
    scenario = _load(tmp_path, "clock: {tick: 100ms}\nevents:\n  - {every: 50ms, set: {level: 1}}\n")
    assert scenario.fastest_speed() == pytest.approx(50.0)
    scenario.check_speed(50.0)
    with pytest.raises(ConfigError, match=r"clock speed 1e\+12 is too fast.*shortest period \(50ms\).*at most 50 "):
        scenario.check_speed(1e12)
    with pytest.raises(ConfigError, match="positive number"):
        scenario.check_speed(float("inf"))


# --- tags and behaviours ----------------------------------------------------------------------------------


def test_behaviours_parse_into_their_kinds(tmp_path: Path) -> None:
    scenario = _load(
        tmp_path,
        tags="  t: {type: float32, behaviour: {sine: {mean: 20, amplitude: 5, period: 10min}, noise: 0.2}}\n",
    )
    behaviour = scenario.tags["t"].behaviour
    assert isinstance(behaviour, SineBehaviour)
    assert (behaviour.kind, behaviour.sine.period, behaviour.noise) == ("sine", 600.0, 0.2)
    water = load_scenario(shipped_scenarios()["water_tank"]).tags["tank.level"].behaviour
    assert isinstance(water, IntegrateBehaviour)
    assert (water.integrate, water.min, water.max) == ("inflow - outflow", 0, 100)


@pytest.mark.parametrize(
    ("tag", "where", "expected"),
    [
        ("{type: float32, behaviour: {sine: {period: 1s}, expr: '1'}}", "behaviour.expr", "already 'sine'"),
        ("{type: float32, behaviour: {expr: '1', min: 5, max: 1}}", "behaviour.min", "min (5.0) is above max"),
        ("{type: 'string[4]', behaviour: {sine: {period: 1s}}}", "behaviour.sine", "string tag takes constant"),
        ("{type: bool, behaviour: {expr: level > 1, noise: 0.1}}", "behaviour.noise", "needs a number tag"),
        ("{type: int16, behaviour: {constant: 40000}}", "behaviour.constant", "out of range for int16"),
        ("{type: int16, init: 1.5}", "init", "expected a value an int16 tag can hold"),
        ("{type: uint16, init: -1}", "init", "expected a value a uint16 tag can hold"),
        (
            "{type: bool, behaviour: {steps: [{value: true, for: 1s}, {value: 7, for: 1s}]}}",
            "behaviour.steps.1.value",
            "bool takes",
        ),
        ("{type: float32, behaviour: {steps: []}}", "behaviour.steps", "at least 1 item"),
        ("{type: float32, behaviour: {lag: level, tau: 0s}}", "behaviour.tau", "longer than zero"),
        ("{type: float32, behaviour: {square: {period: 1s, duty: 1.5}}}", "behaviour.square.duty", "less than 1"),
        ("{type: float32, behaviour: {random_walk: {step: -1}}}", "behaviour.random_walk.step", "greater than 0"),
        (
            "{type: float32, behaviour: {ramp: {to: 1, over: 1s, form: 2}}}",
            "behaviour.ramp.form",
            "did you mean 'from'?",
        ),
        ("{type: float32, behaviour: {expr: [1]}}", "behaviour.expr", "expected an expression"),
        ("{type: float32, behaviour: 5}", "behaviour", "expected a behaviour"),
        ("{type: float32, init: [1]}", "init", "expected a single value"),
        ("{type: 'string[3]', init: 5}", "init", "takes a str"),
        ("{type: string, init: x}", "type", "needs its length"),
    ],
)
def test_tag_mistakes(tmp_path: Path, tag: str, where: str, expected: str) -> None:
    problem = _one_problem(tmp_path, f"scenario: x\ntags:\n  level: {{type: float32}}\n  t: {tag}\n")
    assert f": tags.t.{where}: " in problem
    assert expected in problem


def test_expressions_may_be_numbers_and_name_dotted_tags(tmp_path: Path) -> None:
    scenario = _load(
        tmp_path,
        tags="  a.b: {type: float32, behaviour: {expr: 5}}\n  c: {type: float32, behaviour: {expr: a.b * 2}}\n",
    )
    assert scenario.tags["a.b"].behaviour is not None


@pytest.mark.parametrize(
    ("tags", "where", "expected"),
    [
        ("  x: {type: float32, behaviour: {expr: '10**10**10'}}\n", "tags.x.behaviour.expr", "too large"),
        ("  x: {type: float32, behaviour: {integrate: 'name + 1'}}\n", "tags.x.behaviour.integrate", "concatenate"),
        ("  x: {type: float32, behaviour: {lag: 'name', tau: 1s}}\n", "tags.x.behaviour.lag", "expected a number"),
        ("  x: {type: float32, behaviour: {expr: name}}\n", "tags.x.behaviour.expr", "(as a float32)"),
        ("  x: {type: float32, behaviour: {expr: 'sqrt(level - 5)'}}\n", "tags.x.behaviour.expr", "domain"),
    ],
)
def test_expressions_that_fail_on_the_initial_values_are_problems_at_their_place(
    tmp_path: Path, tags: str, where: str, expected: str
) -> None:
    # Before, these passed validate and only logged a WARNING once served.
    text = "scenario: t\ntags:\n  name: {type: 'string[4]', init: ab}\n  level: {type: float32, init: 2}\n" + tags
    problem = _one_problem(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'plant.yaml'}:5:"), problem
    assert f": {where}: cannot be evaluated with the values the plant starts from" in problem
    assert expected in problem


def test_when_and_set_expressions_are_evaluated_too_and_driven_tags_come_first(tmp_path: Path) -> None:
    base = "scenario: t\ntags:\n  name: {type: 'string[4]', init: ab}\n  level: {type: float32, init: 2}\n"
    events = "events:\n  - when: name > 3\n    set: {level: {expr: name}}\n"
    problems = _problems(_write(tmp_path, base + events))
    assert [problem.split(": ")[1] for problem in problems] == ["events.0.when", "events.0.set.level.expr"]
    # 1/x is fine when x starts at 0 but is driven to 4 at time 0, as the plant computes it.
    driven = base + "  x: {type: float32, behaviour: {expr: '4'}}\n  y: {type: float32, behaviour: {expr: 1 / x}}\n"
    assert load_scenario(_write(tmp_path, driven)).tags["y"].behaviour is not None


def test_unknown_names_in_an_expression_are_listed(tmp_path: Path) -> None:
    problem = _one_problem(tmp_path, MINIMAL + "  b: {type: float32, behaviour: {expr: 'zz + yy'}}\n")
    assert "expression names 'yy' (and 'zz'), which is not a tag" in problem


# --- devices ----------------------------------------------------------------------------------------------


def _map_problem(tmp_path: Path, entries: str, tags: str = "") -> str:
    text = (
        "scenario: x\ntags:\n  f: {type: float32}\n  b: {type: bool}\n  s: {type: 'string[6]'}\n  i: {type: int16}\n"
        + tags
        + "devices:\n  plc:\n    protocol: modbus\n    listen: 127.0.0.1:0\n    map:\n"
        + "".join(f"      {line}\n" for line in entries.splitlines())
    )
    return _one_problem(tmp_path, text)


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ("f: hr:0\ni: hr:1", "hr:1 overlaps 'f' at hr:0-1"),
        ("s: hr:10\nf: hr:12", "hr:12-13 overlaps 's' at hr:10-12"),
        ("i: hr:3\nb: hr:3.4", "hr:3.4 overlaps 'i' at hr:3"),
        ("b: coil:0\nf: coil:0", "a coil holds a single bit"),
        ("f: hr:3.1", "a bit (.1) holds a bool, not float32"),
        ("b: coil:1.2", "a bit number is only for registers"),
        ("f: hr:65535", "runs past the last register"),
        ("f: hr:0:float32", "a map address is area:offset[.bit]"),
        ("f: xr:0", "unknown area 'xr'"),
        ("f: 40001", "expected an address such as hr:0"),
        ("f: '40001'", "for a 1-based Modicon number"),
        ("b: {address: hr:0.3, scale: 2}", "scale and offset apply to numbers"),
        ("f: {address: hr:0, type: int99}", "unknown type 'int99'"),
        ("f: {addres: hr:0}", "did you mean 'address'?"),
        ("f: 5", "expected an address such as hr:0"),
        ("f: {address: hr:0, byte_order: XYZW}", "Input should be 'ABCD'"),
    ],
)
def test_map_mistakes(tmp_path: Path, entries: str, expected: str) -> None:
    assert expected in _map_problem(tmp_path, entries)


def test_bits_of_one_register_and_the_same_offset_in_other_areas_do_not_overlap(tmp_path: Path) -> None:
    text = (
        "scenario: x\ntags:\n  a: {type: bool}\n  b: {type: bool}\n  c: {type: uint16}\n  d: {type: bool}\n"
        "devices:\n  plc:\n    protocol: modbus\n    map: {a: hr:5.0, b: hr:5.1, c: ir:5, d: coil:5}\n"
    )
    load_scenario(_write(tmp_path, text))


def test_a_device_may_narrow_a_tags_wire_type(tmp_path: Path) -> None:
    scenario = _load(
        tmp_path,
        "devices:\n  plc:\n    protocol: modbus\n    map:\n      level: {address: ir:0, type: int16, scale: 0.1}\n"
        "      run: {address: coil:0, writable: false}\n",
    )
    tag = scenario.tag_map("plc")["level"]
    assert (tag.type_name, tag.scale) == ("int16", 0.1)
    assert scenario.tag_map("plc")["run"].writable is False


@pytest.mark.parametrize("listen", ["127.0.0.1:5020", "localhost:0", "[::1]:502", "plc-1.example:65535"])
def test_listen_accepts_host_and_port(tmp_path: Path, listen: str) -> None:
    _load(tmp_path, f"devices:\n  plc: {{protocol: modbus, listen: '{listen}'}}\n")


@pytest.mark.parametrize("listen", ["localhost", "127.0.0.1:70000", ":502", "host:port", 5020])
def test_listen_refuses_anything_else(tmp_path: Path, listen: object) -> None:
    problem = _one_problem(tmp_path, MINIMAL + f"devices:\n  plc: {{protocol: modbus, listen: {listen!r}}}\n")
    assert "devices.plc.listen" in problem


def test_device_lookup_names_the_devices(tmp_path: Path) -> None:
    scenario = _load(tmp_path, "devices:\n  plc: {protocol: modbus}\n")
    assert scenario.device("plc").protocol == "modbus"
    with pytest.raises(ConfigError, match="the devices are: plc"):
        scenario.device("nope")


# --- events -----------------------------------------------------------------------------------------------

DEVICE = "devices:\n  plc: {protocol: modbus}\n"


@pytest.mark.parametrize(
    ("event", "where", "expected"),
    [
        ("{at: 1s}", "events.0", "needs an action"),
        ("{set: {run: true}}", "events.0", "exactly one trigger"),
        ("{every: 0s, set: {run: true}}", "events.0.every", "longer than zero"),
        ("{when: 'level >', set: {run: true}}", "events.0.when", "not a valid expression"),
        ("{at: 1s, set: {run: maybe}}", "events.0.set.run", "bool takes"),
        ("{at: 1s, set: {run: {expr: nosuch}}}", "events.0.set.run.expr", "'nosuch', which is not a tag"),
        ("{at: 1s, ramp: {tag: run, to: 1, over: 1s}}", "events.0.ramp.tag", "ramp moves a number tag"),
        ("{at: 1s, ramp: {tag: level, to: 1}}", "events.0.ramp.over", "required, but missing"),
        ("{at: 1s, fault: {device: plc, kind: stall, count: 2, for: 1s}}", "events.0.fault.count", "count or for"),
        ("{at: 1s, fault: {device: plc, kind: stall, count: 0}}", "events.0.fault.count", "greater than or equal to 1"),
        (
            "{at: 1s, fault: {device: plc, kind: stall, match: {function: 70000}}}",
            "events.0.fault.match.function",
            "less than or equal to 65535",
        ),
        (
            "{at: 1s, fault: {device: plc, kind: stall, match: {adress: hr:0}}}",
            "events.0.fault.match.adress",
            "did you mean 'address'?",
        ),
        (
            "{at: 1s, fault: {device: plc, kind: stall, match: {address: hr}}}",
            "events.0.fault.match.address",
            "should match pattern",
        ),
        ("{at: 1s, clear: {device: plx}}", "events.0.clear.device", "did you mean 'plc'?"),
        ("{at: 1s, clear: {device: plc, kind: nope}}", "events.0.clear.kind", "'latency'"),
    ],
)
def test_event_mistakes(tmp_path: Path, event: str, where: str, expected: str) -> None:
    problem = _one_problem(tmp_path, MINIMAL + "  run: {type: bool}\n" + DEVICE + f"events:\n  - {event}\n")
    assert f": {where}: " in problem
    assert expected in problem


def test_faults_keep_their_kind_specific_keys(tmp_path: Path) -> None:
    scenario = _load(
        tmp_path,
        DEVICE + "events:\n  - {at: 30s, fault: {device: plc, kind: latency, delay: 200ms, jitter: 50ms, for: 10s,"
        " match: {unit: 1, function: [3, 4], address: hr:0-9}}}\n",
    )
    fault = scenario.events[0].fault
    assert fault is not None
    assert (fault.kind, fault.duration, fault.params) == ("latency", 10.0, {"delay": "200ms", "jitter": "50ms"})
    assert fault.match is not None
    assert (fault.match.unit, fault.match.function, fault.match.address) == ([1], [3, 4], "hr:0-9")


NEEDS = {"latency": ", delay: 1s", "bandwidth": ", rate: 100"}  # the kinds with a required key


def test_every_fault_kind_of_the_vocabulary_is_accepted(tmp_path: Path) -> None:
    events = "".join(
        f"  - {{at: 1s, fault: {{device: plc, kind: {kind}{NEEDS.get(kind, '')}}}}}\n" for kind in FAULT_KINDS
    )
    assert len(_load(tmp_path, DEVICE + "events:\n" + events).events) == 15


@pytest.mark.parametrize(
    ("fault", "key", "expected"),
    [
        ("{device: plc, kind: latency, dely: 2s}", "dely", "did you mean 'delay'?"),
        ("{device: plc, kind: latency}", "delay", "latency needs delay"),
        ("{device: plc, kind: exception, code: 99}", "code", "not 99"),
        ("{device: plc, kind: exception, code: busy}", "code", "server_device_busy"),
        ("{device: plc, kind: latency, delay: 1s, jitter: 2s}", "jitter", "more than the delay"),
        ("{device: plc, kind: freeze, match: {unit: 1}}", "match", "freeze takes no such key"),
        ("{device: plc, kind: stall, direction: sideways}", "direction", "expected one of both"),
    ],
)
def test_fault_keys_are_checked_by_the_hosts_own_checker_at_their_place(
    tmp_path: Path, fault: str, key: str, expected: str
) -> None:
    # Before, the kind's own keys were kept unchecked: validate passed, and the host dropped the fault.
    text = MINIMAL + DEVICE + f"events:\n  - at: 1s\n    fault: {fault}\n"
    problem = _one_problem(tmp_path, text)
    line = textwrap.dedent(text).lstrip().splitlines()[-1]  # as _write writes it
    # At the key named, or at `fault:` when the key is missing.
    column = line.index(f" {key}:") + 2 if f" {key}:" in line else line.index("fault:") + 1
    assert problem.startswith(f"{tmp_path / 'plant.yaml'}:8:{column}: events.0.fault"), problem
    assert expected in problem


def test_the_schema_refuses_what_validate_refuses_in_a_fault() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(json_schema())
    base: dict[str, Any] = {"scenario": "t", "tags": {"level": {"type": "float32"}}, "devices": {"plc": {}}}
    base["devices"]["plc"] = {"protocol": "modbus"}

    def check(fault: dict[str, Any]) -> bool:
        try:
            jsonschema.validate({**base, "events": [{"at": 1, "fault": {"device": "plc", **fault}}]}, schema)
        except jsonschema.ValidationError:
            return False
        return True

    assert check({"kind": "latency", "delay": "2s", "jitter": "1s", "function": 3})
    assert check({"kind": "exception", "code": "server_device_busy"})
    assert not check({"kind": "latency", "dely": "2s"})
    assert not check({"kind": "latency"})
    assert not check({"kind": "exception", "code": 99})
    assert not check({"kind": "freeze", "match": {"unit": 1}})
    assert not check({"kind": "refuse", "direction": "both"})


# --- values -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_name", "value", "held"),
    [
        ("bool", 1, True),
        ("int16", 5.0, 5),
        ("float32", 3, 3.0),
        ("string[4]", "ab", "ab"),
        ("uint64", 2**64 - 1, 2**64 - 1),
    ],
)
def test_checked_value_gives_the_value_as_the_type_holds_it(type_name: str, value: Any, held: Any) -> None:
    result = checked_value(type_name, value)
    assert result == held
    assert type(result) is type(held)


@pytest.mark.parametrize(
    ("type_name", "value"),
    [("bool", 2), ("int16", 1.5), ("uint16", -1), ("float32", 1e39), ("float64", 10**400), ("string[2]", "abc")],
)
def test_checked_value_refuses_what_the_type_cannot_hold(type_name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=r"range|whole number|True/False|bytes"):
        checked_value(type_name, value)


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_checked_value_agrees_with_the_int16_range(value: int) -> None:
    if -(2**15) <= value < 2**15:
        assert checked_value("int16", value) == value
    else:
        with pytest.raises(ValueError, match="out of range"):
            checked_value("int16", value)


# --- the command line -----------------------------------------------------------------------------------------


def test_cli_validate_passes_good_files_and_lists_every_problem_of_bad_ones(tmp_path: Path) -> None:
    runner = CliRunner()
    good = [str(path) for path in shipped_scenarios().values()]
    result = runner.invoke(app, ["validate", *good])
    assert result.exit_code == 0, result.output
    assert result.output.count(": ok") == len(good)
    bad = _write(tmp_path, MANY_MISTAKES)
    result = runner.invoke(app, ["validate", good[0], str(bad)])
    assert result.exit_code == 1
    assert sum(line.startswith(f"{bad}:") for line in result.output.splitlines()) == len(EXPECTED)
    assert "1 of 2 file(s) have problems" in result.output


def test_cli_schema_prints_the_shipped_schema() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    assert result.output == json_schema()
    assert json.loads(result.output)["title"] == "Bifrost scenario"
