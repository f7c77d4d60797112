"""The dashboard at `/` of the control address, in a real headless browser (Debian's chromium, driven by
selenium through the system chromedriver: nothing downloads a browser)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from simulators import SimHost
from simulators.control import ControlServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs chromium and chromium-driver (apt-get; .ci/run installs them)",
)


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def dashboard() -> Iterator[tuple[SimHost, ControlServer]]:
    with SimHost("water_tank", clock="virtual", any_port=True) as host, ControlServer(host, token="t0k") as server:
        yield host, server


def _wait(driver: object, timeout: float = 20) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The page rebuilds its tables as events arrive: an element found a moment ago may be gone; look again.
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,))


def _text(driver: object, element_id: str, expected: str, timeout: float = 20) -> None:
    from selenium.webdriver.common.by import By

    _wait(driver, timeout).until(lambda d: d.find_element(By.ID, element_id).text == expected)


def test_the_dashboard_shows_a_changing_value_and_injects_a_fault(
    browser: object, dashboard: tuple[SimHost, ControlServer], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    host, server = dashboard
    driver = browser
    driver.get(f"{server.url}/?token=t0k")  # type: ignore[attr-defined]
    _text(driver, "value-valve.open", "50")
    assert host.url("plc1") in driver.find_element(By.ID, "devices").text  # type: ignore[attr-defined]

    host.plant.set("valve.open", 61)  # the plant changes: the page follows through the event stream
    _text(driver, "value-valve.open", "61")

    Select(driver.find_element(By.ID, "fault-kind")).select_by_visible_text("exception")  # type: ignore[attr-defined]
    driver.find_element(By.ID, "fault-params").send_keys("code=6")  # type: ignore[attr-defined]
    driver.find_element(By.ID, "inject").click()  # type: ignore[attr-defined]
    _wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#faults tr.fault")) == 1)

    port = int(host.url("plc1").split(":")[2].split("?")[0])
    with ModbusTcpClient("127.0.0.1", port=port) as plc:
        answer = plc.read_holding_registers(6, count=1, device_id=1)
    assert answer.isError() and answer.exception_code == 6
    _wait(driver).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#faults tr.fault td.hits").text == "1"
    )  # the page shows the fault's hit
    _wait(driver).until(lambda d: "exception" in d.find_element(By.ID, "traffic").text)

    shot = tmp_path / "dashboard.png"
    assert driver.save_screenshot(str(shot))  # type: ignore[attr-defined]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_without_the_token_the_page_cannot_read_the_api(
    browser: object, dashboard: tuple[SimHost, ControlServer]
) -> None:
    from selenium.webdriver.common.by import By

    _, server = dashboard
    browser.get(server.url + "/")  # type: ignore[attr-defined]
    assert "needs its token" in browser.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
