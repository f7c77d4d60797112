"""An S7 CPU that answers from a cassette: what the S7 front-end serves for a `replay:` device.

It takes the place of simulators.s7.S7Device on the same server (simulators.s7.server), so a replayed
CPU has what a simulated one has: COTP connect (refusing another rack or slot), setup communication
(negotiating the PDU size and jobs in flight the recording showed), the traffic log, and the
scenario's faults. The answers come from a `Replayer`, the live request's PDU reference put in
place of the recorded one; recorded delays and silences go through ReplayHooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bifrost.s7 import pdu
from bifrost.s7.pdu import ErrorResponse, MalformedPdu, RequestPdu, ResponsePdu
from bifrost.tags import Value
from simulators.recording.cassette import Cassette
from simulators.recording.replay import Answer, Replayer
from simulators.recording.s7 import refusal, unit_of
from simulators.recording.spec import ReplaySpec
from simulators.traffic import NOTHING_WRITTEN, TrafficLog

Served = tuple[ResponsePdu, Mapping[str, Value], str | None]
_CACHE = 4096


def _negotiated(cassette: Cassette, device: str | None) -> tuple[int, int]:
    """The PDU size and jobs in flight the recorded CPU granted (480 and 1 when it shows none)."""
    for entry in cassette.entries:
        if entry.protocol != "s7" or (device is not None and entry.device != device) or entry.response is None:
            continue
        try:
            _, answer = pdu.decode_response(entry.response)
        except MalformedPdu:
            continue
        if isinstance(answer, pdu.SetupResponse):
            return max(pdu.MIN_PDU, min(answer.pdu_size, pdu.MAX_PDU)), max(1, answer.max_amq_calling)
    return 480, 1


class S7ReplayDevice:
    """One `replay:` S7 device of a scenario, as the S7 server serves it."""

    protocol = "s7"

    def __init__(self, name: str, rack: int, slot: int, spec: ReplaySpec, plant: Any, log: TrafficLog) -> None:
        self.name = name
        self.rack, self.slot = rack, slot
        self.unit = unit_of(rack, slot)
        self.plant = plant
        self.log = log
        self.spec = spec
        cassette, device = spec.load(name)
        self.replayer = Replayer(
            cassette, device=device, mode=spec.mode, timing=spec.timing, speed=spec.speed, unknown=spec.unknown
        )
        self.pdu_size, self.max_amq = _negotiated(cassette, self.replayer.device)
        self._decided: dict[int, Answer] = {}
        self._responses: dict[bytes, ResponsePdu] = {}  # recorded answers decoded once

    def _ask(self, request: RequestPdu) -> Answer:
        return self.replayer.answer(self.unit, pdu.encode_request(0, request))

    def decide(self, unit: int, request: RequestPdu) -> Answer:
        """The cassette's answer to a job, kept until `serve` sends it (ReplayHooks asks first)."""
        answer = self._ask(request)
        self._decided[id(request)] = answer
        return answer

    def serve(self, request: RequestPdu, pdu_size: int) -> Served:
        answer = self._decided.pop(id(request), None)
        if answer is None:
            answer = self._ask(request)
        note = None if answer.source in ("recorded", "repeated") else f"replay: {answer.source}: {answer.note or ''}"
        if answer.source == "image":
            note = "replay: answered from the learned image"
        function = None if isinstance(request, pdu.SzlRequest) else int(request.function)
        if answer.response is None:
            # Dropped by ReplayHooks (the recording had no answer); something must still be returned.
            return ErrorResponse(function, 0x84, 0x04), NOTHING_WRITTEN, "replay: the recording has no answer"
        response = self._responses.get(answer.response)
        if response is None:
            try:
                _, response = pdu.decode_response(answer.response, request)
            except MalformedPdu as exc:
                why = f"replay: the recorded answer {answer.response.hex()} does not decode ({exc})"
                return ErrorResponse(function, 0x81, 0x04), NOTHING_WRITTEN, why
            if len(self._responses) < _CACHE:
                self._responses[answer.response] = response
        mismatch = pdu.response_mismatch(request, response)
        if mismatch is not None:
            return ErrorResponse(function, 0x81, 0x04), NOTHING_WRITTEN, f"replay: the recorded answer: {mismatch}"
        if len(answer.response) > pdu_size:
            why = f"replay: the recorded answer is {len(answer.response)} bytes, more than the negotiated {pdu_size}"
            return ErrorResponse(function, 0x85, 0x00), NOTHING_WRITTEN, why
        return response, NOTHING_WRITTEN, note

    def refuse(self, request: RequestPdu, code: int) -> ResponsePdu:
        """What a fault's `exception` answers (as a simulated CPU would)."""
        return refusal(request, code)

    def check_freeze(self) -> None:
        """A replayed CPU's values come from the cassette: a freeze has nothing to hold."""

    def reset(self) -> None:
        """Between tests (the front-end's reset): back to the start of the cassette."""
        self._decided.clear()
        self.replayer.reset()


__all__ = ["S7ReplayDevice"]
