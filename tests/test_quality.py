"""Types and lint are part of the suite, so CI holds every change to them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*command: str) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"


def test_ruff() -> None:
    _run(sys.executable, "-m", "ruff", "check", ".")
    _run(sys.executable, "-m", "ruff", "format", "--check", ".")


def test_mypy_strict() -> None:
    _run(sys.executable, "-m", "mypy", "bifrost", "simulators", "pytest_bifrost")


def test_stubtest_native_module() -> None:
    _run(sys.executable, "-m", "mypy.stubtest", "bifrost._native")


@pytest.mark.skipif(shutil.which("cargo") is None, reason="needs the Rust toolchain")
def test_rustfmt_and_clippy() -> None:
    _run("cargo", "fmt", "--all", "--check")
    # --release: the same profile as `pip install -e` (maturin), so clippy reuses the C open62541 that
    # the open62541-sys build script compiled there instead of building it again in debug (minutes).
    _run("cargo", "clippy", "--workspace", "--all-targets", "--release", "--quiet", "--", "-D", "warnings")
