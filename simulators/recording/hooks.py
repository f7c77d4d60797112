"""The fault hooks of a front-end that serves replayed devices: recorded delays and silences.

Timing and silence go through the fault hooks' `Action` (each server's slow path): `ReplayHooks` wraps
the host's hooks, and for a request to a replayed device asks the device (`decide(unit, request)`,
which keeps the cassette's answer until the device serves it): a recorded delay becomes
`Action(delay=...)`, a request that was never answered `Action(drop=True)`. A request a fault refuses
or closes on is not replayed, so the cassette's order is kept for the requests that reach the device.
Protocol-neutral: the front-end's RequestInfo carries the decoded request as `request`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from simulators.hooks import Action, FaultHooks, HookContext, ListenerInfo, Reader, RequestInfo, Writer
from simulators.recording.replay import Answer


class Decides(Protocol):
    def decide(self, unit: int, request: Any) -> Answer: ...


def with_replays(hooks: FaultHooks, devices: Sequence[Any], simulated: type) -> FaultHooks:
    """`hooks`, wrapped in ReplayHooks when some of a front-end's `devices` are replayed (not of its
    `simulated` device class)."""
    replayed = {device.name: device for device in devices if not isinstance(device, simulated)}
    return ReplayHooks(hooks, replayed) if replayed else hooks


class ReplayHooks:
    """The host's hooks, with each replayed request's recorded delay and silence added."""

    def __init__(self, inner: FaultHooks, devices: Mapping[str, Decides]) -> None:
        self.inner = inner
        self.devices = devices

    def bind(self, context: HookContext) -> None:
        self.inner.bind(context)

    def accepting(self, listener: ListenerInfo) -> bool:
        return self.inner.accepting(listener)

    def wrap(self, reader: Reader, writer: Writer, device: str) -> tuple[Reader, Writer]:
        return self.inner.wrap(reader, writer, device)

    def frozen(self, device: str) -> bool:
        return self.inner.frozen(device)

    def reset(self) -> None:
        reset = getattr(self.inner, "reset", None)
        if callable(reset):
            reset()

    def on_request(self, device: str, request: RequestInfo) -> Action | None:
        action = self.inner.on_request(device, request)
        replay = self.devices.get(device)
        if replay is None or (action is not None and (action.exception is not None or action.close)):
            return action
        asked = getattr(request, "request", None)  # each front-end's RequestInfo carries its request
        if asked is None:
            return action
        answer = replay.decide(request.unit or 0, asked)
        if answer.delay <= 0 and answer.response is not None:
            return action
        base = action or Action()
        return dataclasses.replace(base, delay=base.delay + answer.delay, drop=base.drop or answer.response is None)


__all__ = ["ReplayHooks"]
