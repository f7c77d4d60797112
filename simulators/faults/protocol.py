"""Protocol faults: what a faulty device does with one decoded request, as an `Action`.

The FaultSet picks the faults that hit a request (match, probability, count); `action_for` folds them
into one `Action` (simulators.hooks) that a server (or the proxy) carries out: answer an exception
instead, lose the reply, cut it short, or send it on the wrong transaction. The reply rewrites
themselves (`rewrite_reply`) work on frame bytes, so the proxy and a simulator change replies alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from bifrost.modbus.framing import Framing, encode_mbap, encode_rtu
from bifrost.modbus.pdu import ExceptionCode
from simulators.faults.spec import FaultSpec
from simulators.hooks import Action

BAD_QUALITY_CODE = int(ExceptionCode.SERVER_DEVICE_FAILURE)  # what bad_quality means to a Modbus client
TRUNCATE_KEEP = 3  # fewer bytes than any Modbus reply frame, TCP or RTU: every reply is left unfinished


def action_for(hits: Sequence[FaultSpec]) -> tuple[Action, tuple[str, ...]] | None:
    """One Action from the protocol faults that hit a request, with their kinds; None if none did.

    When several hit, the first exception (or bad_quality) decides the answer, and truncate and
    wrong_transaction both apply to whatever reply is sent (the shortest truncate wins).
    """
    if not hits:
        return None
    exception: int | None = None
    drop = False
    truncate: int | None = None
    wrong = False
    delay = 0.0
    for spec in hits:
        if spec.kind == "exception" and exception is None:
            exception = spec.integer("code", BAD_QUALITY_CODE)
            if exception > 0xFF:  # an OPC UA status: to a Modbus client, the device failed
                exception = BAD_QUALITY_CODE
        elif spec.kind == "bad_quality" and exception is None:
            exception = BAD_QUALITY_CODE
        elif spec.kind == "truncate":
            keep = spec.integer("keep", TRUNCATE_KEEP)
            truncate = keep if truncate is None else min(truncate, keep)
        elif spec.kind == "wrong_transaction":
            wrong = True
        elif spec.kind in ("drop", "stall"):
            drop = True
        elif spec.kind == "latency":
            delay += spec.number("delay")
    action = Action(delay=delay, exception=exception, drop=drop, truncate=truncate, wrong_transaction=wrong)
    return action, tuple(spec.kind for spec in hits)


def exception_pdu(function: int, code: int) -> bytes:
    """The PDU of an exception reply to `function`."""
    return bytes(((function & 0x7F) | 0x80, code & 0xFF))


def exception_frame(framing: Framing, unit: int, function: int, code: int, transaction_id: int | None) -> bytes:
    pdu = exception_pdu(function, code)
    if framing == "rtu":
        return encode_rtu(unit, pdu)
    return encode_mbap(transaction_id or 0, unit, pdu)


def rewrite_reply(action: Action, frame: bytes, framing: Framing) -> bytes:
    """`frame` (a whole reply) as the action sends it: on the wrong transaction and/or cut short."""
    if action.wrong_transaction and len(frame) >= 2:
        if framing == "rtu":
            # RTU has no transaction id: the reply comes from the next unit, with a CRC that fits it.
            frame = encode_rtu((frame[0] + 1) & 0xFF, frame[1:-2])
        else:
            transaction_id = (int.from_bytes(frame[:2], "big") + 1) & 0xFFFF
            frame = transaction_id.to_bytes(2, "big") + frame[2:]
    if action.truncate is not None:
        frame = frame[: max(0, action.truncate)]
    return frame


__all__ = ["BAD_QUALITY_CODE", "TRUNCATE_KEEP", "action_for", "exception_frame", "exception_pdu", "rewrite_reply"]
