"""Pages driven in a headless Chromium, as a user would: the app's page for its browser test and the
documentation's picture of it (``scripts/app_screenshot.py``), and the built documentation's pages for their
pictures (``scripts/site_screenshots.py``). Needs Selenium, Chromium and chromedriver
(``scripts/setup.sh`` installs them); the package itself does not import this module."""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

from dynamicvit.core.files import atomic_write

__all__ = ["BROWSER", "DRIVER", "Browser", "Page", "launch"]

DRIVER = shutil.which("chromedriver")
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def launch(app) -> str:
    """Serve the Gradio ``app`` on a free local port in this process and return its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return f"http://127.0.0.1:{port}/"


class Browser:
    """The page at ``url`` in a headless Chromium window of ``size`` pixels; a context manager that closes it.

    Pages may re-render elements while they update them (Gradio does): a found element may go stale before it
    is read, so every read and every action retries until it succeeds or ``seconds`` pass.
    """

    def __init__(self, url: str, seconds: float = 120, size: tuple[int, int] = (1300, 1100)) -> None:
        from selenium import webdriver
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.support.ui import WebDriverWait

        options = webdriver.ChromeOptions()
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
            options.add_argument(flag)
        options.add_argument(f"--window-size={size[0]},{size[1]}")
        options.binary_location = BROWSER
        self.driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        self.wait = WebDriverWait(self.driver, seconds, ignored_exceptions=(StaleElementReferenceException,))
        self.driver.get(url)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.driver.quit()

    def until(self, condition):
        """Wait until ``condition()`` is truthy and return its value."""
        return self.wait.until(lambda _: condition())

    def element(self, css: str):
        from selenium.webdriver.common.by import By

        self.until(lambda: self.driver.find_elements(By.CSS_SELECTOR, css))
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def act(self, action) -> None:
        self.until(lambda: action() or True)

    def screenshot(self, path: str | Path) -> None:
        """Save the window as a PNG at ``path`` (atomically)."""
        with atomic_write(path) as tmp:
            tmp.write_bytes(self.driver.get_screenshot_as_png())


class Page(Browser):
    """The app's page (``dynamicvit app``), once it has rendered, with what a user does on it."""

    def __init__(self, url: str, seconds: float = 120) -> None:
        super().__init__(url, seconds)
        self.element("#upload input[type=file]")  # the page has rendered

    def info(self) -> str:
        """The text of the results panel."""
        return self.element("#info").text

    def picture(self) -> str | None:
        """The kept-token drawing's address."""
        return self.element("#picture img").get_attribute("src")

    def kept(self) -> list[int]:
        """The kept tokens per stage the results panel shows (none yet: ``[]``)."""
        found = re.search(r"kept tokens per stage: ([\d / ]+)", self.info())
        return [int(v) for v in found.group(1).split("/")] if found else []

    def settled(self) -> bool:
        """No request is being processed."""
        return "processing" not in self.element("body").text

    def upload(self, path: str) -> None:
        """Give the page the picture file ``path`` (clearing the previous one)."""
        from selenium.webdriver.common.by import By

        if not self.driver.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"):
            self.act(lambda: self.element("#upload button[aria-label='Clear']").click())
        self.act(lambda: self.element("#upload input[type=file]").send_keys(path))

    def set_keep_rate(self, value: str) -> None:
        """Set the keep-rate slider's number to ``value`` and submit it."""
        from selenium.webdriver.common.keys import Keys

        # the whole value at once: typed key by key, its first digit ("0") is out of the slider's range
        fill = "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
        self.act(lambda: self.driver.execute_script(fill, self.element("#keep-rate input[type=number]"), value))
        self.act(lambda: self.element("#keep-rate input[type=number]").send_keys(Keys.ENTER))
