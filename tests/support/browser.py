"""Debian's chromium, headless, driven by selenium through Debian's chromium-driver (nothing
downloaded), with the SSO proxy's identity header set on every request the page makes, as
the proxy in front of the console would. Its calls block, so a test makes them on a thread
(`Browser.do`) and the event loop serving the console and the Temporal client stays free."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

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
