"""The Modbus front-end, as simulators.protocols sees it: devices, their server, their URLs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bifrost.modbus.pdu import ExceptionCode
from simulators.hooks import FaultHooks
from simulators.listening import GroupServer
from simulators.modbus.device import ModbusDevice
from simulators.modbus.faults import FUNCTION_NAMES
from simulators.modbus.model import ModbusDeviceModel
from simulators.modbus.server import Endpoint, ModbusServer
from simulators.protocols import DeviceAbout, DeviceSetup, FaultCodes, Sleep
from simulators.recording.hooks import with_replays

_NAMES = {code.name.lower(): int(code) for code in ExceptionCode}
FAULT_CODES = FaultCodes(
    help=f"a Modbus exception code ({', '.join(map(str, sorted(_NAMES.values())))}) or one of {', '.join(_NAMES)}",
    names=_NAMES,
    numbers=frozenset(_NAMES.values()),
    functions=FUNCTION_NAMES,
)


class ModbusFrontend:
    name = "modbus"
    device_model = ModbusDeviceModel
    fault_codes = FAULT_CODES

    def create(self, devices: Sequence[DeviceSetup], *, hooks: FaultHooks, sleep: Sleep) -> ModbusProtocolServer:
        return ModbusProtocolServer(devices, hooks, sleep)

    def default_listen(self) -> str:
        return "127.0.0.1:0"


def _device(setup: DeviceSetup, hooks: FaultHooks) -> Any:
    spec = setup.spec
    if spec.replay is None:
        return ModbusDevice(setup.scenario, setup.name, setup.plant, hooks, setup.log)
    from simulators.recording.modbus_device import ReplayDevice  # record and replay: docs/replay.md

    unit = 1 if spec.unit is None else spec.unit
    return ReplayDevice(setup.name, unit, spec.transport, spec.replay, setup.plant, setup.log)


class ModbusProtocolServer(GroupServer):
    """A host's Modbus devices on their listeners (simulators.modbus.server)."""

    def __init__(self, setups: Sequence[DeviceSetup], hooks: FaultHooks, sleep: Sleep) -> None:
        self.devices: list[Any] = [_device(setup, hooks) for setup in setups]
        hooks = with_replays(hooks, self.devices, ModbusDevice)  # recorded delays and silences, on top of the faults
        endpoints = {
            setup.name: Endpoint("rtu")
            if device.transport == "rtu"
            else Endpoint(device.transport, setup.host, setup.port, listen=setup.spec.listen or "")
            for setup, device in zip(setups, self.devices, strict=False)
        }
        self.server = ModbusServer(self.devices, endpoints, hooks=hooks, sleep=sleep)

    def about(self, device: str) -> DeviceAbout:
        found = next(served for served in self.devices if served.name == device)
        return DeviceAbout(transport=found.transport, unit=found.unit)

    def url(self, device: str) -> str:
        found = next(served for served in self.devices if served.name == device)
        address = self.server.address(device)
        if found.transport == "rtu":
            return f"modbus+rtu://{address}?unit={found.unit}&baud=19200&parity=N"
        scheme = "modbus+rtu+tcp" if found.transport == "rtu+tcp" else "modbus"
        return f"{scheme}://{address}?unit={found.unit}"

    def reset(self) -> None:
        for device in self.devices:
            device.thaw()


FRONTEND = ModbusFrontend()

__all__ = ["FRONTEND", "ModbusFrontend", "ModbusProtocolServer"]
