"""A scenario that serves a cassette: what `bifrost-sim replay` and the pytest plugin start on a SimHost.

The cassette's device becomes devices of its protocol's front-end with a `replay:` key, as that
protocol's codec says (`Codec.replay_devices`): for Modbus one device per unit it recorded (several
units share one listener, as on a gateway), for S7 one CPU at the rack and slot recorded. No tags:
the answers come from the cassette.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bifrost.errors import ConfigError
from simulators.recording.cassette import load_cassette
from simulators.recording.codec import codec_for
from simulators.scenario import Scenario

DEFAULT = "default"
"""`unknown=DEFAULT`: a miss is refused with the protocol's own default (Modbus exception 2, ...)."""


def replay_scenario(
    cassette: str | Path,
    *,
    device: str | None = None,
    mode: str = "request",
    timing: str = "fast",
    speed: float = 1.0,
    unknown: int | str | None = DEFAULT,
    listen: str = "127.0.0.1:0",
    transport: str = "tcp",
) -> Scenario:
    """A scenario whose devices replay `cassette` (its `device`, or the only one it recorded).

    `unknown`: the code a request the cassette cannot answer is refused with (None: no answer;
    DEFAULT: the protocol's own)."""
    path = Path(cassette).resolve()
    loaded = load_cassette(path)
    devices = loaded.devices()
    if device is None:
        if len(devices) > 1:
            raise ConfigError(f"{cassette}: it records {len(devices)} devices ({', '.join(devices)}): name one")
        device = devices[0] if devices else "plc1"
    elif devices and device not in devices:
        raise ConfigError(f"{cassette}: it records no device {device!r} (it records {', '.join(devices)})")
    protocols = list(dict.fromkeys(entry.protocol for entry in loaded.entries if entry.device == device))
    if len(protocols) > 1:
        raise ConfigError(f"{cassette}: device {device!r} is recorded over {' and '.join(protocols)}: one is served")
    codec = codec_for(protocols[0] if protocols else "modbus")
    replay: dict[str, Any] = {"cassette": str(path), "device": device, "mode": mode, "timing": timing, "speed": speed}
    if unknown != DEFAULT:
        replay["unknown"] = unknown
    served = codec.replay_devices(device, loaded.units(device), listen, transport, replay)
    return Scenario.model_validate(
        {
            "scenario": f"replay of {path.name}",
            "description": f"{device} as recorded in {path}",
            "tags": {},
            "devices": served,
        }
    )


__all__ = ["DEFAULT", "misses", "replay_scenario", "replayers"]


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
        found.update(getattr(server, "replayed", {}))  # OPC UA: the replay is its own server
    return found


def misses(host: Any) -> list[Any]:
    """Every request the host's replayed devices could not answer from their cassettes, in order."""
    return [miss for replayer in replayers(host).values() for miss in replayer.misses]
