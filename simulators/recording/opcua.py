"""OPC UA binary in recording and replay: service messages decoded for the cassette, and the learned
image. No I/O.

A cassette's OPC UA `request` and `response` are service messages as sent: the body of an `OPN` or
`MSG` message (its chunks joined) after the secure channel's headers — the type's NodeId, then the
request or response (simulators.recording.opcua_chunks cuts them out of the byte stream). Hello and
Acknowledge carry no service and are not kept. Every decode goes through asyncua's binary codec
(`asyncua.ua.ua_binary`, the `opcua` extra): recording has no OPC UA parser of its own.

Lines read like the simulator's traffic log: `Read ns=2;s=tank.level -> Good 42.0`. The decoded form
is the service's fields, without the request and response headers (their handles and timestamps
change every run): `{"service": "Read", "nodes": [...]}`.

The image holds, per node and attribute, the DataValue the capture last showed: the results of Reads
and the values of Writes the server accepted. It answers a Read or Write whose every node it holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

from bifrost._extras import require
from simulators.recording import opcua_chunks as chunks
from simulators.recording.codec import Expect, Frame, Pair, pair_by_id, register_codec

if TYPE_CHECKING:
    from simulators.recording.tcp import Direction

VALUE_ATTRIBUTE = 13
BAD_NODE_ID_UNKNOWN = 0x80340000
# Fields that change from one run to the next, blanked in a request's match key: handles and
# timestamps, the session's token, nonces, signatures, certificates, acknowledged sequence numbers.
VOLATILE = frozenset(
    {
        "RequestHandle",
        "Timestamp",
        "AuthenticationToken",
        "AuditEntryId",
        "TimeoutHint",
        "ClientNonce",
        "ClientCertificate",
        "ClientSignature",
        "UserTokenSignature",
        "SubscriptionAcknowledgements",
        "Password",
        "SessionName",
    }
)
# And in a response, for diff: what the server makes anew each run (times, the session's ids and
# nonces, the channel's token, sequence numbers).
RESPONSE_VOLATILE = VOLATILE | {
    "SourceTimestamp",
    "ServerTimestamp",
    "SourcePicoseconds",
    "ServerPicoseconds",
    "SessionId",
    "ServerNonce",
    "ServerCertificate",
    "ServerSignature",
    "SecurityToken",
    "SequenceNumber",
    "PublishTime",
    "AvailableSequenceNumbers",
    "SubscriptionId",
}
_HEADERS = ("TypeId", "RequestHeader", "ResponseHeader")
_EPOCH = datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc)  # OPC UA's DateTime zero


def _asyncua() -> tuple[Any, Any, Any]:
    """asyncua's `ua`, its binary codec and its Buffer, or an ImportError naming the extra."""
    ua = require("asyncua.ua", "opcua")
    binary = require("asyncua.ua.ua_binary", "opcua")
    utils = require("asyncua.common.utils", "opcua")
    return ua, binary, utils.Buffer


def decode(body: bytes) -> Any:
    """The asyncua object a service message holds; ValueError when it is none asyncua knows."""
    ua, binary, buffer = _asyncua()
    try:
        type_id = binary.nodeid_from_binary(buffer(body))
    except Exception as exc:  # asyncua raises what its struct reads raise
        raise ValueError(f"no service type id: {exc}") from None
    cls = ua.extension_objects_by_typeid.get(type_id)
    if cls is None:
        raise ValueError(f"unknown service type {type_id.to_string()}")
    try:
        return binary.struct_from_binary(cls, buffer(body))
    except Exception as exc:
        raise ValueError(f"a {cls.__name__} that does not decode: {exc}") from None


def encode(obj: Any) -> bytes:
    """A service message (its type id first) from an asyncua request or response."""
    _, binary, _ = _asyncua()
    return bytes(binary.struct_to_binary(obj))


def service_name(obj: Any) -> str:
    name = type(obj).__name__
    for suffix in ("Request", "Response"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def status_text(code: int) -> str:
    """`Good`, `BadNodeIdUnknown`, or the number in hex when asyncua does not name it."""
    ua, _, _ = _asyncua()
    try:
        return str(ua.StatusCode(code).name)
    except Exception:
        return f"0x{code:08X}"


def _status(value: Any) -> int:
    return int(getattr(value, "value", value) or 0)


def node_text(node: Any) -> str:
    text = node.to_string()
    return str(text)


def plain(value: Any) -> Any:
    """An asyncua value as JSON: NodeIds as strings, status codes by name, bytes in hex, structures as
    objects of their fields."""
    ua, _, _ = _asyncua()
    if isinstance(value, enum.Enum):
        return value.name.rstrip("_")  # asyncua's None_ and others that are Python words
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, ua.NodeId):
        return node_text(value)
    if isinstance(value, ua.StatusCode):
        return status_text(value.value)
    if isinstance(value, ua.QualifiedName):
        return value.to_string()
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, ua.Variant):
        return {"type": value.VariantType.name, "value": plain(value.Value)}
    if isinstance(value, ua.ExtensionObject):
        return {"type_id": node_text(value.TypeId), "hex": (value.Body or b"").hex()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name not in _HEADERS}
    return str(value)


def _fields(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"service": service_name(obj)}
    header = getattr(obj, "ResponseHeader", None)
    if header is not None:
        out["status"] = status_text(_status(header.ServiceResult))
    body = plain(obj)
    if isinstance(body, dict):
        parameters = body.pop("Parameters", None)
        out.update(parameters if isinstance(parameters, dict) else body)
        if not isinstance(parameters, dict):
            out.pop("service", None)
            out["service"] = service_name(obj)
    return out


def value_text(data_value: Any) -> str:
    """`Good 42.0`, `BadSensorFailure`, `Uncertain... 3`."""
    status = status_text(_status(data_value.StatusCode))
    variant = data_value.Value
    if variant is None or variant.Value is None:
        return status
    shown = variant.Value
    if isinstance(shown, str):
        return f"{status} {shown!r}"
    if isinstance(shown, list) and len(shown) > 8:
        return f"{status} [{', '.join(map(str, shown[:8]))}, ... {len(shown)} values]"
    return f"{status} {plain(shown)}"


def _attribute(item: Any) -> str:
    attribute = int(item.AttributeId)
    if attribute == VALUE_ATTRIBUTE:
        return node_text(item.NodeId)
    ua, _, _ = _asyncua()
    try:
        name = ua.AttributeIds(attribute).name
    except ValueError:
        name = f"attribute {attribute}"
    return f"{node_text(item.NodeId)}.{name}"


def _several(items: list[str], limit: int = 6) -> str:
    if len(items) > limit:
        return ", ".join(items[:limit]) + f", ... ({len(items)} in all)"
    return ", ".join(items)


def request_text(obj: Any) -> str:
    name = service_name(obj)
    parameters = getattr(obj, "Parameters", None)
    if name == "Read" and parameters is not None:
        return f"Read {_several([_attribute(item) for item in parameters.NodesToRead or []])}"
    if name == "Write" and parameters is not None:
        shown = [
            f"{_attribute(item)} = {value_text(item.Value).split(' ', 1)[-1]}" for item in parameters.NodesToWrite or []
        ]
        return f"Write {_several(shown)}"
    if name == "Browse" and parameters is not None:
        return f"Browse {_several([node_text(item.NodeId) for item in parameters.NodesToBrowse or []])}"
    if name == "CreateSession" and parameters is not None:
        return f"CreateSession {parameters.EndpointUrl or ''}".rstrip()
    if name == "ActivateSession" and parameters is not None:
        token = parameters.UserIdentityToken
        user = getattr(token, "UserName", None)
        return f"ActivateSession {'user ' + user if user else 'anonymous'}"
    if name == "CreateSubscription" and parameters is not None:
        return f"CreateSubscription every {parameters.RequestedPublishingInterval:g}ms"
    if name == "CreateMonitoredItems" and parameters is not None:
        nodes = [_attribute(item.ItemToMonitor) for item in parameters.ItemsToCreate or []]
        return f"CreateMonitoredItems subscription {parameters.SubscriptionId}: {_several(nodes)}"
    if name == "GetEndpoints" and parameters is not None:
        return f"GetEndpoints {parameters.EndpointUrl or ''}".rstrip()
    if name == "OpenSecureChannel" and parameters is not None:
        return f"OpenSecureChannel {plain(parameters.RequestType)} {plain(parameters.SecurityMode)}"
    return name


def response_text(obj: Any) -> str:
    name = service_name(obj)
    header = getattr(obj, "ResponseHeader", None)
    status = status_text(_status(header.ServiceResult)) if header is not None else "?"
    if name == "ServiceFault":
        return f"ServiceFault {status}"
    if status != "Good":
        return status
    if name == "Read":
        return _several([value_text(item) for item in obj.Results or []])
    if name in ("Write", "CreateMonitoredItems"):
        codes = [status_text(_status(getattr(item, "StatusCode", item))) for item in obj.Results or []]
        return _several(codes) or "Good"
    if name in ("Browse", "BrowseNext"):
        names = [ref.BrowseName.Name or "?" for result in obj.Results or [] for ref in result.References or []]
        return f"{len(names)} reference(s)" + (f": {_several(names)}" if names else "")
    if name == "CreateSubscription":
        return f"Good subscription {obj.Parameters.SubscriptionId}"
    if name == "GetEndpoints":
        return f"{len(obj.Endpoints or [])} endpoint(s)"
    if name == "Publish":
        parameters = obj.Parameters
        values = []
        for data in parameters.NotificationMessage.NotificationData or []:
            for item in getattr(data, "MonitoredItems", None) or []:
                values.append(f"#{item.ClientHandle} {value_text(item.Value)}")
        shown = f": {_several(values)}" if values else ""
        return f"subscription {parameters.SubscriptionId}, {len(values)} change(s){shown}"
    return status


def _blank(obj: Any, volatile: frozenset[str] = VOLATILE) -> None:
    """Blank, in place and all the way down, the fields that change from run to run (VOLATILE)."""
    if isinstance(obj, list):
        for item in obj:
            _blank(item, volatile)
        return
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return
    for f in dataclasses.fields(obj):
        if f.name in volatile:
            if f.default is not dataclasses.MISSING:
                blank = f.default
            elif f.default_factory is not dataclasses.MISSING:
                blank = f.default_factory()
            else:
                blank = None
            if isinstance(blank, datetime.datetime):
                blank = _EPOCH  # a timestamp's default is "now"
            setattr(obj, f.name, blank)
        else:
            _blank(getattr(obj, f.name), volatile)


class OpcuaCodec:
    protocol = "opcua"
    framings: tuple[str, ...] = ("opcua",)
    default_unknown = BAD_NODE_ID_UNKNOWN

    def decode_request(self, request: bytes) -> dict[str, Any]:
        try:
            return _fields(decode(request))
        except ValueError as exc:
            return {"service": "malformed", "error": str(exc)}

    def decode_response(self, response: bytes, request: bytes) -> dict[str, Any]:
        try:
            return _fields(decode(response))
        except ValueError as exc:
            return {"service": "malformed", "error": str(exc)}

    def _texts(self, body: bytes, text: Any) -> tuple[dict[str, Any], str]:
        try:
            obj = decode(body)
        except ValueError as exc:
            return {"service": "malformed", "error": str(exc)}, f"malformed ({exc})"
        try:
            return _fields(obj), text(obj)
        except Exception as exc:  # an odd but decodable message must still make a line
            return _fields(obj), f"{service_name(obj)} ({exc})"

    def describe(self, request: bytes, response: bytes | None) -> str:
        _, asked, _, answered = self.render(request, response)
        return f"{asked} -> {answered}"

    def render(self, request: bytes, response: bytes | None) -> tuple[dict[str, Any], str, dict[str, Any] | None, str]:
        fields, text = self._texts(request, request_text)
        if response is None:
            return fields, text, None, "no answer"
        answer, answer_text = self._texts(response, response_text)
        return fields, text, answer, answer_text

    def match_key(self, unit: int, request: bytes) -> Hashable:
        try:
            obj = decode(request)
        except ValueError:
            return (unit, request)
        _blank(obj)
        return (unit, encode(obj))

    def answer_key(self, response: bytes) -> Hashable:
        """What makes two responses "the same" for diff: the response without its times, handles and
        the session's and channel's ids and nonces."""
        try:
            obj = decode(response)
        except ValueError:
            return response
        _blank(obj, RESPONSE_VOLATILE)
        return encode(obj)

    def error_response(self, request: bytes, code: int) -> bytes:
        """A ServiceFault with status `code` (a small number, as Modbus's exception codes are, means
        BadNodeIdUnknown), for the request's handle."""
        ua, _, _ = _asyncua()
        fault = ua.ServiceFault()
        with contextlib.suppress(ValueError, AttributeError):
            fault.ResponseHeader.RequestHandle = decode(request).RequestHeader.RequestHandle
        fault.ResponseHeader.ServiceResult = ua.StatusCode(code if code & 0x80000000 else BAD_NODE_ID_UNKNOWN)
        return encode(fault)

    def is_error(self, response: bytes) -> bool:
        try:
            header = getattr(decode(response), "ResponseHeader", None)
        except ValueError:
            return True
        return header is not None and bool(_status(header.ServiceResult) & 0x80000000)

    def new_image(self) -> OpcuaImage:
        return OpcuaImage()

    # --- the wire (simulators.recording.opcua_chunks) -----------------------------------------------

    def sniff(self, data: bytes) -> str | None:
        return "opcua" if chunks.looks_like_opcua(data) else None

    def opens_request(self, framing: str, data: bytes) -> bool:
        return data[:3] in (b"HEL", b"OPN", b"MSG", b"CLO") and chunks.looks_like_opcua(data)

    def frames(
        self, framing: str, side: Direction, expect: Expect, notes: list[str], who: str, origin: float
    ) -> list[Frame]:
        return chunks.captured_frames(side.chunks, side.gap_before, notes, who, origin)

    def pair(self, framing: str, asked: Sequence[Frame], answered: Sequence[Frame]) -> list[Pair]:
        return pair_by_id(asked, answered)  # by the sequence header's RequestId

    def cutter(self, framing: str, expect: Expect) -> chunks.OpcuaCutter:
        return chunks.OpcuaCutter()

    def pairs_by_id(self, framing: str) -> bool:
        return True

    def unwrap(self, framing: str, data: bytes, expect: Expect) -> bytes | None:
        return chunks.unwrap(data)

    # --- the traffic log and replay -----------------------------------------------------------------

    def log_exchange(self, exchange: Any, device: Any) -> tuple[int, bytes, bytes | None] | None:
        """A simulated OPC UA device's Read or Write (simulators.opcua.traffic keeps the services, the
        nodes, their statuses and values) as the service messages that carried it; other services
        are the server's own business and are not kept."""
        ua, _, _ = _asyncua()
        request = exchange.request
        service = getattr(request, "service", None)
        nodes = list(getattr(request, "nodes", ()))
        values = list(getattr(request, "values", ()))
        codes = list(exchange.response or ())
        if service not in ("Read", "Write") or not nodes or len(values) != len(nodes) or len(codes) != len(nodes):
            return None
        variants = [
            None if value is None else ua.Variant(value, getattr(ua.VariantType, type_name))
            for type_name, value in values
        ]
        handle = int(exchange.transaction_id or 0)
        if service == "Read":
            asked: Any = ua.ReadRequest()
            asked.Parameters.NodesToRead = [
                ua.ReadValueId(NodeId=ua.NodeId.from_string(node), AttributeId=VALUE_ATTRIBUTE) for node in nodes
            ]
            answered: Any = ua.ReadResponse()
            answered.Results = [
                ua.DataValue(variant if not code & 0x80000000 else None, StatusCode=ua.StatusCode(code))
                for variant, code in zip(variants, codes, strict=True)
            ]
        else:
            asked = ua.WriteRequest()
            asked.Parameters.NodesToWrite = [
                ua.WriteValue(
                    NodeId=ua.NodeId.from_string(node), AttributeId=VALUE_ATTRIBUTE, Value=ua.DataValue(variant)
                )
                for node, variant in zip(nodes, variants, strict=True)
            ]
            answered = ua.WriteResponse()
            answered.Results = [ua.StatusCode(code) for code in codes]
        asked.RequestHeader.RequestHandle = handle
        answered.ResponseHeader.RequestHandle = handle
        return 0, encode(asked), encode(answered)

    def is_handshake(self, request: bytes) -> bool:
        return False  # the replay's server answers the channel and session itself, and is no Replayer

    def replay_devices(
        self, device: str, units: Sequence[int], listen: str, transport: str, replay: dict[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """One OPC UA server, whose nodes are the ones the capture showed (simulators.recording.opcua_replay)."""
        return {device: {"protocol": "opcua", "listen": listen, "replay": dict(replay)}}


NodeKey = tuple[str, int]
"""(NodeId as text, attribute id)."""


class OpcuaImage:
    """Per node and attribute, the DataValue the capture last showed (asyncua DataValue objects)."""

    def __init__(self) -> None:
        self.values: dict[NodeKey, Any] = {}

    def learn(self, unit: int, request: bytes, response: bytes) -> None:
        for key, data_value in learned(request, response):
            self.values[key] = data_value

    def answer(self, unit: int, request: bytes) -> bytes | None:
        ua, _, _ = _asyncua()
        try:
            asked = decode(request)
        except ValueError:
            return None
        name = service_name(asked)
        handle = asked.RequestHeader.RequestHandle
        if name == "Read":
            items = asked.Parameters.NodesToRead or []
            keys = [(node_text(item.NodeId), int(item.AttributeId)) for item in items]
            if not keys or any(key not in self.values for key in keys):
                return None
            response = ua.ReadResponse()
            response.Results = [self.values[key] for key in keys]
        elif name == "Write":
            items = asked.Parameters.NodesToWrite or []
            keys = [(node_text(item.NodeId), int(item.AttributeId)) for item in items]
            if not keys or any(key not in self.values for key in keys):
                return None
            for key, item in zip(keys, items, strict=True):
                self.values[key] = item.Value
            response = ua.WriteResponse()
            response.Results = [ua.StatusCode(0) for _ in keys]
        else:
            return None
        response.ResponseHeader.RequestHandle = handle
        return encode(response)


def learned(request: bytes, response: bytes) -> list[tuple[NodeKey, Any]]:
    """What an exchange shows of the nodes' values, in order: each Read result that holds a value
    (with its status), and each value a Write wrote that the server accepted."""
    try:
        asked, answered = decode(request), decode(response)
    except ValueError:
        return []
    name = service_name(asked)
    if service_name(answered) != name:
        return []  # a ServiceFault
    out: list[tuple[NodeKey, Any]] = []
    if name == "Read":
        for item, result in zip(asked.Parameters.NodesToRead or [], answered.Results or [], strict=False):
            if result.Value is not None and result.Value.Value is not None:
                out.append(((node_text(item.NodeId), int(item.AttributeId)), result))
    elif name == "Write":
        for item, code in zip(asked.Parameters.NodesToWrite or [], answered.Results or [], strict=False):
            if not _status(code) & 0x80000000 and item.Value is not None:
                out.append(((node_text(item.NodeId), int(item.AttributeId)), item.Value))
    return out


register_codec(OpcuaCodec())

__all__ = ["OpcuaCodec", "OpcuaImage", "decode", "encode", "learned", "status_text"]
