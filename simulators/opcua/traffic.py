"""How OPC UA exchanges read in the traffic log (simulators.traffic.ExchangeCodec).

The C server reports each service it answered (simulators.opcua.server); an exchange's request is an
`OpcuaRequest` (the service and the nodes it touched), its response the nodes' status codes. Only
our variables' value reads and writes name nodes; a node the server does not have (BadNodeIdUnknown)
or a write it refused before asking us (BadNotWritable) shows as the service without that node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simulators.opcua.server import status_name

# The services' request DataType ids (OPC UA Part 6, NodeIds.csv): what `log.count(function=...)` counts.
SERVICE_IDS = {
    "FindServers": 420,
    "GetEndpoints": 426,
    "CreateSession": 459,
    "ActivateSession": 465,
    "CloseSession": 471,
    "Browse": 525,
    "BrowseNext": 531,
    "TranslateBrowsePathsToNodeIds": 552,
    "RegisterNodes": 558,
    "UnregisterNodes": 564,
    "Read": 629,
    "Write": 671,
    "Call": 710,
    "CreateMonitoredItems": 749,
    "ModifyMonitoredItems": 761,
    "SetMonitoringMode": 767,
    "DeleteMonitoredItems": 779,
    "CreateSubscription": 785,
    "ModifySubscription": 791,
    "SetPublishingMode": 797,
    "Publish": 824,
    "Republish": 830,
    "DeleteSubscriptions": 845,
}


@dataclass(frozen=True)
class OpcuaRequest:
    service: str
    nodes: tuple[str, ...] = ()
    session: str | None = None
    values: tuple[tuple[str, Any], ...] = field(default=(), compare=False)
    """Per node: its OPC UA type and the value the server held when the exchange was logged (what a
    Read answered, what a Write wrote); a cassette of the traffic (simulators.recording) keeps them."""

    @property
    def function(self) -> int:
        return SERVICE_IDS.get(self.service, 0)


class OpcuaCodec:
    def function(self, request: object) -> int:
        return request.function if isinstance(request, OpcuaRequest) else 0

    def refused(self, response: object) -> bool:
        return isinstance(response, tuple) and any(code & 0x80000000 for code in response)

    def describe_request(self, request: object) -> str:
        if not isinstance(request, OpcuaRequest):
            return str(request)
        return request.service + (" " + ", ".join(request.nodes) if request.nodes else "")

    def describe_response(self, response: object) -> str:
        if isinstance(response, tuple):
            return ", ".join(status_name(code) for code in response) if response else "Good"
        return "no answer" if response is None else str(response)


CODEC = OpcuaCodec()
