"""The web client in real headless Chromium against ``securecomm up`` on loopback.

Two browser profiles (Playwright contexts, each with its own IndexedDB) are two people:
carol and dave create their identities in the page, send and read. The CLI users of
``up`` (alice and bob) exchange messages with them both ways. An operator profile imports
the operators' key files written by ``securecomm init`` and approves releases. A screenshot
of every page goes to ``test-output/browser/`` under the project root.
"""

from __future__ import annotations

import base64
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Dialog, Locator, expect

from securecomm import canonical, shares
from securecomm.client.transport import ServiceClient
from securecomm.client.trust import KnownKeys
from securecomm.custodian import audit
from securecomm.custodian.tables import audit_log
from securecomm.identity import Identity
from securecomm.local.home import user_key_path
from securecomm.protocol import Release
from securecomm.testing.mitm import encodings_of
from tests.browser._web import PASSPHRASE, READ, Person, shot
from tests.browser.test_web_fixes import decide, releases_of
from tests.integration.conftest import NAMES
from tests.integration.test_cli_system import Up, cli, explain, run, running_up, send


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("web") / "home") as running:
        yield running


@pytest.fixture(scope="module")
def people(browser: Browser, up: Up) -> Iterator[dict[str, Person]]:
    carol, dave = Person(browser, up.relay_url), Person(browser, up.relay_url)
    carol.create("carol")
    shot(carol.page, "identity-created")
    dave.create("dave")
    try:
        yield {"carol": carol, "dave": dave}
    finally:
        carol.close()
        dave.close()


def test_first_visit_shows_the_identity_page(browser: Browser, up: Up) -> None:
    newcomer = Person(browser, up.relay_url)
    expect(newcomer.page.locator("#identity-current")).to_contain_text("no identity")
    expect(newcomer.page.locator("#custody-rule")).to_contain_text("any 3 rebuild it")
    shot(newcomer.page, "identity-empty")
    newcomer.close()


def test_browser_to_browser_send_and_read(people: dict[str, Person]) -> None:
    carol, dave = people["carol"], people["dave"]
    text = "Meet at the north gate at 06:00. — ünïcødé ✓ <b>not bold</b><img src=x>"
    message_id = carol.send("dave", text)
    expect(carol.page.locator("#receipts tbody tr")).to_have_count(5)
    # What was sent and the relay's copy are shown side by side, and equal.
    sent = carol.page.locator("#sent-ciphertext").inner_text()
    assert sent == carol.page.locator("#relay-ciphertext").inner_text() and sent
    shot(carol.page, "send-done")
    page = dave.read(message_id)
    expect(page.locator("#plaintext")).to_have_text(text)
    # The message is shown as text: markup in it is not markup in the page.
    expect(page.locator("#plaintext b, #plaintext img")).to_have_count(0)
    assert set(dave.status_of().values()) == {"released"}
    shot(page, "read-done")
    dave.open("inbox")
    expect(dave.page.locator(f"li[data-message='{message_id}']")).to_be_visible()
    shot(dave.page, "inbox")


def test_nothing_secret_goes_to_the_relay(people: dict[str, Person], up: Up) -> None:
    carol = people["carol"]
    carol.requests.clear()
    secret = "the vault code is 4-8-15-16-23-42"
    # To bob, whose key file the test holds: it can then fetch the shares and rebuild the key
    # the page made, and look for all of them in everything the page sent.
    message_id = carol.send("bob", secret)
    bob = Identity.load(user_key_path(up.home, "bob"))
    known = KnownKeys.load(up.home / "people" / "bob")  # bob's own home in `up`'s
    released = []
    for name in NAMES:
        with ServiceClient(up.url(name), name, bob) as custodian:
            answer = custodian.request(
                "POST", "/v1/releases", body={"v": 1, "message_id": message_id}
            )
        released.append(Release.from_json(answer.json()).open(bob, known.require(name)))
    key = shares.combine(released[:3])
    secrets = (
        [secret.encode(), key] + [s.to_bytes() for s in released] + [s.value for s in released]
    )
    sent = [
        (r.url, "\n".join(f"{k}: {v}" for k, v in r.headers.items()).encode(), r.post_data_buffer)
        for r in carol.requests
    ]
    assert any(url.startswith(up.relay_url) and body for url, _, body in sent)
    for url, headers, body in sent:
        for number, value in enumerate(secrets):
            for spelling in encodings_of(value):
                assert spelling not in (body or b"") + headers + url.encode(), (url, number)
    # The relay got the envelope (ciphertext, receipts, signatures) and nothing else.
    posted = [
        r for r in carol.requests if r.url.endswith("/api/v1/messages") and r.method == "POST"
    ]
    assert len(posted) == 1
    envelope = canonical.loads(posted[0].post_data_buffer or b"")
    assert set(envelope) == {"v", "header", "nonce", "ciphertext", "tag", "receipts", "signature"}
    deposits = [r for r in carol.requests if r.url.endswith("/v1/deposits")]
    assert len(deposits) == 5 and not any(r.url.startswith(up.relay_url) for r in deposits)


def test_a_contact_whose_key_changed_is_refused_and_nothing_is_sent(
    people: dict[str, Person], up: Up
) -> None:
    carol = people["carol"]
    carol.send("dave", "pins dave's key in carol's browser")
    other = Identity.generate("dave").public
    real = carol.page.evaluate(
        """async (other) => {
            const store = await import('/web/js/store.js');
            const real = await store.get('known', 'dave');
            await store.put('known', 'dave', other);
            return real;
        }""",
        other.to_json(),
    )
    try:
        carol.requests.clear()
        carol.compose("dave", "must not go anywhere")
        status = carol.page.locator("#send-form .status")
        expect(status).to_contain_text(
            f"the key of 'dave' changed: pinned {other.short_fingerprint()}"
        )
        expect(status).to_contain_text("nothing was sent")
        assert not [r for r in carol.requests if r.method in {"POST", "PUT"}]
    finally:
        carol.page.evaluate(
            """async (real) => {
                const store = await import('/web/js/store.js');
                await store.put('known', 'dave', real);
            }""",
            real,
        )


def test_a_browser_message_is_read_by_the_cli(people: dict[str, Person], up: Up) -> None:
    text = "from the browser to the command line"
    message_id = people["carol"].send("bob", text)
    result = cli(up.home, "read", message_id, "--as", "bob")
    assert result.returncode == 0, explain(result)
    assert result.stdout.rstrip("\n") == text
    assert "from carol" in result.stderr


def test_a_cli_message_is_read_in_the_browser(people: dict[str, Person], up: Up) -> None:
    text = "from the command line to the browser"
    result = cli(up.home, "send", "--from", "alice", "--to", "dave", text)
    assert result.returncode == 0, explain(result)
    found = re.search(r"^message id:\s+([0-9a-f]{32})$", result.stdout, re.MULTILINE)
    assert found, explain(result)
    page = people["dave"].read(found.group(1))
    expect(page.locator("#plaintext")).to_have_text(text)
    expect(page.locator("#reading")).to_contain_text("key not known before")
    page.get_by_role("button", name="I compared it: pin alice's key").click()
    expect(page.locator("#reading")).to_contain_text("alice's key is pinned")
    page = people["dave"].read(found.group(1))
    expect(page.locator("#reading")).to_contain_text("known key")


def test_an_exported_key_file_opens_in_the_cli(people: dict[str, Person], tmp_path: Path) -> None:
    carol = people["carol"]
    carol.open("identity")
    with carol.page.expect_download() as download:
        carol.page.get_by_role("button", name="Export key file").click()
    path = tmp_path / "carol.key"
    download.value.save_as(path)
    loaded = Identity.load(path, PASSPHRASE.encode())
    shown = carol.page.locator("#identity-fingerprint").inner_text()
    assert loaded.name == "carol" and loaded.public.short_fingerprint() == shown
    with pytest.raises(Exception, match="passphrase"):
        Identity.load(path, b"wrong passphrase")
    shot(carol.page, "identity")


def test_approval_by_the_operators_in_the_browser(
    browser: Browser, people: dict[str, Person], up: Up
) -> None:
    carol, dave = people["carol"], people["dave"]
    message_id = carol.send("dave", "needs three operators", approval=True)
    dave.read(message_id)
    assert set(dave.status_of().values()) == {"pending"}
    expect(dave.page.locator("#reading .status")).to_contain_text("Nothing was decrypted")
    shot(dave.page, "read-pending")

    operator = Person(browser, up.relay_url)
    for name in ("alpha", "bravo", "charlie", "delta"):
        operator.import_key(user_key_path(up.home, f"{name}-operator"))
    for name in ("alpha", "bravo", "charlie"):
        operator.act_as(f"{name}-operator")
        operator.open("operator")
        card = operator.page.locator(f"#operator-{name}")
        expect(card.locator(".audit-result")).to_contain_text("verify")
        card.locator("li[data-release]").get_by_role("button", name=re.compile("^Approve")).click()
        expect(card.locator(".status").last).to_contain_text("approved")
        # Another custodian's card says this identity is not its operator.
        others = [n for n in ("alpha", "bravo", "charlie", "delta", "echo") if n != name]
        expect(operator.page.locator("#operator-others")).to_have_text(
            f"{name}-operator is not the operator of {', '.join(others)}."
        )
        expect(operator.page.locator("#operator-echo")).to_have_count(0)
    shot(operator.page, "operator")
    operator.act_as("delta-operator")
    operator.open("operator")
    card = operator.page.locator("#operator-delta")
    operator.page.once("dialog", lambda dialog: dialog.accept())
    card.locator("li[data-release]").get_by_role("button", name=re.compile("^Deny")).click()
    expect(card.locator(".status").last).to_have_text(
        re.compile(r"^Release [0-9a-f]{8}… denied\.$")
    )
    operator.close()

    page = dave.read(message_id)
    expect(page.locator("#plaintext")).to_have_text("needs three operators")
    states = dave.status_of()
    assert [states[n] for n in ("alpha", "bravo", "charlie")] == ["released"] * 3
    assert states["delta"] == "refused" and states["echo"] == "pending"
    expect(page.locator("#custody-status li[data-custodian=delta]")).to_contain_text("denied")


def test_a_denial_asks_first_and_a_row_gone_stale_is_redrawn_with_why(
    browser: Browser, up: Up
) -> None:
    """A denial is final, so Deny asks first, naming the reader. A row decided elsewhere or
    whose share was destroyed since the list was drawn is refused by the custodian: the
    card draws what waits now and says why."""
    decided, unsent = (send(up.home, text, "--require-approval") for text in ("one", "two"))
    for message_id in (decided, unsent):
        cli(up.home, "read", message_id, "--as", "bob")
    operator = Person(browser, up.relay_url)
    operator.import_key(user_key_path(up.home, "alpha-operator"))
    operator.act_as("alpha-operator")

    def row(message_id: str) -> Locator:
        card = operator.page.locator("#operator-alpha")
        return card.locator("li[data-release]", has_text=f"message {message_id[:8]}")

    def click(message_id: str, label: str) -> None:
        row(message_id).get_by_role("button", name=re.compile(f"^{label}")).click()

    def pending(message_id: str) -> list[str]:
        return [r["release_id"] for r in releases_of(up, "alpha", message_id, "pending")]

    operator.open("operator")
    operator.page.once("dialog", lambda dialog: dialog.dismiss())
    click(decided, "Deny")
    status = operator.page.locator("#operator-alpha .status").last
    expect(status).to_have_text("Not denied.")
    expect(row(decided)).to_have_count(1)
    assert len(pending(decided)) == 1

    # Decided elsewhere (another operator's session), then denied from the stale row.
    (release_id,) = pending(decided)
    decide(up, "alpha", decided, "approve")
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    operator.page.once("dialog", accept)
    click(decided, "Deny")
    expect(status).to_contain_text(f"release {release_id} is approved")
    expect(status).to_have_class(re.compile("error"))
    expect(row(decided)).to_have_count(0)
    expect(row(unsent)).to_have_count(1)
    assert asked == [
        f"Deny bob alpha's share of message {decided[:8]}…? A denial is final: alpha will"
        " not release this share to bob later."
    ]

    # Its share destroyed by its sender: approving the stale row is refused, the row goes.
    result = cli(up.home, "unsend", unsent, "--as", "alice")
    assert result.returncode == 0, explain(result)
    click(unsent, "Approve")
    expect(status).to_contain_text(f"the share of message {unsent} was destroyed")
    expect(row(unsent)).to_have_count(0)
    expect(operator.page.locator("#operator-alpha .pending")).to_have_count(0)
    operator.close()


def test_an_envelope_tampered_on_the_relay_shows_an_error_and_no_text(
    people: dict[str, Person], up: Up
) -> None:
    carol, dave = people["carol"], people["dave"]
    text = "this must never be shown once altered"
    message_id = carol.send("dave", text)
    database = up.home / "relay" / "relay" / "relay.db"
    with sqlite3.connect(database) as conn:
        (stored,) = conn.execute(
            "SELECT envelope FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        document = canonical.loads(stored)
        ciphertext = bytearray(base64.b64decode(document["ciphertext"]))
        ciphertext[0] ^= 1
        document["ciphertext"] = base64.b64encode(bytes(ciphertext)).decode()
        conn.execute(
            "UPDATE messages SET envelope = ? WHERE id = ?",
            (canonical.dumps(document), message_id),
        )
    page = dave.read(message_id)
    expect(page.locator("#reading .status")).to_have_class(re.compile("error"))
    expect(page.locator("#reading .status")).to_contain_text("altered or is not genuine")
    expect(page.locator("#plaintext")).to_have_count(0)
    assert set(dave.status_of().values()) == {"not-asked"}
    assert text not in page.content()
    shot(page, "read-tampered")


def test_a_page_opened_at_another_address_says_where_it_works(browser: Browser, up: Up) -> None:
    elsewhere = Person(browser, up.relay_url.replace("127.0.0.1", "localhost"))
    banner = elsewhere.page.locator("#page-error")
    expect(banner).to_contain_text(f"only answer pages opened at {up.relay_url}")
    elsewhere.page.locator("#origin-link").click()
    expect(elsewhere.page.locator("body[data-ready=true]")).to_be_attached()
    assert elsewhere.page.url.startswith(up.relay_url)
    expect(elsewhere.page.locator("#page-error")).to_be_hidden()
    elsewhere.close()


def test_keyboard_only_and_phone_width(browser: Browser, up: Up) -> None:
    phone = Person(browser, up.relay_url, width=390)
    page = phone.page
    page.get_by_label("Name", exact=True).focus()
    page.keyboard.type("erin")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSPHRASE)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSPHRASE)
    page.keyboard.press("Enter")
    expect(page.locator("#create-form .status")).to_contain_text("Created erin")
    for section in ("identity", "send", "inbox", "operator"):
        phone.open(section)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{section} scrolls sideways at phone width by {overflow}px"
        shot(page, f"phone-{section}")
    phone.close()


def test_bad_input_gets_a_sentence_not_an_exception(people: dict[str, Person]) -> None:
    carol = people["carol"]
    status = carol.page.locator("#send-form .status")
    carol.compose("nobody-here", "hello")
    expect(status).to_contain_text("nobody called nobody-here is registered")
    carol.compose("Not A Name", "hello")
    expect(status).to_contain_text("is not a valid name")
    carol.compose("dave")
    expect(status).to_contain_text("Write a message or choose a file")
    shot(carol.page, "send-error")


def test_a_cli_key_file_with_a_passphrase_imports(browser: Browser, up: Up, tmp_path: Path) -> None:
    (tmp_path / "pass").write_text("frank's own passphrase\n")
    made = run(
        "keygen",
        "frank",
        "--out",
        str(tmp_path),
        "--passphrase-file",
        str(tmp_path / "pass"),
    )
    assert made.returncode == 0, explain(made)
    expected = Identity.load(tmp_path / "frank.key", b"frank's own passphrase").public
    person = Person(browser, up.relay_url)
    page = person.page
    page.get_by_label("Key file", exact=True).set_input_files(str(tmp_path / "frank.key"))
    page.get_by_label("Passphrase (empty for an unencrypted file)").fill("not the passphrase")
    page.get_by_role("button", name="Import").click()
    status = page.locator("#import-form .status")
    expect(status).to_have_class(re.compile("error"))
    expect(status).to_contain_text("passphrase")
    person.import_key(tmp_path / "frank.key", "frank's own passphrase")
    expect(page.locator("#identity-fingerprint")).to_have_text(expected.short_fingerprint())
    person.close()


def test_a_file_from_the_browser_is_read_by_the_cli_byte_for_byte(
    people: dict[str, Person], up: Up, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 300 + b"\x00\xff"
    message_id = people["carol"].send("bob", file=data, filename="q3 layoffs.xlsx")
    out = tmp_path / "received.bin"
    result = cli(up.home, "read", message_id, "--as", "bob", "--out", str(out))
    assert result.returncode == 0, explain(result)
    assert out.read_bytes() == data
    assert "file 'q3 layoffs.xlsx'" in result.stderr, explain(result)
    # The name is in the ciphertext, not in what the relay keeps.
    assert b"layoffs" not in (up.home / "relay" / "relay" / "relay.db").read_bytes()


def test_a_file_is_offered_as_a_download_in_the_browser(
    people: dict[str, Person], tmp_path: Path
) -> None:
    data = b"\x00\x01binary\xff" * 5000
    message_id = people["carol"].send("dave", file=data, filename="evidence 07.mp4")
    page = people["dave"].read(message_id)
    expect(page.locator("#plaintext")).to_have_count(0)
    with page.expect_download() as download:
        page.get_by_role("button", name=f"Save evidence 07.mp4 ({len(data)} bytes)").click()
    assert download.value.suggested_filename == "evidence 07.mp4"
    path = tmp_path / "saved.bin"
    download.value.save_as(path)
    assert path.read_bytes() == data


def test_burn_after_reading_refuses_the_second_read(people: dict[str, Person]) -> None:
    """dave's read burns the shares: his inbox offers Read no more, and carol's read, the
    second, is refused by every custodian."""
    carol, dave = people["carol"], people["dave"]
    message_id = carol.send("dave, carol", "read me once", burn=True)
    dave.open("inbox")
    # The inbox shows the policy the sender signed, before anything is read.
    item = dave.page.locator(f"li[data-message='{message_id}']")
    expect(item).to_contain_text("burn after reading")
    expect(dave.read(message_id).locator("#plaintext")).to_have_text("read me once")
    expect(item.get_by_role("button", name=READ)).to_have_count(0)
    page = carol.read(message_id)
    expect(page.locator("#plaintext")).to_have_count(0)
    expect(page.locator("#reading .status")).to_contain_text(
        "Not enough custodians released a good share: 0 of the 3 needed"
    )
    assert set(carol.status_of().values()) == {"refused"}
    expect(page.locator("#custody-status")).to_contain_text("destroyed")
    shot(page, "read-refused")


def _unsend(person: Person, message_id: str | None = None, *, confirm: bool | None = True) -> str:
    """Press Unsend (the Sent card's, or the form's with ``message_id``), answer its
    question (None: it asks none), and wait for the form's word on it."""
    page = person.page
    if confirm is not None:
        page.once("dialog", lambda dialog: dialog.accept() if confirm else dialog.dismiss())
    if message_id is None:
        page.locator("#sent-unsend").click()
    else:
        person.open("send")
        page.get_by_label("Message id").fill(message_id)
        page.locator("#unsend-form").get_by_role("button", name="Unsend").click()
    form = page.locator("#unsend-form")
    expect(form).not_to_have_attribute("aria-busy", "true")
    expect(form.locator(".status")).not_to_be_empty()
    return form.locator(".status").inner_text()


def _shares_unsent(up: Up, message_id: str) -> list[str | None]:
    """Why each custodian destroyed its share of ``message_id`` (None: it holds it)."""
    found = []
    for name in NAMES:
        with sqlite3.connect(up.home / name / "custodians" / name / "custodian.db") as conn:
            (why,) = conn.execute(
                "SELECT destroyed_why FROM deposits WHERE message_id = ?", (message_id,)
            ).fetchone()
        found.append(why)
    return found


def test_the_sender_unsends_in_the_page(people: dict[str, Person], up: Up) -> None:
    """Before, only the CLI unsent: a person who sent from the page could not take a
    message back. Now the Sent card's Unsend, or the form with an id, does as the CLI."""
    carol, dave = people["carol"], people["dave"]
    message_id = carol.send("dave", "sent in error")
    assert _unsend(carol, confirm=False) == "Not unsent."
    assert _shares_unsent(up, message_id) == [None] * 5
    said = _unsend(carol)
    assert said == f"Message {message_id}: all 5 shares destroyed, removed from the relay.", said
    assert _shares_unsent(up, message_id) == ["unsent"] * 5
    dave.open("inbox")
    expect(dave.page.locator(f"li[data-message='{message_id}']")).to_have_count(0)
    # Again, as the CLI does: the custodians are asked by its id, and each says it is gone.
    again = _unsend(carol, message_id)
    assert again == (
        f"Message {message_id}: the relay holds it no more (each recipient deleted it, or it"
        " was unsent before); the shares of alpha, bravo, charlie, delta, echo are destroyed."
    ), again
    # The relay dropped one its only recipient deleted, and its shares stayed: before, they
    # could not be unsent ("no message ... for you"). Now they are, by its id.
    deleted = carol.send("dave", "deleted by dave, unsent by carol")
    dave.open("inbox")
    dave.page.once("dialog", lambda dialog: dialog.accept())
    entry = dave.page.locator(f"li[data-message='{deleted}']")
    entry.get_by_role("button", name=re.compile(r"^Delete the message ")).click()
    expect(entry).to_have_count(0)
    assert _shares_unsent(up, deleted) == [None] * 5
    said = _unsend(carol, deleted)
    assert "the relay holds it no more" in said, said
    assert _shares_unsent(up, deleted) == ["unsent"] * 5
    # An id no one holds a share of is not found, at the relay or any custodian.
    nowhere = _unsend(carol, "0" * 31 + "1")
    assert "no message 00000000000000000000000000000001 for you" in nowhere, nowhere
    assert "no custodian holds a share of it from carol either" in nowhere, nowhere
    # Only its sender unsends; a malformed id is said, not sent.
    theirs = carol.send("dave", "dave may not unsend this")
    said = _unsend(dave, theirs)
    assert "was sent by carol, not dave; nothing was destroyed" in said, said
    assert _shares_unsent(up, theirs) == [None] * 5
    assert "32 hex digits" in _unsend(carol, "not-an-id", confirm=None)


def test_an_edited_audit_log_is_caught_in_the_operator_view(
    browser: Browser, people: dict[str, Person], up: Up
) -> None:
    people["carol"].send("dave", "leaves a trail in every audit log")
    database = up.home / "charlie" / "custodians" / "charlie" / "custodian.db"
    with sqlite3.connect(database) as conn:
        (event,) = conn.execute("SELECT event FROM audit_log WHERE seq = 2").fetchone()
        # The operator's own view of the log is rewritten: a refusal made to look like
        # something else, say. The hash chain and signatures must give it away.
        conn.execute("UPDATE audit_log SET event = ? WHERE seq = 2", (event + "-edited",))
    operator = Person(browser, up.relay_url)
    operator.import_key(user_key_path(up.home, "charlie-operator"))
    operator.open("operator")
    result = operator.page.locator("#operator-charlie .audit-result")
    expect(result).to_have_class(re.compile("error"))
    expect(result).to_contain_text("FAILED at entry 2: its contents do not match its hash")
    expect(result).to_contain_text("the first 1 entries verify")
    shot(operator.page, "operator-audit-failed")
    operator.close()


def test_the_operator_view_verifies_every_page_of_the_audit_log(
    browser: Browser, people: dict[str, Person], up: Up
) -> None:
    """More entries than one page holds: every page is verified as one chain, and an entry
    edited at the first page boundary is named."""
    people["carol"].send("dave", "one more entry for delta")
    directory = up.home / "delta" / "custodians" / "delta"  # delta's own home in `up`'s
    engine = sa.create_engine(f"sqlite:///{directory / 'custodian.db'}")
    identity = Identity.load(directory / "identity.key")
    with engine.begin() as conn:  # signed by delta, as if it had logged them itself
        for i in range(audit.PAGE_MAX_ENTRIES + 5):
            audit.append(conn, audit_log, identity, "deposit", {"ref": f"r{i}"}, 1_800_000_000)
        total = conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one()
    operator = Person(browser, up.relay_url)
    operator.import_key(user_key_path(up.home, "delta-operator"))
    operator.open("operator")
    result = operator.page.locator("#operator-delta .audit-result")
    expect(result).to_have_text(f"{total} entries; the hash chain and every signature verify.")
    boundary = audit.PAGE_MAX_ENTRIES + 1
    forged = canonical.dumps({"ref": "forged"}).decode()
    with engine.begin() as conn:
        (data,) = conn.execute(sa.text(f"SELECT data FROM audit_log WHERE seq = {boundary}")).one()
        conn.execute(
            sa.text("UPDATE audit_log SET data = :d WHERE seq = :s"), {"d": forged, "s": boundary}
        )
    try:
        operator.open("operator")
        expect(result).to_have_class(re.compile("error"))
        expect(result).to_have_text(
            f"FAILED at entry {boundary}: its contents do not match its hash (edited);"
            f" the first {boundary - 1} entries verify."
        )
    finally:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE audit_log SET data = :d WHERE seq = :s"), {"d": data, "s": boundary}
            )
        engine.dispose()
        operator.close()


def test_a_custodian_that_is_down_is_shown_and_the_rest_suffice(
    people: dict[str, Person], up: Up
) -> None:
    # Last in this module: it kills one of the shared custodians.
    carol, dave = people["carol"], people["dave"]
    message_id = carol.send("dave", "four of five are enough")
    up.kill("echo")
    page = dave.read(message_id)
    expect(page.locator("#plaintext")).to_have_text("four of five are enough")
    states = dave.status_of()
    assert states["echo"] == "down"
    assert [states[n] for n in ("alpha", "bravo", "charlie", "delta")] == ["released"] * 4
    shot(page, "read-one-down")
    # Unsent meanwhile, echo's share cannot be destroyed: said, and the relay keeps the
    # envelope, which names every deposit, so that unsending again can finish.
    said = _unsend(carol, message_id)
    assert f"Message {message_id}: 1 of its 5 shares could not be destroyed (echo: " in said
    assert "the 4 others were" in said and "unsending again can finish" in said, said
    assert _shares_unsent(up, message_id) == ["unsent"] * 4 + [None]
    dave.open("inbox")
    expect(dave.page.locator(f"li[data-message='{message_id}']")).to_have_count(1)
