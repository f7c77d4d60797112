"""The plugin is registered once, whether autoloaded through its pytest11 entry point or named with -p."""

from __future__ import annotations

import pytest

PROBE = """
import pytest_bifrost

def test_registered_once(pytestconfig):
    manager = pytestconfig.pluginmanager
    found = [plugin for plugin in manager.get_plugins() if plugin is pytest_bifrost]
    assert len(found) == 1
    assert manager.get_plugin("pytest_bifrost") is pytest_bifrost
"""


@pytest.mark.parametrize("args", [(), ("-p", "pytest_bifrost")], ids=["autoload", "dash-p"])
def test_one_registration(pytester: pytest.Pytester, args: tuple[str, ...]) -> None:
    pytester.makepyfile(PROBE)
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1)


def test_dash_p_works_with_autoload_disabled(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(PROBE)
    result = pytester.runpytest_subprocess("-p", "pytest_bifrost")
    result.assert_outcomes(passed=1)
