"""Messages of any size between the page and the CLI (format version 2), in real Chromium
against ``securecomm up`` on loopback.

The page sends a file over 1 MiB as a stream: it reads the file a piece at a time, opens
the upload before any share is deposited, uploads the sealed stream in pieces of whole
chunks, then deposits the shares and posts the document; the CLI reads it. The CLI sends
one and the page reads it, chunk by chunk, into a file the File System Access API gives.
Headless Chromium opens no dialog, so the test stands in for the person at the picker:
``window.showSaveFilePicker`` answers a file of the origin private file system, whose
``createWritable`` is Chromium's own (written to a temporary file that ``close`` commits
and ``abort`` drops), which the test then reads back in the page.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Request, Route, expect

from securecomm import canonical, shares, stream
from securecomm.client.transport import ServiceClient
from securecomm.client.trust import KnownKeys
from securecomm.identity import Identity
from securecomm.local.home import user_key_path
from securecomm.protocol import Release
from securecomm.testing.mitm import encodings_of
from tests.browser._web import Person, pick_file_in_the_origin_storage, saved_file, shot
from tests.integration.conftest import NAMES
from tests.integration.test_cli_system import Up, cli, explain, running_up
from tests.random_files import file_sha256, random_file

MIB = 1024 * 1024
#: The size the issue asks for, both ways.
BIG_BYTES = 200 * MIB
#: How long a 200 MiB send or save may take here (a loaded 2-core machine).
BIG_TIMEOUT_MS = 120_000
SEALED_CHUNK_BYTES = 65_552
#: The page's pieces: 64 sealed chunks.
PIECE_BYTES = 64 * SEALED_CHUNK_BYTES


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("streams") / "home") as running:
        yield running


@pytest.fixture(scope="module")
def frank(browser: Browser, up: Up) -> Iterator[Person]:
    person = Person(browser, up.relay_url)
    person.create("frank")
    try:
        yield person
    finally:
        person.close()


def message_id_of(stdout: str) -> str:
    found = re.search(r"^message id:\s+([0-9a-f]{32})$", stdout, re.MULTILINE)
    assert found, stdout
    return found.group(1)


def test_the_page_sends_200_mib_and_the_cli_reads_it(frank: Person, up: Up, tmp_path: Path) -> None:
    source = tmp_path / "survey.bin"
    expected = random_file(source, BIG_BYTES)
    frank.requests.clear()
    started = time.monotonic()
    message_id = frank.send("bob", path=source, timeout_ms=BIG_TIMEOUT_MS)
    sent_in = time.monotonic() - started
    shot(frank.page, "stream-sent")
    expect(frank.page.locator("#sent-ciphertext")).to_contain_text("sealed chunks")
    # The CLI's order: the upload opened, then the whole stream, then the deposits, then
    # the document; no piece over the relay's limit, each a whole number of chunks.
    calls = [
        (r.method, r.url.split("?")[0].removeprefix(up.relay_url), r)
        for r in frank.requests
        if r.method in {"PUT", "POST"}
    ]
    kinds = [
        "open"
        if (method, path) == ("PUT", f"/api/v1/uploads/{message_id}")
        else "piece"
        if (method, path) == ("POST", f"/api/v1/uploads/{message_id}")
        else "deposit"
        if path.endswith("/v1/deposits")
        else "post"
        if path == "/api/v1/messages"
        else "other"
        for method, path, _ in calls
    ]
    squeezed = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]
    assert squeezed == ["open", "piece", "deposit", "post"], squeezed
    pieces = [
        len(r.post_data_buffer or b"")
        for method, path, r in calls
        if (method, path) == ("POST", f"/api/v1/uploads/{message_id}")
    ]
    stream_length = BIG_BYTES + len(b"survey.bin") + 1
    stream_length += 16 * -(-stream_length // 65536)
    assert sum(pieces) == stream_length
    assert all(size == 64 * SEALED_CHUNK_BYTES for size in pieces[:-1]), set(pieces)
    out = tmp_path / "read.bin"
    started = time.monotonic()
    result = cli(up.home, "read", message_id, "--as", "bob", "--out", str(out), timeout=180)
    read_in = time.monotonic() - started
    assert result.returncode == 0, explain(result)
    assert file_sha256(out) == expected
    print(f"page sent 200 MiB in {sent_in:.1f} s; the CLI read it in {read_in:.1f} s")


def test_the_cli_sends_200_mib_and_the_page_reads_and_saves_it(
    frank: Person, up: Up, tmp_path: Path
) -> None:
    source = tmp_path / "archive.tar"
    expected = random_file(source, BIG_BYTES)
    started = time.monotonic()
    result = cli(
        up.home, "send", "--from", "alice", "--to", "frank", "--file", str(source), timeout=180
    )
    assert result.returncode == 0, explain(result)
    sent_in = time.monotonic() - started
    message_id = message_id_of(result.stdout)
    page = frank.read(message_id)
    save = page.locator("#save-message")
    expect(save).to_have_text(f"Save archive.tar ({BIG_BYTES} bytes)")
    expect(page.locator("#save-how")).to_contain_text("completed only once every chunk")
    pick_file_in_the_origin_storage(page, "saved.tar", b"what the file held before")
    started = time.monotonic()
    save.click()
    status = page.locator("#stream-save .status")
    expect(status).to_contain_text("every chunk opened and checked", timeout=BIG_TIMEOUT_MS)
    saved_in = time.monotonic() - started
    shot(page, "stream-saved")
    assert page.evaluate("window.suggestedName") == "archive.tar"
    saved = saved_file(page, "saved.tar")
    assert (saved["size"], saved["sha256"]) == (BIG_BYTES, expected)
    print(f"the CLI sent 200 MiB in {sent_in:.1f} s; the page saved it in {saved_in:.1f} s")


def upload_state(person: Person, message_id: str) -> str:
    """What the relay says, asked by the page's active identity, of that upload."""
    state: str = person.page.evaluate(
        """async (id) => {
            const { ServiceClient } = await import('/web/js/api.js');
            const { state } = await import('/web/js/views/ui.js');
            const client = new ServiceClient(location.origin, 'relay', state.active.identity);
            try {
                return JSON.stringify(
                    (await client.request('GET', `/api/v1/uploads/${id}`)).json());
            } catch (error) {
                return `${error.name}: HTTP ${error.status}`;
            }
        }""",
        message_id,
    )
    return state


def uploads_in(person: Person) -> list[str]:
    """The message ids of the uploads the page opened."""
    return [
        r.url.rsplit("/", 1)[1]
        for r in person.requests
        if r.method == "PUT" and "/api/v1/uploads/" in r.url
    ]


def test_a_stream_over_the_relays_limit_is_refused_before_any_deposit(
    frank: Person, tmp_path: Path
) -> None:
    """The relay takes streams up to 4 GiB (its max_payload_bytes): a 5 GiB file (sparse:
    the page reads none of it) is refused when the upload opens, before any share leaves."""
    huge = tmp_path / "huge.img"
    with huge.open("wb") as out:
        out.truncate(5 * 1024**3)
    frank.requests.clear()
    frank.compose("bob", path=huge)
    status = frank.page.locator("#send-form .status")
    expect(status).to_have_class(re.compile("error"))
    expect(status).to_contain_text("too_large")
    expect(status).to_contain_text("nothing was sent (no share was deposited)")
    expect(status).to_contain_text("max_payload_bytes")
    shot(frank.page, "stream-too-large")
    assert not [r for r in frank.requests if r.url.endswith("/v1/deposits")]
    assert not [r for r in frank.requests if r.method == "POST" and "/uploads/" in r.url]
    (message_id,) = uploads_in(frank)
    assert upload_state(frank, message_id) == "ServiceError: HTTP 404"


def test_cancel_while_uploading_drops_the_upload_and_deposits_nothing(
    frank: Person, tmp_path: Path
) -> None:
    big = tmp_path / "big.img"
    with big.open("wb") as out:
        out.truncate(1024**3)  # sparse: read fast, sealed and uploaded as any other
    frank.requests.clear()
    frank.compose("bob", path=big)
    page = frank.page
    status = page.locator("#send-form .status")
    expect(status).to_contain_text(re.compile(r"uploading the file: [1-9][0-9.]* MiB of"))
    expect(page.locator("#send-progress")).to_be_visible()
    shot(page, "stream-uploading")
    page.get_by_role("button", name="Cancel").click()
    expect(status).to_contain_text(
        "interrupted: nothing was sent (no share was deposited); the upload was dropped"
    )
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    assert not [r for r in frank.requests if r.url.endswith("/v1/deposits")]
    (message_id,) = uploads_in(frank)
    assert upload_state(frank, message_id) == "ServiceError: HTTP 404"
    assert kept_sends(frank) == []  # cancelled: nothing to go on with


UPLOAD_PIECES = re.compile(r"/api/v1/uploads/[0-9a-f]{32}\?offset=")


@contextlib.contextmanager
def failing_link(
    context: BrowserContext, pattern: re.Pattern[str], fails: Callable[[Route], bool]
) -> Iterator[None]:
    """Requests to ``pattern`` fail on the way (aborted) where ``fails`` says so (it may
    let the request reach the relay first); the others go through."""

    def handle(route: Route) -> None:
        if fails(route):
            route.abort()
        else:
            route.continue_()

    context.route(pattern, handle)
    try:
        yield
    finally:
        context.unroute(pattern, handle)


def offset_in(url: str) -> int:
    found = re.search(r"[?&]offset=(\d+)", url)
    assert found, url
    return int(found.group(1))


def test_a_link_that_fails_for_a_moment_loses_no_upload(
    frank: Person, up: Up, tmp_path: Path
) -> None:
    """Three pieces of an upload fail on the way, each once: the answer to the second is lost
    after the relay took it (the page must ask where the upload stands, not send it twice),
    the third never reaches the relay, and the fourth reaches it late, after the page asked,
    so that the piece made again is refused as held already. The page says it tries again,
    and the message is sent whole: the CLI reads back the same bytes."""
    source = tmp_path / "flaky.bin"
    expected = random_file(source, 3 * PIECE_BYTES + 5)
    failed: list[str] = []
    late: list[Request] = []

    def flaky(route: Route) -> bool:
        offset = offset_in(route.request.url)
        if offset == PIECE_BYTES and "answer lost" not in failed:
            route.fetch()  # the relay takes the piece; its answer never comes back
            failed.append("answer lost")
            return True
        if offset == 2 * PIECE_BYTES and "request lost" not in failed:
            failed.append("request lost")
            return True
        if offset == 3 * PIECE_BYTES and "late" not in failed:
            failed.append("late")  # no answer in time ...
            late.append(route.request)
            return True
        if offset == 3 * PIECE_BYTES and "taken late" not in failed:
            # ... and the relay takes it only now, so the request made again is refused.
            failed.append("taken late")
            first = late[0]
            route.fetch(headers=first.all_headers(), post_data=first.post_data_buffer)
        return False

    with failing_link(frank.context, UPLOAD_PIECES, flaky):
        frank.requests.clear()
        frank.compose("bob", path=source)
        status = frank.page.locator("#send-form .status")
        expect(status).to_contain_text(re.compile(r"the link failed .* trying again in 1 s"))
        expect(status).to_contain_text("Sent to bob", timeout=BIG_TIMEOUT_MS)
        message_id = frank.page.locator("#sent-id").inner_text()
    assert failed == ["answer lost", "request lost", "late", "taken late"]
    appends = [
        offset_in(r.url)
        for r in frank.requests
        if r.method == "POST" and "/api/v1/uploads/" in r.url
    ]
    # The lost answer's piece was not sent again; the lost request's was, and the late one's
    # (refused, as the relay had it by then).
    p = PIECE_BYTES
    assert appends == [0, p, 2 * p, 2 * p, 3 * p, 3 * p]
    asked = [r for r in frank.requests if r.method == "GET" and "/api/v1/uploads/" in r.url]
    assert len(asked) == 4  # where the upload stood, before each retry and after the 409
    out = tmp_path / "read.bin"
    result = cli(up.home, "read", message_id, "--as", "bob", "--out", str(out))
    assert result.returncode == 0, explain(result)
    assert file_sha256(out) == expected


def kept_sends(person: Person) -> list[str]:
    """The keys of the stream sends this profile keeps to go on with."""
    keys: list[str] = person.page.evaluate(
        """async () => {
            const store = await import('/web/js/store.js');
            return (await store.keys('pending')).filter((k) => k.startsWith('sending:'));
        }"""
    )
    return keys


def active_fingerprint(person: Person) -> str:
    fingerprint: str = person.page.evaluate(
        """async () => (await import('/web/js/views/ui.js')).state.active.identity.public
            .fingerprintHex"""
    )
    return fingerprint


def test_a_send_stopped_by_a_closed_page_goes_on_when_the_file_is_sent_again(
    browser: Browser, up: Up, tmp_path: Path
) -> None:
    """The page is left (as a closed tab) while the upload waits on a link that failed: the
    same file sent again to the same people goes on from what the relay holds, and only the
    rest is uploaded. The CLI reads back the same bytes; nothing is kept after."""
    gina = Person(browser, up.relay_url)
    gina.create("gina")
    source = tmp_path / "evidence.bin"
    expected = random_file(source, 5 * PIECE_BYTES + 11)
    stop_at = 2 * PIECE_BYTES

    def down_from_the_third_piece(route: Route) -> bool:
        return offset_in(route.request.url) >= stop_at

    with failing_link(gina.context, UPLOAD_PIECES, down_from_the_third_piece):
        gina.compose("bob", path=source)
        status = gina.page.locator("#send-form .status")
        expect(status).to_contain_text(re.compile(r"the link failed .* trying again"))
        (first,) = uploads_in(gina)
        assert kept_sends(gina) == [f"sending:{active_fingerprint(gina)}:{first}"]
        gina.open("send")  # the page left mid-send, as a closed tab
    gina.requests.clear()
    message_id = gina.send("bob", path=source, timeout_ms=BIG_TIMEOUT_MS)
    assert message_id == first
    appends = [
        offset_in(r.url)
        for r in gina.requests
        if r.method == "POST" and "/api/v1/uploads/" in r.url
    ]
    assert appends and appends[0] == stop_at, appends  # the first two pieces not sent again
    expect(gina.page.locator("#send-result")).to_contain_text(
        re.compile(f"went on with the upload of message {first} begun earlier; it expires at")
    )
    assert kept_sends(gina) == []
    out = tmp_path / "read.bin"
    result = cli(up.home, "read", message_id, "--as", "bob", "--out", str(out))
    assert result.returncode == 0, explain(result)
    assert file_sha256(out) == expected
    gina.close()


def stopped_after_a_piece(person: Person, source: Path) -> str:
    """Send ``source`` to bob with the form as it is, the link down from the second piece
    on, and leave the page mid-send (as a closed tab) for a fresh one: the upload's id."""

    def down_from_the_second_piece(route: Route) -> bool:
        return offset_in(route.request.url) >= PIECE_BYTES

    with failing_link(person.context, UPLOAD_PIECES, down_from_the_second_piece):
        person.compose("bob", path=source)
        expect(person.page.locator("#send-form .status")).to_contain_text(
            re.compile(r"the link failed .* trying again")
        )
        (first,) = uploads_in(person)
        person.open("send")
    return first


def test_a_stopped_upload_is_listed_after_a_reload_and_can_be_dropped(
    browser: Browser, up: Up, tmp_path: Path
) -> None:
    """An upload stopped by a closed tab was kept, unseen after a reload, and nothing on the
    page could cancel it: its part held the sender's quota at the relay for a day. The Send
    tab lists it, and Drop removes it here and at the relay."""
    ivy = Person(browser, up.relay_url)
    ivy.create("ivy")
    source = tmp_path / "kept.bin"
    random_file(source, 4 * PIECE_BYTES + 3)
    first = stopped_after_a_piece(ivy, source)
    listed = ivy.page.locator(f"#kept-sends li[data-message='{first}']")
    expect(listed).to_contain_text("kept.bin")
    expect(listed).to_contain_text("to bob")
    ivy.requests.clear()
    listed.get_by_role("button", name="Drop").click()
    expect(listed.locator(".status")).to_have_text("dropped, with the relay's part")
    assert kept_sends(ivy) == []
    (deleted,) = [r for r in ivy.requests if r.method == "DELETE" and first in r.url]
    response = deleted.response()
    assert response is not None and response.status == 204
    ivy.open("send")
    expect(ivy.page.locator("#kept-sends")).to_be_hidden()
    ivy.close()


def test_a_stopped_send_goes_on_only_under_an_expiry_as_long(
    browser: Browser, up: Up, tmp_path: Path
) -> None:
    """Sent again with Expires "in 1 hour" after a first try "in 7 days", the page went on
    with the first try's draft, and the message expired in seven days. Now the send begins
    afresh, and once it is done the first try's draft is dropped with the relay's part (as
    the CLI does), saying so: kept, it held room in the sender's quota for a day."""
    hana = Person(browser, up.relay_url)
    hana.create("hana")
    source = tmp_path / "minutes.bin"
    random_file(source, 4 * PIECE_BYTES + 5)

    first = stopped_after_a_piece(hana, source)  # the form's own expiry: in 7 days
    kept = f"sending:{active_fingerprint(hana)}:{first}"
    sooner = hana.send("bob", path=source, expires="3600", timeout_ms=BIG_TIMEOUT_MS)
    assert sooner != first
    assert "went on with the upload" not in hana.page.locator("#send-result").inner_text()
    listed = cli(up.home, "inbox", "--as", "bob")
    (line,) = [row for row in listed.stdout.splitlines() if row.startswith(sooner)]
    found = re.search(r"expires (\d{4}-\d\d-\d\d \d\d:\d\d)", line)
    assert found, line
    expires = time.mktime(time.strptime(found.group(1), "%Y-%m-%d %H:%M"))
    assert abs(expires - (time.time() + 3600)) < 300, line  # in an hour, not in 7 days
    expect(hana.page.locator("#send-result")).to_contain_text(
        f"the upload of message {first} begun earlier, of this file to the same people under"
        " another policy, is dropped with the relay's part"
    )
    assert kept not in kept_sends(hana)
    (deleted,) = [r for r in hana.requests if r.method == "DELETE" and first in r.url]
    response = deleted.response()
    assert response is not None and response.status == 204
    hana.close()


def test_a_download_that_fails_for_a_moment_is_saved_whole(
    frank: Person, up: Up, tmp_path: Path
) -> None:
    source = tmp_path / "footage.bin"
    expected = random_file(source, 2 * PIECE_BYTES + 7)
    result = cli(up.home, "send", "--from", "alice", "--to", "frank", "--file", str(source))
    assert result.returncode == 0, explain(result)
    message_id = message_id_of(result.stdout)
    page = frank.read(message_id)
    failed: list[str] = []

    def flaky(route: Route) -> bool:
        if "offset=0&" in route.request.url or failed:
            return False
        failed.append(route.request.url)
        return True

    ranges = re.compile(rf"/api/v1/messages/{message_id}/payload\?")
    with failing_link(page.context, ranges, flaky):
        pick_file_in_the_origin_storage(page, "footage.bin", b"")
        page.locator("#save-message").click()
        status = page.locator("#stream-save .status")
        expect(status).to_contain_text(re.compile(r"the link failed .* trying again in 1 s"))
        expect(status).to_contain_text("every chunk opened and checked", timeout=BIG_TIMEOUT_MS)
    assert len(failed) == 1
    saved = saved_file(page, "footage.bin")
    assert (saved["size"], saved["sha256"]) == (2 * PIECE_BYTES + 7, expected)


@contextlib.contextmanager
def hanging_link(
    context: BrowserContext, pattern: re.Pattern[str], hangs: Callable[[Route], bool]
) -> Iterator[list[Route]]:
    """The first request to ``pattern`` that ``hangs`` picks gets no answer until the test
    lets it go on (``route.continue_()``, the list yielded holds it); the others go through."""
    held: list[Route] = []

    def handle(route: Route) -> None:
        if not held and hangs(route):
            held.append(route)
        else:
            route.continue_()

    context.route(pattern, handle)
    try:
        yield held
    finally:
        context.unroute(pattern, handle)


STALLED = r"[0-9.]+ MiB of [0-9.]+ MiB; no answer from the relay for [3-9] s"


def test_a_relay_that_hangs_is_said_while_it_does(frank: Person, up: Up, tmp_path: Path) -> None:
    """While the relay took its time over a piece (up to the page's timeout), the figures
    and the rate of the piece before stayed on screen as if all went well. Now the page
    says, on the way up and on the way down, how long it has waited."""
    source = tmp_path / "slow.bin"
    expected = random_file(source, 2 * PIECE_BYTES + 3)
    with hanging_link(
        frank.context, UPLOAD_PIECES, lambda route: offset_in(route.request.url) == PIECE_BYTES
    ) as upload:
        frank.compose("bob", path=source)
        status = frank.page.locator("#send-form .status")
        expect(status).to_contain_text(re.compile(f"uploading the file: {STALLED}"))
        upload[0].continue_()
        expect(status).to_contain_text("Sent to bob", timeout=BIG_TIMEOUT_MS)
    message_id = frank.page.locator("#sent-id").inner_text()
    out = tmp_path / "read.bin"
    result = cli(up.home, "read", message_id, "--as", "bob", "--out", str(out))
    assert result.returncode == 0 and file_sha256(out) == expected, explain(result)

    result = cli(up.home, "send", "--from", "alice", "--to", "frank", "--file", str(source))
    assert result.returncode == 0, explain(result)
    message_id = message_id_of(result.stdout)
    page = frank.read(message_id)
    ranges = re.compile(rf"/api/v1/messages/{message_id}/payload\?")
    with hanging_link(
        page.context, ranges, lambda route: "offset=0&" not in route.request.url
    ) as download:
        pick_file_in_the_origin_storage(page, "slow.bin", b"")
        page.locator("#save-message").click()
        status = page.locator("#stream-save .status")
        expect(status).to_contain_text(re.compile(f"Downloading and opening: {STALLED}"))
        download[0].continue_()
        expect(status).to_contain_text("every chunk opened and checked", timeout=BIG_TIMEOUT_MS)
    saved = saved_file(page, "slow.bin")
    assert (saved["size"], saved["sha256"]) == (2 * PIECE_BYTES + 3, expected)


def test_without_the_file_system_access_api_the_page_saves_a_blob(
    browser: Browser, up: Up, tmp_path: Path
) -> None:
    """Where showSaveFilePicker is missing (Firefox, Safari), the message is kept as a Blob
    of its chunks, up to the limit the page states, and offered as a download at the end."""
    ivan = Person(browser, up.relay_url)
    ivan.context.add_init_script("delete window.showSaveFilePicker;")
    ivan.create("ivan")
    source = tmp_path / "notes.bin"
    expected = random_file(source, 3 * MIB + 5)
    result = cli(up.home, "send", "--from", "alice", "--to", "ivan", "--file", str(source))
    assert result.returncode == 0, explain(result)
    page = ivan.read(message_id_of(result.stdout))
    expect(page.locator("#save-how")).to_contain_text("up to 1 GiB")
    with page.expect_download() as download:
        page.locator("#save-message").click()
    expect(page.locator("#stream-save .status")).to_contain_text("every chunk opened and checked")
    assert download.value.suggested_filename == "notes.bin"
    saved = tmp_path / "saved.bin"
    download.value.save_as(saved)
    assert file_sha256(saved) == expected
    ivan.close()


def test_the_save_picker_is_chromiums_own_by_default(frank: Person, up: Up, tmp_path: Path) -> None:
    """Nothing stands in for the picker: headless Chromium's real one opens no dialog and
    answers as a person who closed it would, and the page says nothing was saved."""
    source = tmp_path / "photo.raw"
    random_file(source, 2 * MIB)
    result = cli(up.home, "send", "--from", "alice", "--to", "frank", "--file", str(source))
    assert result.returncode == 0, explain(result)
    page = frank.read(message_id_of(result.stdout))
    assert page.evaluate("typeof window.showSaveFilePicker") == "function"
    assert "native code" in page.evaluate("String(window.showSaveFilePicker)")
    page.locator("#save-message").click()
    expect(page.locator("#stream-save .status")).to_contain_text(
        "No file was chosen, so nothing was saved."
    )


def posted_documents(person: Person) -> list[dict[str, Any]]:
    return [
        canonical.loads(r.post_data_buffer or b"")
        for r in person.requests
        if r.method == "POST" and r.url.endswith("/api/v1/messages")
    ]


def test_a_file_of_1_mib_stays_version_1_and_one_byte_more_is_a_stream(
    frank: Person, up: Up
) -> None:
    """The CLI's threshold (STREAM_ABOVE_BYTES): above 1 MiB a stream, up to it version 1."""
    for size, version in ((MIB, 1), (MIB + 1, 2)):
        content = os.urandom(size)
        frank.requests.clear()
        message_id = frank.send("bob", file=content, filename=f"v{version}.bin")
        (document,) = posted_documents(frank)
        assert (document["v"], document["header"]["v"]) == (version, version)
        assert bool(uploads_in(frank)) == (version == 2)
        out = up.home.parent / f"v{version}.out"
        result = cli(up.home, "read", message_id, "--as", "bob", "--out", str(out))
        assert result.returncode == 0, explain(result)
        assert out.read_bytes() == content


def test_nothing_secret_goes_to_the_relay_in_a_stream(frank: Person, up: Up) -> None:
    """A version 2 send to bob, whose key file the test holds: it fetches the shares and
    rebuilds the key the page made, and looks for them, and for a marker in the file,
    in everything the page sent, in every encoding."""
    marker = b"the vault code is 4-8-15-16-23-42; the vault is under the north gate"
    content = os.urandom(MIB) + marker + os.urandom(MIB)
    frank.requests.clear()
    message_id = frank.send("bob", file=content, filename="vault.bin")
    bob = Identity.load(user_key_path(up.home, "bob"))
    known = KnownKeys.load(up.home / "people" / "bob")
    released = []
    for name in NAMES:
        with ServiceClient(up.url(name), name, bob) as custodian:
            answer = custodian.request(
                "POST", "/v1/releases", body={"v": 1, "message_id": message_id}
            )
        released.append(Release.from_json(answer.json()).open(bob, known.require(name)))
    key = shares.combine(released[:3])
    (document,) = posted_documents(frank)
    header = canonical.dumps(document["header"])
    payload_key = stream.payload_key(key, bytes.fromhex(message_id), header)
    secrets = [marker, key, payload_key] + [s.to_bytes() for s in released]
    secrets += [s.value for s in released]
    sent = [
        (r.url, "\n".join(f"{k}: {v}" for k, v in r.headers.items()).encode(), r.post_data_buffer)
        for r in frank.requests
    ]
    pieces = [
        r.post_data_buffer or b""
        for r in frank.requests
        if r.method == "POST" and f"/api/v1/uploads/{message_id}" in r.url
    ]
    assert sum(len(body) for body in pieces) == document["payload"]["length"]
    for url, headers, body in sent:
        for number, value in enumerate(secrets):
            for spelling in encodings_of(value):
                assert spelling not in (body or b"") + headers + url.encode(), (url, number)
    # The relay got the stream, the document (no ciphertext in it) and nothing else.
    assert set(document) == {"v", "header", "payload", "receipts", "signature"}
    deposits = [r for r in frank.requests if r.url.endswith("/v1/deposits")]
    assert len(deposits) == 5 and not any(r.url.startswith(up.relay_url) for r in deposits)
