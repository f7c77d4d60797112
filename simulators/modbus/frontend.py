"""The Modbus front-end, as simulators.protocols sees it: devices, their server, their URLs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from bifrost.errors import ConfigError
from bifrost.modbus.pdu import ExceptionCode
from simulators.hooks import FaultHooks, ListenerInfo
from simulators.modbus.device import ModbusDevice
from simulators.modbus.faults import FUNCTION_NAMES
from simulators.modbus.model import ModbusDeviceModel
from simulators.modbus.server import Endpoint, ModbusServer
from simulators.protocols import DeviceAbout, DeviceSetup, FaultCodes, Sleep

log = logging.getLogger(__name__)

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


class ModbusProtocolServer:
    """A host's Modbus devices on their listeners (simulators.modbus.server)."""

    def __init__(self, setups: Sequence[DeviceSetup], hooks: FaultHooks, sleep: Sleep) -> None:
        self.devices: list[Any] = [_device(setup, hooks) for setup in setups]
        replayed = {device.name: device for device in self.devices if not isinstance(device, ModbusDevice)}
        if replayed:
            from simulators.recording.hooks import ReplayHooks

            hooks = ReplayHooks(hooks, replayed)  # recorded delays and silences, on top of the faults
        endpoints = {
            setup.name: Endpoint("rtu")
            if device.transport == "rtu"
            else Endpoint(device.transport, setup.host, setup.port, listen=setup.spec.listen or "")
            for setup, device in zip(setups, self.devices, strict=False)
        }
        self._server = ModbusServer(self.devices, endpoints, hooks=hooks, sleep=sleep)

    def about(self, device: str) -> DeviceAbout:
        found = next(served for served in self.devices if served.name == device)
        return DeviceAbout(transport=found.transport, unit=found.unit)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._server.start(loop)

    def url(self, device: str) -> str:
        found = next(served for served in self.devices if served.name == device)
        address = self._server.address(device)
        if found.transport == "rtu":
            return f"modbus+rtu://{address}?unit={found.unit}&baud=19200&parity=N"
        scheme = "modbus+rtu+tcp" if found.transport == "rtu+tcp" else "modbus"
        return f"{scheme}://{address}?unit={found.unit}"

    @property
    def listeners(self) -> Sequence[ListenerInfo]:
        return tuple(listener.info for listener in self._server.listeners)

    def disconnect(self, device: str) -> int:
        return self._server.disconnect(device)

    def close(self) -> list[asyncio.Task[None]]:
        return self._server.close()

    def changed(self) -> None:
        for device in self.devices:
            device.check_freeze()  # a freeze keeps the values of its start, not of the next change

    def reset(self) -> None:
        for device in self.devices:
            device.thaw()

    def gates(self, loop: asyncio.AbstractEventLoop) -> list[ListenerGate]:
        return [gate for listener in self._server.listeners if (gate := ListenerGate.of(listener, loop))]


class ListenerGate:
    """A TCP listener's listening socket, closed while its devices refuse every connection and reopened
    on the same port after (as the proxy does). Used on the loop thread only.

    It reaches into the Modbus server's listener; if that ever lacks what it needs, there is no gate,
    and a refused connection is accepted and closed at once instead (the `accepting` hook).
    """

    _NEEDS = ("_socket", "_open_socket", "endpoint", "info")

    def __init__(self, listener: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.listener = listener
        self.loop = loop
        self.devices: tuple[str, ...] = tuple(listener.info.devices)
        self._port: int | None = None  # the port to reopen, while closed

    @classmethod
    def of(cls, listener: Any, loop: asyncio.AbstractEventLoop) -> ListenerGate | None:
        if not all(hasattr(listener, name) for name in cls._NEEDS) or listener.info.transport == "rtu":
            return None  # a pty is the device's port: it has no listening socket
        return cls(listener, loop)

    @property
    def closed(self) -> bool:
        return self._port is not None

    def want_closed(self, closed: bool) -> None:
        if closed and self._port is None:
            self._close()
        elif not closed and self._port is not None:
            self._reopen()

    def _close(self) -> None:
        sock = self.listener._socket
        if sock is None:
            return
        self._port = int(sock.getsockname()[1])
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(sock.fileno())
        sock.close()
        self.listener._socket = None
        log.info("%s: not listening (every connection is refused)", self.listener.info.address)

    def _reopen(self) -> None:
        endpoint = self.listener.endpoint
        self.listener.endpoint = dataclasses.replace(endpoint, port=self._port or 0)
        try:
            self.listener._open_socket()
        except ConfigError as exc:  # the port was taken meanwhile: tried again at the next change
            log.error("%s: cannot listen again: %s", self.listener.info.address, exc)
            return
        self._port = None
        log.info("%s: listening again", self.listener.info.address)


FRONTEND = ModbusFrontend()

__all__ = ["FRONTEND", "ListenerGate", "ModbusFrontend", "ModbusProtocolServer"]
