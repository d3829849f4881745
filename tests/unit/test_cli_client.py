"""Pieces of the client CLI that need no servers: durations, progress, init, clean."""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import pytest

from securecomm.cli import main
from securecomm.cli._common import ProgressBar, parse_duration
from securecomm.cli.people import _inbox_notes, size_text
from securecomm.client.trust import KnownKeys
from securecomm.config import load_settings
from securecomm.errors import KeyChangedError, ParameterError
from securecomm.identity import Identity, PublicIdentity
from securecomm.local.home import init_home


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("30m", 1800), ("12h", 43200), ("1d", 86400), ("2w", 1209600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "1y", "-5m", "1.5h", "h", "5 m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal_and_for_large_work(monkeypatch: pytest.MonkeyPatch):
    terminal = _Tty()
    monkeypatch.setattr(sys, "stderr", terminal)
    ProgressBar(10)("depositing shares", 5, 5)
    assert terminal.getvalue() == ""
    bar = ProgressBar(2 * 1024 * 1024)
    bar("depositing shares", 0, 5)
    bar("depositing shares", 1, 5)
    bar("depositing shares", 1, 5)
    bar("posting", 3025, 3025)
    text = terminal.getvalue()
    assert "2/5" in text and "[############" in text
    assert text.endswith("posting            [" + "#" * 30 + "] 3.0/3.0 KiB\033[K\n")
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    ProgressBar(2 * 1024 * 1024)("uploading", 1, 5)
    assert piped.getvalue() == ""


def test_progress_bar_says_how_long_a_transfer_has_not_moved(monkeypatch: pytest.MonkeyPatch):
    """The last figures and rate stayed on screen while the relay hung; now the line says for
    how long nothing moved, until the transfer moves again or the bar is closed."""
    terminal = _Tty()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(ProgressBar, "STALLED_SECONDS", 0.2)
    monkeypatch.setattr(ProgressBar, "WATCH_SECONDS", 0.05)
    with ProgressBar(8 * 1024 * 1024) as bar:
        bar("uploading", 2 * 1024 * 1024, 8 * 1024 * 1024)
        deadline = time.monotonic() + 30
        while "no answer for" not in terminal.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "2.0/8.0 MiB  no answer for 0 s" in terminal.getvalue()
        bar("uploading", 6 * 1024 * 1024, 8 * 1024 * 1024)
    said = terminal.getvalue()
    last = said.rsplit("\r", 1)[1]
    assert "8.0/8.0 MiB" in last and "no answer" not in last, last
    time.sleep(0.3)  # closed: nothing more is drawn
    assert terminal.getvalue() == said


def test_a_transfer_that_stops_part_way_leaves_its_line_and_ends_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error said after a failed upload was glued to the end of the bar's line
    ("... 2.0/8.0 MiB  1.2 MB/serror: ..."); now the bar keeps where it stopped and ends
    the line, once, and a bar that finished adds nothing."""
    terminal = _Tty()
    monkeypatch.setattr(sys, "stderr", terminal)
    with pytest.raises(OSError), ProgressBar(8 * 1024 * 1024) as bar:
        bar("uploading", 2 * 1024 * 1024, 8 * 1024 * 1024)
        raise OSError("the relay went away")
    said = terminal.getvalue()
    assert said.endswith("2.0/8.0 MiB\033[K\n"), repr(said)
    finished = _Tty()
    monkeypatch.setattr(sys, "stderr", finished)
    with ProgressBar(8 * 1024 * 1024) as bar:
        bar("uploading", 8 * 1024 * 1024, 8 * 1024 * 1024)
    assert finished.getvalue().endswith("8.0/8.0 MiB\033[K\n")
    assert not finished.getvalue().endswith("\n\n")


def test_inbox_sizes_read_as_a_person_reads_them() -> None:
    """A streamed message was listed as "300076281 bytes"."""
    assert size_text(2996) == "2,996 bytes"
    assert size_text(1024 * 1024 - 1) == "1,048,575 bytes"
    assert size_text(1024 * 1024) == "1.0 MiB"
    assert size_text(300076281) == "286.2 MiB"
    assert size_text(5 * 1024**4) == "5,242,880.0 MiB"


CUSTODIANS = ("alpha", "bravo", "charlie", "delta", "echo")


def test_init_makes_each_party_its_own_home_once_and_pins_every_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = init_home(home)
    # settings, five operators' keys, five custodians' cards, the relay's, the network, 2 users
    assert len(first.created) == 1 + 5 + 5 + 1 + 1 + 2
    again = init_home(home)
    assert again.created == ()
    for person in ("alice", "bob"):
        known = KnownKeys.load(home / "people" / person)
        expected = {"relay", "alice", "bob", *CUSTODIANS, *[f"{n}-operator" for n in CUSTODIANS]}
        assert set(known.keys) == expected
        for name, identity in first.identities.items():
            assert known.require(name).fingerprint == identity.fingerprint
    # Each party's private key is in its own home, and nowhere else.
    owners = {
        "relay": home / "relay",
        **{name: home / name for name in CUSTODIANS},
        **{name: home / "people" / name for name in first.identities if "-" in name},
        "alice": home / "people" / "alice",
        "bob": home / "people" / "bob",
    }
    for path in home.rglob("*.key"):
        holder = Identity.load(path).name
        assert path.is_relative_to(owners[holder]), f"{path} is {holder}'s"
    assert (home.stat().st_mode & 0o777) == 0o700
    settings = load_settings(home, env={})
    assert (settings.n_shares, settings.threshold) == (5, 3)


def test_init_refuses_a_home_shared_by_every_party(tmp_path: Path) -> None:
    (tmp_path / "users").mkdir()
    with pytest.raises(ParameterError, match="every party's keys in one place"):
        init_home(tmp_path)
    assert not (tmp_path / "network.json").exists()


def test_init_with_other_numbers_and_refusal_to_change_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home, n=7, t=4)
    settings = load_settings(home, env={})
    assert (settings.n_shares, settings.threshold) == (7, 4)
    assert [c.name for c in settings.custodians][-2:] == ["custodian6", "custodian7"]
    with pytest.raises(Exception, match="set up for 4 of 7"):
        init_home(home, n=5)


def test_known_keys_refuse_a_changed_key_naming_both(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home)
    alice = home / "people" / "alice"
    known = KnownKeys.load(alice)
    impostor = Identity.generate("bob").public
    with pytest.raises(KeyChangedError) as caught:
        known.pin(impostor)
    message = str(caught.value)
    assert known.require("bob").short_fingerprint() in message
    assert impostor.short_fingerprint() in message
    # A file that files a key under another name is refused.
    document = json.loads((alice / "known_keys.json").read_text())
    document["keys"]["bob"] = document["keys"]["alice"]
    (alice / "known_keys.json").write_text(
        json.dumps(document, sort_keys=True, separators=(",", ":"))
    )
    with pytest.raises(Exception, match="filed as 'bob' is named 'alice'"):
        KnownKeys.load(alice)
    assert isinstance(impostor, PublicIdentity)


def test_clean_all_needs_confirmation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    init_home(home)
    (tmp_path / ".pytest_cache").mkdir()
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(SystemExit) as refused:
        main(["clean", "--all", "--home", str(home)])
    assert refused.value.code == 2
    assert home.exists()
    main(["clean", "--all", "--yes", "--home", str(home)])
    assert not home.exists()
    assert "removed" in capsys.readouterr().out
    # Outside its data directory clean touches nothing, a cache of the user's included.
    assert (tmp_path / ".pytest_cache").exists()


def test_init_tls_refuses_a_network_made_without_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home)
    network = (home / "network.json").read_bytes()
    with pytest.raises(ParameterError, match="set up without TLS; nothing was changed") as no:
        init_home(home, tls=True)
    assert "give another --home" in (no.value.hint or "")  # the way forward, not just no
    assert (home / "network.json").read_bytes() == network
    assert not (home / "tls").exists()


# 2027-01-15 08:00:00 UTC: a policy's times in the inbox, said as the custodians say them.
POLICY_TIME = 1_800_000_000


def test_the_inbox_says_an_expiry_past_and_a_not_before_to_come_in_utc() -> None:
    """`inbox` said "expired <local time>" where the page, the read and the custodians say
    "expired at ... UTC", and a not_before to come in local time too."""

    def notes(now: int, **policy: int) -> list[str]:
        return _inbox_notes({"policy": policy}, now)

    assert notes(POLICY_TIME, expires=POLICY_TIME) == ["expired at 2027-01-15 08:00:00 UTC"]
    assert notes(POLICY_TIME - 1, not_before=POLICY_TIME) == ["not before 2027-01-15 08:00:00 UTC"]
    # Within the window: an expiry to come stays in local time, and not_before is not said.
    assert notes(POLICY_TIME, not_before=POLICY_TIME, expires=POLICY_TIME + 60) == [
        f"expires {time.strftime('%Y-%m-%d %H:%M', time.localtime(POLICY_TIME + 60))}"
    ]


def test_the_inbox_says_max_releases_counts_each_custodians_releases_not_reads() -> None:
    """`inbox` said "at most 2 reads" of a message each custodian releases twice: each
    counts its own releases, so with 5 custodians and threshold 3 up to three readers can
    open it (tests/integration/test_postgres.py measures that bound)."""
    assert _inbox_notes({"policy": {"max_releases": 2}}, POLICY_TIME) == [
        "each share released at most 2 times"
    ]
    assert _inbox_notes({"policy": {"max_releases": 1}}, POLICY_TIME) == ["burn after reading"]
