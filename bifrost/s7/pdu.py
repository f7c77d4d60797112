"""S7comm PDUs: the messages inside COTP data, as dataclasses, and their bytes. No I/O.

An S7 PDU is a 10-byte header (12 for acknowledgements, which add an error class and code), a
parameter block and a data block. The messages here are the ones a client of a CPU's data needs:

- setup communication (function 0xF0): negotiates the PDU size and the jobs in flight (max AmQ);
- read var (0x04) and write var (0x05) with many items, each answered with its own return code;
- PLC stop (0x29) and PLC control (0x28, the `P_PROGRAM` start services);
- SZL read (a user-data PDU, CPU functions group, subfunction 1).

`encode_request`/`decode_request` and `encode_response`/`decode_response` turn them into bytes and
back; a decode error is a `MalformedPdu` that says which field is wrong and, when the PDU reference
and function could be read, how a CPU answers it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeAlias

from bifrost.errors import BifrostError, EncodeError

PROTOCOL_ID = 0x32
HEADER = 10  # a job or user-data header
ACK_HEADER = 12  # an acknowledgement adds the error class and code
ITEM_SPEC = 12  # one S7ANY item of a read or write request
MIN_PDU = 240  # the smallest PDU a CPU negotiates
MAX_PDU = 960  # the largest (S7-1500); 480 on most 300/400s, 240 on S7-200/1200 firmware of old
SZL_MAX_DATA = 0xFFFF


class Rosctr(IntEnum):
    """The PDU type (remote operating service control)."""

    JOB = 0x01
    ACK = 0x02
    ACK_DATA = 0x03
    USERDATA = 0x07


class Function(IntEnum):
    READ_VAR = 0x04
    WRITE_VAR = 0x05
    PLC_CONTROL = 0x28
    PLC_STOP = 0x29
    SETUP_COMMUNICATION = 0xF0


class Area(IntEnum):
    """Memory areas of an S7ANY address."""

    INPUTS = 0x81  # I (PE)
    OUTPUTS = 0x82  # Q (PA)
    FLAGS = 0x83  # M (MK)
    DB = 0x84
    COUNTERS = 0x1C
    TIMERS = 0x1D


class TransportSize(IntEnum):
    """The element type of a request item (its `count` counts these)."""

    BIT = 0x01
    BYTE = 0x02
    CHAR = 0x03
    WORD = 0x04
    INT = 0x05
    DWORD = 0x06
    DINT = 0x07
    REAL = 0x08
    COUNTER = 0x1C
    TIMER = 0x1D


ELEMENT_BYTES = {
    TransportSize.BIT: 1,
    TransportSize.BYTE: 1,
    TransportSize.CHAR: 1,
    TransportSize.WORD: 2,
    TransportSize.INT: 2,
    TransportSize.DWORD: 4,
    TransportSize.DINT: 4,
    TransportSize.REAL: 4,
    TransportSize.COUNTER: 2,
    TransportSize.TIMER: 2,
}


class DataTransport(IntEnum):
    """The type of an item's data in a read answer or write request; says how `length` counts."""

    NULL = 0x00
    BIT = 0x03  # length in bits
    BYTE = 0x04  # byte/word/dword, length in bits
    INT = 0x05  # length in bits
    REAL = 0x07  # length in bytes
    OCTET = 0x09  # length in bytes


_LENGTH_IN_BYTES = {DataTransport.REAL, DataTransport.OCTET, DataTransport.NULL}


class ReturnCode(IntEnum):
    """The per-item answer of a read or write."""

    RESERVED = 0x00
    HARDWARE_FAULT = 0x01
    ACCESS_DENIED = 0x03
    ADDRESS_OUT_OF_RANGE = 0x05
    TYPE_NOT_SUPPORTED = 0x06
    TYPE_INCONSISTENT = 0x07
    OBJECT_DOES_NOT_EXIST = 0x0A
    SUCCESS = 0xFF


RETURN_CODE_TEXT = {
    ReturnCode.RESERVED: "reserved",
    ReturnCode.HARDWARE_FAULT: "hardware fault",
    ReturnCode.ACCESS_DENIED: "access to the object denied",
    ReturnCode.ADDRESS_OUT_OF_RANGE: "address out of range",
    ReturnCode.TYPE_NOT_SUPPORTED: "data type not supported",
    ReturnCode.TYPE_INCONSISTENT: "data type inconsistent",
    ReturnCode.OBJECT_DOES_NOT_EXIST: "object does not exist",
    ReturnCode.SUCCESS: "success",
}


def return_code_text(code: int) -> str:
    try:
        return f"item return code 0x{code:02X} ({RETURN_CODE_TEXT[ReturnCode(code)]})"
    except ValueError:
        return f"item return code 0x{code:02X} (unknown)"


class ErrorClass(IntEnum):
    """The error class of an acknowledgement header."""

    NONE = 0x00
    APPLICATION_RELATIONSHIP = 0x81
    OBJECT_DEFINITION = 0x82
    NO_RESOURCES = 0x83
    SERVICE_PROCESSING = 0x84
    SUPPLIES = 0x85
    ACCESS = 0x87


# Common (class << 8 | code) values, as Wireshark and the Siemens manuals name them.
ERROR_TEXT = {
    0x0000: "no error",
    0x8101: "application relationship: invalid service sequence",
    0x8104: "context not supported: the service is not implemented on the module",
    0x8204: "object definition: the type specification for the object is inconsistent",
    0x8304: "no resources: too many jobs in flight",
    0x8401: "service processing: invalid service sequence",
    0x8402: "service processing: the addressed object is in a state that forbids it",
    0x8404: "service processing: the function cannot be performed",
    0x8500: "supplies: wrong PDU size (the frame exceeds the negotiated PDU)",
    0x8702: "access: address invalid",
    0xD201: "syntax error in the block name",
    0xD401: "SZL: the requested list is not available",
    0xD402: "SZL: the index is not available",
}


def error_text(error: int) -> str:
    return f"error 0x{error:04X} ({ERROR_TEXT.get(error, 'unknown')})"


class S7PduError(BifrostError, ValueError):
    """A value cannot be put in a PDU: `field` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class MalformedPdu(BifrostError, ValueError):
    """Bytes that are not an S7 PDU. `reference` and `function`, when known, let a server answer."""

    def __init__(self, message: str, *, reference: int | None = None, function: int | None = None) -> None:
        super().__init__(message)
        self.reference = reference
        self.function = function


# --------------------------------------------------------------------------------------- items


@dataclass(frozen=True, slots=True)
class VarSpec:
    """One S7ANY address: `count` elements of `transport` from byte `start` (bit `bit`) of an area."""

    area: Area
    start: int
    count: int = 1
    transport: TransportSize = TransportSize.BYTE
    db: int = 0
    bit: int = 0

    @property
    def size(self) -> int:
        """Bytes the item covers (a bit item covers one byte, of which it reads one bit)."""
        return self.count * ELEMENT_BYTES[self.transport]

    def __str__(self) -> str:
        where = f"DB{self.db}" if self.area is Area.DB else self.area.name
        bit = f".{self.bit}" if self.transport is TransportSize.BIT else ""
        return f"{where} {self.start}{bit} x{self.count} {self.transport.name}"


@dataclass(frozen=True, slots=True)
class ItemData:
    """The data of one item: the return code (read answers; 0x00 in write requests), its type, bytes.

    A bit travels as one byte holding 0 or 1.
    """

    return_code: int = ReturnCode.SUCCESS
    transport: DataTransport = DataTransport.BYTE
    data: bytes = b""

    @property
    def ok(self) -> bool:
        return self.return_code == ReturnCode.SUCCESS


# ------------------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class SetupRequest:
    pdu_size: int = 480
    max_amq_calling: int = 1
    max_amq_called: int = 1
    function: Function = field(default=Function.SETUP_COMMUNICATION, init=False)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    items: tuple[VarSpec, ...]
    function: Function = field(default=Function.READ_VAR, init=False)


@dataclass(frozen=True, slots=True)
class WriteRequest:
    items: tuple[VarSpec, ...]
    data: tuple[ItemData, ...]
    function: Function = field(default=Function.WRITE_VAR, init=False)


@dataclass(frozen=True, slots=True)
class PlcStopRequest:
    service: bytes = b"P_PROGRAM"
    function: Function = field(default=Function.PLC_STOP, init=False)


@dataclass(frozen=True, slots=True)
class PlcControlRequest:
    """A PI service: `P_PROGRAM` with no argument is a warm (hot) start, with `C ` a cold start."""

    service: bytes = b"P_PROGRAM"
    argument: bytes = b""
    function: Function = field(default=Function.PLC_CONTROL, init=False)

    @property
    def cold(self) -> bool:
        return self.argument.strip() == b"C"


@dataclass(frozen=True, slots=True)
class SzlRequest:
    szl_id: int
    index: int = 0
    sequence: int = 0


RequestPdu: TypeAlias = SetupRequest | ReadRequest | WriteRequest | PlcStopRequest | PlcControlRequest | SzlRequest

# ------------------------------------------------------------------------------------ responses


@dataclass(frozen=True, slots=True)
class SetupResponse:
    pdu_size: int
    max_amq_calling: int = 1
    max_amq_called: int = 1
    function: Function = field(default=Function.SETUP_COMMUNICATION, init=False)


@dataclass(frozen=True, slots=True)
class ReadResponse:
    items: tuple[ItemData, ...]
    function: Function = field(default=Function.READ_VAR, init=False)


@dataclass(frozen=True, slots=True)
class WriteResponse:
    return_codes: tuple[int, ...]
    function: Function = field(default=Function.WRITE_VAR, init=False)


@dataclass(frozen=True, slots=True)
class PlcStopResponse:
    function: Function = field(default=Function.PLC_STOP, init=False)


@dataclass(frozen=True, slots=True)
class PlcControlResponse:
    function: Function = field(default=Function.PLC_CONTROL, init=False)


@dataclass(frozen=True, slots=True)
class SzlResponse:
    """An SZL answer: `data` is the list as the CPU sends it (LENTHDR, N_DR, then the records).

    A refusal has `error` set (e.g. 0xD401) and `return_code` other than 0xFF, and no data.
    """

    szl_id: int
    index: int
    data: bytes = b""
    return_code: int = ReturnCode.SUCCESS
    error: int = 0
    sequence: int = 0
    more: bool = False

    @property
    def ok(self) -> bool:
        return self.error == 0 and self.return_code == ReturnCode.SUCCESS

    def records(self) -> list[bytes]:
        """The list's records, cut by its LENTHDR and N_DR."""
        if len(self.data) < 4:
            return []
        length, count = struct.unpack_from(">HH", self.data)
        body = self.data[4:]
        if length == 0:
            return []
        return [body[i * length : (i + 1) * length] for i in range(min(count, len(body) // length))]


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """A job refused as a whole: an acknowledgement whose header carries an error class and code."""

    function: int | None
    error_class: int
    error_code: int
    rosctr: Rosctr = Rosctr.ACK_DATA

    @property
    def error(self) -> int:
        return self.error_class << 8 | self.error_code

    @property
    def message(self) -> str:
        return error_text(self.error)


ResponsePdu: TypeAlias = (
    SetupResponse | ReadResponse | WriteResponse | PlcStopResponse | PlcControlResponse | SzlResponse | ErrorResponse
)

# ------------------------------------------------------------------------------------- encoding

_HEADER = struct.Struct(">BBHHHH")
_ACK = struct.Struct(">BBHHHHBB")
_ITEM = struct.Struct(">BBBBHHB")  # 0x12, 0x0A, 0x10, transport, count, db, area; then 3 address bytes
_DATA_HEAD = struct.Struct(">BBH")
_SETUP = struct.Struct(">BBHHH")
_USERDATA_REQUEST = bytes.fromhex("000112041144")  # head, length 4, method request, type/group: request, CPU
_USERDATA_RESPONSE_HEAD = bytes.fromhex("00011208128401")
SZL_SUBFUNCTION = 0x01
_PI_TAIL = bytes.fromhex("000000000000fd")


def _u16(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise S7PduError(f"{name}: {value!r} is not 0..65535", field=name)
    return value


def _check_spec(spec: VarSpec, index: int) -> None:
    name = f"items[{index}]"
    if not isinstance(spec.area, Area):
        raise S7PduError(f"{name}.area: {spec.area!r} is not an S7 area", field=f"{name}.area")
    _u16(spec.count, f"{name}.count")
    _u16(spec.db, f"{name}.db")
    if not 0 <= spec.start <= 0xFFFF:
        raise S7PduError(f"{name}.start: {spec.start!r} is not a byte offset 0..65535", field=f"{name}.start")
    if not 0 <= spec.bit <= 7:
        raise S7PduError(f"{name}.bit: {spec.bit!r} is not 0..7", field=f"{name}.bit")
    if spec.transport is TransportSize.BIT and spec.count != 1:
        raise S7PduError(f"{name}.count: a BIT item reads one bit, not {spec.count}", field=f"{name}.count")


def encode_spec(spec: VarSpec) -> bytes:
    address = spec.start * 8 + spec.bit
    return _ITEM.pack(0x12, 0x0A, 0x10, spec.transport, spec.count, spec.db, spec.area) + address.to_bytes(3, "big")


def _length_field(item: ItemData) -> int:
    size = len(item.data)
    if item.transport in _LENGTH_IN_BYTES:
        return size
    if item.transport is DataTransport.BIT:
        return size  # one bit per byte sent
    return size * 8


def _encode_data(items: Sequence[ItemData], *, fill: bool) -> bytes:
    out = bytearray()
    last = len(items) - 1
    for index, item in enumerate(items):
        out += _DATA_HEAD.pack(item.return_code, item.transport, _length_field(item)) + item.data
        if fill and index < last and len(item.data) % 2:
            out.append(0)  # items after the first start on an even offset
    return bytes(out)


def _pdu(rosctr: Rosctr, reference: int, params: bytes, data: bytes, error: tuple[int, int] | None = None) -> bytes:
    _u16(reference, "reference")
    if error is None:
        return _HEADER.pack(PROTOCOL_ID, rosctr, 0, reference, len(params), len(data)) + params + data
    return _ACK.pack(PROTOCOL_ID, rosctr, 0, reference, len(params), len(data), *error) + params + data


def encode_request(reference: int, request: RequestPdu) -> bytes:
    """The S7 PDU of a request with PDU reference `reference`."""
    if isinstance(request, SzlRequest):
        params = _USERDATA_REQUEST + bytes((SZL_SUBFUNCTION, request.sequence & 0xFF))
        data = _DATA_HEAD.pack(0xFF, DataTransport.OCTET, 4) + struct.pack(
            ">HH", _u16(request.szl_id, "szl_id"), _u16(request.index, "index")
        )
        return _pdu(Rosctr.USERDATA, reference, params, data)
    if isinstance(request, SetupRequest):
        params = _SETUP.pack(
            Function.SETUP_COMMUNICATION,
            0,
            _u16(request.max_amq_calling, "max_amq_calling"),
            _u16(request.max_amq_called, "max_amq_called"),
            _u16(request.pdu_size, "pdu_size"),
        )
        return _pdu(Rosctr.JOB, reference, params, b"")
    if isinstance(request, ReadRequest):
        if not 1 <= len(request.items) <= 255:
            raise S7PduError(f"items: {len(request.items)} items; a read takes 1..255", field="items")
        for index, spec in enumerate(request.items):
            _check_spec(spec, index)
        params = bytes((Function.READ_VAR, len(request.items))) + b"".join(encode_spec(s) for s in request.items)
        return _pdu(Rosctr.JOB, reference, params, b"")
    if isinstance(request, WriteRequest):
        if not 1 <= len(request.items) <= 255 or len(request.data) != len(request.items):
            raise S7PduError(
                f"items: {len(request.items)} items with {len(request.data)} data; a write takes 1..255 of each",
                field="items",
            )
        for index, spec in enumerate(request.items):
            _check_spec(spec, index)
        params = bytes((Function.WRITE_VAR, len(request.items))) + b"".join(encode_spec(s) for s in request.items)
        return _pdu(Rosctr.JOB, reference, params, _encode_data(request.data, fill=True))
    if isinstance(request, PlcStopRequest):
        params = bytes((Function.PLC_STOP,)) + bytes(5) + bytes((len(request.service),)) + request.service
        return _pdu(Rosctr.JOB, reference, params, b"")
    if isinstance(request, PlcControlRequest):
        params = (
            bytes((Function.PLC_CONTROL,))
            + _PI_TAIL
            + struct.pack(">H", len(request.argument))
            + request.argument
            + bytes((len(request.service),))
            + request.service
        )
        return _pdu(Rosctr.JOB, reference, params, b"")
    raise S7PduError(f"request: {request!r} is not an S7 request", field="request")


def encode_response(reference: int, response: ResponsePdu) -> bytes:
    """The S7 PDU of a response to the request with PDU reference `reference`."""
    if isinstance(response, SzlResponse):
        ok = response.ok
        params = (
            _USERDATA_RESPONSE_HEAD
            + bytes((response.sequence & 0xFF, 0, 0x01 if response.more else 0x00))
            + struct.pack(">H", response.error)
        )
        if ok:
            body = struct.pack(">HH", response.szl_id, response.index) + response.data
            if len(body) > SZL_MAX_DATA:
                raise S7PduError(f"data: {len(body)} bytes do not fit one SZL answer", field="data")
            data = _DATA_HEAD.pack(ReturnCode.SUCCESS, DataTransport.OCTET, len(body)) + body
        else:
            data = _DATA_HEAD.pack(response.return_code, DataTransport.NULL, 0)
        return _pdu(Rosctr.USERDATA, reference, params, data)
    if isinstance(response, ErrorResponse):
        params = b"" if response.function is None or response.rosctr is Rosctr.ACK else bytes((response.function,))
        return _pdu(response.rosctr, reference, params, b"", (response.error_class, response.error_code))
    if isinstance(response, SetupResponse):
        params = _SETUP.pack(
            Function.SETUP_COMMUNICATION,
            0,
            _u16(response.max_amq_calling, "max_amq_calling"),
            _u16(response.max_amq_called, "max_amq_called"),
            _u16(response.pdu_size, "pdu_size"),
        )
        return _pdu(Rosctr.ACK_DATA, reference, params, b"", (0, 0))
    if isinstance(response, ReadResponse):
        params = bytes((Function.READ_VAR, len(response.items)))
        return _pdu(Rosctr.ACK_DATA, reference, params, _encode_data(response.items, fill=True), (0, 0))
    if isinstance(response, WriteResponse):
        params = bytes((Function.WRITE_VAR, len(response.return_codes)))
        return _pdu(Rosctr.ACK_DATA, reference, params, bytes(response.return_codes), (0, 0))
    if isinstance(response, (PlcStopResponse, PlcControlResponse)):
        return _pdu(Rosctr.ACK_DATA, reference, bytes((response.function,)), b"", (0, 0))
    raise S7PduError(f"response: {response!r} is not an S7 response", field="response")


# ------------------------------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True)
class Header:
    rosctr: int
    reference: int
    params: bytes
    data: bytes
    error_class: int = 0
    error_code: int = 0


def decode_header(pdu: bytes) -> Header:
    """Cut a PDU into header fields, parameters and data; MalformedPdu says what does not fit."""
    if len(pdu) < HEADER:
        raise MalformedPdu(f"{len(pdu)} bytes are shorter than an S7 header ({HEADER})")
    protocol, rosctr, _reserved, reference, param_length, data_length = _HEADER.unpack_from(pdu)
    if protocol != PROTOCOL_ID:
        raise MalformedPdu(f"protocol id 0x{protocol:02X} is not S7comm (0x32)")
    if rosctr not in (Rosctr.JOB, Rosctr.ACK, Rosctr.ACK_DATA, Rosctr.USERDATA):
        raise MalformedPdu(f"PDU type 0x{rosctr:02X} is not job, ack, ack-data or user data", reference=reference)
    start = ACK_HEADER if rosctr in (Rosctr.ACK, Rosctr.ACK_DATA) else HEADER
    if len(pdu) < start:
        raise MalformedPdu(f"{len(pdu)} bytes are shorter than an acknowledgement header", reference=reference)
    if start + param_length + data_length != len(pdu):
        raise MalformedPdu(
            f"the header announces {param_length} parameter and {data_length} data bytes, "
            f"but {len(pdu) - start} follow it",
            reference=reference,
            function=pdu[start] if len(pdu) > start else None,
        )
    params = pdu[start : start + param_length]
    data = pdu[start + param_length :]
    if start == ACK_HEADER:
        return Header(rosctr, reference, params, data, pdu[10], pdu[11])
    return Header(rosctr, reference, params, data)


def _decode_specs(params: bytes, reference: int, function: int) -> tuple[VarSpec, ...]:
    if len(params) < 2:
        raise MalformedPdu("the parameters hold no item count", reference=reference, function=function)
    count = params[1]
    if count == 0 or len(params) != 2 + count * ITEM_SPEC:
        raise MalformedPdu(
            f"{count} items need {2 + count * ITEM_SPEC} parameter bytes, not {len(params)}",
            reference=reference,
            function=function,
        )
    specs = []
    for index in range(count):
        at = 2 + index * ITEM_SPEC
        head, length, syntax, transport, n, db, area = _ITEM.unpack_from(params, at)
        if head != 0x12 or length != 0x0A or syntax != 0x10:
            raise MalformedPdu(
                f"item {index}: not an S7ANY address (0x12 0x0A 0x10, got {params[at : at + 3].hex(' ')})",
                reference=reference,
                function=function,
            )
        try:
            spec_transport = TransportSize(transport)
            spec_area = Area(area)
        except ValueError:
            raise MalformedPdu(
                f"item {index}: transport size 0x{transport:02X} or area 0x{area:02X} is unknown",
                reference=reference,
                function=function,
            ) from None
        address = int.from_bytes(params[at + 9 : at + 12], "big")
        specs.append(VarSpec(spec_area, address >> 3, n, spec_transport, db, address & 7))
    return tuple(specs)


def _decode_data(data: bytes, count: int, reference: int, function: int, *, request: bool) -> tuple[ItemData, ...]:
    items = []
    at = 0
    for index in range(count):
        if at + 4 > len(data):
            raise MalformedPdu(f"item {index}: the data ends before its header", reference=reference, function=function)
        code, transport, length = _DATA_HEAD.unpack_from(data, at)
        at += 4
        try:
            kind = DataTransport(transport)
        except ValueError:
            raise MalformedPdu(
                f"item {index}: data transport size 0x{transport:02X} is unknown",
                reference=reference,
                function=function,
            ) from None
        size = length if kind in _LENGTH_IN_BYTES or kind is DataTransport.BIT else (length + 7) // 8
        if not request and code != ReturnCode.SUCCESS:
            size = 0  # a failed item carries no data, whatever its length says
        if at + size > len(data):
            raise MalformedPdu(
                f"item {index}: {size} data bytes announced, {len(data) - at} left",
                reference=reference,
                function=function,
            )
        items.append(ItemData(code, kind, bytes(data[at : at + size])))
        at += size
        if index < count - 1 and size % 2:
            at += 1  # the fill byte
    if at != len(data) and not (at + 1 == len(data) and data[-1] == 0):
        raise MalformedPdu(f"{len(data) - at} bytes follow the last item", reference=reference, function=function)
    return tuple(items)


def decode_request(pdu: bytes) -> tuple[int, RequestPdu]:
    """The PDU reference and request of a job or user-data PDU."""
    header = decode_header(pdu)
    reference, params = header.reference, header.params
    if header.rosctr == Rosctr.USERDATA:
        return reference, _decode_szl_request(header)
    if header.rosctr != Rosctr.JOB:
        raise MalformedPdu(f"PDU type {Rosctr(header.rosctr).name} is not a request", reference=reference)
    if not params:
        raise MalformedPdu("a job without parameters", reference=reference)
    function = params[0]
    if function == Function.SETUP_COMMUNICATION:
        if len(params) != _SETUP.size:
            raise MalformedPdu(
                f"setup parameters are {len(params)} bytes, not 8", reference=reference, function=function
            )
        _f, _r, calling, called, size = _SETUP.unpack(params)
        return reference, SetupRequest(size, calling, called)
    if function == Function.READ_VAR:
        return reference, ReadRequest(_decode_specs(params, reference, function))
    if function == Function.WRITE_VAR:
        specs = _decode_specs(params, reference, function)
        return reference, WriteRequest(specs, _decode_data(header.data, len(specs), reference, function, request=True))
    if function == Function.PLC_STOP:
        if len(params) < 7 or len(params) != 7 + params[6]:
            raise MalformedPdu("PLC stop: the service name does not fit", reference=reference, function=function)
        return reference, PlcStopRequest(bytes(params[7:]))
    if function == Function.PLC_CONTROL:
        if len(params) < 11:
            raise MalformedPdu("PLC control: parameters too short", reference=reference, function=function)
        argument_length = struct.unpack_from(">H", params, 8)[0]
        at = 10 + argument_length
        if at >= len(params) or len(params) != at + 1 + params[at]:
            raise MalformedPdu("PLC control: the service name does not fit", reference=reference, function=function)
        return reference, PlcControlRequest(bytes(params[at + 1 :]), bytes(params[10:at]))
    raise MalformedPdu(f"function 0x{function:02X} is not supported", reference=reference, function=function)


def _decode_szl_request(header: Header) -> SzlRequest:
    params, data, reference = header.params, header.data, header.reference
    if len(params) < 8 or params[:3] != b"\x00\x01\x12" or (params[5] & 0x0F) != 0x04 or params[6] != SZL_SUBFUNCTION:
        raise MalformedPdu(f"user data {params.hex(' ')} is not an SZL read", reference=reference, function=None)
    if len(data) < 8 or data[1] != DataTransport.OCTET:
        raise MalformedPdu("SZL read: the data holds no SZL id and index", reference=reference)
    szl_id, index = struct.unpack_from(">HH", data, 4)
    return SzlRequest(szl_id, index, params[7])


def decode_response(pdu: bytes, request: RequestPdu | None = None) -> tuple[int, ResponsePdu]:
    """The PDU reference and response of an acknowledgement or user-data PDU.

    `request` (what was asked) is needed to read a write answer's item count against, and is checked
    by `response_mismatch`; without it the answer is decoded as it stands.
    """
    header = decode_header(pdu)
    reference, params, data = header.reference, header.params, header.data
    if header.rosctr == Rosctr.USERDATA:
        return reference, _decode_szl_response(header)
    if header.rosctr not in (Rosctr.ACK, Rosctr.ACK_DATA):
        raise MalformedPdu(f"PDU type {Rosctr(header.rosctr).name} is not a response", reference=reference)
    function = (
        params[0]
        if params
        else (request.function if request is not None and not isinstance(request, SzlRequest) else None)
    )
    if header.error_class or header.error_code:
        return reference, ErrorResponse(function, header.error_class, header.error_code, Rosctr(header.rosctr))
    if not params:
        raise MalformedPdu("an acknowledgement without parameters or error", reference=reference)
    if function == Function.SETUP_COMMUNICATION:
        if len(params) != _SETUP.size:
            raise MalformedPdu(
                f"setup parameters are {len(params)} bytes, not 8", reference=reference, function=function
            )
        _f, _r, calling, called, size = _SETUP.unpack(params)
        return reference, SetupResponse(size, calling, called)
    if function == Function.READ_VAR:
        if len(params) != 2:
            raise MalformedPdu("read answer parameters are not 2 bytes", reference=reference, function=function)
        return reference, ReadResponse(_decode_data(data, params[1], reference, function, request=False))
    if function == Function.WRITE_VAR:
        if len(params) != 2 or len(data) != params[1]:
            raise MalformedPdu(
                f"write answer: {params[1] if len(params) > 1 else '?'} items, {len(data)} return codes",
                reference=reference,
                function=function,
            )
        return reference, WriteResponse(tuple(data))
    if function == Function.PLC_STOP:
        return reference, PlcStopResponse()
    if function == Function.PLC_CONTROL:
        return reference, PlcControlResponse()
    raise MalformedPdu(f"function 0x{function:02X} is not supported", reference=reference, function=function)


def _decode_szl_response(header: Header) -> SzlResponse:
    params, data, reference = header.params, header.data, header.reference
    if len(params) < 12 or params[:3] != b"\x00\x01\x12" or params[6] != SZL_SUBFUNCTION:
        raise MalformedPdu(f"user data {params.hex(' ')} is not an SZL answer", reference=reference)
    sequence, more = params[7], params[9] != 0
    error = struct.unpack_from(">H", params, 10)[0]
    if len(data) < 4:
        raise MalformedPdu("SZL answer: no data header", reference=reference)
    code, _transport, length = _DATA_HEAD.unpack_from(data)
    if error or code != ReturnCode.SUCCESS:
        return SzlResponse(0, 0, b"", code, error, sequence, more)
    if length < 4 or len(data) < 4 + length:
        raise MalformedPdu(f"SZL answer: {length} bytes announced, {len(data) - 4} present", reference=reference)
    szl_id, index = struct.unpack_from(">HH", data, 4)
    return SzlResponse(szl_id, index, bytes(data[8 : 4 + length]), code, 0, sequence, more)


def response_mismatch(request: RequestPdu, response: ResponsePdu) -> str | None:
    """Why `response` cannot answer `request`, or None."""
    if isinstance(response, ErrorResponse):
        expected = None if isinstance(request, SzlRequest) else request.function
        if response.function is not None and expected is not None and response.function != expected:
            return f"an error answer to function 0x{response.function:02X}, asked 0x{expected:02X}"
        return None
    if isinstance(request, SzlRequest):
        if not isinstance(response, SzlResponse):
            return f"a {type(response).__name__} cannot answer an SZL read"
        if response.ok and (response.szl_id, response.index) != (request.szl_id, request.index):
            return (
                f"SZL 0x{response.szl_id:04X}/{response.index} answered, 0x{request.szl_id:04X}/{request.index} asked"
            )
        return None
    if getattr(response, "function", None) != request.function:
        return f"a {type(response).__name__} cannot answer {type(request).__name__}"
    if isinstance(request, ReadRequest) and isinstance(response, ReadResponse):
        if len(response.items) != len(request.items):
            return f"{len(response.items)} items answered, {len(request.items)} asked"
        for index, (spec, item) in enumerate(zip(request.items, response.items, strict=False)):
            if item.ok and len(item.data) != spec.size:
                return f"item {index}: {len(item.data)} bytes answered, {spec.size} asked"
    if (
        isinstance(request, WriteRequest)
        and isinstance(response, WriteResponse)
        and len(response.return_codes) != len(request.items)
    ):
        return f"{len(response.return_codes)} return codes answered, {len(request.items)} items written"
    return None


# ---------------------------------------------------------------------------------------- sizes


def read_request_size(items: int) -> int:
    """Bytes of a read request PDU of `items` items."""
    return HEADER + 2 + ITEM_SPEC * items


def read_response_size(sizes: Sequence[int]) -> int:
    """Bytes of a read answer PDU whose items carry `sizes` bytes each (fill bytes included)."""
    total = ACK_HEADER + 2
    last = len(sizes) - 1
    for index, size in enumerate(sizes):
        total += 4 + size + (1 if index < last and size % 2 else 0)
    return total


def write_request_size(sizes: Sequence[int]) -> int:
    """Bytes of a write request PDU whose items carry `sizes` bytes each."""
    return read_response_size(sizes) - ACK_HEADER + HEADER + ITEM_SPEC * len(sizes)


def check_size(pdu: bytes, limit: int) -> None:
    if len(pdu) > limit:
        raise EncodeError(f"the request is {len(pdu)} bytes, more than the negotiated PDU size of {limit}")


__all__ = [
    "ACK_HEADER",
    "ELEMENT_BYTES",
    "ERROR_TEXT",
    "HEADER",
    "ITEM_SPEC",
    "MAX_PDU",
    "MIN_PDU",
    "Area",
    "DataTransport",
    "ErrorClass",
    "ErrorResponse",
    "Function",
    "Header",
    "ItemData",
    "MalformedPdu",
    "PlcControlRequest",
    "PlcControlResponse",
    "PlcStopRequest",
    "PlcStopResponse",
    "ReadRequest",
    "ReadResponse",
    "RequestPdu",
    "ResponsePdu",
    "ReturnCode",
    "Rosctr",
    "S7PduError",
    "SetupRequest",
    "SetupResponse",
    "SzlRequest",
    "SzlResponse",
    "TransportSize",
    "VarSpec",
    "WriteRequest",
    "WriteResponse",
    "check_size",
    "decode_header",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "encode_spec",
    "error_text",
    "read_request_size",
    "read_response_size",
    "response_mismatch",
    "return_code_text",
    "write_request_size",
]
