"""A real headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by selenium, for checking the
report page as a person would see it. ``.ci/run`` installs both; without them the browser tests skip, saying so."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1300,1000")


# The one reason the browser tests skip, checkable with `which chromium chromedriver`; .ci/run installs both
# with apt-get, so CI skips only where apt cannot run (not root, not Debian).
SKIP_REASON = "chromium or chromedriver not on PATH (apt-get install chromium chromium-driver)"


def _binary(*names: str) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


@contextmanager
def chromium() -> Iterator:
    """A selenium driver on headless Chromium with the browser's console log kept; skips when not installed."""
    browser, driver_bin = _binary("chromium", "chromium-browser"), _binary("chromedriver")
    if browser is None or driver_bin is None:
        pytest.skip(SKIP_REASON)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(driver_bin))
        try:
            yield driver
        finally:
            driver.quit()


def open_page(driver, page: Path, timeout: float = 120.0) -> None:
    """Load ``page`` and wait until page.js says every figure is drawn (``body[data-rendered]``)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.set_page_load_timeout(timeout)
    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, timeout).until(lambda d: d.find_element("tag name", "body").get_attribute("data-rendered"))


def console_errors(driver) -> list[str]:
    """The browser's own console log: every SEVERE entry (uncaught errors, console.error, failed loads)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def hover_first_point(driver, figure_id: str) -> str:
    """Move the real mouse onto the first point of a scatter figure; return the hover label's text."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    el = driver.find_element("id", figure_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
    x, y = driver.execute_script(
        "var gd = arguments[0], t = gd._fullData[0], xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;"
        "return [xa._offset + xa.l2p(t.x[0]), ya._offset + ya.l2p(t.y[0])];", el)
    size = el.size
    ActionChains(driver).move_to_element_with_offset(el, int(x - size["width"] / 2), int(y - size["height"] / 2)).perform()
    return WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("var h = arguments[0].querySelector('.hoverlayer');"
                                   "return h && h.textContent;", el))


def screenshot(driver, path: Path, width: int = 1300) -> None:
    """The whole page as one PNG (Chrome DevTools Protocol, beyond the viewport)."""
    import base64

    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path.write_bytes(base64.b64decode(shot["data"]))
