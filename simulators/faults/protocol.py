"""Protocol faults: what a faulty device does with one decoded request, as an `Action`.

The FaultSet picks the faults that hit a request (match, probability, count); `action_for` folds them
into one `Action` (simulators.hooks) that a server (or the proxy) carries out in its own protocol:
answer an exception instead, lose the reply, cut it short, or send it on the wrong transaction (the
Modbus reply rewrites are simulators/modbus/faults.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from simulators.faults.spec import DEVICE_FAILURE, FaultSpec
from simulators.hooks import Action

BAD_QUALITY_CODE = DEVICE_FAILURE  # bad_quality, to a front-end that has no value status: the device failed
TRUNCATE_KEEP = 3  # the vocabulary's default `keep`: fewer bytes than any reply frame of the protocols here


def action_for(hits: Sequence[FaultSpec]) -> tuple[Action, tuple[str, ...]] | None:
    """One Action from the protocol faults that hit a request, with their kinds; None if none did.

    When several hit, the first exception (or bad_quality) decides the answer, and truncate and
    wrong_transaction both apply to whatever reply is sent (the shortest truncate wins). The code is
    the fault's, in its protocol's numbers; a front-end reads one that is not its own (an OPC UA status
    at a Modbus device) as a device failure.
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
            exception = spec.integer("code", DEVICE_FAILURE)
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


__all__ = ["BAD_QUALITY_CODE", "TRUNCATE_KEEP", "action_for"]
