"""Debian's chromium, headless, driven by selenium through Debian's chromium-driver (nothing
downloaded), with the SSO proxy's identity header set on every request the page makes, as
the proxy in front of the console would. Its calls block, so a test makes them on a thread
(`Browser.do`) and the event loop serving the console and the Temporal client stays free."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.support.chromium import CHROMIUM

DRIVER = shutil.which("chromedriver")
T = TypeVar("T")


class Browser:
    def __init__(self, base_url: str, profile: Path):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM or ""
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1100,1300",
                     f"--user-data-dir={profile}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        self.base_url = base_url
        self.driver.execute_cdp_cmd("Network.enable", {})

    async def do(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(call, *args)

    def sign_in(self, who: str) -> None:
        self.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"X-Forwarded-Email": who}})

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def wait_for(self, predicate: Callable[[webdriver.Chrome], T], seconds: float = 30) -> T:
        return WebDriverWait(self.driver, seconds, poll_frequency=0.1).until(predicate)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def close(self) -> None:
        self.driver.quit()

    def start(self, action: str, region: str, typed: str) -> None:
        """Fill the home page's start form for `action` (the region select, the name typed
        back) and send it, as a person would."""
        form = self.find(f'form.start[data-action="{action}"]')
        Select(form.find_element(By.CSS_SELECTOR, "select")).select_by_value(region)
        form.find_element(By.NAME, "confirm").send_keys(typed)
        form.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()

    def weights_drawn(self, region: str) -> set[int]:
        """The weights the run page's DNS weights chart (the report's) draws for `region`, read
        back from the SVG: its polyline's heights against the chart's own gridlines."""
        # One read in the page: the live feed may replace the chart between two WebDriver calls.
        svg = self.driver.execute_script("const s = document.querySelector('#report svg.weights'); return s ? s.outerHTML : '';")
        return drawn_weights(svg, region)


def drawn_weights(svg: str, region: str) -> set[int]:
    """The chart's horizontal gridlines run from 0% (lowest) to 100% (highest)."""
    grid = [float(y1) for y1, y2 in re.findall(r'<line [^>]*y1="([\d.]+)"[^>]* y2="([\d.]+)"', svg) if y1 == y2]
    line = re.search(rf'<polyline points="([^"]*)"[^>]*><title>{re.escape(region)}</title>', svg)
    if line is None or len(grid) < 2:
        return set()
    zero, full = max(grid), min(grid)
    return {round((zero - float(point.split(",")[1])) / (zero - full) * 100) for point in line.group(1).split()}
