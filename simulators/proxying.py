"""What a front-end gives the fault proxy (simulators.proxy) for its protocol: a `Dialect`.

The proxy relays Modbus with bifrost's framers and its own rewrites (simulators.modbus.faults). Another
protocol's bytes are cut into whole messages by its recording codec's cutter (simulators.recording.codec),
and its front-end's dialect, one `DialectSession` per relayed connection, says what the faults see of
each request, builds the answers the proxy gives in the device's place (as our simulator of the protocol
gives them: simulators/s7/proxying.py, simulators/opcua/proxying.py), and keeps whatever the protocol
numbers in step when the proxy answers or a fault loses a message (OPC UA's sequence numbers).
"""

from __future__ import annotations

import importlib
from collections.abc import Hashable
from typing import Protocol

from bifrost.errors import ConfigError
from simulators.faults.frames import Framer
from simulators.hooks import Action, RequestInfo
from simulators.recording.codec import Cut


class DialectSession(Protocol):
    """One relayed connection of a protocol other than Modbus, as its front-end reads and writes it
    (simulators/s7/proxying.py, simulators/opcua/proxying.py). Pieces are the codec's cuts: whole
    messages, relayed unchanged unless a fault or the protocol's bookkeeping says otherwise."""

    value_status: bool
    """Whether `bad_quality` is a status on the values of a forwarded read (OPC UA), not a refusal (S7)."""
    cheap_keys: bool
    """Whether `freeze_key` costs no decoding (S7), so every read's answer may be kept for a freeze."""

    def info(self, cut: Cut) -> RequestInfo | None:
        """What faults see of a request (decoded only as far as a match asks); None: not a request."""
        ...

    def handshake(self, info: RequestInfo) -> bool:
        """The connection's own set-up (S7 setup communication, OPC UA sessions): no protocol fault."""
        ...

    def refusal(self, cut: Cut, info: RequestInfo, code: int) -> bytes | None:
        """The frame refusing request `cut` with the protocol's error for `code`, as our simulator of
        the protocol sends it; None when the proxy cannot answer here (a signed channel)."""
        ...

    def forward(self, piece: bytes) -> bytes:
        """A request as the device is sent it."""
        ...

    def withheld(self, piece: bytes) -> None:
        """A request the device will never see (answered here, or lost)."""
        ...

    def deliver(self, piece: bytes) -> bytes:
        """An answer as the client is sent it."""
        ...

    def lost(self, piece: bytes) -> None:
        """An answer (after `deliver`) the client will never see."""
        ...

    def rewrite(self, piece: bytes, action: Action) -> bytes:
        """An answer as `wrong_transaction` sends it."""
        ...

    def freeze_key(self, cut: Cut, info: RequestInfo) -> Hashable | None:
        """What makes two reads equal for `freeze` (None: no read that freeze answers)."""
        ...

    def frozen_answer(self, cut: Cut, answer: bytes) -> bytes | None:
        """The frame answering request `cut` with `answer`, a reply's PDU kept from before the freeze."""
        ...

    def bad_quality(self, piece: bytes, body: bytes | None, info: RequestInfo, status: int | None) -> bytes | None:
        """An answer to a read with its values' status set (only where `value_status`)."""
        ...


class Dialect(Protocol):
    protocol: str
    framer: Framer

    def session(self) -> DialectSession: ...


DIALECTS = {"s7": "simulators.s7.proxying", "opcua": "simulators.opcua.proxying"}
"""protocol -> the module whose DIALECT speaks it (imported when first asked for)."""


def dialect_for(protocol: str) -> Dialect:
    """The proxy's dialect of `protocol` (imported when first asked for: a front-end's dependencies)."""
    module = DIALECTS.get(protocol)
    if module is None:
        raise ConfigError(f"--protocol: the proxy speaks modbus, {', '.join(DIALECTS)}; not {protocol!r}")
    dialect: Dialect = importlib.import_module(module).DIALECT
    return dialect


__all__ = ["DIALECTS", "Dialect", "DialectSession", "dialect_for"]
