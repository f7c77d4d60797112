"""A scenario that serves a cassette: what `bifrost-sim replay` and the pytest plugin start on a SimHost.

The cassette's device becomes one Modbus device with a `replay:` key per unit it recorded (several
units share one listener, as on a gateway). No tags: the answers come from the cassette.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bifrost.errors import ConfigError
from simulators.recording.cassette import load_cassette
from simulators.scenario import Scenario


def replay_scenario(
    cassette: str | Path,
    *,
    device: str | None = None,
    mode: str = "request",
    timing: str = "fast",
    speed: float = 1.0,
    unknown: int | None = 2,
    listen: str = "127.0.0.1:0",
    transport: str = "tcp",
) -> Scenario:
    """A scenario whose devices replay `cassette` (its `device`, or the only one it recorded)."""
    path = Path(cassette).resolve()
    loaded = load_cassette(path)
    devices = loaded.devices()
    if device is None:
        if len(devices) > 1:
            raise ConfigError(f"{cassette}: it records {len(devices)} devices ({', '.join(devices)}): name one")
        device = devices[0] if devices else "plc1"
    elif devices and device not in devices:
        raise ConfigError(f"{cassette}: it records no device {device!r} (it records {', '.join(devices)})")
    units = loaded.units(device) or [1]
    served: dict[str, Any] = {}
    for index, unit in enumerate(units):
        name = device if index == 0 else f"{device}#unit{unit}"
        spec: dict[str, Any] = {"protocol": "modbus", "transport": transport, "unit": unit}
        if transport != "rtu":
            spec["listen"] = listen
        spec["replay"] = {
            "cassette": str(path),
            "device": device,
            "mode": mode,
            "timing": timing,
            "speed": speed,
            "unknown": unknown,
        }
        served[name] = spec
    return Scenario.model_validate(
        {
            "scenario": f"replay of {path.name}",
            "description": f"{device} as recorded in {path}",
            "tags": {},
            "devices": served,
        }
    )


__all__ = ["misses", "replay_scenario", "replayers"]


def replayers(host: Any) -> dict[str, Any]:
    """The Replayer of each `replay:` device a SimHost serves, by device name (for misses and resets).

    The host's protocol servers keep their devices; a replayed one is the one with a `replayer`.
    """
    found: dict[str, Any] = {}
    for server in getattr(host, "_servers", ()):
        for device in getattr(server, "devices", ()):
            replayer = getattr(device, "replayer", None)
            if replayer is not None:
                found[device.name] = replayer
    return found


def misses(host: Any) -> list[Any]:
    """Every request the host's replayed devices could not answer from their cassettes, in order."""
    return [miss for replayer in replayers(host).values() for miss in replayer.misses]
