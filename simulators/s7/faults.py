"""Protocol faults in S7 answers: the refusal a fault's `exception` (or `bad_quality`) sends, built once
for the simulated CPU (simulators.s7.device) and for the proxy in front of a real one (simulators.proxy).
Which faults hit a job is the core's (simulators.faults.protocol.action_for)."""

from __future__ import annotations

from bifrost.s7 import framing, pdu
from bifrost.s7.pdu import DataTransport, ErrorClass, ErrorResponse, ItemData, RequestPdu, ResponsePdu, ReturnCode
from simulators.faults.protocol import BAD_QUALITY_CODE
from simulators.s7.traffic import SZL_FUNCTION

ITEM_CODES = frozenset({0x01, 0x03, 0x05, 0x06, 0x07, 0x0A})
ERROR_CLASSES = frozenset(range(0x81, 0x88))  # the help has always said 0x81..0x87
S7_CODES = ITEM_CODES | ERROR_CLASSES
"""The codes an S7 `exception` takes: item return codes, and the error classes of a whole job's refusal."""
S7_FUNCTIONS = {function.name.lower(): int(function) for function in pdu.Function} | {"szl": SZL_FUNCTION}
"""What a fault's `match: {function: ...}` may say for an S7 function (`read_var`, `szl`)."""


def refusal(request: RequestPdu | None, code: int) -> ResponsePdu:
    """The answer a fault's `exception` (or a replay's `unknown`) asks for: an error class
    (0x81..0x87) refuses the job as a whole; any other code answers every item with it. A code that
    is no S7 one (bad_quality's, a Modbus number or an OPC UA status given to an S7 device) is a
    hardware fault (0x01). A job that did not decode (None) is refused as a whole."""
    item_code = code if code in ITEM_CODES else ReturnCode.HARDWARE_FAULT
    function = None if request is None or isinstance(request, pdu.SzlRequest) else int(request.function)
    if code in ERROR_CLASSES:
        return ErrorResponse(function, code, 0x04 if code == ErrorClass.SERVICE_PROCESSING else 0x00)
    if isinstance(request, pdu.ReadRequest):
        return pdu.ReadResponse(tuple(ItemData(item_code, DataTransport.NULL) for _ in request.items))
    if isinstance(request, pdu.WriteRequest):
        return pdu.WriteResponse(tuple(item_code for _ in request.items))
    if isinstance(request, pdu.SzlRequest):
        return pdu.SzlResponse(request.szl_id, request.index, b"", item_code, 0xD401, request.sequence)
    return ErrorResponse(function, 0x84, 0x04)


def answer_frame(reference: int, response: ResponsePdu) -> bytes:
    """The bytes answering job `reference` on an established connection (TPKT, COTP data, S7 ack-data)."""
    return framing.encode_tpkt(framing.encode_cotp_data(pdu.encode_response(reference, response)))


__all__ = ["BAD_QUALITY_CODE", "ERROR_CLASSES", "ITEM_CODES", "S7_CODES", "S7_FUNCTIONS", "answer_frame", "refusal"]
