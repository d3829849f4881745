"""The browser's crypto core under test: Debian's Chromium driven by Playwright.

``web_origin`` serves ``src/securecomm/web/`` (and this directory's ``*.js``
under ``/tests/``) on a free loopback port; ``http://127.0.0.1`` is a secure
context, so WebCrypto is there, and ``page`` opens a blank page at it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
WEB = Path(__file__).resolve().parents[2] / "src" / "securecomm" / "web"
HERE = Path(__file__).resolve().parent
BLANK = b"<!doctype html><meta charset=utf-8><title>securecomm tests</title>"


class _Handler(SimpleHTTPRequestHandler):
    def guess_type(self, path: str | os.PathLike[str]) -> str:
        if str(path).endswith(".js"):
            return "text/javascript"
        return super().guess_type(path)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/__blank__":
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(BLANK)))
            self.end_headers()
            self.wfile.write(BLANK)
            return
        super().do_GET()

    def translate_path(self, path: str) -> str:
        name = urlsplit(path).path.removeprefix("/tests/")
        if path.startswith("/tests/") and "/" not in name and name.endswith(".js"):
            return str(HERE / name)
        return super().translate_path(path)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium: make test does it")
    started = sync_playwright().start()
    try:
        yield started
    finally:
        started.stop()


def launch(playwright: Playwright, *extra: str) -> Browser:
    """Debian's Chromium, headless, with ``extra`` arguments."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra])


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    started = launch(playwright)
    yield started
    started.close()


@pytest.fixture(scope="session")
def web_origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(WEB)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def page(browser: Browser, web_origin: str) -> Iterator[Page]:
    page = browser.new_page()
    page.goto(f"{web_origin}/__blank__")
    yield page
    page.close()
