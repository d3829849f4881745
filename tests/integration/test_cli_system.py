"""The whole system through the CLI: ``securecomm up`` and the client commands as subprocesses.

Every test drives ``python -m securecomm.cli`` with ``--home`` and a timeout,
against real gunicorn processes on free loopback ports. The settings file is
written before ``init``/``up``, so ``up`` listens on those ports. Tests that
do not disturb each other share one module-scoped ``up``; tests that kill
services get their own. Every ``up`` is stopped with SIGTERM, and then no
process whose command line names its home may be left.

The lying custodian (``evil_custodian.py``) runs without ``up``: the relay
and four honest custodians are ``conftest.Service`` processes, charlie is
the real custodian app whose releases carry a wrong share.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from securecomm.client.transport import ServiceClient, tls_context
from securecomm.config import load_settings
from securecomm.custodian.audit import paged
from securecomm.errors import ServiceError
from securecomm.identity import Identity, load_public
from securecomm.local.home import user_key_path
from securecomm.relay.app import endorsement_body
from tests.backends import Backend
from tests.operators import provide_operator
from tests.shared_home import add_people

from .conftest import NAMES, Service, Stack, free_port, stored_bytes, write_config

CLI = [sys.executable, "-m", "securecomm.cli"]
EVIL = Path(__file__).with_name("evil_custodian.py")
TIMEOUT = 60.0
MESSAGE_ID = re.compile(r"^message id:\s+([0-9a-f]{32})$", re.MULTILINE)
INBOX_LINE = re.compile(r"^([0-9a-f]{32})  from ", re.MULTILINE)


# Running the CLI


def clean_env() -> dict[str, str]:
    """This environment without the variables that would override a home's settings."""
    overrides = ("SECURECOMM_", "SERVER_")
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(overrides) and key not in {"N_SHARES", "THRESHOLD"}
    }


def run(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
    )


def cli(home: Path, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return run(*args, "--home", str(home), timeout=timeout)


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def send(home: Path, text: str, *flags: str, sender: str = "alice", to: str = "bob") -> str:
    result = cli(home, "send", "--from", sender, "--to", to, text, *flags)
    assert result.returncode == 0, explain(result)
    found = MESSAGE_ID.search(result.stdout)
    assert found, explain(result)
    return found.group(1)


def inbox(home: Path, reader: str = "bob") -> list[str]:
    result = cli(home, "inbox", "--as", reader)
    assert result.returncode == 0, explain(result)
    return INBOX_LINE.findall(result.stdout)


def read(
    home: Path, message_id: str, reader: str = "bob", *flags: str
) -> subprocess.CompletedProcess[str]:
    return cli(home, "read", message_id, "--as", reader, *flags)


def failure_lines(stderr: str) -> dict[str, str]:
    """The ``  NAME: why`` lines the CLI prints under a headline, by custodian name."""
    found = re.findall(r"^\s+([a-z]+): (.+)$", stderr, re.MULTILINE)
    return {name: why for name, why in found if name in NAMES}


def skipped_warnings(stderr: str) -> dict[str, str]:
    return dict(re.findall(r"^warning: custodian ([a-z]+) skipped: (.+)$", stderr, re.MULTILINE))


# Processes


def ere_literal(text: str) -> str:
    """``text`` as a POSIX extended regular expression matching only itself (for pgrep)."""
    return "".join(f"\\{c}" if c in ".[]()*+?{}|^$\\" else c for c in text)


def processes_of(home: Path) -> list[tuple[int, str]]:
    """Every process whose command line names ``home``: (pid, command line)."""
    listing = subprocess.run(
        ["pgrep", "-af", ere_literal(str(home))], capture_output=True, text=True, timeout=10
    )
    result = []
    for line in listing.stdout.splitlines():
        pid, _, command = line.partition(" ")
        # The home's path followed by a space, a separator (a party's home in it) or the
        # end: not a longer sibling path.
        if re.search(re.escape(str(home)) + r"(\s|/|$)", command):
            result.append((int(pid), command))
    return result


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def healthy(url: str, trust: str | None = None) -> bool:
    try:
        answer = httpx.get(f"{url}/healthz", timeout=1.0, verify=tls_context(trust))
    except httpx.HTTPError:
        return False
    return answer.status_code == 200


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Up:
    """A running ``securecomm up`` and the ports it was told to use."""

    home: Path
    relay_port: int
    ports: dict[str, int]
    tls: bool = False
    process: subprocess.Popen[bytes] | None = None
    stdout: Path = field(init=False)
    stderr: Path = field(init=False)

    def __post_init__(self) -> None:
        self.stdout = self.home.parent / "up.out"
        self.stderr = self.home.parent / "up.err"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def trust(self) -> str | None:
        """The local network's CA, made by ``up --tls``."""
        return (self.home / "tls" / "ca.pem").read_text() if self.tls else None

    @property
    def relay_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.relay_port}"

    def url(self, name: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.ports[name]}"

    def output(self) -> str:
        return (
            f"--- up stdout\n{self.stdout.read_text(errors='replace')}"
            f"--- up stderr\n{self.stderr.read_text(errors='replace')}"
        )

    def kill(self, name: str) -> None:
        """SIGKILL custodian ``name``'s process group(s), found by command line."""
        marker = f"custodian serve --home {self.home / name} "
        pids = [pid for pid, command in processes_of(self.home) if marker in command]
        assert pids, f"no process for {name}:\n{processes_of(self.home)}"
        for group in {os.getpgid(pid) for pid in pids}:
            os.killpg(group, signal.SIGKILL)

        def gone() -> bool:
            left = [pid for pid, command in processes_of(self.home) if marker in command]
            return not left and not listening(self.ports[name])

        wait_for(gone, 15, f"{name} to die")


def start_up(
    home: Path,
    env: dict[str, str] | None = None,
    ports: dict[str, int] | None = None,
    relay_port: int | None = None,
    max_envelope_bytes: int | None = None,
    tls: bool = False,
    backend: Backend | None = None,
) -> Up:
    """``init`` then ``up`` on free ports (or those given), with ``env`` added to a clean
    environment (to point links at a proxy, say), storing on ``backend`` (default
    SQLite)."""
    ports = ports or {name: free_port() for name in NAMES}
    up = Up(home, relay_port or free_port(), ports, tls)
    write_config(home, up.relay_port, ports, max_envelope_bytes, backend)
    tls_flag = ["--tls"] if tls else []
    initialised = cli(home, "init", *tls_flag)
    assert initialised.returncode == 0, explain(initialised)
    with open(up.stdout, "wb") as out, open(up.stderr, "wb") as err:
        up.process = subprocess.Popen(
            [*CLI, "up", "--home", str(home), *tls_flag],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=clean_env() | (env or {}),
        )
    urls = [up.relay_url, *(up.url(name) for name in NAMES)]

    def ready() -> bool:
        assert up.process is not None
        if up.process.poll() is not None:
            raise AssertionError(f"up exited with {up.process.returncode}\n{up.output()}")
        trust = up.trust
        return all(healthy(u, trust) for u in urls) and "securecomm is up" in up.stdout.read_text(
            errors="replace"
        )

    try:
        wait_for(ready, 60, "up to start every service")
    except BaseException:
        stop_up(up)
        raise
    return up


def stop_up(up: Up) -> list[tuple[int, str]]:
    """SIGTERM ``up`` and wait; return the processes naming its home that are left (killed)."""
    if up.process is not None:
        if up.process.poll() is None:
            up.process.send_signal(signal.SIGTERM)
        try:
            up.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.process.kill()
            up.process.wait(timeout=10)
    deadline = time.monotonic() + 5
    left = processes_of(up.home)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = processes_of(up.home)
    for pid, _ in left:  # clean up after a failure, then report it
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def finish_up(up: Up) -> None:
    left = stop_up(up)
    assert not left, f"processes outlived up:\n{left}\n{up.output()}"


@contextlib.contextmanager
def running_up(home: Path, backend: Backend | None = None) -> Iterator[Up]:
    """An ``up`` on ``home`` for the block, stopped after it (for module fixtures)."""
    up = start_up(home, backend=backend)
    try:
        yield up
    finally:
        finish_up(up)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[Up]:
    """One ``up`` for the tests that leave every service running (one per backend)."""
    up = start_up(tmp_path_factory.mktemp(f"shared-{backend}") / "home", backend=backend)
    yield up
    finish_up(up)


@pytest.fixture
def fresh(tmp_path: Path, backend: Backend) -> Iterator[Up]:
    """An ``up`` of this test's own, for tests that kill services (on each backend)."""
    up = start_up(tmp_path / "home", backend=backend)
    yield up
    finish_up(up)


def relay_stored(home: Path) -> bytes:
    """Everything the relay of ``up`` on ``home`` stored (``conftest.stored_bytes``)."""
    return stored_bytes(load_settings(home / "relay", env={}).relay_database())


# Talking to services directly, to check what the CLI did


def user(home: Path, name: str) -> Identity:
    return Identity.load(user_key_path(home, name))


def audit(home: Path, url: str, name: str) -> list[dict[str, Any]]:
    """Every entry of a custodian's log, page by page."""
    own = user_key_path(home, f"{name}-operator")  # an operator's own home, in `up`'s
    shared = home / "operators" / f"{name}-operator.key"  # a fixture's shared home
    operator = Identity.load(own if own.exists() else shared)
    with ServiceClient(url, name, operator) as client:

        def page(after: int) -> dict[str, Any]:
            answer: dict[str, Any] = client.request(
                "GET", "/v1/audit", params={"after": str(after)}
            ).json()
            return answer

        return list(paged(page))


def events_of(up: Up, name: str, message_id: str) -> list[str]:
    """The audit events of custodian ``name`` about ``message_id`` (by id, or by its ref)."""
    entries = audit(up.home, up.url(name), name)
    refs = {e["data"]["ref"] for e in entries if e["data"].get("message_id") == message_id}
    return [
        e["event"]
        for e in entries
        if e["data"].get("message_id") == message_id or e["data"].get("ref") in refs
    ]


def release(url: str, name: str, reader: Identity, message_id: str) -> tuple[int, str]:
    """Ask custodian ``name`` for its share as ``reader``: (HTTP status, code)."""
    with ServiceClient(url, name, reader) as client:
        try:
            answer = client.request("POST", "/v1/releases", body={"v": 1, "message_id": message_id})
        except ServiceError as exc:
            return exc.status, exc.code
    return answer.status_code, str(answer.json().get("status"))


def check_withdrawn(
    home: Path, urls: dict[str, str], before: dict[str, int], bob: Identity
) -> list[str]:
    """Each deposit made since ``before`` (audit seq by custodian) was deleted again.

    Returns the message ids those deposits were for.
    """
    ids = []
    for name, url in urls.items():
        entries = [e for e in audit(home, url, name) if e["seq"] > before[name]]
        deposits = {
            e["data"]["ref"]: e["data"]["message_id"] for e in entries if e["event"] == "deposit"
        }
        deleted = {e["data"]["ref"] for e in entries if e["event"] == "delete"}
        assert set(deposits) <= deleted, f"{name} keeps a deposit of a failed send: {entries}"
        for message_id in deposits.values():
            assert release(url, name, bob, message_id) == (410, "destroyed"), name
            ids.append(message_id)
    return ids


def last_seq(home: Path, url: str, name: str) -> int:
    return max((e["seq"] for e in audit(home, url, name)), default=0)


# 1. send, inbox, read; the relay keeps no trace of the plaintext


def encodings(secret: bytes, *, every_alignment: bool) -> dict[str, bytes]:
    """``secret`` as it might appear in a file: raw, hex, base64 (std/url), URL-encoded.

    With ``every_alignment``, base64 is also checked as part of a longer
    string (the message at each offset modulo 3), using only the characters
    that depend on the message alone.
    """
    text = secret.decode()
    forms = {
        "raw": secret,
        "hex": secret.hex().encode(),
        "HEX": secret.hex().upper().encode(),
        "base64": base64.b64encode(secret).rstrip(b"="),
        "base64url": base64.urlsafe_b64encode(secret).rstrip(b"="),
        "url-encoded": urllib.parse.quote(text).encode(),
        "url-encoded+": urllib.parse.quote_plus(text).encode(),
        "utf-16": text.encode("utf-16-le"),
    }
    if every_alignment:
        for offset in (1, 2):
            data = b"\0" * offset + secret
            whole = len(data) // 3 * 3
            for label, encode in (
                ("base64", base64.b64encode),
                ("base64url", base64.urlsafe_b64encode),
            ):
                forms[f"{label}@{offset}"] = encode(data[:whole])[4:]
    return forms


def test_send_inbox_read_and_the_relay_keeps_no_trace(shared: Up) -> None:
    home = shared.home
    secret = "Quokka-7731: the amber lantern sways at midnight"
    hello = send(home, "hello")
    other = send(home, secret)
    assert {hello, other} <= set(inbox(home))

    plain = read(home, hello)
    assert plain.returncode == 0, explain(plain)
    assert plain.stdout == "hello"
    assert "key rebuilt from" in plain.stderr
    long = read(home, other)
    assert long.returncode == 0, explain(long)
    assert long.stdout == secret

    stored = relay_stored(home)  # on SQLite, its files in the relay's own home too
    assert hello.encode() in stored and other.encode() in stored
    for message, every_alignment in ((secret.encode(), True), (b"hello", False)):
        for form, encoded in encodings(message, every_alignment=every_alignment).items():
            assert encoded not in stored, f"{message!r} found in the relay's files as {form}"


# 5b. a contact's key in the relay's directory is not the pinned one


def test_send_refuses_a_contact_whose_directory_key_changed(shared: Up) -> None:
    home = shared.home
    old = user(home, "bob")
    new = Identity.generate("bob")
    known_before = (home / "people" / "alice" / "known_keys.json").read_bytes()
    before = inbox(home)

    def register(identity: Identity, endorsed_by: Identity) -> None:
        signature = endorsed_by.sign("directory-rotation", endorsement_body("bob", identity.public))
        body = {
            "v": 1,
            "identity": identity.public.to_json(),
            "endorsement": base64.b64encode(signature).decode(),
        }
        with ServiceClient(shared.relay_url, "relay", identity) as relay:
            relay.request("PUT", "/api/v1/directory/bob", body=body)

    register(new, old)  # what a relay under an attacker's control could show
    try:
        refused = cli(home, "send", "--from", "alice", "--to", "bob", "for the real bob only")
        assert refused.returncode != 0, explain(refused)
        assert "bob" in refused.stderr
        assert old.public.short_fingerprint() in refused.stderr, explain(refused)
        assert new.public.short_fingerprint() in refused.stderr, explain(refused)
        assert not MESSAGE_ID.search(refused.stdout)
    finally:
        register(old, new)
    assert inbox(home) == before
    assert (home / "people" / "alice" / "known_keys.json").read_bytes() == known_before


# 6. a stranger


def test_a_stranger_reads_nothing(shared: Up) -> None:
    home = shared.home
    text = "strictly between alice and bob"
    message_id = send(home, text)
    made = cli(home, "register", "eve", "--no-passphrase")
    assert made.returncode == 0, explain(made)
    stranger = read(home, message_id, "eve")
    assert stranger.returncode == 1, explain(stranger)
    assert stranger.stdout == ""
    assert text not in stranger.stderr
    eve = user(home, "eve")
    for name in NAMES:
        assert release(shared.url(name), name, eve, message_id) == (403, "not_recipient")


# 7. burn after reading


def test_burn_after_reading(shared: Up) -> None:
    home = shared.home
    message_id = send(home, "this message will self-destruct", "--burn-after-reading")
    first = read(home, message_id)
    assert first.returncode == 0, explain(first)
    assert first.stdout == "this message will self-destruct"
    second = read(home, message_id)
    assert second.stdout == "", explain(second)
    destroyed = [n for n, why in failure_lines(second.stderr).items() if "destroyed" in why]
    assert len(destroyed) >= 3, explain(second)
    assert second.returncode == 1, explain(second)


def test_read_refuses_an_out_in_a_directory_that_is_not_there(shared: Up, tmp_path: Path) -> None:
    """`read --out missing/x.txt` made the directory `missing` (a typo in a path then left
    the message where nobody looks), after burning the shares of a burn-after-reading
    message; a large message was refused, but only once its shares were collected. Now
    the path is refused before any custodian is asked, and the message is still there."""
    home = shared.home
    message_id = send(home, "not into a typo", "--burn-after-reading")
    for out in (tmp_path / "missing" / "x.txt", f"{tmp_path / 'new'}/"):
        refused = read(home, message_id, "bob", "--out", str(out))
        assert refused.returncode == 1, explain(refused)
        assert "is not a directory" in refused.stderr, explain(refused)
        assert "create it first" in refused.stderr, explain(refused)
    assert list(tmp_path.iterdir()) == []
    for name in NAMES:
        assert "release" not in events_of(shared, name, message_id), name
    opened = read(home, message_id)
    assert opened.stdout == "not into a typo", explain(opened)


def test_read_refuses_an_out_that_is_a_pipe_even_with_force(shared: Up, tmp_path: Path) -> None:
    """`read --out PIPE --force` replaced the pipe with the message (as root, `--out
    /dev/null --force` replaced /dev/null), after burning the shares. Now it is refused
    before any custodian is asked; the pipe stays, and the message is still there."""
    home = shared.home
    message_id = send(home, "not into a pipe", "--burn-after-reading")
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    refused = read(home, message_id, "bob", "--out", str(pipe), "--force")
    assert refused.returncode == 1, explain(refused)
    assert "is not a file" in refused.stderr, explain(refused)
    assert stat.S_ISFIFO(pipe.lstat().st_mode)
    for name in NAMES:
        assert "release" not in events_of(shared, name, message_id), name
    opened = read(home, message_id)
    assert opened.stdout == "not into a pipe", explain(opened)


def test_recipients_may_be_given_with_commas_and_twice(shared: Up) -> None:
    """--to bob,alice --to bob: two recipients, each once (a name repeated was refused
    with "envelope.header.recipients[1]: name 'bob' appears twice"; a comma was sent to
    the relay as part of a name)."""
    message_id = send(shared.home, "to both", "--to", "alice,bob")
    for reader in ("alice", "bob"):
        assert message_id in inbox(shared.home, reader)
        assert read(shared.home, message_id, reader).stdout == "to both"


def test_no_person_registers_under_a_partys_name(shared: Up) -> None:
    """`register alpha` said "the key of 'alpha' changed ... remove 'alpha' from
    known_keys.json", a hint that would unpin the custodian; and it had made alpha's home."""
    for name in ("alpha", "relay"):
        refused = cli(shared.home, "register", name, "--no-passphrase")
        assert refused.returncode == 2, explain(refused)
        assert "is the name of the relay or a custodian of this network" in refused.stderr
        assert "known_keys" not in refused.stderr
        assert not (shared.home / "people" / name).exists()


def test_no_person_registers_a_lookalike_of_a_name_taken(shared: Up) -> None:
    """`register bob.` or `register b.ob` beside bob registered, and a sender picked the
    impostor easily. A name ending in a separator is refused before anything is made; a
    look-alike, as the relay refuses it, before a key is made, its home removed."""
    refused = cli(shared.home, "register", "bob.", "--no-passphrase")
    assert refused.returncode == 2, explain(refused)
    assert "'bob.' ends in '.'" in refused.stderr and "nothing was written" in refused.stderr
    for name, like in (("b.ob", "bob"), ("al-pha", "alpha")):
        refused = cli(shared.home, "register", name, "--no-passphrase")
        assert refused.returncode == 2, explain(refused)
        assert f"the relay refuses the name {name!r}" in refused.stderr, explain(refused)
        assert f"looks like {like!r}" in refused.stderr, explain(refused)
        assert "hint: choose another name" in refused.stderr
    for name in ("bob.", "b.ob", "al-pha"):
        assert not (shared.home / "people" / name).exists()


def test_a_name_another_key_holds_leaves_no_home_behind(shared: Up) -> None:
    """`register frank` where the relay lists frank under another key: refused, and the
    person's home it had made and joined for frank is gone too (it stayed, so the next
    `inbox --as frank` said "no identity 'frank'" instead of "no one named 'frank'")."""
    from securecomm.client import flows

    settings = load_settings(shared.home / "people" / "alice", env={})
    assert flows.register(settings, Identity.generate("frank"))
    refused = cli(shared.home, "register", "frank", "--no-passphrase")
    assert refused.returncode == 2, explain(refused)
    assert "taken in the relay's directory by another key" in refused.stderr, explain(refused)
    assert not (shared.home / "people" / "frank").exists()


def test_a_contact_s_name_is_refused_as_taken_not_as_a_changed_key(shared: Up) -> None:
    """`register bob` from alice's home, which had pinned bob, said "the key of 'bob'
    changed" and hinted to remove bob from known_keys.json: advice that unpins the real
    bob. It is a name someone else holds, and is refused as that."""
    from securecomm.client.trust import KnownKeys

    alice = shared.home / "people" / "alice"
    send(shared.home, "so that alice pins bob")
    assert KnownKeys.load(alice).get("bob") is not None
    refused = cli(alice, "register", "bob", "--no-passphrase")
    assert refused.returncode == 2, explain(refused)
    assert "the name 'bob' is a contact's" in refused.stderr, explain(refused)
    assert "known_keys" not in refused.stderr and "changed" not in refused.stderr
    assert not (alice / "users" / "bob.key").exists()


def test_inbox_json_gives_a_script_each_entry(shared: Up) -> None:
    """`inbox` printed only aligned text; a script had to parse it. --json prints one
    document with each entry as the relay signed it."""
    message_id = send(shared.home, "for a script", "--expires", "1h")
    listed = cli(shared.home, "inbox", "--as", "bob", "--json")
    assert listed.returncode == 0, explain(listed)
    document = json.loads(listed.stdout)
    assert document["reader"] == "bob"
    entry = next(m for m in document["messages"] if m["id"] == message_id)
    alice = user(shared.home, "alice").public
    assert entry["sender"] == {"name": "alice", "fingerprint": alice.fingerprint_hex}
    assert entry["policy"]["expires"] - entry["created"] in range(3590, 3610)
    assert [m["id"] for m in document["messages"]] == inbox(shared.home)


def test_a_fingerprint_pasted_as_printed_is_compared(shared: Up) -> None:
    """`contacts verify bob 6707 fdec ...`: the fingerprint as every command prints it,
    eight groups, pasted without quotes. argparse took the groups after the first for
    "unrecognized arguments" (exit 2); now they are one fingerprint, compared whole."""
    groups = user(shared.home, "bob").public.short_fingerprint().split()
    assert len(groups) == 8
    wrong = [*groups[:7], "0000" if groups[7] != "0000" else "1111"]
    refused = cli(shared.home, "contacts", "verify", "bob", *wrong, "--as", "alice")
    assert refused.returncode == 1, explain(refused)
    assert "not marked as verified" in refused.stderr, explain(refused)
    # Two groups of the eight, typed while reading them off: too little to compare, not a
    # key that differs ("do not use this contact until you know why" scared for nothing).
    short = cli(shared.home, "contacts", "verify", "bob", *groups[:2], "--as", "alice")
    assert short.returncode == 2, explain(short)
    assert "is too short to compare: nothing was marked" in short.stderr, explain(short)
    assert "do not use this contact" not in short.stderr, explain(short)
    verified = cli(shared.home, "contacts", "verify", "bob", *groups, "--as", "alice")
    assert verified.returncode == 0, explain(verified)
    assert verified.stdout == f"bob: {' '.join(groups)} verified\n", explain(verified)


def test_the_command_that_pins_an_unknown_sender_works_as_given(shared: Up) -> None:
    """Reading a message from someone not pinned says to compare and pin their key, with
    the command that does it; that command lacked `--as`, and run as given in a data
    directory of several people it said the directory "is not set up": it now asks whose."""
    home = shared.home
    made = cli(home, "register", "gina", "--no-passphrase")
    assert made.returncode == 0, explain(made)
    message_id = send(home, "from someone new", sender="gina")
    first = read(home, message_id)
    assert first.returncode == 0, explain(first)
    said = re.search(r"then pin it: securecomm (contacts verify .+)$", first.stderr, re.M)
    assert said, explain(first)
    gina = user(home, "gina").public.short_fingerprint()
    assert said.group(1) == f"contacts verify gina '{gina}' --as bob", explain(first)
    for words in (shlex.split(said.group(1))[:-2], ["contacts"]):  # without --as bob
        whose = cli(home, *words)
        assert whose.returncode == 2, explain(whose)
        assert "whose contacts? " in whose.stderr and "alice" in whose.stderr, explain(whose)
        assert "hint: say whose with --as NAME" in whose.stderr, explain(whose)
    pinned = cli(home, *shlex.split(said.group(1)))
    assert pinned.returncode == 0, explain(pinned)
    assert pinned.stdout == f"gina: {gina} verified\n", explain(pinned)
    again = read(home, message_id)
    assert again.returncode == 0 and "not in your known keys" not in again.stderr, explain(again)


def test_a_recipient_deletes_a_message_from_their_inbox_only(shared: Up) -> None:
    """A recipient had no way to remove a message from their inbox (the relay's DELETE
    was there; no command used it): `delete` removes it from theirs, the others still
    read it, its sender is pointed at `unsend`, and a second delete is a 404."""
    home = shared.home
    message_id = send(home, "to both, one deletes", "--to", "alice,bob")
    refused = cli(home, "unsend", message_id, "--as", "bob")
    assert f"securecomm delete {message_id} --as bob" in refused.stderr, explain(refused)
    deleted = cli(home, "delete", message_id, "--as", "bob")
    assert deleted.returncode == 0, explain(deleted)
    assert deleted.stdout == f"message {message_id}: deleted from bob's inbox\n"
    assert message_id not in inbox(home, "bob")
    again = cli(home, "delete", message_id, "--as", "bob")
    assert again.returncode == 1 and "HTTP 404" in again.stderr, explain(again)
    assert read(home, message_id, "alice").stdout == "to both, one deletes"
    own = cli(home, "delete", message_id, "--as", "alice")
    assert own.returncode == 2, explain(own)
    assert "alice sent message" in own.stderr and "unsend" in own.stderr, explain(own)
    assert message_id in inbox(home, "alice")


def test_a_send_to_the_relay_or_a_custodian_is_refused(shared: Up) -> None:
    """`send --to alpha` sealed the message to custodian alpha's key (pinned from the
    network, so the recipient lookup found it): alpha could then read it with two other
    custodians' shares. Refused before any deposit, naming it; exit 2."""
    for to in ("alpha", "bob,relay"):
        refused = cli(shared.home, "send", "--from", "alice", "--to", to, "for a service?")
        assert refused.returncode == 2, explain(refused)
        named = to.split(",")[-1]
        assert (
            f"{named}: the name of the relay or a custodian of this network, not a person's;"
            " nothing was sent"
        ) in refused.stderr, explain(refused)


# 8. unsend


def test_unsend(shared: Up) -> None:
    home = shared.home
    message_id = send(home, "sent in haste")
    # Its recipient cannot: said as such, and nothing is destroyed (the read below works).
    refused = cli(home, "unsend", message_id, "--as", "bob")
    assert refused.returncode == 2, explain(refused)
    assert "was sent by alice, not bob; nothing was destroyed" in refused.stderr
    assert "only its sender unsends a message" in refused.stderr
    assert read(home, message_id).stdout == "sent in haste"
    unsent = cli(home, "unsend", message_id, "--as", "alice")
    assert unsent.returncode == 0, explain(unsent)
    assert message_id not in inbox(home)
    gone = read(home, message_id)
    assert gone.returncode == 1, explain(gone)
    assert gone.stdout == ""
    bob = user(home, "bob")
    for name in NAMES:
        assert release(shared.url(name), name, bob, message_id) == (410, "destroyed"), name


def test_a_message_every_recipient_deleted_is_still_unsent_by_its_sender(shared: Up) -> None:
    """The relay drops an envelope once no recipient lists it; its shares stay with the
    custodians "until its sender unsends it". But unsend looked the deposits up in the
    envelope: "relay: no message ... for you", exit 1, and the shares stayed for good. The
    custodians are now asked by the message's id; each destroys only its caller's deposit."""
    home = shared.home
    bob = user(home, "bob")
    message_id = send(home, "deleted, not unsent")
    deleted = cli(home, "delete", message_id, "--as", "bob")
    assert deleted.returncode == 0, explain(deleted)
    # Not bob's to destroy: nothing was, and he is told none of his is anywhere.
    refused = cli(home, "unsend", message_id, "--as", "bob")
    assert refused.returncode == 1, explain(refused)
    assert "no custodian holds a share of it from bob either" in refused.stderr
    assert [release(shared.url(n), n, bob, message_id)[0] for n in NAMES] == [200] * 5
    said = (
        f"message {message_id}: the relay holds it no more (each recipient deleted it, or it"
        " was unsent before); the shares of alpha, bravo, charlie, delta, echo are destroyed"
    )
    for _ in range(2):  # and again, as after any unsend: the same word
        unsent = cli(home, "unsend", message_id, "--as", "alice")
        assert (unsent.returncode, unsent.stdout.strip()) == (0, said), explain(unsent)
    for name in NAMES:
        assert release(shared.url(name), name, bob, message_id) == (410, "destroyed"), name
    # A message no custodian holds a share of is not found, as before.
    typo = cli(home, "unsend", "0" * 31 + "1", "--as", "alice")
    assert typo.returncode == 1, explain(typo)
    assert "no message 00000000000000000000000000000001 for you" in typo.stderr
    assert "no custodian holds a share of it from alice either" in typo.stderr


def test_an_expired_message_is_said_to_be_expired_and_when(shared: Up) -> None:
    home = shared.home
    message_id = send(home, "only for a moment", "--expires", "1s")
    time.sleep(1.5)
    late = read(home, message_id)
    assert late.returncode == 1, explain(late)
    assert late.stdout == ""
    found = re.search(
        rf"message {message_id} expired at (\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d) UTC"
        r" \(its sender's policy\): 5 of its 5 custodians release its share no more",
        late.stderr,
    )
    assert found, explain(late)
    lines = failure_lines(late.stderr)
    assert sorted(lines) == sorted(NAMES), explain(late)
    assert all(f"the message expired at {found.group(1)} UTC" in why for why in lines.values())


def test_an_expired_message_read_with_a_clock_behind_says_which_clock(
    shared: Up, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The custodians say "expired" by their clocks. A reader whose clock was behind them
    (within the five minutes a signed request may be off) got only "0 good share(s) of
    the 3 needed": its own clock said the expiry was still to come. It now says the
    message expired, and that this machine's clock says otherwise."""
    from securecomm.cli import main

    message_id = send(shared.home, "gone by their clocks", "--expires", "1s")
    time.sleep(1.5)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 120)
    with pytest.raises(SystemExit) as ended:
        main(["read", message_id, "--home", str(shared.home), "--as", "bob"])
    said = capsys.readouterr().err
    assert ended.value.code == 1, said
    assert re.search(
        rf"message {message_id} expired at \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(its"
        r" sender's policy\): 5 of its 5 custodians release its share no more",
        said,
    ), said
    assert re.search(
        r"hint: this machine's clock says \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, before that"
        r" expiry: if it is behind, set it right",
        said,
    ), said


# 9. release only with the operator's approval


def test_require_approval(shared: Up) -> None:
    home = shared.home
    message_id = send(home, "two keys to open the vault", "--require-approval")
    waiting = read(home, message_id)
    assert waiting.stdout == "", explain(waiting)
    assert "approval" in waiting.stderr, explain(waiting)
    for name in ("alpha", "charlie", "echo"):
        pending = cli(home, "custodian", "pending", "--name", name)
        assert pending.returncode == 0, explain(pending)
        ids = re.findall(rf"^([0-9a-f]{{32}})  message {message_id} ", pending.stdout, re.M)
        assert len(ids) == 1, explain(pending)
        approved = cli(home, "custodian", "approve", ids[0], "--name", name)
        assert approved.returncode == 0, explain(approved)
    opened = read(home, message_id)
    assert opened.returncode == 0, explain(opened)
    assert opened.stdout == "two keys to open the vault"
    # Waiting for an operator is a failure to read, not bad input.
    assert waiting.returncode == 1, explain(waiting)


def test_denials_are_final_and_too_many_say_the_message_cannot_be_read(shared: Up) -> None:
    """Three operators deny: the read says it can never succeed for this reader (not to
    wait for approvals), and reading again asks no operator anew; delete withdraws the
    requests still waiting."""
    home = shared.home
    message_id = send(home, "not for bob", "--require-approval")
    assert read(home, message_id).returncode == 1

    def waiting(name: str) -> list[str]:
        pending = cli(home, "custodian", "pending", "--name", name)
        assert pending.returncode == 0, explain(pending)
        return re.findall(rf"^([0-9a-f]{{32}})  message {message_id} ", pending.stdout, re.M)

    for name in ("alpha", "bravo", "charlie"):
        (release_id,) = waiting(name)
        denied = cli(home, "custodian", "deny", release_id, "--name", name)
        assert denied.returncode == 0, explain(denied)
    for _ in range(2):  # the denials, then the new requests they refuse
        refused = read(home, message_id)
        assert refused.returncode == 1, explain(refused)
        assert (
            f"message {message_id} cannot be read by you: the operators of 3 of its 5"
            " custodians denied you their share (a denial is final), so at most 2 of the 3"
            " needed can be released"
        ) in refused.stderr, explain(refused)
        assert "read again once enough are approved" not in refused.stderr, explain(refused)
        assert f"securecomm delete {message_id} --as bob" in refused.stderr, explain(refused)
        assert [waiting(name) for name in ("alpha", "bravo", "charlie")] == [[], [], []]
    deleted = cli(home, "delete", message_id, "--as", "bob")
    assert deleted.returncode == 0, explain(deleted)
    assert [waiting(name) for name in ("delta", "echo")] == [[], []], explain(deleted)


# 2 and 3. custodians killed


def test_two_custodians_down_then_three(fresh: Up, tmp_path: Path) -> None:
    home = fresh.home
    message_id = send(home, "losing two costs nothing")
    for name in ("bravo", "delta"):
        fresh.kill(name)
    survived = read(home, message_id)
    assert survived.returncode == 0, explain(survived)
    assert survived.stdout == "losing two costs nothing"
    assert set(skipped_warnings(survived.stderr)) == {"bravo", "delta"}, explain(survived)

    fresh.kill("charlie")
    out = tmp_path / "message.txt"
    lost = read(home, message_id, "bob", "--out", str(out))
    assert lost.stdout == "", explain(lost)
    assert not out.exists()
    reasons = failure_lines(lost.stderr)
    assert set(reasons) == {"bravo", "charlie", "delta"}, explain(lost)
    for name in ("bravo", "charlie", "delta"):
        assert "unreachable" in reasons[name], explain(lost)
    assert "losing two" not in lost.stderr
    assert lost.returncode == 1, explain(lost)


# 11. send with one custodian down


def test_send_with_a_custodian_down_posts_nothing(fresh: Up) -> None:
    home = fresh.home
    bob = user(home, "bob")
    up_names = ("alpha", "bravo", "charlie", "delta")
    urls = {name: fresh.url(name) for name in up_names}
    fresh.kill("echo")
    before = {name: last_seq(home, url, name) for name, url in urls.items()}
    inbox_before = inbox(home)
    refused = cli(home, "send", "--from", "alice", "--to", "bob", "not without echo")
    assert refused.returncode != 0, explain(refused)
    assert not MESSAGE_ID.search(refused.stdout)
    assert "echo" in failure_lines(refused.stderr), explain(refused)
    assert "nothing was" in refused.stderr
    check_withdrawn(home, urls, before, bob)
    assert inbox(home) == inbox_before


# 10. up stops everything; the demo


# Which processes up starts and stops does not depend on where they store.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_up_stops_every_process_on_sigterm(fresh: Up) -> None:
    started = processes_of(fresh.home)
    # up itself, and a gunicorn master and worker for the relay and each custodian
    assert len(started) >= 1 + 2 * (1 + len(NAMES)), started
    left = stop_up(fresh)
    assert fresh.process is not None
    assert fresh.process.returncode == 0, fresh.output()
    assert "stopped" in fresh.stderr.read_text()
    assert left == []
    for port in (fresh.relay_port, *fresh.ports.values()):
        assert not listening(port), port


def test_demo(tmp_path: Path) -> None:
    began = time.monotonic()
    demo = subprocess.run(
        [*CLI, "demo"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
    )
    took = time.monotonic() - began
    assert demo.returncode == 0, explain(demo)
    assert took < 30
    assert "bob reads: 'Meet at the north gate at 06:00.'" in demo.stdout
    assert "not a recipient" in demo.stdout
    assert "must never happen" not in demo.stdout
    assert "plaintext in what the relay stored: nowhere" in demo.stdout
    ports = {int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", demo.stdout)}
    assert len(ports) == 1 + len(NAMES)
    assert not any(listening(port) for port in ports)


# 4, 5a and the withdrawal: a stack of conftest.Service processes, one custodian lying


class EvilService(Service):
    """Charlie as ``evil_custodian.py``: the real app, lying as ``lie`` says."""

    lie: str = "share"

    def start(self, timeout: float = 30.0) -> None:
        provide_operator(load_settings(self.home, env={}), self.name)
        command = [
            sys.executable,
            str(EVIL),
            "--name",
            self.name,
            "--home",
            str(self.home),
            "--port",
            str(self.port),
            "--lie",
            self.lie,
        ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, start_new_session=True, env=clean_env()
            )
        process = self.process

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            return healthy(self.url)

        try:
            wait_for(ready, timeout, f"evil {self.name}")
        except BaseException:
            self.stop()
            raise


class EvilStack(Stack):
    """The relay and five custodians, charlie among them a liar (``evil_custodian.py``)."""

    def urls(self, names: tuple[str, ...]) -> dict[str, str]:
        return {name: self.custodians[name].url for name in names}

    def restart_charlie(self, lie: str) -> None:
        charlie = self.custodians["charlie"]
        assert isinstance(charlie, EvilService)
        charlie.stop()
        charlie.lie = lie
        charlie.start()


def start_all(services: list[Service]) -> None:
    with ThreadPoolExecutor(len(services)) as pool:
        for future in [pool.submit(service.start) for service in services]:
            future.result()


@pytest.fixture(scope="module")
def evil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvilStack]:
    home = tmp_path_factory.mktemp("evil") / "home"
    ports = {name: free_port() for name in NAMES}
    relay_port = free_port()
    write_config(home, relay_port, ports)  # one home shared by every service: a fixture's
    custodians: dict[str, Service] = {
        name: (EvilService if name == "charlie" else Service)("custodian", name, port, home)
        for name, port in ports.items()
    }
    stack = EvilStack(home, Service("relay", "relay", relay_port, home), custodians)
    try:
        start_all(stack.all())
        add_people(home)
        yield stack
    finally:
        for service in stack.all():
            service.stop()
        left = processes_of(home)
        assert not left, left


def test_a_lying_custodian_is_caught_and_skipped(evil: EvilStack) -> None:
    """Charlie's release is sealed and signed but wrong: the digest check names it.

    Read asks all five at once and stops at the third good share, so charlie
    is named only when its answer comes before that (most reads): one of a
    few reads must name it, and every read must succeed with the right message.
    """
    message_id = send(evil.home, "an honest majority suffices")
    named = False
    for _ in range(12):
        result = read(evil.home, message_id)
        assert result.returncode == 0, explain(result)
        assert result.stdout == "an honest majority suffices"
        skipped = skipped_warnings(result.stderr)
        assert set(skipped) <= {"charlie"}, explain(result)
        if skipped:
            assert "does not match the digest the sender signed" in skipped["charlie"]
            assert "charlie" not in result.stderr.split("key rebuilt from")[-1]
            named = True
            break
    assert named, "charlie's wrong share was never reported"


def test_a_lying_custodian_with_one_honest_one_is_not_enough(evil: EvilStack) -> None:
    message_id = send(evil.home, "three honest ones needed")
    killed = ("alpha", "bravo", "delta")
    try:
        for name in killed:
            evil.custodians[name].kill9()
        failed = read(evil.home, message_id)
        assert failed.returncode != 0, explain(failed)
        assert failed.stdout == ""
        reasons = failure_lines(failed.stderr)
        assert "does not match the digest the sender signed" in reasons.get("charlie", ""), explain(
            failed
        )
        assert set(reasons) == {"charlie", *killed}, explain(failed)
        assert "three honest" not in failed.stderr
    finally:
        start_all([evil.custodians[name] for name in killed])


def test_send_refuses_a_custodian_whose_key_changed(evil: EvilStack) -> None:
    home = evil.home
    echo = evil.custodians["echo"]
    key_path = home / "custodians" / "echo" / "identity.key"
    original = key_path.read_bytes()
    pinned = load_public(home / "custodians" / "echo" / "identity.pub")
    others = evil.urls(("alpha", "bravo", "charlie", "delta"))
    seqs = {name: last_seq(home, url, name) for name, url in others.items()}
    before = inbox(home)
    replacement = Identity.generate("echo")
    echo.stop()
    replacement.save(key_path)
    try:
        echo.start()
        refused = cli(home, "send", "--from", "alice", "--to", "bob", "not to an impostor")
        assert refused.returncode != 0, explain(refused)
        assert not MESSAGE_ID.search(refused.stdout)
        why = failure_lines(refused.stderr).get("echo", "")
        assert pinned.short_fingerprint() in why, explain(refused)
        assert replacement.public.short_fingerprint() in why, explain(refused)
        assert inbox(home) == before
        check_withdrawn(home, others, seqs, user(home, "bob"))
    finally:
        echo.stop()
        key_path.write_bytes(original)
        echo.start()


def test_a_refused_deposit_withdraws_the_others(evil: EvilStack) -> None:
    home = evil.home
    bob = user(home, "bob")
    honest = ("alpha", "bravo", "delta", "echo")
    urls = evil.urls(honest)
    evil.restart_charlie("deposit")
    try:
        before = {name: last_seq(home, url, name) for name, url in urls.items()}
        inbox_before = inbox(home)
        refused = cli(home, "send", "--from", "alice", "--to", "bob", "all five or nothing")
        assert refused.returncode != 0, explain(refused)
        assert not MESSAGE_ID.search(refused.stdout)
        assert set(failure_lines(refused.stderr)) == {"charlie"}, explain(refused)
        assert "4 deposit(s) withdrawn" in refused.stderr, explain(refused)
        withdrawn = check_withdrawn(home, urls, before, bob)
        assert len(withdrawn) == len(honest) and len(set(withdrawn)) == 1, withdrawn
        assert inbox(home) == inbox_before
    finally:
        evil.restart_charlie("share")
