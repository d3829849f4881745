"""The page over HTTPS: ``securecomm up --tls`` serves the relay and the custodians with
certificates from the local network's own CA; Chromium is told to trust that CA by its
key hash (``--ignore-certificate-errors-spki-list``, which accepts a chain only if one
of its certificates has that key), never by turning verification off."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Playwright, expect

from securecomm.tls import chromium_trust_flag
from tests.browser._web import Person
from tests.integration.test_cli_system import Up, finish_up, start_up

from .conftest import launch


@pytest.fixture(scope="module")
def up_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    up = start_up(tmp_path_factory.mktemp("web-tls") / "home", tls=True)
    try:
        yield up
    finally:
        finish_up(up)


def _trusting(playwright: Playwright, up: Up) -> Browser:
    """Chromium started with the option `up --tls` and `tls ca` print for it."""
    assert up.trust is not None
    return launch(playwright, chromium_trust_flag(up.trust.encode()))


def test_the_page_sends_and_reads_over_https(playwright: Playwright, up_tls: Up) -> None:
    assert up_tls.relay_url.startswith("https://")
    browser = _trusting(playwright, up_tls)
    try:
        erin, frank = Person(browser, up_tls.relay_url), Person(browser, up_tls.relay_url)
        erin.create("erin")
        frank.create("frank")
        message_id = erin.send("frank", "sealed, signed, and now on HTTPS")
        expect(erin.page.locator("#receipts tbody tr")).to_have_count(5)
        page = frank.read(message_id)
        expect(page.locator("#plaintext")).to_have_text("sealed, signed, and now on HTTPS")
        # Every request the page made went over TLS, to the relay and the custodians.
        urls = [request.url for person in (erin, frank) for request in person.requests]
        assert urls and all(url.startswith(("https://", "data:", "blob:")) for url in urls)
        assert not erin.console_errors and not frank.console_errors
    finally:
        browser.close()


def test_a_browser_that_does_not_trust_the_ca_gets_no_page(browser: Browser, up_tls: Up) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        with pytest.raises(Exception, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto(f"{up_tls.relay_url}/")
    finally:
        context.close()
