"""The pytest plugin: `pytest -p pytest_bifrost` (also autoloaded through the pytest11 entry point).

Options, ini keys and markers are declared once, in `options.py`; the fixtures are in `fixtures.py`;
the hooks a conftest may implement are in `hookspecs.py`. See docs/pytest.md.
"""

from __future__ import annotations

from typing import Any

import pytest

import bifrost
from pytest_bifrost.cassettes import CassetteDevice, bifrost_cassette, bifrost_record_target, miss_report
from pytest_bifrost.fixtures import (
    SETTINGS,
    bifrost_host,
    bifrost_modbus_server,
    bifrost_mqtt_broker,
    bifrost_plant,
    settings_of,
)
from pytest_bifrost.mqtt import BrokerTls, MqttBroker
from pytest_bifrost.options import MARKERS, add_options, read_settings
from pytest_bifrost.plant import REAL, BifrostPlant, PlantClock, PlantDevice, PlantFault
from pytest_bifrost.registry import HostRegistry

__all__ = [
    "BifrostPlant",
    "BrokerTls",
    "CassetteDevice",
    "HostRegistry",
    "MqttBroker",
    "PlantClock",
    "PlantDevice",
    "PlantFault",
    "bifrost_cassette",
    "bifrost_host",
    "bifrost_modbus_server",
    "bifrost_mqtt_broker",
    "bifrost_plant",
    "bifrost_record_target",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_bifrost import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    for marker, description in MARKERS.items():
        config.addinivalue_line("markers", f"{marker}: {description}")
    config.stash[SETTINGS] = read_settings(config)


def pytest_report_header(config: pytest.Config) -> str:
    settings = settings_of(config)
    where = f", devices from {settings.devices_file}" if settings.real else f", clock {settings.clock}"
    seed = f", seed {settings.seed}" if settings.seed is not None else ""
    return f"bifrost {bifrost.__version__}: target {settings.target}{where}{seed}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not settings_of(config).real:
        return
    for item in items:
        marker = item.get_closest_marker("bifrost_sim_only")
        if marker is not None:
            why = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "it needs a simulated plant")
            item.add_marker(pytest.mark.skip(reason=f"sim-only ({why}); {REAL}"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.when == "call":
        # A request the cassette cannot answer fails the test, even when the test let the exception pass.
        why = miss_report(item)
        if why is not None and report.passed:
            report.outcome = "failed"
            report.longrepr = why
        elif why is not None:
            report.sections.append(("bifrost cassette", why))
    return report
