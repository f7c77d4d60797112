"""Protocol faults in Modbus frames: the exception reply a fault's `exception` sends, and the reply
rewrites (`wrong_transaction`, `truncate`), on frame bytes so that the proxy and the simulator change
replies alike. Which faults hit a request is the core's (simulators.faults.protocol.action_for).
"""

from __future__ import annotations

from bifrost.modbus.framing import Framing, encode_mbap, encode_rtu
from bifrost.modbus.pdu import ExceptionCode, FunctionCode
from simulators.hooks import Action

SERVER_DEVICE_FAILURE = int(ExceptionCode.SERVER_DEVICE_FAILURE)
FUNCTION_NAMES = {code.name.lower(): int(code) for code in FunctionCode}
"""What a fault's `match: {function: ...}` may say for a function code (`read_holding_registers`)."""


def modbus_code(code: int) -> int:
    """A fault's exception code as a Modbus exception: another protocol's (an OPC UA status) is, to a
    Modbus client, the device failing."""
    return code if 0 < code <= 0xFF else SERVER_DEVICE_FAILURE


def exception_pdu(function: int, code: int) -> bytes:
    """The PDU of an exception reply to `function`."""
    return bytes(((function & 0x7F) | 0x80, modbus_code(code)))


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


__all__ = [
    "FUNCTION_NAMES",
    "SERVER_DEVICE_FAILURE",
    "exception_frame",
    "exception_pdu",
    "modbus_code",
    "rewrite_reply",
]
