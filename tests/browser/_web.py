"""One person at the web client: a browser profile (its own IndexedDB) with the page open,
and the steps a person takes there. Screenshots go to ``test-output/browser/``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import (
    Browser,
    BrowserContext,
    FilePayload,
    Locator,
    Page,
    Request,
    expect,
)

PASSPHRASE = "correct horse battery"
#: An inbox entry's button that reads it (beside the one that deletes it).
READ = re.compile(r"^Read the message ")
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "browser"
TIMEOUT_MS = 30_000
# A check waits this long for the page (PBKDF2, five custodians, a loaded 2-core machine),
# instead of Playwright's 5 s.
expect.set_options(timeout=TIMEOUT_MS)


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def pick_file_in_the_origin_storage(page: Page, name: str, before: bytes = b"") -> None:
    """Make the save picker answer the file ``name`` of the origin private file system,
    holding ``before`` (what a file the person picks may hold already)."""
    page.evaluate(
        """async ([name, before]) => {
            const root = await navigator.storage.getDirectory();
            const handle = await root.getFileHandle(name, { create: true });
            const writable = await handle.createWritable();
            await writable.write(new Uint8Array(before));
            await writable.close();
            window.showSaveFilePicker = async (options) => {
                window.suggestedName = options.suggestedName;
                return handle;
            };
        }""",
        [name, list(before)],
    )


def saved_file(page: Page, name: str) -> dict[str, Any]:
    """The size, SHA-256 and first bytes of the origin private file system's file ``name``."""
    result: dict[str, Any] = page.evaluate(
        """async (name) => {
            const root = await navigator.storage.getDirectory();
            const file = await (await root.getFileHandle(name)).getFile();
            const data = await file.arrayBuffer();
            const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
            return {
                size: file.size,
                sha256: [...digest].map((b) => b.toString(16).padStart(2, '0')).join(''),
                head: [...new Uint8Array(data.slice(0, 16))],
            };
        }""",
        name,
    )
    return result


class Person:
    """One browser profile with the page open. The page holds its identities locked after
    every load (spec/sessions.md section 2): ``open`` unlocks the active one with the
    passphrase this person gave it. ``idle``: the page's idle limit in seconds (``?idle=``)."""

    def __init__(
        self,
        browser: Browser,
        base_url: str,
        *,
        width: int = 1100,
        height: int = 900,
        idle: int | None = None,
    ) -> None:
        self.context: BrowserContext = browser.new_context(
            viewport={"width": width, "height": height}
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.requests: list[Request] = []
        self.page.on("request", lambda request: self.requests.append(request))
        # Script errors only: an HTTP error answer (a refusal the page shows) is logged by
        # Chromium as "Failed to load resource", which is not the page failing.
        self.console_errors: list[str] = []
        self.page.on(
            "console",
            lambda m: (
                self.console_errors.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        self.base_url = base_url
        self.query = "" if idle is None else f"?idle={idle}"
        self.passphrases: dict[str, str] = {}
        self.open("identity")

    def open(self, section: str, *, unlock: bool = True) -> None:
        """Load the page afresh at ``section`` (a hash change alone would keep old results),
        and unlock the active identity unless ``unlock`` is false."""
        self.page.goto("about:blank")
        self.page.goto(f"{self.base_url}/{self.query}#{section}")
        expect(self.page.locator("body[data-ready=true]")).to_be_attached()
        expect(self.page.locator(f"#{section}")).to_be_visible()
        if unlock:
            self.unlock()

    def unlock(self) -> None:
        """Give the active identity's passphrase if the page asks for it."""
        form = self.page.locator("#unlock-form")
        if form.is_hidden():
            return
        name = self.page.locator("#active-identity").input_value()
        self.page.locator("#unlock-passphrase").fill(self.passphrases.get(name, PASSPHRASE))
        form.get_by_role("button", name="Unlock").click()
        expect(form).to_be_hidden()

    def try_create(self, name: str, passphrase: str = PASSPHRASE) -> Locator:
        """Fill in the form that creates an identity and submit it; the form's status."""
        page = self.page
        self.open("identity")
        page.get_by_label("Name", exact=True).fill(name)
        page.get_by_label("Passphrase for the key file").fill(passphrase)
        page.get_by_label("Passphrase again").fill(passphrase)
        page.get_by_role("button", name="Create identity").click()
        return page.locator("#create-form .status")

    def stored_identities(self) -> list[str]:
        """The names of the identities the page keeps in this profile."""
        stored: list[str] = self.page.evaluate(
            "async () => (await import('/web/js/store.js')).keys('identities')"
        )
        return stored

    def create(self, name: str) -> str:
        page = self.page
        status = self.try_create(name)
        expect(status).to_contain_text("registered it in the directory")
        self.passphrases[name] = PASSPHRASE
        fingerprint = page.locator("#identity-fingerprint").inner_text()
        assert re.fullmatch(r"([0-9a-f]{4} ){7}[0-9a-f]{4}", fingerprint), fingerprint
        return fingerprint

    def import_key(self, path: Path, passphrase: str = "") -> None:
        """Import a key file; an unencrypted one (no ``passphrase``) is locked in the page
        with PASSPHRASE, as the page asks."""
        self.open("identity")
        page = self.page
        page.get_by_label("Key file", exact=True).set_input_files(str(path))
        page.get_by_label("Passphrase (empty for an unencrypted file)").fill(passphrase)
        if not passphrase:
            form = page.locator("#import-form")
            form.get_by_label("New passphrase, for an unencrypted file").fill(PASSPHRASE)
            form.get_by_label("Confirm the new passphrase").fill(PASSPHRASE)
        page.get_by_role("button", name="Import").click()
        expect(page.locator("#import-form .status")).to_contain_text("Imported")
        self.passphrases[page.locator("#active-identity").input_value()] = passphrase or PASSPHRASE

    def act_as(self, name: str) -> None:
        self.page.get_by_label("Acting as").select_option(name)
        expect(self.page.locator("#identity-name")).to_have_text(name)
        expect(self.page.locator("#active-fingerprint")).not_to_be_empty()
        self.unlock()

    def compose(
        self,
        to: str,
        text: str = "",
        *,
        approval: bool = False,
        burn: bool = False,
        file: bytes | None = None,
        filename: str = "data.bin",
        path: Path | None = None,
        expires: str | None = None,
    ) -> None:
        """Fill in the send form afresh and press Encrypt and send; check nothing. ``path``:
        a file on disk, which Chromium reads itself (a large one need not cross the wire);
        ``expires``: the Expires choice's value in seconds ("" never), else the form's own."""
        page = self.page
        self.open("send")
        page.get_by_label("To (names, separated by commas)").fill(to)
        if path is not None:
            page.get_by_label("…or a file instead").set_input_files(str(path))
        elif file is None:
            page.get_by_label("Message", exact=True).fill(text)
        else:
            payload: FilePayload = {
                "name": filename,
                "mimeType": "application/octet-stream",
                "buffer": file,
            }
            page.get_by_label("…or a file instead").set_input_files(files=[payload])
        if approval:
            page.get_by_label("Each custodian's operator must approve the release").check()
        if burn:
            page.get_by_label("Burn after reading (one release per custodian)").check()
        if expires is not None:
            page.get_by_label("Expires").select_option(expires)
        page.get_by_role("button", name="Encrypt and send").click()

    def send(
        self,
        to: str,
        text: str = "",
        *,
        approval: bool = False,
        burn: bool = False,
        file: bytes | None = None,
        filename: str = "data.bin",
        path: Path | None = None,
        timeout_ms: float = TIMEOUT_MS,
        expires: str | None = None,
    ) -> str:
        """Send, check it went and the relay's copy is identical; return the message id."""
        self.compose(
            to,
            text,
            approval=approval,
            burn=burn,
            file=file,
            filename=filename,
            path=path,
            expires=expires,
        )
        page = self.page
        expect(page.locator("#send-form .status")).to_contain_text(
            f"Sent to {to}", timeout=timeout_ms
        )
        expect(page.locator("#copy-check")).to_contain_text("identical")
        return page.locator("#sent-id").inner_text()

    def read(self, message_id: str) -> Page:
        page = self.page
        self.open("inbox")
        item = page.locator(f"li[data-message='{message_id}']")
        item.get_by_role("button", name=READ).click()
        expect(page.locator("#reading")).not_to_have_attribute("aria-busy", "true")
        return page

    def status_of(self) -> dict[str, str]:
        items = self.page.locator("#custody-status li")
        return {
            items.nth(i).get_attribute("data-custodian") or "": items.nth(i).get_attribute(
                "data-state"
            )
            or ""
            for i in range(items.count())
        }

    def close(self) -> None:
        assert not self.console_errors, self.console_errors
        self.context.close()

    def __enter__(self) -> Person:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.close()  # and check the page logged no error
        else:
            self.context.close()
