"""A Modbus device that answers from a cassette: what the Modbus front-end serves for a `replay:` device.

It takes the place of simulators.modbus.ModbusDevice on the same server (simulators.modbus.server),
so a replayed device has everything a simulated one has: TCP, RTU over TCP and RTU on a pty, unit
routing, the traffic log, and the scenario's faults. The answers come from a `Replayer`.

Timing and silence go through the fault hooks' `Action` (the server's slow path), by `ReplayHooks`
(simulators.recording.hooks, shared by every protocol's replayed devices).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bifrost.modbus import pdu
from bifrost.modbus.pdu import ExceptionResponse, MalformedFrame, RequestPdu
from simulators.recording.hooks import ReplayHooks  # re-exported: it was defined here
from simulators.recording.replay import Answer, Replayer
from simulators.recording.spec import ReplaySpec
from simulators.traffic import NOTHING_WRITTEN, TrafficLog

Served = tuple[pdu.ResponsePdu, Mapping[str, Any], str | None]
_CACHE = 4096


class ReplayDevice:
    """One `replay:` device of a scenario, as the Modbus server serves it."""

    protocol = "modbus"

    def __init__(self, name: str, unit: int, transport: str, spec: ReplaySpec, plant: Any, log: TrafficLog) -> None:
        self.name = name
        self.unit = unit
        self.transport = transport
        self.plant = plant
        self.log = log
        self.spec = spec
        cassette, device = spec.load(name)
        self.replayer = Replayer(
            cassette, device=device, mode=spec.mode, timing=spec.timing, speed=spec.speed, unknown=spec.unknown
        )
        self._units = set(self.replayer.units())
        self._decided: dict[int, Answer] = {}
        # The recorded answers decoded once: a replayed device should cost no more than a simulated one.
        self._responses: dict[tuple[type, bytes], pdu.ResponsePdu] = {}

    def decide(self, unit: int, request: RequestPdu) -> Answer:
        """The cassette's answer to a request, kept until `serve` sends it."""
        answer = self.replayer.answer(self._unit(unit), pdu.encode_request(request))
        self._decided[id(request)] = answer
        return answer

    def _unit(self, unit: int) -> int:
        # A lone TCP device also answers units 0 and 255: those mean the recorded unit.
        if unit not in self._units and len(self._units) == 1:
            return next(iter(self._units))
        return unit

    def serve(self, request: RequestPdu) -> Served:
        answer = self._decided.pop(id(request), None)
        if answer is None:
            answer = self.replayer.answer(self.unit, pdu.encode_request(request))
        note = None if answer.source in ("recorded", "repeated") else f"replay: {answer.source}: {answer.note or ''}"
        if answer.source == "image":
            note = "replay: answered from the learned image"
        if answer.response is None:
            # Dropped by ReplayHooks (the recording had no answer); something must still be returned.
            return ExceptionResponse(request.function, 4), NOTHING_WRITTEN, "replay: the recording has no answer"
        key = (type(request), answer.response)  # only FC1/FC2 answers need their request, for the bit count
        response = self._responses.get(key)
        if response is not None and isinstance(response, pdu.ReadCoilsResponse | pdu.ReadDiscreteInputsResponse):
            response = None if len(response.values) != getattr(request, "count", -1) else response
        try:
            if response is None:
                response = pdu.decode_response(answer.response, request)
                if len(self._responses) < _CACHE:
                    self._responses[key] = response
        except MalformedFrame as exc:
            note = f"replay: the recorded answer {answer.response.hex()} does not decode ({exc}); answered exception 4"
            return ExceptionResponse(request.function, 4), NOTHING_WRITTEN, note
        if response.function != request.function:
            note = f"replay: the recorded answer is of function {response.function}; answered exception 4"
            return ExceptionResponse(request.function, 4), NOTHING_WRITTEN, note
        return response, NOTHING_WRITTEN, note

    def check_freeze(self) -> None:
        """A replayed device's values come from the cassette: a freeze has nothing to hold."""

    def thaw(self) -> None:
        """Between tests (the front-end's reset): back to the start of the cassette."""
        self._decided.clear()
        self.replayer.reset()


__all__ = ["ReplayDevice", "ReplayHooks"]
