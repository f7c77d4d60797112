"""The pytest plugin: `pytest -p pytest_bifrost` (also autoloaded through the pytest11 entry point)."""

from __future__ import annotations

import pytest

import bifrost


def pytest_report_header(config: pytest.Config) -> str:
    return f"bifrost {bifrost.__version__}"
