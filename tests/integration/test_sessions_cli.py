"""``securecomm unlock | lock | sessions`` against a real ``securecomm up`` (issue 18): a
person whose key has a passphrase unlocks it once, sends three times without being asked,
locks, and is asked again; the unlocked key is in no file and no output; a session ends
on its lifetime; a wrong passphrase starts nothing."""

from __future__ import annotations

import base64
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from securecomm import agent
from securecomm.errors import IdentityError
from securecomm.identity import Identity
from securecomm.local.layout import person_home, user_key_path
from tests.agents import PASSPHRASE, end, wait_gone
from tests.terminal import run_on_terminal

from .test_cli_system import MESSAGE_ID, Up, clean_env, cli, explain, finish_up, start_up


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """The local network, and carol, who protects her key with a passphrase."""
    started = start_up(tmp_path_factory.mktemp("sessions") / "home")
    try:
        secret = started.home.parent / "carol.passphrase"
        secret.write_text(PASSPHRASE + "\n")
        made = cli(started.home, "register", "carol", "--passphrase-file", str(secret))
        assert made.returncode == 0, explain(made)
        yield started
    finally:
        finish_up(started)


@pytest.fixture
def secret(up: Up) -> Path:
    return up.home.parent / "carol.passphrase"


@pytest.fixture
def locked_after(up: Up) -> Iterator[None]:
    """Whatever a test unlocked is locked (or its agent ended) when it ends."""
    yield
    for session in agent.sessions([person_home(up.home, "carol")]):
        agent.lock(session.path)
        end(session.pid)


def _send(up: Up, text: str) -> str:
    result = cli(up.home, "send", "--from", "carol", "--to", "bob", text)
    assert result.returncode == 0, explain(result)
    found = MESSAGE_ID.search(result.stdout)
    assert found, explain(result)
    return found.group(1)


def _asks_for_a_passphrase(up: Up) -> None:
    """Without a terminal a command that needs the passphrase stops and says so."""
    refused = cli(up.home, "send", "--from", "carol", "--to", "bob", "not sent")
    assert refused.returncode == 1, explain(refused)
    assert "passphrase is needed" in refused.stderr, explain(refused)


@pytest.mark.usefixtures("locked_after")
def test_unlock_then_three_sends_then_lock(up: Up, secret: Path) -> None:
    _asks_for_a_passphrase(up)
    unlocked = cli(
        up.home, "unlock", "--as", "carol", "--for", "10m", "--passphrase-file", str(secret)
    )
    assert unlocked.returncode == 0, explain(unlocked)
    assert "carol unlocked until" in unlocked.stdout
    sent = [_send(up, f"message {n} without a passphrase") for n in range(3)]
    assert len(set(sent)) == 3
    listed = cli(up.home, "sessions")
    assert listed.returncode == 0, explain(listed)
    assert re.search(r"^carol  [0-9a-f ]+  until ", listed.stdout, re.MULTILINE), explain(listed)
    read = cli(up.home, "read", sent[2], "--as", "bob")
    assert read.returncode == 0 and "message 2 without a passphrase" in read.stdout
    locked = cli(up.home, "lock", "--as", "carol")
    assert locked.returncode == 0 and "locked: carol" in locked.stdout, explain(locked)
    again = cli(up.home, "lock", "--as", "carol")  # a known person, nothing unlocked
    assert again.returncode == 0 and "carol was not unlocked" in again.stdout, explain(again)
    typo = cli(up.home, "lock", "--as", "caro1")  # said "was not unlocked", as if it were
    assert typo.returncode == 1 and "no identity 'caro1'" in typo.stderr, explain(typo)
    _asks_for_a_passphrase(up)
    assert "nothing is unlocked" in cli(up.home, "sessions").stdout
    # At a terminal, the next send asks, and goes with the passphrase typed.
    status, printed = run_on_terminal(
        [
            sys.executable,
            "-m",
            "securecomm.cli",
            "send",
            "--from",
            "carol",
            "--to",
            "bob",
            "asked again",
            "--home",
            str(up.home),
        ],
        {"passphrase for": PASSPHRASE},
        env=clean_env(),
    )
    assert status == 0, printed
    assert "passphrase for" in printed and MESSAGE_ID.search(printed.replace("\r", "")), printed


@pytest.mark.usefixtures("locked_after")
def test_the_unlocked_key_is_in_no_file_and_no_output(up: Up, secret: Path) -> None:
    key_path = user_key_path(up.home, "carol")
    identity = Identity.load(key_path, PASSPHRASE.encode())
    keys: list[Ed25519PrivateKey | X25519PrivateKey] = [
        identity._signing_key,
        identity.kem_private_key,
    ]
    secrets = [key.private_bytes_raw() for key in keys]
    # ... and each key as an unencrypted PKCS#8 file would hold it (one base64 line).
    secrets += [
        key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()) for key in keys
    ]
    forms = [form for raw in secrets for form in (raw, raw.hex().encode(), base64.b64encode(raw))]
    unlocked = cli(up.home, "unlock", "--as", "carol", "--passphrase-file", str(secret))
    assert unlocked.returncode == 0, explain(unlocked)
    sent = cli(up.home, "send", "--from", "carol", "--to", "bob", "checked for leaks")
    assert sent.returncode == 0, explain(sent)
    outputs = (unlocked.stdout + unlocked.stderr + sent.stdout + sent.stderr).encode()
    files = [path for path in up.home.rglob("*") if path.is_file()]
    assert key_path in files
    for path in [*files, up.stdout, up.stderr]:
        data = path.read_bytes()
        for form in forms:
            assert form not in data, f"{path} holds the unlocked key"
    for form in forms:
        assert form not in outputs


@pytest.mark.usefixtures("locked_after")
def test_a_session_ends_on_its_lifetime(up: Up, secret: Path) -> None:
    unlocked = cli(
        up.home, "unlock", "--as", "carol", "--for", "2s", "--passphrase-file", str(secret)
    )
    assert unlocked.returncode == 0, explain(unlocked)
    (session,) = agent.sessions([person_home(up.home, "carol")])
    _send(up, "within the session")
    assert wait_gone(session.pid, 10.0)
    _asks_for_a_passphrase(up)


@pytest.mark.usefixtures("locked_after")
def test_unlock_twice_keeps_one_agent(up: Up, secret: Path) -> None:
    for _ in range(2):
        unlocked = cli(up.home, "unlock", "--as", "carol", "--passphrase-file", str(secret))
        assert unlocked.returncode == 0, explain(unlocked)
    assert "earlier session is locked" in unlocked.stdout
    found = agent.sessions([person_home(up.home, "carol")])
    assert len(found) == 1
    time.sleep(0.2)
    assert len(agent.sessions([person_home(up.home, "carol")])) == 1


def test_a_wrong_passphrase_starts_nothing(up: Up, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    refused = cli(up.home, "unlock", "--as", "carol", "--passphrase-file", str(wrong))
    assert refused.returncode != 0, explain(refused)
    assert "Traceback" not in refused.stderr
    assert agent.sessions([person_home(up.home, "carol")]) == []


def test_a_key_without_passphrase_has_nothing_to_unlock(up: Up) -> None:
    said = cli(up.home, "unlock", "--as", "alice")
    assert said.returncode == 0, explain(said)
    assert "nothing to unlock" in said.stdout
    assert agent.sessions([person_home(up.home, "alice")]) == []


def test_unlock_without_a_name_in_a_home_of_several(up: Up) -> None:
    asked = cli(up.home, "unlock")
    assert asked.returncode == 2, explain(asked)
    assert "--as NAME" in asked.stderr


def test_passphrase_without_a_terminal_names_its_own_option_for_the_new_one(up: Up) -> None:
    """Its hint said --passphrase-file, which in this command is the current passphrase."""
    alice_key = user_key_path(up.home, "alice")
    before = alice_key.read_bytes()
    refused = cli(up.home, "passphrase", "--as", "alice")
    assert refused.returncode == 2, explain(refused)
    assert "give --new-passphrase-file PATH" in refused.stderr, explain(refused)
    assert alice_key.read_bytes() == before


def test_a_new_passphrase_given_as_the_current_one_is_named_so(up: Up, secret: Path) -> None:
    """`passphrase --as alice --passphrase-file NEW` on a key with none said "key file for
    alice: not encrypted, yet a passphrase was given", with no word of the option meant."""
    alice_key = user_key_path(up.home, "alice")
    before = alice_key.read_bytes()
    refused = cli(up.home, "passphrase", "--as", "alice", "--passphrase-file", str(secret))
    assert refused.returncode == 2, explain(refused)
    assert "alice's key has no passphrase yet" in refused.stderr, explain(refused)
    assert "hint: give the new one with --new-passphrase-file PATH" in refused.stderr
    assert alice_key.read_bytes() == before


def test_removing_a_passphrase_a_key_never_had_changes_nothing_and_says_so(up: Up) -> None:
    """It said "no passphrase any more" of alice's key, which never had one, and wrote the
    file again."""
    alice_key = user_key_path(up.home, "alice")
    before = alice_key.read_bytes(), alice_key.stat().st_mtime_ns
    said = cli(up.home, "passphrase", "--as", "alice", "--no-passphrase")
    assert said.returncode == 0, explain(said)
    assert said.stdout == (
        f"{alice_key}: alice's key has no passphrase already; nothing was changed\n"
    ), explain(said)
    assert (alice_key.read_bytes(), alice_key.stat().st_mtime_ns) == before


def test_alice_protects_her_key_then_unlocks_it(up: Up, secret: Path) -> None:
    """The issue's walk with alice, whose key ``up`` made without a passphrase: she sets
    one, unlocks for 10 minutes, sends three times unasked, locks, and is asked again."""
    alice_key = user_key_path(up.home, "alice")
    try:
        protected = cli(
            up.home, "passphrase", "--as", "alice", "--new-passphrase-file", str(secret)
        )
        assert protected.returncode == 0, explain(protected)
        with pytest.raises(IdentityError, match="passphrase is needed"):
            Identity.load(alice_key)
        unlocked = cli(
            up.home, "unlock", "--as", "alice", "--for", "10m", "--passphrase-file", str(secret)
        )
        assert unlocked.returncode == 0 and "alice unlocked until" in unlocked.stdout, explain(
            unlocked
        )
        for n in range(3):
            sent = cli(up.home, "send", "--from", "alice", "--to", "bob", f"unasked {n}")
            assert sent.returncode == 0, explain(sent)
        assert cli(up.home, "lock", "--as", "alice").returncode == 0
        asked = cli(up.home, "send", "--from", "alice", "--to", "bob", "asked")
        assert asked.returncode == 1 and "passphrase is needed" in asked.stderr, explain(asked)
    finally:
        for session in agent.sessions([person_home(up.home, "alice")]):
            agent.lock(session.path)
        restored = cli(
            up.home,
            "passphrase",
            "--as",
            "alice",
            "--passphrase-file",
            str(secret),
            "--no-passphrase",
        )
    assert restored.returncode == 0, explain(restored)
    Identity.load(alice_key)  # unprotected again, for the tests after this one
