"""``securecomm devices`` against a real ``securecomm up`` (issue 18), as two homes: bob's,
in the data directory, and his laptop's, another home that joined the same network. The
laptop makes its key, bob adds it, it reads a message alice sent bob; it cannot send;
bob revokes it, and it can no longer read; a revoked device cannot be added again, but
``devices init`` makes it a new key."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from securecomm.local.layout import person_home

from .test_cli_system import Up, cli, explain, finish_up, send, start_up
from .test_send_read_robust import HoldingProxy, finish, start_cli

_CODE = re.compile(r"--label LABEL (\S+)")


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    started = start_up(tmp_path_factory.mktemp("devices") / "home")
    try:
        yield started
    finally:
        finish_up(started)


def device_home(up: Up, name: str) -> tuple[Path, str]:
    """A new home joined to ``up``'s network and made a device of bob by the CLI: the home,
    and the code ``devices init`` printed there."""
    home = up.home.parent / name
    joined = cli(home, "join", str(up.home / "network.json"))
    assert joined.returncode == 0, explain(joined)
    made = cli(home, "devices", "init", "--as", "bob", "--no-passphrase")
    assert made.returncode == 0, explain(made)
    found = _CODE.search(made.stdout)
    assert found, explain(made)
    return home, found.group(1)


def test_a_device_reads_until_it_is_revoked(up: Up) -> None:
    laptop, code = device_home(up, "laptop")
    added = cli(up.home, "devices", "add", "--as", "bob", "--label", "laptop", code)
    assert added.returncode == 0, explain(added)
    assert "added 'laptop'" in added.stdout
    listed = cli(up.home, "devices", "list", "--as", "bob")
    assert re.search(r"laptop\s+[0-9a-f ]+\s+until ", listed.stdout), explain(listed)
    # Added again, under another label: said to replace the one before, not to add one.
    for label, said in (("laptop", "renewed 'laptop' ("), ("mine", "renewed 'laptop' as 'mine' (")):
        readded = cli(up.home, "devices", "add", "--as", "bob", "--label", label, code)
        assert readded.returncode == 0 and readded.stdout.startswith(said), explain(readded)
    renamed = cli(up.home, "devices", "add", "--as", "bob", "--label", "laptop", code)
    assert renamed.stdout.startswith("renewed 'mine' as 'laptop' ("), explain(renamed)

    message_id = send(up.home, "for bob, read on his laptop")
    inbox = cli(laptop, "inbox", "--as", "bob")
    assert message_id in inbox.stdout, explain(inbox)
    read = cli(laptop, "read", message_id, "--as", "bob")
    assert read.returncode == 0, explain(read)
    assert "for bob, read on his laptop" in read.stdout

    # A device cannot sign an envelope: said before any share is deposited.
    refused = cli(laptop, "send", "--from", "bob", "--to", "alice", "from the laptop")
    assert refused.returncode == 1, explain(refused)
    assert "nothing was sent" in refused.stderr and "own key" in refused.stderr

    revoked = cli(up.home, "devices", "revoke", "--as", "bob", "laptop")
    assert revoked.returncode == 0, explain(revoked)
    assert "at the relay and all 5 custodians" in revoked.stdout
    again = send(up.home, "after the laptop was revoked")
    # Refused, with the way back: a new key (with the delegation kept here, and without).
    renew = f"'securecomm devices init --as bob --home {laptop}' makes this home a new key"
    grant = laptop / "users" / "bob.device.json"
    assert grant.exists()
    for command in (["read", again, "--as", "bob"], ["inbox", "--as", "bob"]):
        after = cli(laptop, *command)
        assert after.returncode == 1, explain(after)
        assert "revoked" in after.stderr and renew in after.stderr, explain(after)
        assert "after the laptop" not in after.stdout
        grant.unlink(missing_ok=True)
    listed = cli(up.home, "devices", "list", "--as", "bob")
    assert re.search(r"laptop\s+[0-9a-f ]+\s+revoked ", listed.stdout), explain(listed)
    # Revoking again is harmless; adding the revoked key again is refused, saying what to do.
    assert cli(up.home, "devices", "revoke", "--as", "bob", "laptop").returncode == 0
    readd = cli(up.home, "devices", "add", "--as", "bob", "--label", "laptop", code)
    assert readd.returncode == 1, explain(readd)
    assert "bob revoked that device ('laptop', " in readd.stderr, explain(readd)
    assert "run 'securecomm devices init --as bob' again" in readd.stderr, explain(readd)
    # Before, init printed the revoked key's code again, and nothing could make another.
    key = laptop / "users" / "bob.device.key"
    revoked_key = key.read_bytes()
    made = cli(laptop, "devices", "init", "--as", "bob", "--no-passphrase")
    assert made.returncode == 0, explain(made)
    assert "bob revoked the key this home had (" in made.stdout, explain(made)
    assert "a new key replaces it" in made.stdout, explain(made)
    new_code = _CODE.search(made.stdout)
    assert new_code and new_code.group(1) != code and key.read_bytes() != revoked_key
    added = cli(up.home, "devices", "add", "--as", "bob", "--label", "laptop", new_code.group(1))
    assert added.returncode == 0 and "added 'laptop'" in added.stdout, explain(added)
    read = cli(laptop, "read", again, "--as", "bob")
    assert read.returncode == 0 and "after the laptop was revoked" in read.stdout, explain(read)
    # Run once more, the new key is kept: it is not revoked.
    kept = cli(laptop, "devices", "init", "--as", "bob", "--no-passphrase")
    assert "already" in kept.stdout and new_code.group(1) in kept.stdout, explain(kept)


def test_mistakes_are_named(up: Up) -> None:
    laptop, code = device_home(up, "tablet")
    # init twice (its code scrolled away): the key is kept, not replaced, and the code
    # printed again.
    key = laptop / "users" / "bob.device.key"
    before = key.read_bytes()
    twice = cli(laptop, "devices", "init", "--as", "bob", "--no-passphrase")
    assert twice.returncode == 0 and "already" in twice.stdout, explain(twice)
    again = _CODE.search(twice.stdout)
    assert again and again.group(1) == code, explain(twice)
    assert key.read_bytes() == before
    # Not added yet: the device says so.
    early = cli(laptop, "inbox", "--as", "bob")
    assert early.returncode == 1 and "devices add" in early.stderr, explain(early)
    # A code that is not one, and a device of someone else.
    bad = cli(up.home, "devices", "add", "--as", "bob", "--label", "x", "not-a-code")
    assert bad.returncode == 2, explain(bad)
    # Cut short in the copying: said so, without the JSON parser's words.
    cut = cli(up.home, "devices", "add", "--as", "bob", "--label", "x", code[:60])
    assert cut.returncode == 2, explain(cut)
    assert "not a whole code from 'devices init' (cut short" in cut.stderr, explain(cut)
    assert "offset" not in cut.stderr and "JSON" not in cut.stderr, explain(cut)
    other = cli(up.home, "devices", "add", "--as", "alice", "--label", "x", code)
    assert other.returncode == 1 and "made for bob" in other.stderr, explain(other)
    # Only a person's own home adds devices; a device home is not one.
    assert not (person_home(up.home, "bob") / "users" / "bob.device.key").exists()
    from_device = cli(laptop, "devices", "add", "--as", "bob", "--label", "x", code)
    assert from_device.returncode == 2 and "own key" in from_device.stderr, explain(from_device)
    # Revoking a device that is not there.
    missing = cli(up.home, "devices", "revoke", "--as", "bob", "no-such-device")
    assert missing.returncode == 2 and "no devices match" in missing.stderr, explain(missing)


def test_a_revocation_cut_short_says_so_and_the_same_command_finishes_it(up: Up) -> None:
    """Interrupted while the services took the revocation, revoke said only "interrupted",
    while `devices list` (the relay's word) already said "revoked": the custodians not yet
    reached went on serving the device, enough of them to read. A service that cannot be
    reached is named once (it was "charlie: charlie: ...")."""
    phone, code = device_home(up, "phone")
    added = cli(up.home, "devices", "add", "--as", "bob", "--label", "phone", code)
    assert added.returncode == 0, explain(added)
    message_id = send(up.home, "for the phone")
    with HoldingProxy(up.url("charlie"), ("POST", "/v1/revocations")) as proxy:
        env = {"SECURECOMM_CUSTODIAN_CHARLIE_URL": proxy.url}
        process = start_cli(up.home, "devices", "revoke", "--as", "bob", "phone", env=env)
        assert proxy.held.wait(30)
        process.send_signal(signal.SIGINT)
        cut = finish(process)
    assert cut.returncode == 130 and "Traceback" not in cut.stderr, explain(cut)
    assert (
        "interrupted: 'phone' may not be revoked at every service yet; one that does not hold"
        " the revocation still serves it" in cut.stderr
    ), explain(cut)
    assert "finish it: securecomm devices revoke --as bob 'phone'" in cut.stderr, explain(cut)
    # A custodian that cannot be reached: named, with the command that finishes.
    down = start_cli(
        up.home,
        "devices",
        "revoke",
        "--as",
        "bob",
        "phone",
        env={"SECURECOMM_CUSTODIAN_DELTA_URL": "http://127.0.0.1:9"},
    )
    short = finish(down)
    assert short.returncode == 1, explain(short)
    assert "'phone' is revoked at 5 of 6 services; not yet at:\n  delta: cannot reach" in (
        short.stderr
    ), explain(short)
    assert "run it again: securecomm devices revoke --as bob 'phone'" in short.stderr
    done = cli(up.home, "devices", "revoke", "--as", "bob", "phone")
    assert done.returncode == 0 and "at the relay and all 5 custodians" in done.stdout
    after = cli(phone, "read", message_id, "--as", "bob")
    assert after.returncode == 1 and "revoked" in after.stderr, explain(after)
