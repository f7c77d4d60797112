"""python-snap7's client (an independent implementation) against our S7 simulator, serving the shipped
water-tank scenario: the mapped tags at DESIGN's offsets, M/I/Q, multi-variable reads, the SZL, CPU
info, the error codes a CPU gives, and a write seen on the Modbus side of the same plant."""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator

import pytest

import bifrost
from simulators.host import SimHost
from simulators.shipped import shipped_scenario

snap7 = pytest.importorskip("snap7")
from snap7.type import Areas, WordLen  # noqa: E402 - only once python-snap7 is known to be there


def port_of(url: str) -> int:
    return int(url.split("//", 1)[1].split("?")[0].rsplit(":", 1)[1])


@pytest.fixture
def host() -> Iterator[SimHost]:
    with SimHost(shipped_scenario("water_tank"), clock="virtual", any_port=True) as running:
        yield running


@pytest.fixture
def client(host: SimHost) -> Iterator[object]:
    logging.getLogger("snap7").setLevel(logging.CRITICAL)
    peer = snap7.Client()
    peer.connect("127.0.0.1", 0, 1, port_of(host.url("cpu1")))
    yield peer
    peer.disconnect()


def test_db_read_at_the_design_offsets(host: SimHost, client: object) -> None:
    db1 = client.db_read(1, 0, 8)  # type: ignore[attr-defined]
    assert struct.unpack_from(">f", db1, 0) == (pytest.approx(40.0),)  # tank.level: DB1.DBD0, REAL
    assert db1[4] & 1 == 0  # pump.run: DB1.DBX4.0
    assert struct.unpack_from(">H", db1, 6) == (50,)  # valve.open: DB1.DBW6
    temp = struct.unpack(">h", client.db_read(2, 0, 2))[0]  # type: ignore[attr-defined]
    assert temp == round(host.plant.get("temp") * 10)  # type: ignore[operator]


def test_db_write_reaches_the_plant_and_the_modbus_side(host: SimHost, client: object) -> None:
    client.db_write(1, 6, bytearray(struct.pack(">H", 73)))  # type: ignore[attr-defined]
    client.write_area(Areas.DB, 1, 4 * 8 + 0, bytearray(b"\x01"), WordLen.Bit)  # type: ignore[attr-defined]
    assert host.plant.get("valve.open") == 73
    assert host.plant.get("pump.run") is True
    assert host.devices["cpu1"].log.writes("valve.open") == [73]

    async def over_modbus() -> tuple[object, object]:
        async with bifrost.connect(host.url("plc1"), engine="python") as plc:
            return (await plc.read("hr:6:uint16")).value, (await plc.read("coil:0")).value

    import asyncio

    assert asyncio.run(over_modbus()) == (73, True)


def test_read_area_of_m_i_q(client: object) -> None:
    for area in (Areas.MK, Areas.PE, Areas.PA):
        assert client.read_area(area, 0, 0, 4) == bytearray(4)  # type: ignore[attr-defined]


def test_read_multi_vars(client: object) -> None:
    code, values = client.read_multi_vars(  # type: ignore[attr-defined]
        [
            {"area": Areas.DB, "db_number": 1, "start": 0, "size": 4},
            {"area": Areas.DB, "db_number": 1, "start": 6, "size": 2},
            {"area": Areas.MK, "db_number": 0, "start": 0, "size": 2},
        ]
    )
    assert code == 0
    assert struct.unpack(">f", values[0]) == (pytest.approx(40.0),)
    assert struct.unpack(">H", values[1]) == (50,)
    assert values[2] == bytearray(2)


def test_read_szl_and_get_cpu_info(host: SimHost, client: object) -> None:
    info = client.get_cpu_info()  # type: ignore[attr-defined]
    assert info.ASName == b"water-tank"
    assert info.ModuleName == b"cpu1"
    assert info.ModuleTypeName.startswith(b"CPU 1516")
    szl = client.read_szl(0x0424, 0)  # type: ignore[attr-defined]
    state = bytes(szl.Data[: szl.Header.LengthDR])
    assert state[4 + 3] == 0x08  # RUN, in the state record after LENTHDR and N_DR
    client.plc_stop()  # type: ignore[attr-defined]
    szl = client.read_szl(0x0424, 0)  # type: ignore[attr-defined]
    assert bytes(szl.Data[: szl.Header.LengthDR])[4 + 3] == 0x04  # STOP


def test_the_error_codes_of_a_real_cpu(host: SimHost, client: object) -> None:
    with pytest.raises(Exception, match="0x0a"):
        client.db_read(9, 0, 2)  # type: ignore[attr-defined]  # no DB9: object does not exist
    with pytest.raises(Exception, match="0x05"):
        client.db_read(1, 6, 4)  # type: ignore[attr-defined]  # DB1 is 8 bytes: address out of range
    before = host.plant.get("valve.open")
    with pytest.raises(Exception, match=r"0x05|Invalid address|out of range"):
        client.db_write(1, 6, bytearray(4))  # type: ignore[attr-defined]  # runs past the end: nothing written
    assert host.plant.get("valve.open") == before
    codes = [entry.response for entry in host.devices["cpu1"].log.errors()]
    assert len(codes) == 3
