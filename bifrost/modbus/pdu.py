"""Modbus PDUs: requests and responses as frozen dataclasses, encoded and decoded. No I/O.

A PDU is a function code and its data: no unit id, MBAP header or CRC (framing.py adds those).

- Building a PDU checks the protocol's limits and raises `LimitError`, which names the field and
  carries the exception code a server answers such a request with (2 for addresses, 3 for the rest).
- Decoding bytes raises `MalformedFrame` (a `ProtocolError`) saying what is wrong, never IndexError or
  struct.error; when the function code is known it is on the error, so a server can answer it.
- A request with a function code this module does not implement decodes to `UnsupportedRequest`,
  which a server answers with exception 1; a reply to one decodes to `UnsupportedResponse`.
- Bit reads (FC1, FC2) carry whole bytes on the wire: `decode_response` needs the request to know how
  many of the bits are real, and without it returns every bit of every byte.

Limits follow the Modbus Application Protocol Specification V1.1b3.
"""

from __future__ import annotations

import enum
import itertools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeAlias, TypeVar

from bifrost.errors import ConfigError, ProtocolError

MAX_READ_REGISTERS = 125
MAX_WRITE_REGISTERS = 123
MAX_READ_BITS = 2000
MAX_WRITE_BITS = 1968
MAX_RW_READ_REGISTERS = 125  # FC23, read half
MAX_RW_WRITE_REGISTERS = 121  # FC23, write half
ADDRESS_SPACE = 65536
MAX_PDU = 253  # a 256-byte RTU frame less unit and CRC; MBAP keeps the same limit

MEI_READ_DEVICE_IDENTIFICATION = 0x0E


class FunctionCode(enum.IntEnum):
    """Public function codes. Those without a dataclass here decode to UnsupportedRequest/Response."""

    READ_COILS = 1
    READ_DISCRETE_INPUTS = 2
    READ_HOLDING_REGISTERS = 3
    READ_INPUT_REGISTERS = 4
    WRITE_SINGLE_COIL = 5
    WRITE_SINGLE_REGISTER = 6
    READ_EXCEPTION_STATUS = 7
    DIAGNOSTICS = 8
    GET_COMM_EVENT_COUNTER = 11
    GET_COMM_EVENT_LOG = 12
    WRITE_MULTIPLE_COILS = 15
    WRITE_MULTIPLE_REGISTERS = 16
    REPORT_SERVER_ID = 17
    READ_FILE_RECORD = 20
    WRITE_FILE_RECORD = 21
    MASK_WRITE_REGISTER = 22
    READ_WRITE_MULTIPLE_REGISTERS = 23
    READ_FIFO_QUEUE = 24
    ENCAPSULATED_INTERFACE = 43


class ExceptionCode(enum.IntEnum):
    """The standard exception codes (spec section 7)."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04
    ACKNOWLEDGE = 0x05
    SERVER_DEVICE_BUSY = 0x06
    MEMORY_PARITY_ERROR = 0x08
    GATEWAY_PATH_UNAVAILABLE = 0x0A
    GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND = 0x0B


class DeviceIdCode(enum.IntEnum):
    """Read Device ID codes of FC43/14: which objects a request asks for."""

    BASIC = 1
    REGULAR = 2
    EXTENDED = 3
    SPECIFIC = 4


class DeviceObject(enum.IntEnum):
    """Standard object ids of FC43/14; 0x80..0xFF are the vendor's (extended)."""

    VENDOR_NAME = 0x00
    PRODUCT_CODE = 0x01
    MAJOR_MINOR_REVISION = 0x02
    VENDOR_URL = 0x03
    PRODUCT_NAME = 0x04
    MODEL_NAME = 0x05
    USER_APPLICATION_NAME = 0x06


def function_name(function: int) -> str:
    """`read holding registers (3)` for a known code, `function 99` otherwise."""
    try:
        return f"{FunctionCode(function).name.lower().replace('_', ' ')} ({function})"
    except ValueError:
        return f"function {function}"


# --------------------------------------------------------------------------------------------- errors


class LimitError(ConfigError):
    """A PDU field is outside what the protocol allows.

    `field` names it; `exception_code` is what a server answers a request that breaks it with.
    """

    def __init__(
        self, message: str, *, field: str, exception_code: ExceptionCode = ExceptionCode.ILLEGAL_DATA_VALUE
    ) -> None:
        super().__init__(message)
        self.field = field
        self.exception_code = exception_code


class MalformedFrame(ProtocolError):
    """Bytes that are not a valid PDU or frame.

    `function` is the function code when it could be read (a server answers the request with
    `exception_code`); None when not even that could be read, and then there is nothing to answer.
    """

    def __init__(
        self,
        message: str,
        *,
        function: int | None = None,
        exception_code: ExceptionCode = ExceptionCode.ILLEGAL_DATA_VALUE,
    ) -> None:
        super().__init__(message)
        self.function = function
        self.exception_code = exception_code


# ------------------------------------------------------------------------------------------ checking


def _check_int(owner: object, field: str, value: int, low: int, high: int, what: str) -> None:
    if not isinstance(value, int) or not low <= value <= high:
        raise LimitError(f"{type(owner).__name__}.{field}: {value!r} is not {what} ({low}..{high})", field=field)


def _check_address(owner: object, field: str, address: int) -> None:
    if not isinstance(address, int) or not 0 <= address < ADDRESS_SPACE:
        raise LimitError(
            f"{type(owner).__name__}.{field}: {address!r} is not an address (0..65535)",
            field=field,
            exception_code=ExceptionCode.ILLEGAL_DATA_ADDRESS,
        )


def _check_quantity(owner: object, field: str, count: int, maximum: int, what: str) -> None:
    if not isinstance(count, int) or not 1 <= count <= maximum:
        raise LimitError(
            f"{type(owner).__name__}.{field}: {count!r} {what} is out of range; one request takes 1..{maximum}",
            field=field,
        )


def _check_span(owner: object, field: str, address: int, count: int, what: str) -> None:
    # The spec answers "address + quantity past the end" with exception 2, not 3.
    if address + count > ADDRESS_SPACE:
        raise LimitError(
            f"{type(owner).__name__}.{field}: {count} {what} from address {address} run past address 65535",
            field=field,
            exception_code=ExceptionCode.ILLEGAL_DATA_ADDRESS,
        )


def _check_words(owner: object, field: str, values: tuple[int, ...]) -> None:
    for index, value in enumerate(values):
        if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise LimitError(
                f"{type(owner).__name__}.{field}[{index}]: {value!r} is not a 16-bit register value (0..65535)",
                field=f"{field}[{index}]",
            )


def _as_tuple(owner: object, field: str, values: Sequence[object]) -> None:
    # Lists are accepted for convenience and frozen here, so every PDU is hashable and immutable.
    if type(values) is not tuple:
        object.__setattr__(owner, field, tuple(values))


# --------------------------------------------------------------------------------------- wire helpers

_HH = struct.Struct(">HH")
_BHH = struct.Struct(">BHH")
_BHHH = struct.Struct(">BHHH")
_BHHB = struct.Struct(">BHHB")
_BHHHHB = struct.Struct(">BHHHHB")
_COIL_ON = 0xFF00

# Each byte's eight bits, least significant first (the wire order of coils).
_BYTE_BITS: tuple[tuple[bool, ...], ...] = tuple(tuple(bool(b >> i & 1) for i in range(8)) for b in range(256))


def _pack_bits(values: tuple[bool, ...]) -> bytes:
    # Bit i of a little-endian integer is bit i % 8 of byte i // 8: exactly the coil layout.
    number = 0
    for index, value in enumerate(values):
        if value:
            number |= 1 << index
    return number.to_bytes((len(values) + 7) // 8, "little")


def _unpack_bits(data: bytes) -> tuple[bool, ...]:
    return tuple(itertools.chain.from_iterable(_BYTE_BITS[b] for b in data))


def _pack_words(values: tuple[int, ...]) -> bytes:
    return struct.pack(f">{len(values)}H", *values)


def _unpack_words(data: bytes) -> tuple[int, ...]:
    return struct.unpack(f">{len(data) // 2}H", data)


def _expect_length(pdu: bytes, length: int, what: str) -> None:
    if len(pdu) != length:
        raise MalformedFrame(f"{what}: a PDU of {length} bytes was expected, got {len(pdu)}")


def _byte_count(pdu: bytes, offset: int, what: str) -> int:
    """The byte-count field at `offset`, checked against the bytes that follow it."""
    if len(pdu) <= offset:
        raise MalformedFrame(f"{what}: PDU of {len(pdu)} bytes ends before its byte count")
    count = pdu[offset]
    if len(pdu) != offset + 1 + count:
        raise MalformedFrame(f"{what}: byte count says {count} bytes follow, but {len(pdu) - offset - 1} do")
    return count


def _coil_value(word: int, what: str) -> bool:
    if word == _COIL_ON:
        return True
    if word == 0:
        return False
    raise MalformedFrame(f"{what}: coil value 0x{word:04X} is neither 0xFF00 (on) nor 0x0000 (off)")


# ------------------------------------------------------------------------------------------ requests


_ReadT = TypeVar("_ReadT", bound="_ReadRequest")
_BitsT = TypeVar("_BitsT", bound="_BitsResponse")
_WordsT = TypeVar("_WordsT", bound="_RegistersResponse")
_WrittenT = TypeVar("_WrittenT", bound="_WriteMultipleResponse")


@dataclass(frozen=True, slots=True)
class _ReadRequest:
    address: int
    count: int

    function: ClassVar[int]
    _maximum: ClassVar[int]
    _unit: ClassVar[str]

    def __post_init__(self) -> None:
        _check_address(self, "address", self.address)
        _check_quantity(self, "count", self.count, self._maximum, self._unit)
        _check_span(self, "count", self.address, self.count, self._unit)

    def _encode(self) -> bytes:
        return _BHH.pack(self.function, self.address, self.count)

    @classmethod
    def _decode(cls: type[_ReadT], pdu: bytes) -> _ReadT:
        _expect_length(pdu, 5, cls.__name__)
        address, count = _HH.unpack_from(pdu, 1)
        return cls(address, count)


@dataclass(frozen=True, slots=True)
class ReadCoilsRequest(_ReadRequest):
    """FC1: read `count` coils from `address`."""

    function: ClassVar[int] = FunctionCode.READ_COILS
    _maximum: ClassVar[int] = MAX_READ_BITS
    _unit: ClassVar[str] = "coils"


@dataclass(frozen=True, slots=True)
class ReadDiscreteInputsRequest(_ReadRequest):
    """FC2: read `count` discrete inputs from `address`."""

    function: ClassVar[int] = FunctionCode.READ_DISCRETE_INPUTS
    _maximum: ClassVar[int] = MAX_READ_BITS
    _unit: ClassVar[str] = "discrete inputs"


@dataclass(frozen=True, slots=True)
class ReadHoldingRegistersRequest(_ReadRequest):
    """FC3: read `count` holding registers from `address`."""

    function: ClassVar[int] = FunctionCode.READ_HOLDING_REGISTERS
    _maximum: ClassVar[int] = MAX_READ_REGISTERS
    _unit: ClassVar[str] = "registers"


@dataclass(frozen=True, slots=True)
class ReadInputRegistersRequest(_ReadRequest):
    """FC4: read `count` input registers from `address`."""

    function: ClassVar[int] = FunctionCode.READ_INPUT_REGISTERS
    _maximum: ClassVar[int] = MAX_READ_REGISTERS
    _unit: ClassVar[str] = "registers"


@dataclass(frozen=True, slots=True)
class _SingleCoil:
    address: int
    value: bool

    function: ClassVar[int] = FunctionCode.WRITE_SINGLE_COIL

    def __post_init__(self) -> None:
        _check_address(self, "address", self.address)

    def _encode(self) -> bytes:
        return _BHH.pack(self.function, self.address, _COIL_ON if self.value else 0)

    @classmethod
    def _decode_fields(cls, pdu: bytes) -> tuple[int, bool]:
        _expect_length(pdu, 5, cls.__name__)
        address, word = _HH.unpack_from(pdu, 1)
        return address, _coil_value(word, cls.__name__)


@dataclass(frozen=True, slots=True)
class WriteSingleCoilRequest(_SingleCoil):
    """FC5: set the coil at `address` on or off."""

    @classmethod
    def _decode(cls, pdu: bytes) -> WriteSingleCoilRequest:
        return cls(*cls._decode_fields(pdu))


@dataclass(frozen=True, slots=True)
class _SingleRegister:
    address: int
    value: int

    function: ClassVar[int] = FunctionCode.WRITE_SINGLE_REGISTER

    def __post_init__(self) -> None:
        _check_address(self, "address", self.address)
        _check_int(self, "value", self.value, 0, 0xFFFF, "a 16-bit register value")

    def _encode(self) -> bytes:
        return _BHH.pack(self.function, self.address, self.value)

    @classmethod
    def _decode_fields(cls, pdu: bytes) -> tuple[int, int]:
        _expect_length(pdu, 5, cls.__name__)
        address, value = _HH.unpack_from(pdu, 1)
        return address, value


@dataclass(frozen=True, slots=True)
class WriteSingleRegisterRequest(_SingleRegister):
    """FC6: write `value` to the holding register at `address`."""

    @classmethod
    def _decode(cls, pdu: bytes) -> WriteSingleRegisterRequest:
        return cls(*cls._decode_fields(pdu))


@dataclass(frozen=True, slots=True)
class WriteMultipleCoilsRequest:
    """FC15: write `values` to consecutive coils from `address`."""

    address: int
    values: tuple[bool, ...]

    function: ClassVar[int] = FunctionCode.WRITE_MULTIPLE_COILS

    def __post_init__(self) -> None:
        _as_tuple(self, "values", self.values)
        _check_address(self, "address", self.address)
        _check_quantity(self, "values", len(self.values), MAX_WRITE_BITS, "coils")
        _check_span(self, "values", self.address, len(self.values), "coils")

    def _encode(self) -> bytes:
        data = _pack_bits(self.values)
        return _BHHB.pack(self.function, self.address, len(self.values), len(data)) + data

    @classmethod
    def _decode(cls, pdu: bytes) -> WriteMultipleCoilsRequest:
        name = cls.__name__
        byte_count = _byte_count(pdu, 5, name)
        address, count = _HH.unpack_from(pdu, 1)
        if byte_count != (count + 7) // 8:
            raise MalformedFrame(f"{name}: {count} coils need {(count + 7) // 8} bytes, byte count says {byte_count}")
        return cls(address, _unpack_bits(pdu[6:])[:count])


@dataclass(frozen=True, slots=True)
class WriteMultipleRegistersRequest:
    """FC16: write `values` to consecutive holding registers from `address`."""

    address: int
    values: tuple[int, ...]

    function: ClassVar[int] = FunctionCode.WRITE_MULTIPLE_REGISTERS

    def __post_init__(self) -> None:
        _as_tuple(self, "values", self.values)
        _check_address(self, "address", self.address)
        _check_quantity(self, "values", len(self.values), MAX_WRITE_REGISTERS, "registers")
        _check_span(self, "values", self.address, len(self.values), "registers")
        _check_words(self, "values", self.values)

    def _encode(self) -> bytes:
        count = len(self.values)
        return _BHHB.pack(self.function, self.address, count, 2 * count) + _pack_words(self.values)

    @classmethod
    def _decode(cls, pdu: bytes) -> WriteMultipleRegistersRequest:
        name = cls.__name__
        byte_count = _byte_count(pdu, 5, name)
        address, count = _HH.unpack_from(pdu, 1)
        if byte_count != 2 * count:
            raise MalformedFrame(f"{name}: {count} registers need {2 * count} bytes, byte count says {byte_count}")
        return cls(address, _unpack_words(pdu[6:]))


@dataclass(frozen=True, slots=True)
class _MaskWrite:
    address: int
    and_mask: int
    or_mask: int

    function: ClassVar[int] = FunctionCode.MASK_WRITE_REGISTER

    def __post_init__(self) -> None:
        _check_address(self, "address", self.address)
        _check_int(self, "and_mask", self.and_mask, 0, 0xFFFF, "a 16-bit mask")
        _check_int(self, "or_mask", self.or_mask, 0, 0xFFFF, "a 16-bit mask")

    def _encode(self) -> bytes:
        return _BHHH.pack(self.function, self.address, self.and_mask, self.or_mask)

    @classmethod
    def _decode_fields(cls, pdu: bytes) -> tuple[int, int, int]:
        _expect_length(pdu, 7, cls.__name__)
        _, address, and_mask, or_mask = _BHHH.unpack(pdu)
        return address, and_mask, or_mask


@dataclass(frozen=True, slots=True)
class MaskWriteRegisterRequest(_MaskWrite):
    """FC22: register = (register AND and_mask) OR (or_mask AND NOT and_mask)."""

    def apply(self, current: int) -> int:
        """The register's new value, as the spec defines it."""
        return (current & self.and_mask) | (self.or_mask & ~self.and_mask & 0xFFFF)

    @classmethod
    def _decode(cls, pdu: bytes) -> MaskWriteRegisterRequest:
        return cls(*cls._decode_fields(pdu))


@dataclass(frozen=True, slots=True)
class ReadWriteMultipleRegistersRequest:
    """FC23: write `values` from `write_address`, then read `read_count` registers from `read_address`."""

    read_address: int
    read_count: int
    write_address: int
    values: tuple[int, ...]

    function: ClassVar[int] = FunctionCode.READ_WRITE_MULTIPLE_REGISTERS

    def __post_init__(self) -> None:
        _as_tuple(self, "values", self.values)
        _check_address(self, "read_address", self.read_address)
        _check_quantity(self, "read_count", self.read_count, MAX_RW_READ_REGISTERS, "registers to read")
        _check_span(self, "read_count", self.read_address, self.read_count, "registers")
        _check_address(self, "write_address", self.write_address)
        _check_quantity(self, "values", len(self.values), MAX_RW_WRITE_REGISTERS, "registers to write")
        _check_span(self, "values", self.write_address, len(self.values), "registers")
        _check_words(self, "values", self.values)

    def _encode(self) -> bytes:
        count = len(self.values)
        head = _BHHHHB.pack(self.function, self.read_address, self.read_count, self.write_address, count, 2 * count)
        return head + _pack_words(self.values)

    @classmethod
    def _decode(cls, pdu: bytes) -> ReadWriteMultipleRegistersRequest:
        name = cls.__name__
        byte_count = _byte_count(pdu, 9, name)
        read_address, read_count, write_address, write_count = struct.unpack_from(">HHHH", pdu, 1)
        if byte_count != 2 * write_count:
            raise MalformedFrame(
                f"{name}: {write_count} registers to write need {2 * write_count} bytes, byte count says {byte_count}"
            )
        return cls(read_address, read_count, write_address, _unpack_words(pdu[10:]))


@dataclass(frozen=True, slots=True)
class ReadDeviceIdentificationRequest:
    """FC43 / MEI 14: read identification objects, starting at `object_id`, as `read_code` selects."""

    read_code: int = DeviceIdCode.BASIC
    object_id: int = 0

    function: ClassVar[int] = FunctionCode.ENCAPSULATED_INTERFACE

    def __post_init__(self) -> None:
        _check_int(self, "read_code", self.read_code, 1, 4, "a read device id code")
        _check_int(self, "object_id", self.object_id, 0, 255, "an object id")

    def _encode(self) -> bytes:
        return bytes((self.function, MEI_READ_DEVICE_IDENTIFICATION, self.read_code, self.object_id))

    @classmethod
    def _decode(cls, pdu: bytes) -> ReadDeviceIdentificationRequest | UnsupportedRequest:
        if len(pdu) >= 2 and pdu[1] != MEI_READ_DEVICE_IDENTIFICATION:
            # Other MEI types (13 is CANopen) are other services: a server answers them with exception 1.
            return UnsupportedRequest(pdu[0], bytes(pdu[1:]))
        _expect_length(pdu, 4, cls.__name__)
        return cls(pdu[2], pdu[3])


@dataclass(frozen=True, slots=True)
class ReportServerIdRequest:
    """FC17: the device's id, run status and any more it says about itself (serial line function)."""

    function: ClassVar[int] = FunctionCode.REPORT_SERVER_ID

    def _encode(self) -> bytes:
        return bytes((self.function,))

    @classmethod
    def _decode(cls, pdu: bytes) -> ReportServerIdRequest:
        _expect_length(pdu, 1, cls.__name__)
        return cls()


@dataclass(frozen=True, slots=True)
class UnsupportedRequest:
    """A request whose function code this module does not implement, kept as raw bytes.

    A server answers it with `ExceptionResponse(request.function, ExceptionCode.ILLEGAL_FUNCTION)`;
    a client may send one to reach a vendor's function code.
    """

    function: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if type(self.data) is not bytes:
            object.__setattr__(self, "data", bytes(self.data))
        _check_int(self, "function", self.function, 1, 127, "a function code")
        _check_int(self, "data", len(self.data), 0, MAX_PDU - 1, "a PDU data length")

    def _encode(self) -> bytes:
        return bytes((self.function,)) + self.data


# ----------------------------------------------------------------------------------------- responses


@dataclass(frozen=True, slots=True)
class _BitsResponse:
    values: tuple[bool, ...]

    function: ClassVar[int]

    def __post_init__(self) -> None:
        _as_tuple(self, "values", self.values)
        _check_quantity(self, "values", len(self.values), MAX_READ_BITS, "bits")

    def _encode(self) -> bytes:
        data = _pack_bits(self.values)
        return bytes((self.function, len(data))) + data

    @classmethod
    def _decode(cls: type[_BitsT], pdu: bytes, request: RequestPdu | None) -> _BitsT:
        byte_count = _byte_count(pdu, 1, cls.__name__)
        bits = _unpack_bits(pdu[2:])
        # Only the request knows how many of the last byte's bits are padding.
        if (
            isinstance(request, (ReadCoilsRequest, ReadDiscreteInputsRequest))
            and request.function == cls.function
            and byte_count == (request.count + 7) // 8
        ):
            bits = bits[: request.count]
        return cls(bits)


@dataclass(frozen=True, slots=True)
class ReadCoilsResponse(_BitsResponse):
    """FC1 answer: the coils' states, first address first."""

    function: ClassVar[int] = FunctionCode.READ_COILS


@dataclass(frozen=True, slots=True)
class ReadDiscreteInputsResponse(_BitsResponse):
    """FC2 answer: the inputs' states, first address first."""

    function: ClassVar[int] = FunctionCode.READ_DISCRETE_INPUTS


@dataclass(frozen=True, slots=True)
class _RegistersResponse:
    values: tuple[int, ...]

    function: ClassVar[int]

    def __post_init__(self) -> None:
        _as_tuple(self, "values", self.values)
        _check_quantity(self, "values", len(self.values), MAX_READ_REGISTERS, "registers")
        _check_words(self, "values", self.values)

    def _encode(self) -> bytes:
        return bytes((self.function, 2 * len(self.values))) + _pack_words(self.values)

    @classmethod
    def _decode(cls: type[_WordsT], pdu: bytes, request: RequestPdu | None) -> _WordsT:
        byte_count = _byte_count(pdu, 1, cls.__name__)
        if byte_count % 2:
            raise MalformedFrame(f"{cls.__name__}: odd byte count {byte_count} for 16-bit registers")
        return cls(_unpack_words(pdu[2:]))


@dataclass(frozen=True, slots=True)
class ReadHoldingRegistersResponse(_RegistersResponse):
    """FC3 answer: the registers' values, first address first."""

    function: ClassVar[int] = FunctionCode.READ_HOLDING_REGISTERS


@dataclass(frozen=True, slots=True)
class ReadInputRegistersResponse(_RegistersResponse):
    """FC4 answer: the registers' values, first address first."""

    function: ClassVar[int] = FunctionCode.READ_INPUT_REGISTERS


@dataclass(frozen=True, slots=True)
class ReadWriteMultipleRegistersResponse(_RegistersResponse):
    """FC23 answer: the registers read (after the write)."""

    function: ClassVar[int] = FunctionCode.READ_WRITE_MULTIPLE_REGISTERS


@dataclass(frozen=True, slots=True)
class WriteSingleCoilResponse(_SingleCoil):
    """FC5 answer: an echo of the request."""

    @classmethod
    def _decode(cls, pdu: bytes, request: RequestPdu | None) -> WriteSingleCoilResponse:
        return cls(*cls._decode_fields(pdu))


@dataclass(frozen=True, slots=True)
class WriteSingleRegisterResponse(_SingleRegister):
    """FC6 answer: an echo of the request."""

    @classmethod
    def _decode(cls, pdu: bytes, request: RequestPdu | None) -> WriteSingleRegisterResponse:
        return cls(*cls._decode_fields(pdu))


@dataclass(frozen=True, slots=True)
class _WriteMultipleResponse:
    address: int
    count: int

    function: ClassVar[int]
    _maximum: ClassVar[int]
    _unit: ClassVar[str]

    def __post_init__(self) -> None:
        _check_address(self, "address", self.address)
        _check_quantity(self, "count", self.count, self._maximum, self._unit)
        _check_span(self, "count", self.address, self.count, self._unit)

    def _encode(self) -> bytes:
        return _BHH.pack(self.function, self.address, self.count)

    @classmethod
    def _decode(cls: type[_WrittenT], pdu: bytes, request: RequestPdu | None) -> _WrittenT:
        _expect_length(pdu, 5, cls.__name__)
        address, count = _HH.unpack_from(pdu, 1)
        return cls(address, count)


@dataclass(frozen=True, slots=True)
class WriteMultipleCoilsResponse(_WriteMultipleResponse):
    """FC15 answer: where and how many coils were written."""

    function: ClassVar[int] = FunctionCode.WRITE_MULTIPLE_COILS
    _maximum: ClassVar[int] = MAX_WRITE_BITS
    _unit: ClassVar[str] = "coils"


@dataclass(frozen=True, slots=True)
class WriteMultipleRegistersResponse(_WriteMultipleResponse):
    """FC16 answer: where and how many registers were written."""

    function: ClassVar[int] = FunctionCode.WRITE_MULTIPLE_REGISTERS
    _maximum: ClassVar[int] = MAX_WRITE_REGISTERS
    _unit: ClassVar[str] = "registers"


@dataclass(frozen=True, slots=True)
class MaskWriteRegisterResponse(_MaskWrite):
    """FC22 answer: an echo of the request."""

    @classmethod
    def _decode(cls, pdu: bytes, request: RequestPdu | None) -> MaskWriteRegisterResponse:
        return cls(*cls._decode_fields(pdu))


@dataclass(frozen=True, slots=True)
class ReadDeviceIdentificationResponse:
    """FC43 / MEI 14 answer: `objects` as (object id, value) pairs in wire order.

    When `more_follows`, the rest did not fit: ask again from `next_object_id`.
    """

    read_code: int
    conformity: int
    more_follows: bool
    next_object_id: int
    objects: tuple[tuple[int, bytes], ...]

    function: ClassVar[int] = FunctionCode.ENCAPSULATED_INTERFACE

    def __post_init__(self) -> None:
        _as_tuple(self, "objects", self.objects)
        _check_int(self, "read_code", self.read_code, 1, 4, "a read device id code")
        _check_int(self, "conformity", self.conformity, 0, 255, "a conformity level")
        _check_int(self, "next_object_id", self.next_object_id, 0, 255, "an object id")
        size = 7
        for index, (object_id, value) in enumerate(self.objects):
            if not isinstance(value, bytes):
                raise LimitError(f"{type(self).__name__}.objects[{index}]: the value must be bytes", field="objects")
            _check_int(self, f"objects[{index}]", object_id, 0, 255, "an object id")
            _check_int(self, f"objects[{index}]", len(value), 0, 255, "an object length")
            size += 2 + len(value)
        if size > MAX_PDU:
            raise LimitError(
                f"{type(self).__name__}.objects: {size} bytes do not fit in one PDU ({MAX_PDU}); "
                "set more_follows and send the rest in the next answer",
                field="objects",
            )

    def as_dict(self) -> dict[int, bytes]:
        return dict(self.objects)

    def _encode(self) -> bytes:
        head = bytes(
            (
                self.function,
                MEI_READ_DEVICE_IDENTIFICATION,
                self.read_code,
                self.conformity,
                0xFF if self.more_follows else 0x00,
                self.next_object_id,
                len(self.objects),
            )
        )
        return head + b"".join(bytes((object_id, len(value))) + value for object_id, value in self.objects)

    @classmethod
    def _decode(cls, pdu: bytes, request: RequestPdu | None) -> ReadDeviceIdentificationResponse | UnsupportedResponse:
        name = cls.__name__
        if len(pdu) >= 2 and pdu[1] != MEI_READ_DEVICE_IDENTIFICATION:
            return UnsupportedResponse(pdu[0], bytes(pdu[1:]))
        if len(pdu) < 7:
            raise MalformedFrame(f"{name}: PDU of {len(pdu)} bytes is shorter than the 7-byte header")
        objects: list[tuple[int, bytes]] = []
        position = 7
        for index in range(pdu[6]):
            if position + 2 > len(pdu) or position + 2 + pdu[position + 1] > len(pdu):
                raise MalformedFrame(f"{name}: object {index} of {pdu[6]} runs past the PDU's end")
            length = pdu[position + 1]
            objects.append((pdu[position], bytes(pdu[position + 2 : position + 2 + length])))
            position += 2 + length
        if position != len(pdu):
            raise MalformedFrame(f"{name}: {len(pdu) - position} bytes after the last object")
        # The spec says 0xFF; any other non-zero value is read as "more" rather than failing an answer.
        return cls(pdu[2], pdu[3], pdu[4] != 0, pdu[5], tuple(objects))


@dataclass(frozen=True, slots=True)
class ReportServerIdResponse:
    """FC17 answer: `server_id` (the device's own bytes) and the run indicator (0xFF on, 0x00 off).

    The spec leaves the id's length and any additional data to the device; as pymodbus does, the
    last byte is taken as the run indicator and everything before it as the id.
    """

    server_id: bytes
    running: bool

    function: ClassVar[int] = FunctionCode.REPORT_SERVER_ID

    def __post_init__(self) -> None:
        if type(self.server_id) is not bytes:
            object.__setattr__(self, "server_id", bytes(self.server_id))
        _check_int(self, "server_id", len(self.server_id), 0, MAX_PDU - 3, "a server id length")

    def _encode(self) -> bytes:
        body = self.server_id + bytes((0xFF if self.running else 0x00,))
        return bytes((self.function, len(body))) + body

    @classmethod
    def _decode(cls, pdu: bytes, request: RequestPdu | None) -> ReportServerIdResponse:
        count = _byte_count(pdu, 1, cls.__name__)
        if count < 1:
            raise MalformedFrame(f"{cls.__name__}: a byte count of 0 leaves out the run indicator")
        return cls(bytes(pdu[2 : 1 + count]), pdu[1 + count] != 0x00)


_STANDARD_CODES = frozenset(int(code) for code in ExceptionCode)


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """The device refused `function` with exception `code` (an ExceptionCode when it is a standard one).

    Its function byte on the wire is `0x80 | function`. `function` is 1..127 in any answer a client
    decodes; a server may also answer a request whose code is 0 or 128..255 (no request's), with
    ILLEGAL_FUNCTION: `0x80` and `0x80 | function` (0x81 stays 0x81), so that the reply still names the
    code it refuses. (pymodbus 3.x answers every unknown code with 0x80; libmodbus adds 0x80 modulo 256,
    so 0x81 comes back as 0x01, which reads as a malformed Read Coils reply.)
    """

    function: int
    code: int

    def __post_init__(self) -> None:
        _check_int(self, "function", self.function, 0, 255, "a function code")
        _check_int(self, "code", self.code, 1, 255, "an exception code")
        if not isinstance(self.code, ExceptionCode) and self.code in _STANDARD_CODES:
            object.__setattr__(self, "code", ExceptionCode(self.code))

    @property
    def message(self) -> str:
        """`exception 2 (ILLEGAL_DATA_ADDRESS) to read holding registers (3)`."""
        name = self.code.name if isinstance(self.code, ExceptionCode) else "non-standard"
        return f"exception {int(self.code)} ({name}) to {function_name(self.function)}"

    def _encode(self) -> bytes:
        return bytes((self.function | 0x80, self.code))

    @classmethod
    def _decode(cls, pdu: bytes) -> ExceptionResponse:
        _expect_length(pdu, 2, "ExceptionResponse")
        if pdu[0] == 0x80:  # refuses function 0, which no client sends: it answers no request of ours
            raise LimitError("ExceptionResponse.function: 0 is not a function code (1..127)", field="function")
        return cls(pdu[0] & 0x7F, pdu[1])


@dataclass(frozen=True, slots=True)
class UnsupportedResponse:
    """An answer to a function code this module does not implement, kept as raw bytes."""

    function: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if type(self.data) is not bytes:
            object.__setattr__(self, "data", bytes(self.data))
        _check_int(self, "function", self.function, 1, 127, "a function code")
        _check_int(self, "data", len(self.data), 0, MAX_PDU - 1, "a PDU data length")

    def _encode(self) -> bytes:
        return bytes((self.function,)) + self.data


RequestPdu: TypeAlias = (
    ReadCoilsRequest
    | ReadDiscreteInputsRequest
    | ReadHoldingRegistersRequest
    | ReadInputRegistersRequest
    | WriteSingleCoilRequest
    | WriteSingleRegisterRequest
    | WriteMultipleCoilsRequest
    | WriteMultipleRegistersRequest
    | MaskWriteRegisterRequest
    | ReadWriteMultipleRegistersRequest
    | ReadDeviceIdentificationRequest
    | ReportServerIdRequest
    | UnsupportedRequest
)
"""Any request: the argument of encode_request, the result of decode_request."""

ResponsePdu: TypeAlias = (
    ReadCoilsResponse
    | ReadDiscreteInputsResponse
    | ReadHoldingRegistersResponse
    | ReadInputRegistersResponse
    | WriteSingleCoilResponse
    | WriteSingleRegisterResponse
    | WriteMultipleCoilsResponse
    | WriteMultipleRegistersResponse
    | MaskWriteRegisterResponse
    | ReadWriteMultipleRegistersResponse
    | ReadDeviceIdentificationResponse
    | ReportServerIdResponse
    | ExceptionResponse
    | UnsupportedResponse
)
"""Any response: the argument of encode_response, the result of decode_response."""

RESPONSE_TYPES: dict[type, type] = {
    ReadCoilsRequest: ReadCoilsResponse,
    ReadDiscreteInputsRequest: ReadDiscreteInputsResponse,
    ReadHoldingRegistersRequest: ReadHoldingRegistersResponse,
    ReadInputRegistersRequest: ReadInputRegistersResponse,
    WriteSingleCoilRequest: WriteSingleCoilResponse,
    WriteSingleRegisterRequest: WriteSingleRegisterResponse,
    WriteMultipleCoilsRequest: WriteMultipleCoilsResponse,
    WriteMultipleRegistersRequest: WriteMultipleRegistersResponse,
    MaskWriteRegisterRequest: MaskWriteRegisterResponse,
    ReadWriteMultipleRegistersRequest: ReadWriteMultipleRegistersResponse,
    ReadDeviceIdentificationRequest: ReadDeviceIdentificationResponse,
    ReportServerIdRequest: ReportServerIdResponse,
    UnsupportedRequest: UnsupportedResponse,
}
"""The successful answer's type for each request type (an ExceptionResponse may answer any)."""

_REQUEST_DECODERS: dict[int, Callable[[bytes], RequestPdu]] = {
    FunctionCode.READ_COILS: ReadCoilsRequest._decode,
    FunctionCode.READ_DISCRETE_INPUTS: ReadDiscreteInputsRequest._decode,
    FunctionCode.READ_HOLDING_REGISTERS: ReadHoldingRegistersRequest._decode,
    FunctionCode.READ_INPUT_REGISTERS: ReadInputRegistersRequest._decode,
    FunctionCode.WRITE_SINGLE_COIL: WriteSingleCoilRequest._decode,
    FunctionCode.WRITE_SINGLE_REGISTER: WriteSingleRegisterRequest._decode,
    FunctionCode.WRITE_MULTIPLE_COILS: WriteMultipleCoilsRequest._decode,
    FunctionCode.WRITE_MULTIPLE_REGISTERS: WriteMultipleRegistersRequest._decode,
    FunctionCode.MASK_WRITE_REGISTER: MaskWriteRegisterRequest._decode,
    FunctionCode.READ_WRITE_MULTIPLE_REGISTERS: ReadWriteMultipleRegistersRequest._decode,
    FunctionCode.ENCAPSULATED_INTERFACE: ReadDeviceIdentificationRequest._decode,
    FunctionCode.REPORT_SERVER_ID: ReportServerIdRequest._decode,
}

_RESPONSE_DECODERS: dict[int, Callable[[bytes, RequestPdu | None], ResponsePdu]] = {
    FunctionCode.READ_COILS: ReadCoilsResponse._decode,
    FunctionCode.READ_DISCRETE_INPUTS: ReadDiscreteInputsResponse._decode,
    FunctionCode.READ_HOLDING_REGISTERS: ReadHoldingRegistersResponse._decode,
    FunctionCode.READ_INPUT_REGISTERS: ReadInputRegistersResponse._decode,
    FunctionCode.WRITE_SINGLE_COIL: WriteSingleCoilResponse._decode,
    FunctionCode.WRITE_SINGLE_REGISTER: WriteSingleRegisterResponse._decode,
    FunctionCode.WRITE_MULTIPLE_COILS: WriteMultipleCoilsResponse._decode,
    FunctionCode.WRITE_MULTIPLE_REGISTERS: WriteMultipleRegistersResponse._decode,
    FunctionCode.MASK_WRITE_REGISTER: MaskWriteRegisterResponse._decode,
    FunctionCode.READ_WRITE_MULTIPLE_REGISTERS: ReadWriteMultipleRegistersResponse._decode,
    FunctionCode.ENCAPSULATED_INTERFACE: ReadDeviceIdentificationResponse._decode,
    FunctionCode.REPORT_SERVER_ID: ReportServerIdResponse._decode,
}


# ------------------------------------------------------------------------------------------- the API


def encode_request(request: RequestPdu) -> bytes:
    """The request's PDU bytes. Never raises: a request that exists is within the limits."""
    return request._encode()


def encode_response(response: ResponsePdu) -> bytes:
    """The response's PDU bytes. Never raises: a response that exists is within the limits."""
    return response._encode()


def _check_pdu(pdu: bytes) -> int:
    if not pdu:
        raise MalformedFrame("empty PDU: no function code")
    if len(pdu) > MAX_PDU:
        raise MalformedFrame(f"PDU of {len(pdu)} bytes is longer than the {MAX_PDU} the protocol allows")
    return pdu[0]


def decode_request(pdu: bytes) -> RequestPdu:
    """A request from its PDU bytes; an unimplemented function code gives UnsupportedRequest.

    Raises MalformedFrame; its `function` and `exception_code` are what a server answers with.
    """
    function = _check_pdu(pdu)
    if function == 0 or function & 0x80:
        # Answered as any unknown function is, by libmodbus and pymodbus too: ILLEGAL_FUNCTION.
        raise MalformedFrame(
            f"function code {function} is not a request's (1..127)",
            function=function,
            exception_code=ExceptionCode.ILLEGAL_FUNCTION,
        )
    decoder = _REQUEST_DECODERS.get(function)
    if decoder is None:
        return UnsupportedRequest(function, bytes(pdu[1:]))
    try:
        return decoder(pdu)
    except LimitError as exc:
        raise MalformedFrame(str(exc), function=function, exception_code=exc.exception_code) from exc
    except MalformedFrame as exc:
        exc.function = function  # so a server can answer it (with exception 3)
        raise


def decode_response(pdu: bytes, request: RequestPdu | None = None) -> ResponsePdu:
    """A response from its PDU bytes, decoded by its own function code.

    `request` is used only to drop the padding bits of an FC1/FC2 answer; whether the response
    answers the request is `response_mismatch`'s question. Raises MalformedFrame.
    """
    function = _check_pdu(pdu)
    try:
        if function & 0x80:
            return ExceptionResponse._decode(pdu)
        decoder = _RESPONSE_DECODERS.get(function)
        if decoder is None:
            return UnsupportedResponse(function, bytes(pdu[1:]))
        return decoder(pdu, request)
    except LimitError as exc:
        raise MalformedFrame(str(exc), function=function & 0x7F or None) from exc
    except MalformedFrame as exc:
        exc.function = function & 0x7F or None
        raise


def response_mismatch(request: RequestPdu, response: ResponsePdu) -> str | None:
    """Why `response` cannot be the answer to `request`, or None when it can.

    Checks the function code, the echoed fields of writes and the size of reads.
    """
    if response.function != request.function:
        return f"asked {function_name(request.function)}, answered {function_name(response.function)}"
    if isinstance(response, ExceptionResponse) or isinstance(request, UnsupportedRequest):
        return None
    expected = RESPONSE_TYPES[type(request)]
    if type(response) is not expected:
        return f"expected {expected.__name__}, got {type(response).__name__}"
    if isinstance(request, _ReadRequest):
        assert isinstance(response, (_BitsResponse, _RegistersResponse))
        got = len(response.values)
        if got != request.count:
            return f"asked for {request.count} {request._unit}, got {got}"
    elif isinstance(request, (WriteSingleCoilRequest, WriteSingleRegisterRequest, MaskWriteRegisterRequest)):
        if encode_response(response)[1:] != encode_request(request)[1:]:
            return "the echo differs from the request"
    elif isinstance(request, (WriteMultipleCoilsRequest, WriteMultipleRegistersRequest)):
        assert isinstance(response, _WriteMultipleResponse)
        if (response.address, response.count) != (request.address, len(request.values)):
            return (
                f"wrote {len(request.values)} from address {request.address}, "
                f"the echo says {response.count} from {response.address}"
            )
    elif isinstance(request, ReadWriteMultipleRegistersRequest):
        assert isinstance(response, ReadWriteMultipleRegistersResponse)
        if len(response.values) != request.read_count:
            return f"asked for {request.read_count} registers, got {len(response.values)}"
    elif isinstance(request, ReportServerIdRequest):
        return None
    else:
        assert isinstance(response, ReadDeviceIdentificationResponse)
        if response.read_code != request.read_code:
            return f"asked with read device id code {request.read_code}, answered code {response.read_code}"
    return None


__all__ = [
    "ADDRESS_SPACE",
    "MAX_PDU",
    "MAX_READ_BITS",
    "MAX_READ_REGISTERS",
    "MAX_RW_READ_REGISTERS",
    "MAX_RW_WRITE_REGISTERS",
    "MAX_WRITE_BITS",
    "MAX_WRITE_REGISTERS",
    "MEI_READ_DEVICE_IDENTIFICATION",
    "RESPONSE_TYPES",
    "DeviceIdCode",
    "DeviceObject",
    "ExceptionCode",
    "ExceptionResponse",
    "FunctionCode",
    "LimitError",
    "MalformedFrame",
    "MaskWriteRegisterRequest",
    "MaskWriteRegisterResponse",
    "ReadCoilsRequest",
    "ReadCoilsResponse",
    "ReadDeviceIdentificationRequest",
    "ReadDeviceIdentificationResponse",
    "ReadDiscreteInputsRequest",
    "ReadDiscreteInputsResponse",
    "ReadHoldingRegistersRequest",
    "ReadHoldingRegistersResponse",
    "ReadInputRegistersRequest",
    "ReadInputRegistersResponse",
    "ReadWriteMultipleRegistersRequest",
    "ReadWriteMultipleRegistersResponse",
    "ReportServerIdRequest",
    "ReportServerIdResponse",
    "RequestPdu",
    "ResponsePdu",
    "UnsupportedRequest",
    "UnsupportedResponse",
    "WriteMultipleCoilsRequest",
    "WriteMultipleCoilsResponse",
    "WriteMultipleRegistersRequest",
    "WriteMultipleRegistersResponse",
    "WriteSingleCoilRequest",
    "WriteSingleCoilResponse",
    "WriteSingleRegisterRequest",
    "WriteSingleRegisterResponse",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "function_name",
]
