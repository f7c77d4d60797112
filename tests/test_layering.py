"""The codecs are pure: pdu.py and framing.py of each protocol (and S7's address grammar and planner)
import no asyncio, socket, time, yaml or pytest, directly or through the bifrost modules they import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FORBIDDEN = {"asyncio", "socket", "time", "yaml", "pytest", "selectors", "threading"}
PURE = [
    "bifrost/modbus/pdu.py",
    "bifrost/modbus/framing.py",
    "bifrost/s7/pdu.py",
    "bifrost/s7/framing.py",
    "bifrost/s7/address.py",
    "bifrost/s7/planner.py",
]


def imports(path: Path) -> set[str]:
    """Modules imported at import time (imports inside functions run only when called)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


@pytest.mark.parametrize("relative", PURE)
def test_codecs_import_no_io(relative: str) -> None:
    seen: set[Path] = set()
    todo = [ROOT / relative]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imports(path):
            top = name.split(".")[0]
            assert top not in FORBIDDEN, f"{relative} imports {name} (through {path.relative_to(ROOT)})"
            if top == "bifrost":
                found = module_file(name)
                if found is not None and found.name != "__init__.py":
                    todo.append(found)


PROTOCOL_PACKAGES = (
    "bifrost.modbus",
    "bifrost.s7",
    "bifrost.opcua",
    "simulators.modbus",
    "simulators.s7",
    "simulators.opcua",
)
RECORDING = ROOT / "simulators" / "recording"


def _per_protocol(path: Path) -> bool:
    """A protocol's own module of recording: its codec (`modbus.py`, `s7.py`) or replayed device."""
    return path.stem.split("_")[0] in {"modbus", "s7", "opcua"}


@pytest.mark.parametrize(
    "path", sorted(p for p in RECORDING.glob("*.py") if not _per_protocol(p)), ids=lambda p: p.name
)
def test_recording_reaches_protocols_only_through_their_codecs(path: Path) -> None:
    """Cassettes, import, the recorder and replay name no protocol: each is reached through its Codec."""
    found = [name for name in imports(path) if name.startswith(PROTOCOL_PACKAGES)]
    assert not found, f"simulators/recording/{path.name} imports {found}: go through the protocol's codec"
