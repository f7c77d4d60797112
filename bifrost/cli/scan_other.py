"""`bifrost scan` of OPC UA servers and S7 CPUs, through the Connection API as for Modbus.

OPC UA: the address space is browsed from `Objects` (breadth first, bounded by `--max-requests` browse
calls and `--depth`); every Variable is read once, and the draft tag file maps a tag per Variable to its
NodeId, typed from the value read (a guess to edit, as for Modbus). The server's own `Server` object is
skipped. S7: the CPU's identity (SZL 0x0011, 0x001C) and state (SZL 0x0424), and which data blocks exist:
a one-byte read of each DB of `--dbs` answers "object does not exist" (item code 0x0A) for a DB that is not
there.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from bifrost.cli import common
from bifrost.errors import DeviceError
from bifrost.tags import Quality

_SERVER_OBJECT = "i=2253"  # ns=0;i=2253: the server's own diagnostics, not the plant
_WORD = re.compile(r"[^A-Za-z0-9_]+")


def tag_name(path: str) -> str:
    """`Objects/2:plc1/tank/level` -> `plc1.tank.level`: dotted words a scenario accepts."""
    parts = [part.split(":", 1)[-1] for part in path.split("/")[1:]]
    words = [_WORD.sub("_", part).strip("_") or "x" for part in parts]
    return ".".join(word if word[0].isalpha() else f"n{word}" for word in words)


def type_of(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return f"string[{max(16, len(value.encode()))}]"
    return None  # arrays, structures: left out of the draft


async def scan_opcua(url: str, timeout: float, depth: int, budget: Any) -> dict[str, Any]:
    variables: list[tuple[str, str]] = []  # (browse path, NodeId)
    async with common.connect(url, None, None, timeout) as plc:
        browse = getattr(plc, "browse", None)
        if browse is None:  # pragma: no cover - every opc.tcp:// connection browses
            raise DeviceError(f"{url}: this connection cannot browse", 0)
        level = ["Objects"]
        for _ in range(depth):
            found_next = []
            for path in level:
                budget.spend(1)
                for entry in await browse(path):
                    if entry.node_id.endswith(_SERVER_OBJECT) or entry.path is None:
                        continue
                    if entry.node_class == "Variable":
                        variables.append((entry.path, entry.node_id))
                    elif entry.node_class == "Object":
                        found_next.append(entry.path)
            level = found_next
            if not level:
                break
        points = await plc.read_many([node for _, node in variables]) if variables else {}
    tags: dict[str, Any] = {}
    mapping: dict[str, str] = {}
    for path, node in variables:
        point = points[node]
        dtype = type_of(point.value) if point.quality is Quality.GOOD else None
        if dtype is None:
            continue
        name = tag_name(path)
        tags[name] = {"type": dtype, "init": point.value}
        mapping[name] = node
    parts = urlsplit(url)
    device = {
        "protocol": "opcua",
        "listen": f"{parts.hostname or '127.0.0.1'}:{parts.port or 4840}",
        "path": parts.path or "/",
        "map": mapping,
    }
    return {"variables": [{"path": path, "node": node} for path, node in variables], "tags": tags, "device": device}


async def scan_s7(url: str, timeout: float, dbs: range, budget: Any) -> dict[str, Any]:
    async with common.connect(url, None, None, timeout) as plc:
        identity = getattr(plc, "identity", None)
        state = getattr(plc, "cpu_state", None)
        if identity is None or state is None:  # pragma: no cover - every s7:// connection has them
            raise DeviceError(f"{url}: this connection reads no SZL", 0)
        budget.spend(3)
        found: dict[str, Any] = {"identity": await identity(), "state": await state()}
        names = [f"DB{number}.DBB0" for number in dbs]
        budget.spend(len(names) // 20 + 1)
        points = await plc.read_many(names)
        found["dbs"] = [number for number, name in zip(dbs, names, strict=True) if points[name].quality is Quality.GOOD]
    return found


__all__ = ["scan_opcua", "scan_s7", "tag_name", "type_of"]
