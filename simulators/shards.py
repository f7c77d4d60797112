"""Shards: `bifrost-sim serve SCENARIO --shard K/N` serves one N-th of a scenario's devices, so a plant of
thousands of devices spreads over processes or hosts.

Assignment is stable by device name (its SHA-256, modulo N: a CRC's low bits barely move between
names that differ in one character), so every shard computes the same split
without talking to the others. Each shard runs the whole plant on its own, which is coherent only while
no two shards depend on the same tag: the tags a device maps, and every tag those follow through
behaviours and `when`/`set` events, must belong to one shard alone. A scenario that shares a tag across
shards is refused, naming the tag and the devices, rather than served as two plants that drift apart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from bifrost.errors import ConfigError
from simulators.expr import compile_expr
from simulators.scenario import Scenario, SetExpr

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """`2/4` -> (2, 4): the second of four shards, counted from 1."""
    found = _SHARD.match(text)
    if found is None or not 1 <= int(found.group(1)) <= int(found.group(2)):
        raise ConfigError(f"expected K/N with 1 <= K <= N, such as 2/4; not {text!r}")
    return int(found.group(1)), int(found.group(2))


def shard_of(device: str, count: int) -> int:
    """The shard (1..count) that serves `device`."""
    return int.from_bytes(hashlib.sha256(device.encode()).digest()[:8], "big") % count + 1


def _dependencies(scenario: Scenario) -> dict[str, set[str]]:
    """For each tag, the tags its value follows (behaviour expressions, and the events that set it)."""
    deps: dict[str, set[str]] = {name: set() for name in scenario.tags}
    for name, tag in scenario.tags.items():
        behaviour = tag.behaviour
        for field in ("integrate", "lag", "expr"):
            text = getattr(behaviour, field, None)
            if isinstance(text, str):
                deps[name] |= compile_expr(text).names
    for event in scenario.events:
        trigger = compile_expr(event.when).names if event.when is not None else set()
        for name, value in (event.assign or {}).items():
            deps[name] |= trigger | (compile_expr(value.expr).names if isinstance(value, SetExpr) else set())
        if event.ramp is not None:
            deps[event.ramp.tag] |= trigger
    return deps


def _closure(start: Iterable[str], deps: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(deps.get(name, ()))
    return seen


def shard_devices(scenario: Scenario, text: str) -> list[str]:
    """The devices shard `text` (K/N) serves; a ConfigError when its plant would share a tag with another
    shard's."""
    index, count = parse_shard(text)
    deps = _dependencies(scenario)
    owner: dict[str, tuple[int, str]] = {}
    for device, spec in scenario.devices.items():
        shard = shard_of(device, count)
        for tag in _closure(spec.mapped(scenario.tags), deps):
            other = owner.setdefault(tag, (shard, device))
            if other[0] != shard:
                raise ConfigError(
                    f"tag {tag!r} is needed by {other[1]!r} (shard {other[0]}/{count}) and by {device!r} "
                    f"(shard {shard}/{count}): shards run separate plants, so the devices that share tags must "
                    "be served together (fewer shards, or devices that share no tags)"
                )
    return [device for device in scenario.devices if shard_of(device, count) == index]


__all__ = ["parse_shard", "shard_devices", "shard_of"]
