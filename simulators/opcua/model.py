"""The strict scenario model of an OPC UA device (`protocol: opcua`), as DESIGN gives it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from simulators.opcua.nodes import OPCUA_TYPES
from simulators.recording.spec import ReplaySpec
from simulators.scenario import DeviceModel, KnownTag, _Strict

SecurityName = Literal["None", "Basic256Sha256"]


class OpcuaUser(_Strict):
    """A user with a password; `write: false` makes every write answer BadUserAccessDenied."""

    password: str
    write: bool = True


class OpcuaMapEntry(_Strict):
    """Where a device serves a tag: its NodeId, and optionally writability and OPC UA type."""

    node: str = Field(description="NodeId: ns=1;s=Tank.Level, nsu=<uri>;s=..., ns=3;i=1001")
    writable: bool | None = None
    ua_type: str | None = Field(
        default=None, description="an OPC UA built-in type other than the tag's: Boolean, SByte ... Double, String"
    )

    # The client's tag database reads a map entry as bifrost.tagfile.MapEntry does.
    @property
    def address(self) -> str:
        return self.node

    type: None = None
    byte_order: None = None
    scale: float = 1.0
    offset: float = 0.0

    @field_validator("ua_type")
    @classmethod
    def _known(cls, name: str | None) -> str | None:
        if name is not None and name not in OPCUA_TYPES:
            raise ValueError(f"OPC UA type {name!r}; expected one of {', '.join(OPCUA_TYPES)}")
        return name


class OpcuaDeviceModel(DeviceModel):
    """An OPC UA server: endpoint opc.tcp://<listen><path>, variables under Objects/<device>/."""

    protocol: Literal["opcua"]
    path: str = Field(default="/bifrost", description="endpoint path, e.g. /bifrost")
    namespace: str | None = Field(default=None, description="namespace URI of the nodes; urn:bifrost:<scenario>")
    security: list[SecurityName] = Field(
        default_factory=lambda: list[SecurityName](["None"]),
        description="security policies offered (Basic256Sha256: Sign, SignAndEncrypt)",
    )
    users: dict[str, str | OpcuaUser] = Field(
        default_factory=dict, description="username: password (or {password, write}); anonymous only without users"
    )
    certificate: str | None = Field(
        default=None, description="server certificate file (DER or PEM); generated if absent"
    )
    private_key: str | None = Field(default=None, description="its private key file")
    map: dict[KnownTag, str | OpcuaMapEntry] | Literal["all"] = Field(default_factory=dict)
    replay: ReplaySpec | None = Field(
        default=None, description="serve this device from a cassette (docs/replay.md) instead of from the plant"
    )

    @field_validator("path")
    @classmethod
    def _slash(cls, path: str) -> str:
        return path if not path or path.startswith("/") else "/" + path

    def entries(self, tags: Any) -> dict[str, tuple[str | None, bool | None, str | None]]:
        """tag -> (node id, writable, type), None where the tag's own applies."""
        if self.map == "all":
            return dict.fromkeys(tags, (None, None, None))
        found: dict[str, tuple[str | None, bool | None, str | None]] = {}
        for tag, entry in self.map.items():
            if isinstance(entry, str):
                found[tag] = (entry, None, None)
            else:
                found[tag] = (entry.node, entry.writable, entry.ua_type)
        return found


__all__ = ["OpcuaDeviceModel", "OpcuaMapEntry", "OpcuaUser"]
