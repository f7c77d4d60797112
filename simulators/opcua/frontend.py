"""The OPC UA front-end, as simulators.protocols sees it: devices, their servers, their URLs.

Each device is its own C server (bifrost._native.OpcuaServer). With fault hooks, the device's port is
a relay's (simulators/opcua/relay.py) that passes each connection to the C server through the fault
lanes, so transport faults apply as to a Modbus device; with NoFaults the C server listens on the
device's port itself. Protocol faults (exception with an OPC UA status, bad_quality, freeze, reboot,
with `match: {node: ...}`) are set into the server when the host's FaultWatch says faults changed, with
the same calls into a simulated device's server and into a replayed one's
(simulators.recording.opcua_replay_faults says how a replay carries them out).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bifrost.errors import ConfigError
from simulators.hooks import FaultHooks, ListenerInfo, NoFaults
from simulators.opcua.model import OpcuaDeviceModel, OpcuaUser
from simulators.opcua.nodes import resolve
from simulators.opcua.relay import Relay
from simulators.opcua.server import OpcuaDeviceServer, OpcuaSettings, ServiceEvent, status_code
from simulators.opcua.traffic import CODEC, SERVICE_IDS, OpcuaRequest
from simulators.protocols import DeviceAbout, DeviceSetup, FaultCodes, ListenerGate, Sleep
from simulators.traffic import NOTHING_WRITTEN, Exchange

if TYPE_CHECKING:
    from simulators.recording.opcua_replay import OpcuaReplayServer

log = logging.getLogger(__name__)


def _lookup(name: str) -> int | None:
    from bifrost._native import opcua_status_code  # the C library's table of status names

    return opcua_status_code(name)


FAULT_CODES = FaultCodes(
    help="an OPC UA status name",
    pattern=r"(Good|Uncertain|Bad)[A-Za-z0-9]*",
    lookup=_lookup,
    functions={name.lower(): number for name, number in SERVICE_IDS.items()},
)


class OpcuaFrontend:
    name = "opcua"
    device_model = OpcuaDeviceModel
    fault_codes = FAULT_CODES

    def create(self, devices: Sequence[DeviceSetup], *, hooks: FaultHooks, sleep: Sleep) -> OpcuaProtocolServer:
        return OpcuaProtocolServer(devices, hooks)

    def default_listen(self) -> str:
        return "127.0.0.1:4840"


def _settings(setup: DeviceSetup) -> OpcuaSettings:
    spec: OpcuaDeviceModel = setup.spec
    users = tuple(
        (name, user, True) if isinstance(user, str) else (name, user.password, user.write)
        for name, user in spec.users.items()
        if isinstance(user, (str, OpcuaUser))
    )
    certificate = None
    if spec.certificate or spec.private_key:
        if not (spec.certificate and spec.private_key):
            raise ConfigError(f"device {setup.name}: give both certificate and private_key, or neither")
        certificate = (Path(spec.certificate).read_bytes(), Path(spec.private_key).read_bytes())
    return OpcuaSettings(
        name=setup.name,
        host=setup.host,
        port=setup.port,
        path=spec.path,
        namespace=spec.namespace or f"urn:bifrost:{setup.scenario.scenario}",
        security=tuple(spec.security),
        users=users,
        certificate=certificate,
    )


class OpcuaProtocolServer:
    """A host's OPC UA devices, one C server each."""

    def __init__(self, setups: Sequence[DeviceSetup], hooks: FaultHooks) -> None:
        self.hooks = hooks
        self.devices: dict[str, OpcuaDeviceServer] = {}
        self.relays: dict[str, Relay] = {}
        self.replayed: dict[str, OpcuaReplayServer] = {}
        self._rebooted: dict[str, set[int]] = {}
        direct = type(hooks) is NoFaults  # nothing to inject: the bare fast path
        for setup in setups:
            if setup.spec.replay is not None:
                from simulators.recording.opcua_replay import replay_server  # record and replay: docs/replay.md

                self.replayed[setup.name] = replay_server(
                    setup.name, setup.spec.replay, setup.host, setup.port, setup.spec.path
                )
                if not direct:
                    self.relays[setup.name] = Relay(setup.name, hooks, setup.host, setup.port)
                continue
            settings = _settings(setup)
            entries = setup.spec.entries(setup.scenario.tags)
            nodes = resolve(setup.name, settings.namespace, entries, dict(setup.scenario.tags))
            device = OpcuaDeviceServer(settings, nodes, setup.plant)
            device._on_service = _logger(setup, device)
            device._freeze_active = _freeze_check(hooks, setup.name)
            self.devices[setup.name] = device
            if not direct:
                self.relays[setup.name] = Relay(setup.name, hooks, setup.host, setup.port)

    def about(self, device: str) -> DeviceAbout:
        return DeviceAbout(transport="tcp")

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        started: list[OpcuaDeviceServer | OpcuaReplayServer] = []
        try:
            for name, replay in self.replayed.items():
                relay = self.relays.get(name)
                if relay is None:
                    replay.start(loop)
                else:
                    port = relay.bind()
                    shown = relay.info.address.rsplit(":", 1)[0]
                    replay.host, replay.port_wanted = "127.0.0.1", 0
                    replay.start(loop, advertised_url=f"opc.tcp://{shown}:{port}{replay.path}")
                    relay.start(loop, replay.port)
                started.append(replay)
            for name, device in self.devices.items():
                relay = self.relays.get(name)
                if relay is None:
                    device.start(loop)
                else:
                    port = relay.bind()
                    shown = relay.info.address.rsplit(":", 1)[0]
                    url = f"opc.tcp://{shown}:{port}{device.settings.path}"
                    device.start(loop, host="127.0.0.1", port=0, advertised_url=url)
                    relay.start(loop, device.port)
                started.append(device)
        except BaseException:
            for served in started:
                served.stop()
            for relay in self.relays.values():
                relay.close()
            raise
        self.changed()

    def url(self, device: str) -> str:
        replay = self.replayed.get(device)
        if replay is not None:
            relay = self.relays.get(device)
            return replay.url if relay is None else f"opc.tcp://{relay.info.address}{replay.path}"
        found = self.devices[device]
        return found.advertised_url or found.url

    @property
    def listeners(self) -> Sequence[ListenerInfo]:
        return tuple(relay.info for relay in self.relays.values())

    def disconnect(self, device: str) -> int:
        replay = self.replayed.get(device)
        if replay is not None:
            relay = self.relays.get(device)
            return relay.disconnect() if relay is not None else replay.disconnect()
        found = self.devices.get(device)
        if found is None or found.native is None:
            return 0
        found.native.drop_sessions()
        relay = self.relays.get(device)
        return relay.disconnect() if relay is not None else 1

    def close(self) -> list[asyncio.Task[None]]:
        tasks = [task for relay in self.relays.values() for task in relay.close()]
        for device in self.devices.values():
            device.stop()
        for replay in self.replayed.values():
            replay.stop()
        return tasks

    def changed(self) -> None:
        served: dict[str, OpcuaDeviceServer | OpcuaReplayServer] = {**self.devices, **self.replayed}
        for name, device in served.items():
            if device.native is None:
                continue
            try:
                self._apply(name, device)
            except ConfigError as exc:
                log.error("%s: fault not applied: %s", name, exc)

    def _apply(self, name: str, device: OpcuaDeviceServer | OpcuaReplayServer) -> None:
        faults = _active(self.hooks, name)
        exception = next((f for f in faults if f.kind == "exception"), None)
        if exception is None:
            device.clear_exception()
        else:
            code = exception.integer("code", 0)
            # A code that is no OPC UA status (the default, a Modbus or S7 number): the device failed.
            status = code if code > 0xFF else status_code("BadCommunicationError")
            device.set_exception(
                status,
                _nodes(device, exception),
                exception.probability,
                exception.count,
                _seed(self.hooks, name, "exception"),
            )
        quality = next((f for f in faults if f.kind == "bad_quality"), None)
        if quality is None:
            device.set_quality(0, None)
        else:
            device.set_quality(status_code(quality.params.get("code") or "BadSensorFailure"), _nodes(device, quality))
        device.freeze(any(f.kind == "freeze" for f in faults))
        reboots = {id(f) for f in faults if f.kind == "reboot"}
        if reboots - self._rebooted.get(name, set()):
            device.reboot()
        self._rebooted[name] = reboots

    def reset(self) -> None:
        served: list[OpcuaDeviceServer | OpcuaReplayServer] = [*self.devices.values(), *self.replayed.values()]
        for device in served:
            device.freeze(False)
            device.clear_exception()
            device.set_quality(0, None)
        for replay in self.replayed.values():
            replay.reset()  # back to the start of the cassette
        self._rebooted.clear()

    def gates(self, loop: asyncio.AbstractEventLoop) -> Sequence[ListenerGate]:
        return ()


def _freeze_check(hooks: FaultHooks, device: str) -> Callable[[], bool]:
    def frozen() -> bool:
        return any(spec.kind == "freeze" for spec in _active(hooks, device))

    return frozen


def _logger(setup: DeviceSetup, device: OpcuaDeviceServer) -> Callable[[ServiceEvent], None]:
    """Each service the server answered, as an exchange of the device's traffic log."""
    log_, plant, name, nodes = setup.log, setup.plant, setup.name, device.nodes

    def record(event: ServiceEvent) -> None:
        at, service, request_id, channel, session, touched = event
        native = device.native
        held = [native.value(i) if native is not None else None for i, _ in touched]
        values = tuple(
            (nodes[i].type, None if value is None else value[0]) for (i, _), value in zip(touched, held, strict=True)
        )
        request = OpcuaRequest(service, tuple(device.node_id(i) for i, _ in touched), session, values)
        written = {nodes[i].tag: plant.get(nodes[i].tag) for i, code in touched if service == "Write" and code == 0}
        log_.record(
            Exchange(
                plant_time=plant.time,
                wall_time=at,
                device=name,
                client=f"channel {channel}",
                unit=None,
                transaction_id=request_id,
                request=request,
                response=tuple(code for _, code in touched),
                written=written or NOTHING_WRITTEN,
                codec=CODEC,
            )
        )

    return record


def _active(hooks: FaultHooks, device: str) -> list[Any]:
    """The device's faults in force, as FaultSpecs (kind, params, probability, count, match)."""
    faults = getattr(hooks, "device", None)
    if faults is None:
        return []
    try:
        return [fault.spec for fault in faults(device).active()]
    except (KeyError, ConfigError):
        return []


def _seed(hooks: FaultHooks, device: str, stream: str) -> int:
    """The seed of the server's own draws (a probable exception), from the host's fault seed as the
    Modbus faults draw theirs: the same scenario seed gives the same answers run after run."""
    faults = getattr(hooks, "device", None)
    return 0 if faults is None else int(faults(device).seed_for(stream))


def _nodes(device: OpcuaDeviceServer | OpcuaReplayServer, spec: Any) -> list[int] | None:
    node = spec.match.node if spec.match is not None else None
    return device.indexes(node)


FRONTEND = OpcuaFrontend()

__all__ = ["FRONTEND", "OpcuaFrontend", "OpcuaProtocolServer"]
