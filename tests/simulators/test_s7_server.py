"""The S7 simulator against our own client and raw S7 jobs: strict answers as a CPU gives them,
the negotiated PDU size, CPU state, identity, faults and the traffic log."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

import bifrost
from bifrost import DeviceError, Quality
from bifrost.errors import ConfigError
from bifrost.s7 import framing, pdu
from bifrost.s7.pdu import Area, DataTransport, ItemData, TransportSize, VarSpec
from simulators.host import SimHost
from simulators.scenario import load_scenario

PLANT = """
scenario: s7-rig
seed: 1
tags:
  level:   {type: float32, init: 40.0, writable: true}
  run:     {type: bool, writable: true}
  valve:   {type: uint16, init: 50, writable: true}
  temp:    {type: float32, init: 21.5}
  count:   {type: int32, init: -7, writable: true}
  name:    {type: "string[8]", init: "tank", writable: true}
  locked:  {type: uint16, init: 9}
  flag:    {type: bool, init: true}
  out:     {type: bool, writable: true}
  speed:   {type: int16, init: 3, writable: true}
devices:
  cpu1:
    protocol: s7
    listen: 127.0.0.1:0
    rack: 0
    slot: 1
    pdu_size: PDU
    sizes: {DB3: 16, M: 1024}
    map:
      level: DB1.DBD0
      run: DB1.DBX4.0
      valve: DB1.DBW6
      temp: {address: DB2.DBW0, type: int16, scale: 0.1}
      count: DB1:8
      name: DB1.DBX12
      locked: {address: DB1.DBW22, writable: false}
      flag: M10.1
      out: Q0.1
      speed: IW4
  plc1:
    protocol: modbus
    listen: 127.0.0.1:0
    map: {valve: hr:0, level: hr:2}
"""


def scenario(pdu_size: int = 480) -> object:
    return load_scenario(Path("s7-rig.yaml"), text=PLANT.replace("PDU", str(pdu_size)))


@pytest.fixture
def host() -> Iterator[SimHost]:
    with SimHost(scenario(), clock="virtual") as running:  # type: ignore[arg-type]
        yield running


def port_of(url: str) -> int:
    return int(url.split("//", 1)[1].split("?")[0].rsplit(":", 1)[1])


class Wire:
    """A blocking S7 connection of our framing on a plain socket: raw jobs, raw answers."""

    def __init__(self, url: str, *, rack: int = 0, slot: int = 1, pdu_size: int = 480) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=5)
        self.conn = framing.ClientConnection(rack=rack, slot=slot)
        self.sock.sendall(self.conn.connect_request())
        event = self.next_event()
        if isinstance(event, framing.Connected):
            self.sock.sendall(self.conn.setup(pdu_size))
            event = self.next_event()
        self.ready = event

    def next_event(self) -> framing.ClientEvent:
        while (event := self.conn.next_event()) is None:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("closed by the simulator")
            self.conn.receive_data(data)
        return event

    def call(self, request: pdu.RequestPdu) -> pdu.ResponsePdu:
        self.sock.sendall(self.conn.send(request))
        event = self.next_event()
        assert isinstance(event, framing.Response), event
        return event.response

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def wire(host: SimHost) -> Iterator[Wire]:
    connection = Wire(host.url("cpu1"))
    yield connection
    connection.close()


def read(*specs: VarSpec) -> pdu.ReadRequest:
    return pdu.ReadRequest(specs)


def db(number: int, start: int, size: int) -> VarSpec:
    return VarSpec(Area.DB, start, size, db=number)


@pytest.mark.asyncio
async def test_our_client_reads_and_writes_the_mapped_tags(host: SimHost) -> None:
    async with bifrost.connect(host.url("cpu1"), tags=host.devices["cpu1"].tags) as plc:
        points = await plc.read_many(["level", "run", "valve", "temp", "count", "name", "flag", "out", "speed"])
        assert {k: p.value for k, p in points.items()} == {
            "level": 40.0,
            "run": False,
            "valve": 50,
            "temp": pytest.approx(21.5),
            "count": -7,
            "name": "tank",
            "flag": True,
            "out": False,
            "speed": 3,
        }
        await plc.write_many({"run": True, "valve": 77, "name": "pump", "count": 123456, "out": True})
    plant = host.plant
    assert (plant.get("run"), plant.get("valve"), plant.get("name"), plant.get("count"), plant.get("out")) == (
        True,
        77,
        "pump",
        123456,
        True,
    )
    assert host.devices["cpu1"].log.writes("valve") == [77]


def test_the_bytes_sit_at_the_design_offsets(host: SimHost, wire: Wire) -> None:
    answer = wire.call(read(db(1, 0, 24), db(2, 0, 2)))
    assert isinstance(answer, pdu.ReadResponse)
    db1, db2 = (item.data for item in answer.items)
    assert struct.unpack_from(">f", db1, 0) == (40.0,)
    assert db1[4] & 1 == 0
    assert struct.unpack_from(">H", db1, 6) == (50,)
    assert struct.unpack_from(">i", db1, 8) == (-7,)
    assert db1[12:18] == b"\x08\x04tank"
    assert struct.unpack_from(">H", db1, 22) == (9,)
    assert struct.unpack(">h", db2) == (215,)


def test_unregistered_and_out_of_range_items_fail_alone(wire: Wire) -> None:
    answer = wire.call(read(db(9, 0, 2), db(1, 20, 8), db(1, 0, 4), db(3, 0, 16), VarSpec(Area.COUNTERS, 0, 1)))
    assert isinstance(answer, pdu.ReadResponse)
    codes = [item.return_code for item in answer.items]
    assert codes == [0x0A, 0x05, 0xFF, 0xFF, 0x0A]
    assert answer.items[3].data == bytes(16)  # a declared DB no tag maps: its memory, zeros


def test_a_write_out_of_range_writes_nothing(host: SimHost, wire: Wire) -> None:
    data = ItemData(0, DataTransport.BYTE, bytes(8))
    answer = wire.call(pdu.WriteRequest((db(1, 20, 8),), (data,)))
    assert answer == pdu.WriteResponse((0x05,))
    assert host.plant.get("locked") == 9
    unknown = wire.call(pdu.WriteRequest((db(9, 0, 2),), (ItemData(0, DataTransport.BYTE, b"\x00\x01"),)))
    assert unknown == pdu.WriteResponse((0x0A,))


def test_type_and_size_mismatches_and_read_only_tags(host: SimHost, wire: Wire) -> None:
    wrong_size = pdu.WriteRequest((db(1, 6, 2),), (ItemData(0, DataTransport.BYTE, b"\x00"),))
    assert wire.call(wrong_size) == pdu.WriteResponse((0x07,))
    bit_as_bytes = pdu.WriteRequest(
        (VarSpec(Area.DB, 4, 1, TransportSize.BIT, 1, 0),), (ItemData(0, DataTransport.BYTE, b"\x01"),)
    )
    assert wire.call(bit_as_bytes) == pdu.WriteResponse((0x06,))
    timer = wire.call(read(VarSpec(Area.DB, 0, 1, TransportSize.TIMER, 1)))
    assert isinstance(timer, pdu.ReadResponse) and timer.items[0].return_code == 0x06
    locked = pdu.WriteRequest((db(1, 22, 2),), (ItemData(0, DataTransport.BYTE, b"\x00\x01"),))
    assert wire.call(locked) == pdu.WriteResponse((0x03,))
    assert host.plant.get("locked") == 9
    assert host.plant.get("valve") == 50  # nothing else moved


def test_a_bit_write_sets_one_bit(host: SimHost, wire: Wire) -> None:
    write = pdu.WriteRequest(
        (VarSpec(Area.DB, 4, 1, TransportSize.BIT, 1, 0),), (ItemData(0, DataTransport.BIT, b"\x01"),)
    )
    assert wire.call(write) == pdu.WriteResponse((0xFF,))
    assert host.plant.get("run") is True
    answer = wire.call(read(VarSpec(Area.DB, 4, 1, TransportSize.BIT, 1, 0)))
    assert isinstance(answer, pdu.ReadResponse) and answer.items[0].data == b"\x01"


@pytest.mark.parametrize("cpu_pdu", [240, 480, 960])
def test_the_negotiated_pdu_size_is_enforced(cpu_pdu: int) -> None:
    with SimHost(scenario(cpu_pdu), clock="virtual") as host:  # type: ignore[arg-type]
        wire = Wire(host.url("cpu1"), pdu_size=960)
        try:
            assert wire.ready == framing.Ready(cpu_pdu, 1, 1)
            fits = pdu.read_response_size([cpu_pdu - 18]) <= cpu_pdu
            assert fits
            too_big = wire.call(read(VarSpec(Area.FLAGS, 0, cpu_pdu - 17)))
            assert isinstance(too_big, pdu.ErrorResponse) and too_big.error == 0x8500
            ok = wire.call(read(VarSpec(Area.FLAGS, 0, cpu_pdu - 18)))
            assert isinstance(ok, pdu.ReadResponse) and ok.items[0].ok
        finally:
            wire.close()


def test_a_connection_to_another_rack_or_slot_is_refused(host: SimHost) -> None:
    wire = Wire(host.url("cpu1"), slot=3)
    try:
        assert isinstance(wire.ready, framing.Refused)
    finally:
        wire.close()


@pytest.mark.asyncio
async def test_cpu_state_and_identity_through_the_szl(host: SimHost) -> None:
    async with bifrost.connect(host.url("cpu1")) as plc:
        assert await plc.cpu_state() == "RUN"  # type: ignore[attr-defined]
        await plc.stop()  # type: ignore[attr-defined]
        assert await plc.cpu_state() == "STOP"  # type: ignore[attr-defined]
        await plc.start(cold=True)  # type: ignore[attr-defined]
        assert await plc.cpu_state() == "RUN"  # type: ignore[attr-defined]
        identity = await plc.identity()  # type: ignore[attr-defined]
        assert identity["as_name"] == "s7-rig"
        assert identity["module_name"] == "cpu1"
        with pytest.raises(DeviceError) as missing:
            await plc.read_szl(0x0A91)  # type: ignore[attr-defined]
        assert missing.value.code == 0xD401
    host.reset()
    assert host.devices["cpu1"].log.count() == 0


@pytest.mark.asyncio
async def test_faults_exception_bad_quality_and_freeze(host: SimHost) -> None:
    async with bifrost.connect(host.url("cpu1"), tags=host.devices["cpu1"].tags) as plc:
        with host.inject_fault("cpu1", "exception", code=0x05):
            points = await plc.read_many(["level", "valve"])
            assert [p.quality for p in points.values()] == [Quality.BAD, Quality.BAD]
        with host.inject_fault("cpu1", "bad_quality"):
            with pytest.raises(DeviceError) as hardware:
                await plc.read("level")
            assert hardware.value.code == 0x01
        with host.inject_fault("cpu1", "exception", code=0x84):
            with pytest.raises(DeviceError) as refused:
                await plc.read("level")
            assert refused.value.code == 0x8404
        with host.inject_fault("cpu1", "freeze"):
            host.plant.set("valve", 60)
            assert (await plc.read("valve")).value == 50
        assert (await plc.read("valve")).value == 60


@pytest.mark.asyncio
async def test_a_reboot_drops_the_connection_and_sets_values_back(host: SimHost) -> None:
    async with bifrost.connect(host.url("cpu1"), tags=host.devices["cpu1"].tags, timeout=2) as plc:
        await plc.write("valve", 99)
        with host.inject_fault("cpu1", "reboot"):
            pass
        assert host.plant.get("valve") == 50  # back to init
        with pytest.raises(bifrost.ConnectError, match="connection lost"):  # EOF or a reset, as the OS has it
            await plc.read("valve")
        assert (await plc.read("valve")).value == 50  # the next call connects again


def valve_of(wire: Wire) -> int:
    answer = wire.call(read(db(1, 6, 2)))
    assert isinstance(answer, pdu.ReadResponse)
    return int(struct.unpack(">H", answer.items[0].data)[0])


def test_a_certain_refuse_closes_the_listening_socket_and_reopens_it_on_the_same_port(host: SimHost) -> None:
    # As a CPU that is off: connecting fails (it used to be accepted and closed at once), and a
    # connection made before the fault is served on.
    url = host.url("cpu1")
    before = Wire(url)
    try:
        with host.inject_fault("cpu1", "refuse"):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port_of(url)), timeout=5).close()
            assert valve_of(before) == 50
    finally:
        before.close()
    assert host.url("cpu1") == url
    after = Wire(url)
    try:
        assert valve_of(after) == 50
    finally:
        after.close()


def test_a_wildcard_listener_is_shown_as_bound() -> None:
    # One voice with Modbus: an S7 CPU on every interface is not shown as 127.0.0.1.
    with SimHost(scenario(), clock="virtual", any_port=True, listen_host="0.0.0.0") as host:  # type: ignore[arg-type]
        url = host.url("cpu1")
        assert url.startswith("s7://0.0.0.0:")
        assert "cpu1" in host.everywhere
        wire = Wire(url)  # connects to 127.0.0.1 on the port the URL names
        try:
            assert valve_of(wire) == 50
        finally:
            wire.close()


def test_the_traffic_log_names_areas_offsets_and_return_codes(host: SimHost, wire: Wire) -> None:
    wire.call(read(db(1, 0, 4), db(9, 0, 2), VarSpec(Area.FLAGS, 10, 1, TransportSize.BIT, 0, 1)))
    exchange = host.devices["cpu1"].log.entries()[-1]
    line = exchange.describe()
    assert "read DB1 0..3, DB9 0..1, M 10.1" in line
    assert "item return code 0x0A (object does not exist)" in line
    assert "DB9 does not exist" in line
    assert exchange.refused
    assert exchange.function == 0x04


@pytest.mark.asyncio
async def test_a_write_over_s7_is_seen_over_modbus(host: SimHost) -> None:
    async with bifrost.connect(host.url("cpu1"), tags=host.devices["cpu1"].tags) as cpu:
        await cpu.write("valve", 1234)
    async with bifrost.connect(host.url("plc1"), engine="python") as plc:
        assert (await plc.read("hr:0:uint16")).value == 1234


def test_a_byte_write_may_leave_a_read_only_bit_as_it_is_but_not_change_it(host: SimHost, wire: Wire) -> None:
    flags = VarSpec(Area.FLAGS, 10, 1)
    same = pdu.WriteRequest((flags,), (ItemData(0, DataTransport.BYTE, b"\x02"),))  # flag (M10.1) stays set
    assert wire.call(same) == pdu.WriteResponse((0xFF,))
    cleared = pdu.WriteRequest((flags,), (ItemData(0, DataTransport.BYTE, b"\x00"),))
    assert wire.call(cleared) == pdu.WriteResponse((0x03,))
    assert host.plant.get("flag") is True
    answer = wire.call(read(flags))
    assert isinstance(answer, pdu.ReadResponse) and answer.items[0].data == b"\x02"


def test_a_write_across_part_of_a_tag_merges_with_its_current_bytes(host: SimHost, wire: Wire) -> None:
    # The low half of count (DB1.DBD8, -7 = FF FF FF F9) written alone.
    half = pdu.WriteRequest((db(1, 10, 2),), (ItemData(0, DataTransport.BYTE, b"\x00\x01"),))
    assert wire.call(half) == pdu.WriteResponse((0xFF,))
    assert host.plant.get("count") == struct.unpack(">i", b"\xff\xff\x00\x01")[0]


@pytest.mark.asyncio
async def test_a_fault_matched_to_s7_bytes_hits_only_the_items_there(host: SimHost) -> None:
    async with bifrost.connect(host.url("cpu1"), tags=host.devices["cpu1"].tags) as plc:
        with host.inject_fault("cpu1", "exception", code=0x0A, match={"address": "DB2:0-1"}):
            hit = await plc.read_many(["temp"])
            missed = await plc.read_many(["level"])
        assert hit["temp"].quality is Quality.BAD
        assert missed["level"].good


def test_a_scenario_fault_matches_s7_bytes_and_a_function_by_name() -> None:
    # The scenario model took only Modbus addresses and function numbers, though the fault's own
    # checker (and inject_fault) took S7 bytes and names: a file could not say what docs/faults.md shows.
    events = (
        "events:\n"
        "  - at: 1s\n"
        "    fault: {device: cpu1, kind: exception, code: 0x0A, match: {address: 'DB2:0-1', function: read_var}}\n"
    )
    faulty = load_scenario(Path("s7-rig.yaml"), text=PLANT.replace("PDU", "480") + events)
    with SimHost(faulty, clock="virtual") as host:
        wire = Wire(host.url("cpu1"))
        try:
            host.clock.advance(1)
            hit, missed = wire.call(read(db(2, 0, 2))), wire.call(read(db(1, 6, 2)))
            assert isinstance(hit, pdu.ReadResponse) and isinstance(missed, pdu.ReadResponse)
            assert (hit.items[0].return_code, missed.items[0].return_code) == (0x0A, 0xFF)
        finally:
            wire.close()


def test_a_misspelt_function_name_in_a_scenario_is_an_error_at_its_line() -> None:
    events = "events:\n  - at: 1s\n    fault: {device: cpu1, kind: exception, match: {function: reed_var}}\n"
    with pytest.raises(ConfigError) as refused:
        load_scenario(Path("s7-rig.yaml"), text=PLANT.replace("PDU", "480") + events)
    assert "events.0.fault.match.function" in str(refused.value) and "reed_var" in str(refused.value)
