"""The S7 front-end, as simulators.protocols sees it: devices, their server, their URLs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simulators.hooks import FaultHooks
from simulators.listening import GroupServer
from simulators.protocols import DeviceAbout, DeviceSetup, FaultCodes, Sleep
from simulators.recording.hooks import with_replays
from simulators.s7.device import S7Device
from simulators.s7.faults import S7_CODES, S7_FUNCTIONS
from simulators.s7.model import S7DeviceModel
from simulators.s7.server import S7Server

# S7's own codes (bifrost.s7.pdu): item return codes, and the error classes of a whole job's refusal.
FAULT_CODES = FaultCodes(
    help="an S7 item return code (0x01, 0x03, 0x05, 0x06, 0x07, 0x0A) or error class (0x81..0x87)",
    numbers=S7_CODES,
    functions=S7_FUNCTIONS,
)


class S7Frontend:
    name = "s7"
    device_model = S7DeviceModel
    fault_codes = FAULT_CODES

    def create(self, devices: Sequence[DeviceSetup], *, hooks: FaultHooks, sleep: Sleep) -> S7ProtocolServer:
        return S7ProtocolServer(devices, hooks, sleep)

    def default_listen(self) -> str:
        return "127.0.0.1:0"  # 102 needs root; a scenario that wants it says so


def _device(setup: DeviceSetup, hooks: FaultHooks) -> Any:
    spec = setup.spec
    if getattr(spec, "replay", None) is None:
        return S7Device(setup.scenario, setup.name, setup.plant, hooks, setup.log)
    from simulators.recording.s7_device import S7ReplayDevice  # record and replay: docs/replay.md

    return S7ReplayDevice(setup.name, spec.rack, spec.slot, spec.replay, setup.plant, setup.log)


class S7ProtocolServer(GroupServer):
    """A host's S7 devices, each on its listener (simulators.s7.server)."""

    def __init__(self, setups: Sequence[DeviceSetup], hooks: FaultHooks, sleep: Sleep) -> None:
        self.devices: list[Any] = [_device(setup, hooks) for setup in setups]
        hooks = with_replays(hooks, self.devices, S7Device)  # recorded delays and silences, on top of the faults
        endpoints = {setup.name: (setup.host, setup.port) for setup in setups}
        self.server = S7Server(self.devices, endpoints, hooks=hooks, sleep=sleep)

    def about(self, device: str) -> DeviceAbout:
        return DeviceAbout(transport="tcp", unit=None)

    def url(self, device: str) -> str:
        found = next(served for served in self.devices if served.name == device)
        return f"s7://{self.server.address(device)}?rack={found.rack}&slot={found.slot}"

    def reset(self) -> None:
        for device in self.devices:
            device.reset()


FRONTEND = S7Frontend()

__all__ = ["FRONTEND", "S7Frontend", "S7ProtocolServer"]
