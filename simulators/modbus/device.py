"""A simulated Modbus device: requests in, responses out, against the plant. No I/O here.

`ModbusDevice.serve(request)` answers one decoded request (bifrost.modbus.pdu) from the device's
register map (simulators.modbus.map) and the plant, the way a PLC would:

| function | served |
| --- | --- |
| 1, 2, 3, 4 | read coils, discrete inputs, holding and input registers |
| 5, 6, 15, 16 | write coils and holding registers: the tags are decoded and set in the plant |
| 22 | mask write of a holding register (read, mask, write back) |
| 23 | read/write registers: the write first, then the read |
| 43 / 14 | read device identification: vendor "Bifrost", product = the scenario's name |
| others | exception 1 (illegal function) |

Exceptions: an address no tag maps, and a write to a tag that is not writable for this device,
answer 2 (illegal data address), as most PLCs do; a written value the tag cannot hold answers 3; a
tag whose current value does not fit the wire type it is served as (a narrowed type or a scale)
answers 4 (server device failure) and is logged. A refused write sets nothing.

The transports (TCP, RTU over TCP, RTU on a pty) live in simulators.modbus.server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

from bifrost.modbus import pdu
from bifrost.modbus.pdu import ExceptionCode, ExceptionResponse, RequestPdu, ResponsePdu
from bifrost.tags import Value
from simulators.hooks import FaultHooks
from simulators.modbus.map import MapError, RegisterMap, Unmapped, Values
from simulators.modbus.model import ModbusDeviceModel
from simulators.plant import Plant
from simulators.scenario import Scenario
from simulators.traffic import NOTHING_WRITTEN, TrafficLog

log = logging.getLogger(__name__)

Served = tuple[ResponsePdu, Mapping[str, Value], str | None]
"""What serving a request gives: the response, the tag values it set, and why it was refused (or None)."""

WRITE_FUNCTIONS = frozenset((5, 6, 15, 16, 22, 23))
VENDOR = "Bifrost"
_CONFORMITY = 0x82  # regular identification, stream and individual access
_LAST_OBJECT = {pdu.DeviceIdCode.BASIC: 0x02, pdu.DeviceIdCode.REGULAR: 0x7F, pdu.DeviceIdCode.EXTENDED: 0xFF}


def _version() -> str:
    try:
        return metadata.version("bifrost")
    except metadata.PackageNotFoundError:
        return "0"


class ModbusDevice:
    """One device of a scenario, as its Modbus server serves it."""

    protocol = "modbus"

    def __init__(self, scenario: Scenario, name: str, plant: Plant[Any], hooks: FaultHooks, log: TrafficLog) -> None:
        spec = scenario.device(name)
        assert isinstance(spec, ModbusDeviceModel), f"{name} is a {spec.protocol} device"
        self.name = name
        self.unit = 1 if spec.unit is None else spec.unit
        self.transport = spec.transport
        self.plant = plant
        self.hooks = hooks
        self.log = log
        self.map = RegisterMap.of(scenario, name, lambda tag: plant.is_writable(tag, name))
        self.identity = self._identity(scenario)
        self._frozen: dict[str, Value] | None = None
        self._warned: set[str] = set()
        self._handlers: dict[type, Callable[[Any], Served]] = {
            pdu.ReadCoilsRequest: self._read_coils,
            pdu.ReadDiscreteInputsRequest: self._read_inputs,
            pdu.ReadHoldingRegistersRequest: self._read_holding,
            pdu.ReadInputRegistersRequest: self._read_input_registers,
            pdu.WriteSingleCoilRequest: self._write_coil,
            pdu.WriteMultipleCoilsRequest: self._write_coils,
            pdu.WriteSingleRegisterRequest: self._write_register,
            pdu.WriteMultipleRegistersRequest: self._write_registers,
            pdu.MaskWriteRegisterRequest: self._mask_write,
            pdu.ReadWriteMultipleRegistersRequest: self._read_write,
            pdu.ReadDeviceIdentificationRequest: self._identify,
            pdu.ReportServerIdRequest: self._report_id,
        }

    # --- serving ------------------------------------------------------------------------------------

    def serve(self, request: RequestPdu) -> Served:
        """Answer one request; never raises for anything a client can send."""
        handler = self._handlers.get(type(request))
        if handler is None:
            return (
                ExceptionResponse(request.function, ExceptionCode.ILLEGAL_FUNCTION),
                NOTHING_WRITTEN,
                f"{pdu.function_name(request.function)} is not supported",
            )
        try:
            return handler(request)
        except MapError as exc:
            if exc.code == ExceptionCode.SERVER_DEVICE_FAILURE and exc.message not in self._warned:
                if len(self._warned) < 256:
                    self._warned.add(exc.message)
                log.warning("%s: %s; answered exception 4 (server device failure)", self.name, exc.message)
            return ExceptionResponse(request.function, exc.code), NOTHING_WRITTEN, exc.message

    def values(self) -> Values:
        """Where reads take values from: the plant, or the snapshot taken when a freeze began."""
        if self.hooks.frozen(self.name):
            frozen = self._frozen
            if frozen is None:
                frozen = self._frozen = self.plant.snapshot()
            return frozen.__getitem__
        if self._frozen is not None:
            self._frozen = None
        return self.plant.get

    def check_freeze(self) -> None:
        """Take the freeze's snapshot as soon as a freeze begins (the plant calls this after each change),
        so reads serve the values of that moment, not of the first read after it."""
        if self.hooks.frozen(self.name):
            if self._frozen is None:
                self._frozen = self.plant.snapshot()
        elif self._frozen is not None:
            self._frozen = None

    def thaw(self) -> None:
        self._frozen = None

    # --- reads --------------------------------------------------------------------------------------

    def _read_coils(self, request: pdu.ReadCoilsRequest) -> Served:
        bits = self.map.read_bits(self.map.coils, request.address, request.count, self.values())
        return pdu.ReadCoilsResponse(bits), NOTHING_WRITTEN, None

    def _read_inputs(self, request: pdu.ReadDiscreteInputsRequest) -> Served:
        bits = self.map.read_bits(self.map.inputs, request.address, request.count, self.values())
        return pdu.ReadDiscreteInputsResponse(bits), NOTHING_WRITTEN, None

    def _read_holding(self, request: pdu.ReadHoldingRegistersRequest) -> Served:
        words = self.map.read_registers(self.map.holding, request.address, request.count, self.values())
        return pdu.ReadHoldingRegistersResponse(tuple(words)), NOTHING_WRITTEN, None

    def _read_input_registers(self, request: pdu.ReadInputRegistersRequest) -> Served:
        words = self.map.read_registers(self.map.input_registers, request.address, request.count, self.values())
        return pdu.ReadInputRegistersResponse(tuple(words)), NOTHING_WRITTEN, None

    # --- writes -------------------------------------------------------------------------------------

    def _set(self, values: dict[str, Value]) -> Mapping[str, Value]:
        plant = self.plant
        for name, value in values.items():
            plant.set(name, value)
        return values

    def _write_coil(self, request: pdu.WriteSingleCoilRequest) -> Served:
        written = self._set(self.map.write_coils(request.address, (request.value,)))
        return pdu.WriteSingleCoilResponse(request.address, request.value), written, None

    def _write_coils(self, request: pdu.WriteMultipleCoilsRequest) -> Served:
        written = self._set(self.map.write_coils(request.address, request.values))
        return pdu.WriteMultipleCoilsResponse(request.address, len(request.values)), written, None

    def _write_register(self, request: pdu.WriteSingleRegisterRequest) -> Served:
        written = self._set(self.map.write_registers(request.address, (request.value,), self.plant.get))
        return pdu.WriteSingleRegisterResponse(request.address, request.value), written, None

    def _write_registers(self, request: pdu.WriteMultipleRegistersRequest) -> Served:
        written = self._set(self.map.write_registers(request.address, request.values, self.plant.get))
        return pdu.WriteMultipleRegistersResponse(request.address, len(request.values)), written, None

    def _mask_write(self, request: pdu.MaskWriteRegisterRequest) -> Served:
        current = self.map.register(request.address, self.plant.get)
        word = request.apply(current)
        written = self._set(self.map.write_registers(request.address, (word,), self.plant.get))
        return pdu.MaskWriteRegisterResponse(request.address, request.and_mask, request.or_mask), written, None

    def _read_write(self, request: pdu.ReadWriteMultipleRegistersRequest) -> Served:
        # The read range is checked first, so a request refused for its read half writes nothing.
        for offset in range(request.read_address, request.read_address + request.read_count):
            if offset not in self.map.holding:
                raise Unmapped(f"no tag at hr:{offset}")
        written = self._set(self.map.write_registers(request.write_address, request.values, self.plant.get))
        words = self.map.read_registers(self.map.holding, request.read_address, request.read_count, self.values())
        return pdu.ReadWriteMultipleRegistersResponse(tuple(words)), written, None

    # --- identification -----------------------------------------------------------------------------

    def _identity(self, scenario: Scenario) -> dict[int, bytes]:
        def text(value: str) -> bytes:
            return value.encode("latin-1", "replace")[:80]  # short enough that basic + regular fit one PDU

        return {
            pdu.DeviceObject.VENDOR_NAME: text(VENDOR),
            pdu.DeviceObject.PRODUCT_CODE: text(scenario.scenario),
            pdu.DeviceObject.MAJOR_MINOR_REVISION: text(_version()),
            pdu.DeviceObject.PRODUCT_NAME: text(scenario.scenario),
            pdu.DeviceObject.MODEL_NAME: text(self.name),
            pdu.DeviceObject.USER_APPLICATION_NAME: text("bifrost-sim"),
        }

    def _report_id(self, request: pdu.ReportServerIdRequest) -> Served:
        # The device's name as its id, and always running (a device that answers is running).
        server_id = self.name.encode("latin-1", "replace")[: pdu.MAX_PDU - 3]
        return pdu.ReportServerIdResponse(server_id, True), NOTHING_WRITTEN, None

    def _identify(self, request: pdu.ReadDeviceIdentificationRequest) -> Served:
        objects = self.identity
        code = request.read_code
        if code == pdu.DeviceIdCode.SPECIFIC:
            value = objects.get(request.object_id)
            if value is None:
                raise Unmapped(f"no identification object {request.object_id}")
            found = pdu.ReadDeviceIdentificationResponse(code, _CONFORMITY, False, 0, ((request.object_id, value),))
            return found, NOTHING_WRITTEN, None
        last = _LAST_OBJECT[pdu.DeviceIdCode(code)]
        # The spec restarts a stream at object 0 when asked for an object it does not have.
        start = request.object_id if request.object_id in objects and request.object_id <= last else 0
        chosen: list[tuple[int, bytes]] = []
        size = 7
        more, next_id = False, 0
        for object_id in sorted(objects):
            if not start <= object_id <= last:
                continue
            value = objects[object_id]
            if size + 2 + len(value) > pdu.MAX_PDU:
                more, next_id = True, object_id
                break
            chosen.append((object_id, value))
            size += 2 + len(value)
        answer = pdu.ReadDeviceIdentificationResponse(code, _CONFORMITY, more, next_id, tuple(chosen))
        return answer, NOTHING_WRITTEN, None


__all__ = ["VENDOR", "WRITE_FUNCTIONS", "ModbusDevice", "Served"]
