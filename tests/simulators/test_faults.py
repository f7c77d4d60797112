"""Fault specs in every spelling, and what a FaultSet decides: match, probability, count, for, reboot."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest

from bifrost.errors import ConfigError
from bifrost.modbus.framing import Request, crc16, encode_mbap, encode_rtu
from bifrost.modbus.pdu import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    ReadWriteMultipleRegistersRequest,
    WriteMultipleCoilsRequest,
    WriteSingleRegisterRequest,
)
from simulators.clock import VirtualClock
from simulators.faults import FaultSet, FaultSpec, Match, PlantFaults, clock_sleep, parse_duration
from simulators.hooks import Action, HookContext, ListenerInfo
from simulators.modbus.faults import exception_frame, rewrite_reply
from simulators.modbus.frames import MBAP
from simulators.modbus.requests import ModbusRequestInfo
from simulators.plant import Plant
from simulators.scenario import FAULT_KINDS, load_scenario

READ_HR = ModbusRequestInfo(1, ReadHoldingRegistersRequest(0, 10))
READ_IR = ModbusRequestInfo(1, ReadInputRegistersRequest(0, 10))


# --- specs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("1.5min", 90.0), ("1h", 3600.0), ("0.2", 0.2), (3, 3.0), (".5s", 0.5)],
)
def test_durations_as_design_writes_them(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_cli_text_latency() -> None:
    spec = FaultSpec.parse("latency,delay=200ms,jitter=20ms")
    assert spec.kind == "latency"
    assert spec.params == {"delay": pytest.approx(0.2), "jitter": pytest.approx(0.02)}
    assert spec.direction == "downstream"
    assert spec.probability == 1.0 and spec.count is None and spec.for_ is None
    assert spec.match.empty


def test_cli_text_exception_with_a_flat_match() -> None:
    spec = FaultSpec.parse("exception,code=6,function=3,probability=0.5")
    assert spec.integer("code") == 6
    assert spec.probability == 0.5
    assert spec.match == Match(function=frozenset({3}))


def test_cli_text_several_functions_an_address_range_and_a_percentage() -> None:
    spec = FaultSpec.parse("exception,code=server_device_busy,function=3|4,address=hr:10-19,unit=2,probability=20%")
    assert spec.integer("code") == 6
    assert spec.match.function == frozenset({3, 4})
    assert spec.match.unit == frozenset({2})
    assert str(spec.match.address) == "hr:10-19"
    assert spec.probability == pytest.approx(0.2)


def test_mapping_as_a_scenario_writes_it() -> None:
    spec = FaultSpec.from_mapping(
        {"device": "plc1", "kind": "exception", "code": 6, "match": {"function": 3}, "probability": 0.2, "for": "30s"}
    )
    assert spec == FaultSpec.parse("exception,code=6,function=3,probability=0.2,for=30s")
    assert spec.for_ == 30.0


def test_keywords() -> None:
    spec = FaultSpec.of("latency", delay="200ms", for_="10s", direction="both")
    assert spec.number("delay") == pytest.approx(0.2)
    assert spec.for_ == 10.0
    assert spec.applies_to("upstream") and spec.applies_to("downstream")


def test_direct_construction_is_checked_and_normalised() -> None:
    spec = FaultSpec("slicer", params={"size": "4", "gap": "5ms"}, count=3)
    assert spec.params == {"size": 4, "gap": pytest.approx(0.005)}
    with pytest.raises(ConfigError, match="size"):
        FaultSpec("slicer", params={"size": 0})


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_kind_of_the_vocabulary_parses_and_round_trips(kind: str) -> None:
    required = {"latency": ",delay=20ms", "bandwidth": ",rate=9600"}.get(kind, "")
    spec = FaultSpec.parse(kind + required + ",count=2")
    assert FaultSpec.parse(spec.to_text()) == spec
    transport = {"latency", "bandwidth", "slicer", "stall", "reset", "close", "refuse", "corrupt", "drop"}
    assert spec.transport == (kind in transport)


def test_round_trip_with_everything() -> None:
    spec = FaultSpec.parse("latency,delay=0.25s,jitter=10ms,probability=0.5,function=3|4,address=hr:0-9,for=2s")
    assert FaultSpec.parse(spec.to_text()) == spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected KIND"),
        ("lat", "'lat' is not a fault kind.*did you mean 'latency'"),
        ("latency", "delay: latency needs delay"),
        ("latency,dely=2s", "dely: latency takes no such key.*did you mean 'delay'"),
        ("latency,delay=fast", "delay: expected a duration such as 250ms"),
        ("latency,delay=-1s", "delay: expected a duration"),
        ("latency,delay=10ms,jitter=20ms", "jitter: .* more than the delay"),
        ("latency,delay=1s,probability=1.5", "probability: expected a probability from 0 to 1"),
        ("latency,delay=1s,count=0", "count: expected a whole number of at least 1"),
        ("latency,delay=1s,count=2,for=1s", "count or for, not both"),
        ("latency,delay=1s,for=0s", "for: expected a duration above zero"),
        ("latency,delay=1s,direction=sideways", "direction: expected one of both, upstream, downstream"),
        ("exception,direction=upstream", "direction: exception takes no such key"),
        ("exception,code=0", r"code: expected a Modbus exception code \(1, 2, 3, 4, 5, 6, 8, 10, 11\)"),
        ("exception,code=99", "code: expected a Modbus exception code .* not .99."),
        ("exception,function=70000", r"function: expected a function or service code 1\.\.65535"),
        ("exception,unit=300", r"unit: expected a unit id 0\.\.255"),
        ("exception,address=hr:9-2", "not a range of addresses"),
        ("exception,address=xx:1", "expected an address or range such as hr:0"),
        ("refuse,function=3", "function: refuse takes no such key"),
        ("bandwidth", "rate: bandwidth needs rate"),
        ("latency,delay", "'delay' is not key=value"),
        ("latency,delay=1s,delay=2s", "delay is given twice"),
    ],
)
def test_bad_specs_name_the_key_and_what_is_accepted(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as caught:
        FaultSpec.parse(text)
    assert str(caught.value).startswith(f"--fault {text!r}: ")


def test_a_bad_mapping_names_its_place() -> None:
    with pytest.raises(ConfigError, match=r"^events\[0\]: match: unknown key 'funktion'.*did you mean 'function'"):
        FaultSpec.from_mapping({"kind": "exception", "match": {"funktion": 3}}, where="events[0]: ")
    with pytest.raises(ConfigError, match="either inside match or beside it"):
        FaultSpec.from_mapping({"kind": "exception", "match": {"unit": 1}, "function": 3})
    with pytest.raises(ConfigError, match="kind: required"):
        FaultSpec.from_mapping({"delay": "1s"})


# --- match -----------------------------------------------------------------------------------------------


def test_a_match_looks_at_unit_function_and_the_addresses_a_request_touches() -> None:
    match = Match.from_value({"unit": [1, 2], "function": 3, "address": "hr:10-19"})
    assert match.matches(ModbusRequestInfo(1, ReadHoldingRegistersRequest(5, 6)))  # 5..10 touches 10
    assert not match.matches(ModbusRequestInfo(1, ReadHoldingRegistersRequest(0, 10)))  # 0..9
    assert match.matches(ModbusRequestInfo(2, ReadHoldingRegistersRequest(19, 1)))
    assert not match.matches(ModbusRequestInfo(3, ReadHoldingRegistersRequest(10, 1)))  # unit
    assert not match.matches(ModbusRequestInfo(1, ReadInputRegistersRequest(10, 1)))  # function (and area)
    assert not match.matches(None)  # bytes that did not decode cannot be told apart
    assert Match().matches(None)


def test_writes_and_read_write_spans() -> None:
    hr = Match.from_value({"address": "hr:100"})
    assert hr.matches(ModbusRequestInfo(1, WriteSingleRegisterRequest(100, 7)))
    assert hr.matches(ModbusRequestInfo(1, ReadWriteMultipleRegistersRequest(0, 2, 100, (1,))))
    assert not hr.matches(ModbusRequestInfo(1, WriteMultipleCoilsRequest(100, (True,))))
    assert Match.from_value({"address": "coil:101"}).matches(
        ModbusRequestInfo(1, WriteMultipleCoilsRequest(100, (True, False)))
    )


def test_a_scenario_fault_match_converts() -> None:
    scenario = load_scenario("inline.yaml", text=SCENARIO)
    event = scenario.events[1]
    assert event.fault is not None
    assert Match.from_value(event.fault.match) == Match(function=frozenset({3}))


# --- a FaultSet over time --------------------------------------------------------------------------------


def test_add_clear_and_with_block() -> None:
    faults = FaultSet("plc1", framer=MBAP, clock=VirtualClock())
    handle = faults.add("exception,code=6")
    assert handle.active and [fault.spec.kind for fault in faults.active()] == ["exception"]
    handle.clear()
    assert not handle.active and faults.active() == []
    with faults.add(kind="latency", delay="200ms") as latency:
        assert latency.spec.number("delay") == pytest.approx(0.2)
        assert faults.active()
    assert faults.active() == []


def test_for_ends_a_fault_on_the_clock() -> None:
    clock = VirtualClock()
    faults = FaultSet(framer=MBAP, clock=clock)
    clock.advance(5)
    handle = faults.add("exception,code=6,for=2s")
    clock.advance(1.999)
    assert faults.decide(READ_HR) is not None
    clock.advance(0.001)
    assert faults.decide(READ_HR) is None
    assert not handle.active


def test_count_ends_a_fault_after_that_many_hits() -> None:
    faults = FaultSet(framer=MBAP, clock=VirtualClock())
    handle = faults.add("exception,code=6,function=3,count=2")
    assert faults.decide(READ_IR) is None  # not matched: not counted
    assert faults.decide(READ_HR) is not None
    assert faults.decide(READ_HR) is not None
    assert faults.decide(READ_HR) is None
    assert handle.hits == 2 and not handle.active


def test_exception_matches_and_answers_its_code() -> None:
    faults = FaultSet(framer=MBAP, clock=VirtualClock())
    faults.add("exception,code=6,function=3,address=hr:0-4")
    decided = faults.decide(READ_HR)
    assert decided == (Action(exception=6), ("exception",))
    assert faults.decide(READ_IR) is None
    assert faults.decide(ModbusRequestInfo(1, ReadHoldingRegistersRequest(5, 1))) is None


def test_bad_quality_is_exception_4_and_the_other_protocol_kinds_fold_into_one_action() -> None:
    faults = FaultSet(framer=MBAP, clock=VirtualClock())
    faults.add("bad_quality")
    faults.add("truncate,keep=5")
    faults.add("wrong_transaction")
    decided = faults.decide(READ_HR)
    assert decided is not None
    action, kinds = decided
    assert action == Action(exception=4, truncate=5, wrong_transaction=True)
    assert kinds == ("bad_quality", "truncate", "wrong_transaction")


def test_on_request_takes_a_server_event() -> None:
    faults = FaultSet(framer=MBAP, clock=VirtualClock())
    faults.add("exception,code=2,unit=7")
    assert faults.on_request("plc1", Request(1, 7, ReadHoldingRegistersRequest(0, 1))) == Action(exception=2)
    assert faults.on_request("plc1", Request(1, 1, ReadHoldingRegistersRequest(0, 1))) is None


def test_probability_draws_from_the_seed_and_repeats() -> None:
    def run(seed: int) -> list[bool]:
        faults = FaultSet(framer=MBAP, clock=VirtualClock(), seed=seed)
        faults.add("exception,code=6,probability=0.3")
        return [faults.decide(READ_HR) is not None for _ in range(400)]

    first = run(42)
    assert first == run(42)
    assert first != run(43)
    assert 0.2 < sum(first) / len(first) < 0.4  # 400 draws of p=0.3: far outside 4 sigma otherwise
    expected = [random.Random("42:faults:device").random() < 0.3]
    assert first[:1] == expected


def test_reset_starts_the_draws_afresh_and_forgets_run_time_faults() -> None:
    faults = FaultSet(framer=MBAP, clock=VirtualClock(), seed=1)
    faults.add("exception,probability=0.5")
    before = [faults.decide(READ_HR) is not None for _ in range(50)]
    faults.reset()
    assert faults.active() == []
    faults.add("exception,probability=0.5")
    assert [faults.decide(READ_HR) is not None for _ in range(50)] == before


def test_refuse_freeze_and_a_refuse_with_a_count() -> None:
    faults = FaultSet(framer=MBAP, clock=VirtualClock())
    assert faults.accepting() and not faults.frozen()
    faults.add("refuse,count=1")
    assert not faults.closes_listener()  # connections are let in, to be refused one by one
    assert not faults.accepting()
    assert faults.accepting()  # the one refusal is spent
    faults.add("freeze")
    assert faults.frozen()


def test_reboot_happens_once_then_refuses_for_its_boot_time() -> None:
    clock = VirtualClock()
    faults = FaultSet(framer=MBAP, clock=clock)
    reboots: list[float] = []
    faults.on_reboot(lambda: reboots.append(clock.now()))
    faults.add("reboot,for=3s")
    assert reboots == [0.0]
    assert not faults.accepting()
    clock.advance(3)
    assert faults.accepting()
    assert faults.poll() == 0 and reboots == [0.0]
    faults.add("reboot")  # no boot time: connections are dropped, new ones accepted at once
    assert reboots == [0.0, 3.0] and faults.accepting()


def test_change_listeners_hear_add_clear_and_reset() -> None:
    faults = FaultSet(framer=MBAP, clock=VirtualClock())
    heard: list[int] = []
    unsubscribe = faults.on_change(lambda: heard.append(len(faults.active())))
    handle = faults.add("freeze")
    handle.clear()
    faults.reset()
    unsubscribe()
    faults.add("freeze")
    assert heard == [1, 0, 0]


# --- scenario events -------------------------------------------------------------------------------------

SCENARIO = """\
scenario: faulty
seed: 7
tags:
  level: {type: uint16, init: 5}
devices:
  plc1:
    protocol: modbus
    map: {level: hr:0}
events:
  - at: 1s
    fault: {device: plc1, kind: latency, delay: 200ms, jitter: 50ms, for: 10s}
  - at: 2s
    fault: {device: plc1, kind: exception, code: 6, match: {function: 3}, for: 2s}
  - at: 3s
    clear: {device: plc1, kind: latency}
  - at: 5s
    fault: {device: plc1, kind: reboot}
"""


def test_scenario_events_switch_faults_on_and_off() -> None:
    plant = Plant(load_scenario("inline.yaml", text=SCENARIO))
    faults = FaultSet("plc1", plant=plant, framer=MBAP)
    assert faults.active() == []
    plant.clock.advance(1)
    (latency,) = faults.active()
    assert latency.spec == FaultSpec.parse("latency,delay=200ms,jitter=50ms,for=10s")
    plant.clock.advance(1)
    assert [fault.spec.kind for fault in faults.active()] == ["latency", "exception"]
    assert faults.decide(READ_HR) == (Action(exception=6), ("exception",))
    plant.clock.advance(1)  # the clear event ends the latency
    assert [fault.spec.kind for fault in faults.active()] == ["exception"]
    plant.clock.advance(1)
    assert faults.active() == []
    assert faults.decide(READ_HR) is None


def test_a_scenario_reboot_is_carried_out_once() -> None:
    plant = Plant(load_scenario("inline.yaml", text=SCENARIO))
    faults = FaultSet("plc1", plant=plant, framer=MBAP)
    reboots: list[float] = []
    faults.on_reboot(lambda: reboots.append(plant.time))
    plant.clock.advance(5)
    assert faults.poll() == 1 and reboots == [5.0]
    assert faults.poll() == 0


@pytest.mark.asyncio
async def test_plant_faults_reboot_drops_connections_and_sets_the_device_tags_back() -> None:
    plant = Plant(load_scenario("inline.yaml", text=SCENARIO))
    dropped: list[str] = []
    done = asyncio.Event()

    def disconnect(device: str) -> int:
        dropped.append(device)
        done.set()
        return 1

    hooks = PlantFaults()
    listener = ListenerInfo("modbus", "tcp", "127.0.0.1:1", ("plc1",))
    hooks.bind(HookContext(plant, asyncio.get_running_loop(), clock_sleep(plant.clock), disconnect, (listener,)))
    plant.set("level", 99)
    plant.clock.advance(5)
    assert hooks.accepting(listener)  # notices the scenario's reboot; with no boot time it accepts at once
    await asyncio.wait_for(done.wait(), 5)
    assert dropped == ["plc1"]
    assert plant.get("level") == 5
    assert hooks.on_request("plc1", Request(1, 1, ReadHoldingRegistersRequest(0, 1))) is None
    with hooks.add("plc1", "exception,code=3"):
        assert hooks.on_request("plc1", Request(1, 1, ReadHoldingRegistersRequest(0, 1))) == Action(exception=3)
        assert not hooks.frozen("plc1")
    hooks.reset()
    assert hooks.device("plc1").active() == []


def test_clear_ends_the_scenario_faults_too_and_draws_come_from_the_plant_seed() -> None:
    plant = Plant(load_scenario("inline.yaml", text=SCENARIO))
    faults = FaultSet("plc1", plant=plant, framer=MBAP)
    plant.clock.advance(2)
    faults.clear("exception")
    assert [fault.spec.kind for fault in faults.active()] == ["latency"]
    assert faults.rng is plant.rng("faults:plc1")


# --- reply rewrites ---------------------------------------------------------------------------------------


def test_wrong_transaction_and_truncate_rewrite_reply_frames() -> None:
    reply = encode_mbap(7, 1, bytes([3, 2, 0, 42]))
    moved = rewrite_reply(Action(wrong_transaction=True), reply, "mbap")
    assert moved[:2] == (8).to_bytes(2, "big") and moved[2:] == reply[2:]
    assert rewrite_reply(Action(truncate=3), reply, "mbap") == reply[:3]
    rtu = encode_rtu(1, bytes([3, 2, 0, 42]))
    other = rewrite_reply(Action(wrong_transaction=True), rtu, "rtu")
    assert other[0] == 2 and crc16(other[:-2]) == int.from_bytes(other[-2:], "little")


def test_exception_frames() -> None:
    assert exception_frame("mbap", 1, 3, 6, 9) == encode_mbap(9, 1, bytes([0x83, 6]))
    assert exception_frame("rtu", 1, 3, 6, None) == encode_rtu(1, bytes([0x83, 6]))


# --- docs/faults.md is held to the code ---------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "faults.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_doc_scenarios_validate() -> None:
    scenarios = [block for block in _blocks("yaml") if block.startswith("scenario:")]
    assert len(scenarios) == 2
    for block in scenarios:
        load_scenario(DOC, text=block)


def test_the_doc_fault_texts_parse() -> None:
    lines = [line for block in _blocks("text") for line in block.splitlines() if "no such key" not in line]
    texts = [found for line in lines for found in re.findall(r"--fault '?([^'\s]+)'?", line)]
    assert len(texts) >= 5
    for text in texts:
        FaultSpec.parse(text)


@pytest.mark.parametrize("code", _blocks("python"))
def test_the_doc_python_runs(code: str) -> None:
    exec(compile(code, str(DOC), "exec"), {})


def test_the_doc_lists_every_kind() -> None:
    rows = re.findall(r"^\| `(\w+)` \|", DOC.read_text(), flags=re.MULTILINE)
    assert set(FAULT_KINDS) <= set(rows)


def test_a_match_names_functions_and_services_as_their_front_ends_do() -> None:
    assert FaultSpec.parse("exception,code=BadCommunicationError,function=Read|Write").match.function == {629, 671}
    assert FaultSpec.parse("drop,function=read_var").match.function == {4}
    assert FaultSpec.from_mapping({"kind": "latency", "delay": "1s", "match": {"function": "szl"}}).match.function == {
        0x4401
    }
    assert FaultSpec.parse("exception,code=2,function=read_holding_registers|6").match.function == {3, 6}
    with pytest.raises(ConfigError, match=r"match\.function: .*'Raed'"):
        FaultSpec.parse("exception,function=Raed")
