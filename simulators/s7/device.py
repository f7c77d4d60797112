"""A simulated S7 CPU: decoded requests in, answers out, against the plant. No I/O here.

`S7Device.serve(request)` answers one job (bifrost.s7.pdu) from the device's memory (simulators.s7.map)
the way a CPU does, item by item:

- read var: each item its bytes, or its return code (0x0A no such area, 0x05 out of range, 0x06 a
  transport size the area does not take);
- write var: each item written, or refused with nothing written (0x05, 0x0A, 0x03 not writable, 0x07
  data of the wrong size or a value the tag cannot hold);
- SZL read: 0x0000 (the lists), 0x0011 (module identification), 0x001C (component identification),
  0x0424 (CPU state); any other list 0xD401;
- PLC stop / PLC control (P_PROGRAM): the CPU state goes to STOP / RUN, as SZL 0x0424 then says.

Setup communication is the connection's (simulators.s7.server): it negotiates the PDU size, and an
answer that would not fit it is refused as a whole with error 0x8500, as a CPU does.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from bifrost.s7 import pdu
from bifrost.s7.pdu import (
    Area,
    DataTransport,
    ErrorResponse,
    ItemData,
    RequestPdu,
    ResponsePdu,
    ReturnCode,
    TransportSize,
    VarSpec,
)
from bifrost.tags import Value
from simulators.hooks import FaultHooks
from simulators.plant import Plant
from simulators.s7.faults import BAD_QUALITY_CODE, refusal
from simulators.s7.map import AreaError, Memory, Values
from simulators.s7.model import S7DeviceModel, area_key
from simulators.scenario import Scenario
from simulators.traffic import NOTHING_WRITTEN, TrafficLog

Served = tuple[ResponsePdu, Mapping[str, Value], str | None]
"""The answer, the tag values it set, and why something was refused (or None)."""

RUN, STOP = 0x08, 0x04
STATE_NAMES = {RUN: "RUN", STOP: "STOP"}
ORDER_CODE = "6ES7 516-3AN02-0AB0"  # an S7-1516: a CPU that negotiates 960-byte PDUs
_DATA_TRANSPORT = {
    TransportSize.BIT: DataTransport.BIT,
    TransportSize.INT: DataTransport.INT,
    TransportSize.DINT: DataTransport.INT,
    TransportSize.REAL: DataTransport.REAL,
}
_SZL_LISTS = (0x0000, 0x0011, 0x001C, 0x0424)
_USERDATA_OVERHEAD = pdu.HEADER + 12 + 4 + 4  # header, parameters, data header, SZL id and index


def _version() -> str:
    try:
        return metadata.version("bifrost")
    except metadata.PackageNotFoundError:
        return "0"


def _text(value: str, size: int) -> bytes:
    return value.encode("latin-1", "replace")[:size].ljust(size, b"\x00")


class S7Device:
    """One S7 device of a scenario, as its server serves it."""

    protocol = "s7"

    def __init__(self, scenario: Scenario, name: str, plant: Plant[Any], hooks: FaultHooks, log: TrafficLog) -> None:
        spec = scenario.device(name)
        assert isinstance(spec, S7DeviceModel), f"{name} is a {spec.protocol} device"
        self.name = name
        self.spec = spec
        self.rack, self.slot = spec.rack, spec.slot
        self.pdu_size, self.max_amq = spec.pdu_size, spec.max_amq
        self.plant = plant
        self.hooks = hooks
        self.log = log
        self.memory = Memory.of(scenario, name, lambda tag: plant.is_writable(tag, name))
        self.state = RUN
        self._scenario = scenario.scenario
        self._frozen: dict[str, Value] | None = None

    # --- values (freeze) ------------------------------------------------------------------------

    def values(self) -> Values:
        if self.hooks.frozen(self.name):
            frozen = self._frozen
            if frozen is None:
                frozen = self._frozen = self.plant.snapshot()
            return frozen.__getitem__
        self._frozen = None
        return self.plant.get

    def check_freeze(self) -> None:
        if self.hooks.frozen(self.name):
            if self._frozen is None:
                self._frozen = self.plant.snapshot()
        else:
            self._frozen = None

    def reset(self) -> None:
        self._frozen = None
        self.state = RUN

    # --- serving --------------------------------------------------------------------------------

    def serve(self, request: RequestPdu, pdu_size: int) -> Served:
        """Answer one job within the negotiated `pdu_size`; never raises for what a client can send."""
        if isinstance(request, pdu.ReadRequest):
            return self._read(request, pdu_size)
        if isinstance(request, pdu.WriteRequest):
            return self._write(request)
        if isinstance(request, pdu.SzlRequest):
            return self._szl(request, pdu_size), NOTHING_WRITTEN, None
        if isinstance(request, pdu.PlcStopRequest):
            self.state = STOP
            return pdu.PlcStopResponse(), NOTHING_WRITTEN, None
        if isinstance(request, pdu.PlcControlRequest):
            if request.service != b"P_PROGRAM":
                why = f"PI service {request.service!r} is not supported"
                return ErrorResponse(request.function, 0x81, 0x04), NOTHING_WRITTEN, why
            self.state = RUN
            return pdu.PlcControlResponse(), NOTHING_WRITTEN, None
        return ErrorResponse(request.function, 0x81, 0x04), NOTHING_WRITTEN, f"{type(request).__name__} here"

    def refuse(self, request: RequestPdu, code: int) -> ResponsePdu:
        """The answer a fault's `exception` asks for (simulators.s7.faults.refusal)."""
        return refusal(request, code)

    def _read(self, request: pdu.ReadRequest, pdu_size: int) -> Served:
        values = self.values()
        items = []
        notes = []
        for spec in request.items:
            try:
                items.append(self._read_item(spec, values))
            except AreaError as exc:
                items.append(ItemData(exc.code, DataTransport.NULL))
                notes.append(exc.message)
        answer = pdu.ReadResponse(tuple(items))
        size = pdu.read_response_size([len(item.data) for item in items])
        if size > pdu_size:
            why = f"the answer would be {size} bytes, more than the negotiated {pdu_size}"
            return ErrorResponse(pdu.Function.READ_VAR, 0x85, 0x00), NOTHING_WRITTEN, why
        return answer, NOTHING_WRITTEN, "; ".join(notes) or None

    def _check(self, spec: VarSpec) -> None:
        if spec.area in (Area.COUNTERS, Area.TIMERS):
            raise AreaError(ReturnCode.OBJECT_DOES_NOT_EXIST, f"{spec.area.name} are not simulated")
        if spec.transport in (TransportSize.COUNTER, TransportSize.TIMER):
            raise AreaError(
                ReturnCode.TYPE_NOT_SUPPORTED, f"transport size {spec.transport.name} does not fit {spec.area.name}"
            )

    def _read_item(self, spec: VarSpec, values: Values) -> ItemData:
        self._check(spec)
        if spec.transport is TransportSize.BIT:
            byte = self.memory.read(spec.area, spec.db, spec.start, 1, values)
            return ItemData(ReturnCode.SUCCESS, DataTransport.BIT, bytes((byte[0] >> spec.bit & 1,)))
        data = self.memory.read(spec.area, spec.db, spec.start, spec.size, values)
        return ItemData(ReturnCode.SUCCESS, _DATA_TRANSPORT.get(spec.transport, DataTransport.BYTE), data)

    def _write(self, request: pdu.WriteRequest) -> Served:
        codes = []
        written: dict[str, Value] = {}
        notes = []
        values = self.values()
        for spec, data in zip(request.items, request.data, strict=True):
            try:
                self._check(spec)
                bit = spec.bit if spec.transport is TransportSize.BIT else None
                expected = 1 if bit is not None else spec.size
                if (bit is not None) != (data.transport is DataTransport.BIT):
                    raise AreaError(
                        ReturnCode.TYPE_NOT_SUPPORTED,
                        f"{area_key(spec.area, spec.db)}: a {spec.transport.name} item with {data.transport.name} data",
                    )
                if len(data.data) != expected:
                    raise AreaError(
                        ReturnCode.TYPE_INCONSISTENT, f"{len(data.data)} bytes of data for {expected} asked"
                    )
                changed = self.memory.write(spec.area, spec.db, spec.start, data.data, bit, values)
            except AreaError as exc:
                codes.append(exc.code)
                notes.append(exc.message)
                continue
            for name, value in changed.items():
                self.plant.set(name, value)
            written.update(changed)
            codes.append(ReturnCode.SUCCESS)
        return pdu.WriteResponse(tuple(codes)), written or NOTHING_WRITTEN, "; ".join(notes) or None

    # --- SZL ------------------------------------------------------------------------------------

    def _szl(self, request: pdu.SzlRequest, pdu_size: int) -> pdu.SzlResponse:
        records: list[bytes]
        szl_id = request.szl_id
        if szl_id == 0x0000:
            records = [struct.pack(">H", found) for found in _SZL_LISTS]
        elif szl_id == 0x0011:
            records = [
                struct.pack(">H", 1) + _text(ORDER_CODE, 20) + struct.pack(">HHH", 0, 0x0200, 0x0000),
                struct.pack(">H", 6) + _text(ORDER_CODE, 20) + struct.pack(">HHH", 0, 0x0005, 0x0000),
                struct.pack(">H", 7) + _text("", 20) + struct.pack(">HHH", 0, 0x5632, 0x0000),  # firmware V2.x
            ]
        elif szl_id == 0x001C:
            fields = [
                (1, self._scenario),  # the automation system's name
                (2, self.name),  # the module's name
                (3, "bifrost-sim"),  # plant designation
                (4, "Bifrost S7 simulator"),  # in place of a copyright
                (5, f"S BIFROST-{_version()}"),  # serial number
                (7, "CPU 1516-3 PN/DP"),  # module type name
            ]
            records = [struct.pack(">H", index) + _text(text, 32) for index, text in fields]
        elif szl_id == 0x0424:
            records = [struct.pack(">HBB", 0x4303, 0xFF, self.state) + bytes(16)]
        else:
            return pdu.SzlResponse(
                szl_id, request.index, b"", ReturnCode.OBJECT_DOES_NOT_EXIST, 0xD401, request.sequence
            )
        length = len(records[0])
        room = max(0, (pdu_size - _USERDATA_OVERHEAD - 4) // length)
        kept = records[:room]
        data = struct.pack(">HH", length, len(kept)) + b"".join(kept)
        return pdu.SzlResponse(szl_id, request.index, data, ReturnCode.SUCCESS, 0, request.sequence)


__all__ = ["BAD_QUALITY_CODE", "RUN", "STATE_NAMES", "STOP", "S7Device", "Served"]
