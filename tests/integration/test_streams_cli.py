"""Messages of any size through the CLI and the library (spec/format-v2.md), against a real
``securecomm up``: round trips around a chunk, a few hundred MiB, interrupted sends and
reads that go on where they stopped, a file that changes while it is sent, the relay's
limit refused before any share is deposited, and standard output."""

from __future__ import annotations

import hashlib
import json
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from securecomm import stream
from securecomm.client import flows
from securecomm.client.streamed import partial_path
from securecomm.client.trust import KnownKeys
from securecomm.config import Settings, load_settings
from securecomm.envelope import Policy, StreamEnvelope, document_from_bytes
from securecomm.errors import InterruptedOperationError, ParameterError, ServiceError
from securecomm.local.layout import person_home
from tests.random_files import file_sha256, random_file

from .conftest import NAMES
from .test_cli_system import (
    CLI,
    MESSAGE_ID,
    Up,
    audit,
    clean_env,
    cli,
    explain,
    finish_up,
    start_up,
    user,
    wait_for,
)

MIB = 1024 * 1024
CHUNK = stream.CHUNK_BYTES


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    started = start_up(tmp_path_factory.mktemp("streams") / "home")
    yield started
    finish_up(started)


def _sent_id(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, explain(result)
    found = MESSAGE_ID.search(result.stdout)
    assert found, explain(result)
    return found.group(1)


def _document(up: Up, message_id: str) -> StreamEnvelope:
    settings = load_settings(person_home(up.home, "bob"))
    with flows._relay(settings, user(up.home, "bob")) as relay:
        data = relay.request("GET", f"/api/v1/messages/{message_id}").content
    document = document_from_bytes(data)
    assert isinstance(document, StreamEnvelope)
    return document


def _library(up: Up, name: str) -> tuple[Settings, KnownKeys]:
    own = person_home(up.home, name)
    return load_settings(own), KnownKeys.load(own)


def alice_sends(up: Up, source: Path, **options: Any) -> flows.SendResult:
    """``flows.send_file`` of ``source`` from alice to bob, as the CLI calls it."""
    settings, known = _library(up, "alice")
    return flows.send_file(settings, known, user(up.home, "alice"), ["bob"], source, **options)


def alice_stops_after_a_piece(up: Up, source: Path, **options: Any) -> None:
    """Alice's send of ``source``, interrupted once the relay holds its first piece."""
    pieces = 0

    def after_one_piece(stage: str, done: int, total: int) -> None:
        nonlocal pieces
        if stage == "uploading" and done:
            pieces += 1

    with pytest.raises(InterruptedOperationError):
        alice_sends(up, source, progress=after_one_piece, cancelled=lambda: pieces >= 1, **options)


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1, 3 * CHUNK - 7])
def test_round_trips_around_a_chunk(up: Up, tmp_path: Path, size: int) -> None:
    """Version 2 at the lengths the layout turns on (the library: the CLI streams only
    files over 1 MiB), with and without a file name."""
    source = tmp_path / "in.bin"
    digest = random_file(source, size)
    for filename in (None, "in.bin"):
        sent = alice_sends(up, source, filename=filename)
        document = _document(up, sent.message_id)
        assert document.length == size + (0 if filename is None else 1 + len(filename))
        bob_settings, bob_known = _library(up, "bob")
        out = tmp_path / f"out-{filename}"
        result = flows.read(
            bob_settings,
            bob_known,
            user(up.home, "bob"),
            sent.message_id,
            save_to=lambda _name, out=out: out,  # type: ignore[misc]
        )
        assert result.saved == out and result.filename == filename and result.plaintext == b""
        assert file_sha256(out) == digest
        assert not partial_path(out, sent.message_id).exists()


def test_a_few_hundred_mib_through_the_cli(up: Up, tmp_path: Path) -> None:
    source = tmp_path / "disk.img"
    digest = random_file(source, 300 * MIB)
    message_id = _sent_id(
        cli(up.home, "send", "--from", "alice", "--to", "bob", "--file", str(source), timeout=300)
    )
    assert _document(up, message_id).length == 300 * MIB + 1 + len("disk.img")
    out = tmp_path / "out"
    out.mkdir()
    result = cli(up.home, "read", message_id, "--as", "bob", "--out", str(out), timeout=300)
    assert result.returncode == 0, explain(result)
    assert "saved" in result.stderr
    assert file_sha256(out / "disk.img") == digest
    assert sorted(p.name for p in out.iterdir()) == ["disk.img"]  # no partial file left
    # Read again onto the existing file: refused unless --force, as for version 1.
    again = cli(up.home, "read", message_id, "--as", "bob", "--out", str(out / "disk.img"))
    assert again.returncode != 0 and "exists" in again.stderr
    # Standard output (a pipe) gets the same bytes.
    piped = subprocess.run(
        [*CLI, "read", message_id, "--as", "bob", "--home", str(up.home)],
        capture_output=True,
        timeout=300,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )
    assert piped.returncode == 0, piped.stderr.decode()
    assert hashlib.sha256(piped.stdout).hexdigest() == digest


def _interrupt_when(process: subprocess.Popen[str], ready: object, what: str) -> None:
    def check() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"finished before {what}: {process.communicate()}")
        return bool(ready())  # type: ignore[operator]

    wait_for(check, 120, what)
    process.send_signal(signal.SIGINT)


def _partials(up: Up) -> list[Path]:
    folder = up.home / "relay" / "relay" / "payloads" / "partial"
    return [p for p in folder.iterdir() if p.stat().st_size > 0] if folder.exists() else []


def test_an_interrupted_send_goes_on_where_it_stopped(up: Up, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    digest = random_file(source, 400 * MIB)
    command = ["send", "--from", "alice", "--to", "bob", "--file", str(source)]
    first = subprocess.Popen(
        [*CLI, *command, "--home", str(up.home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )
    _interrupt_when(first, lambda: _partials(up), "the upload to begin")
    out, err = first.communicate(timeout=60)
    assert first.returncode == 130, out + err
    assert "uploaded and no share was deposited" in err and "goes on from there" in err
    kept = (person_home(up.home, "alice") / "users" / "alice.sending.json").read_text()
    assert str(source.resolve()) in kept
    assert "securecomm-share-v1:" not in kept  # the shares are kept sealed to alice
    assert (
        stat.S_IMODE(
            (person_home(up.home, "alice") / "users" / "alice.sending.json").stat().st_mode
        )
        == 0o600
    )
    again = cli(up.home, *command, timeout=300)
    message_id = _sent_id(again)
    assert "going on with the upload" in again.stderr
    result = cli(
        up.home, "read", message_id, "--as", "bob", "--out", str(tmp_path / "o"), timeout=300
    )
    assert result.returncode == 0, explain(result)
    assert file_sha256(tmp_path / "o") == digest
    assert (
        "big.bin"
        not in (person_home(up.home, "alice") / "users" / "alice.sending.json").read_text()
    )


def test_an_interrupted_read_goes_on_without_asking_the_custodians_again(
    up: Up, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    digest = random_file(source, 400 * MIB)
    message_id = _sent_id(
        cli(
            up.home,
            "send",
            "--from",
            "alice",
            "--to",
            "bob",
            "--file",
            str(source),
            "--burn-after-reading",
            timeout=300,
        )
    )
    out = tmp_path / "copy.bin"
    partial = partial_path(out, message_id)
    command = ["read", message_id, "--as", "bob", "--out", str(out)]
    first = subprocess.Popen(
        [*CLI, *command, "--home", str(up.home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )
    _interrupt_when(
        first,
        lambda: partial.exists() and partial.stat().st_size > 8 * MIB,
        "the download to begin",
    )
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert "the same read again goes on" in err
    assert not out.exists()  # the output appears only once every chunk opened
    held = partial.stat().st_size
    assert 0 < held < 400 * MIB
    assert stat.S_IMODE(partial.stat().st_mode) == 0o600
    # Burnt after reading: each custodian released once. The shares kept make the read go on.
    result = cli(up.home, *command, timeout=300)
    assert result.returncode == 0, explain(result)
    assert file_sha256(out) == digest and not partial.exists()


def test_the_envelope_s_post_is_its_own_stage_after_the_upload(up: Up, tmp_path: Path) -> None:
    """The progress a streamed send reports: the stream's bytes under "uploading", then
    the envelope's post under "posting". The post was reported as "uploading" too, which
    drew a second "uploading" bar of a few thousand units under the finished one."""
    source = tmp_path / "two.bin"
    random_file(source, 2 * MIB + 1)
    seen: list[tuple[str, int, int]] = []
    alice_sends(up, source, progress=lambda stage, done, total: seen.append((stage, done, total)))
    stages = [stage for stage, _, _ in seen]
    (streamed,) = {total for stage, _, total in seen if stage == "uploading"}
    assert 2 * MIB + 1 < streamed < 2 * MIB + 64 * 1024  # the stream: the file, sealed
    assert stages.index("posting") > max(i for i, s in enumerate(stages) if s == "uploading")
    posted = [total for stage, _, total in seen if stage == "posting"]
    assert posted and set(posted) == {posted[0]} and posted[0] < 64 * 1024


def _kept_drafts(up: Up, source: Path) -> list[str]:
    """The ids of alice's kept drafts (interrupted sends) of ``source``."""
    kept = person_home(up.home, "alice") / "users" / "alice.sending.json"
    entries = json.loads(kept.read_text()) if kept.exists() else {}
    return [k for k, v in entries.items() if v["ticket"]["file"] == str(source.resolve())]


def _upload_state(up: Up, message_id: str) -> int:
    """The HTTP status of the relay's answer about alice's upload of ``message_id``."""
    settings, _ = _library(up, "alice")
    with flows._relay(settings, user(up.home, "alice")) as relay:
        try:
            return relay.request("GET", f"/api/v1/uploads/{message_id}").status_code
        except ServiceError as exc:
            return exc.status


def test_a_file_that_changes_while_it_is_sent_is_refused(up: Up, tmp_path: Path) -> None:
    """Refused, and (as the draft cannot go on with another file) the draft and what the
    relay took of it are dropped at once: they were kept, holding room in alice's quota,
    until her next send."""
    source = tmp_path / "growing.bin"
    random_file(source, 40 * MIB)  # read at most a piece or two ahead of the upload
    drafts: list[str] = []

    def grow(stage: str, done: int, total: int) -> None:
        if stage == "uploading" and done and not drafts:  # after a piece, mid-stream
            drafts.extend(_kept_drafts(up, source))
            with source.open("ab") as handle:
                handle.write(b"more")

    with pytest.raises(ParameterError, match="did the file change") as refused:
        alice_sends(up, source, progress=grow)
    assert "what the relay took of it is dropped" in str(refused.value)
    (message_id,) = drafts
    assert _kept_drafts(up, source) == []
    assert _upload_state(up, message_id) == 404


def test_a_kept_upload_whose_file_changed_is_dropped_with_the_relays_part(
    up: Up, tmp_path: Path
) -> None:
    """An interrupted send's draft can go on only with the very file it began with: once
    that file changed, the next send drops the draft and the relay's upload (which held
    room in the sender's quota for a day), and says so."""
    source = tmp_path / "edited.bin"
    random_file(source, 10 * MIB)
    alice_stops_after_a_piece(up, source)
    (first,) = _kept_drafts(up, source)
    assert _upload_state(up, first) == 200
    with source.open("ab") as handle:
        handle.write(b"an edit")
    warnings: list[str] = []
    sent = alice_sends(up, source, warn=warnings.append)
    assert sent.message_id != first
    assert any(first in line and "changed or is gone" in line for line in warnings), warnings
    assert _upload_state(up, first) == 404
    assert _kept_drafts(up, source) == []
    assert not any("going on" in line for line in warnings)


def test_a_send_goes_on_only_under_the_policy_it_asks_for(up: Up, tmp_path: Path) -> None:
    """An interrupted send, then the same file to the same people with burn after reading
    and approval: it went on with the first send's draft, and the message was sent with
    no burn and no approval. Now a send that asks for another policy begins afresh, one
    that asks for the kept draft's goes on with it, and once the file has gone to them
    under another policy the kept draft is dropped with the relay's part (it held
    alice's quota, wanted by no one)."""
    source = tmp_path / "policy.bin"
    random_file(source, 10 * MIB)
    alice_stops_after_a_piece(up, source)
    (first,) = _kept_drafts(up, source)
    warnings: list[str] = []
    again = alice_sends(up, source, warn=warnings.append)
    assert again.message_id == first, warnings
    assert _document(up, first).header.policy == Policy()
    alice_stops_after_a_piece(up, source)
    (begun,) = _kept_drafts(up, source)
    assert _upload_state(up, begun) == 200
    strict = Policy(max_releases=1, require_approval=True)
    warnings.clear()
    sent = alice_sends(up, source, policy=strict, warn=warnings.append)
    assert sent.message_id != begun and not any("going on" in w for w in warnings), warnings
    assert _document(up, sent.message_id).header.policy == strict
    assert any(begun in w and "under another policy, is dropped" in w for w in warnings)
    assert _kept_drafts(up, source) == []
    assert _upload_state(up, begun) == 404


def test_a_send_goes_on_under_an_expiry_as_long_and_drops_one_that_passed(
    up: Up, tmp_path: Path
) -> None:
    """--expires is a length of time: the same one again goes on (its expiry counted from
    the first send, and said), another does not, and a draft whose message would expire
    before it is sent is dropped with the relay's part."""
    source = tmp_path / "expiring.bin"
    random_file(source, 10 * MIB)

    def hours(n: float) -> Policy:
        return Policy(expires=int(time.time() + n * 3600))

    alice_stops_after_a_piece(up, source, policy=hours(1))
    (first,) = _kept_drafts(up, source)
    warnings: list[str] = []
    same = alice_sends(up, source, policy=hours(1), warn=warnings.append)
    assert same.message_id == first
    (said,) = [w for w in warnings if "going on" in w]
    assert "expires at" in said and "counted from its beginning" in said, said
    alice_stops_after_a_piece(up, source, policy=hours(1))
    (begun,) = _kept_drafts(up, source)
    longer: list[str] = []
    other = alice_sends(up, source, policy=hours(24), warn=longer.append)
    assert other.message_id != begun and not any("going on" in w for w in longer), longer
    short = tmp_path / "short.bin"
    random_file(short, 10 * MIB)
    alice_stops_after_a_piece(up, short, policy=Policy(expires=int(time.time()) + 2))
    (late,) = _kept_drafts(up, short)
    time.sleep(3)
    warnings.clear()
    alice_sends(up, source, warn=warnings.append)  # any send drops what cannot go on
    assert any(late in w and "expiry" in w and "has passed" in w for w in warnings), warnings
    assert _kept_drafts(up, short) == []
    assert _upload_state(up, late) == 404


def test_a_resumed_upload_reports_progress_from_where_it_resumed(up: Up, tmp_path: Path) -> None:
    """The progress of a send that goes on starts at the bytes the relay holds: reported
    from 0 first, the bar counted them as moved now and showed a rate of 900 MB/s."""
    source = tmp_path / "resumed.bin"
    random_file(source, 10 * MIB)
    alice_stops_after_a_piece(up, source)
    seen: list[tuple[int, int]] = []
    alice_sends(
        up,
        source,
        progress=lambda stage, done, total: (
            seen.append((done, total)) if stage == "uploading" else None
        ),
    )
    (first_done, total), *rest = seen
    assert 0 < first_done < total  # where it resumed, said once, first
    assert first_done + sum(done for done, _ in rest if done < total) == total


def test_the_relays_limit_is_refused_before_any_share_is_deposited(tmp_path: Path) -> None:
    home = tmp_path / "home"
    up = start_up(home)
    try:
        relay_toml = home / "relay" / "securecomm.toml"
        # A relay that takes 2 MiB: the upload is refused when it is opened.
        text = relay_toml.read_text()
        assert "max_payload_bytes" not in text
        relay_toml.write_text(text.replace("[server]\n", "[server]\nmax_payload_bytes = 2097152\n"))
    finally:
        finish_up(up)
    up = start_up(home, ports=up.ports, relay_port=up.relay_port)
    try:
        source = tmp_path / "three.bin"
        random_file(source, 3 * MIB)
        result = cli(up.home, "send", "--from", "alice", "--to", "bob", "--file", str(source))
        assert result.returncode != 0
        assert "too_large" in result.stderr and "no share was deposited" in result.stderr
        assert "max_payload_bytes" in result.stderr
        with pytest.raises(ServiceError):
            alice_sends(up, source)
        for name in NAMES:  # no custodian was asked to hold anything
            entries = audit(up.home, up.url(name), name)
            assert not [e for e in entries if "deposit" in str(e.get("event", ""))], entries
    finally:
        finish_up(up)


def test_a_partial_file_left_by_a_read_elsewhere_goes_once_read_whole_or_deleted(
    up: Up, tmp_path: Path
) -> None:
    """A read interrupted with --out A, then read whole with --out B, left A's partial file
    for ever: hidden, 0600, holding the plaintext opened so far. It is recorded as it is
    opened, named when the read stops, and removed (and named) once the message is read
    whole elsewhere, or deleted; a record that names any other file removes nothing."""
    source = tmp_path / "big.bin"
    digest = random_file(source, 24 * MIB)
    message_id = alice_sends(up, source).message_id
    settings, known = _library(up, "bob")
    bob = user(up.home, "bob")
    record = person_home(up.home, "bob") / "users" / "bob.partials.json"

    def read_into(out: Path, *, stop: bool) -> tuple[flows.ReadResult | None, list[str]]:
        said: list[str] = []
        opened = 0

        def progress(stage: str, done: int, _total: int) -> None:
            nonlocal opened
            opened += done if stage == "downloading" else 0

        try:
            result = flows.read(
                settings,
                known,
                bob,
                message_id,
                save_to=lambda _name: out,
                progress=progress,
                cancelled=lambda: stop and opened > 4 * MIB,
                warn=said.append,
            )
        except InterruptedOperationError as exc:
            assert stop
            assert f"kept (mode 0600) in {partial_path(out, message_id).absolute()}" in str(exc)
            return None, said
        return result, said

    first = tmp_path / "first" / "copy.bin"
    first.parent.mkdir()
    assert read_into(first, stop=True)[0] is None
    left = partial_path(first, message_id)
    assert left.stat().st_size > 4 * MIB and not first.exists()
    assert json.loads(record.read_text()) == {message_id: [str(left.absolute())]}
    # Another file the record is made to name, as a partial of another message would be.
    decoy = tmp_path / "first" / f".notes.txt.{'0' * 16}.part"
    decoy.write_text("not this message's")
    record.write_text(json.dumps({message_id: [str(left.absolute()), str(decoy)]}))

    second = tmp_path / "second.bin"
    result, said = read_into(second, stop=False)
    assert result is not None and file_sha256(second) == digest
    assert not left.exists() and decoy.exists()
    assert [line for line in said if "partial file" in line] == [
        f"removed {left.absolute()}, an earlier read's partial file, as the message is now"
        " read whole"
    ]
    assert message_id not in json.loads(record.read_text())

    third = tmp_path / "third.bin"
    assert read_into(third, stop=True)[0] is None
    left = partial_path(third, message_id)
    assert left.exists()
    deleted: list[str] = []
    flows.delete(settings, bob, message_id, warn=deleted.append)
    assert not left.exists() and decoy.exists()
    assert f"removed {left.absolute()}, an earlier read's partial file, as the message was" in (
        " ".join(deleted)
    )
    assert message_id not in json.loads(record.read_text())
