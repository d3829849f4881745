"""The commands that run the local system: ``clean``, ``up`` when it cannot start, the demo.

``clean`` touches its data directory only, never the files of the directory
it is run from. A second ``up``, or any program on one of its ports, makes
``up`` fail before it starts anything, naming the port. A service that stops
under ``up`` is reported with its reason and the command that starts it again.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from securecomm.cli.operators import local_time_and_age
from securecomm.client.transport import ServiceClient
from securecomm.identity import Identity
from securecomm.local.home import user_key_path

from .conftest import NAMES, free_port, write_config
from .test_cli_system import (
    CLI,
    TIMEOUT,
    Up,
    clean_env,
    cli,
    explain,
    finish_up,
    healthy,
    processes_of,
    read,
    send,
    start_up,
    stop_up,
    wait_for,
)


def run_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``securecomm ARGS`` from ``cwd``, with no home given: the default ./securecomm-data."""
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
    )


# clean


def user_files(root: Path) -> list[Path]:
    """Files a user keeps where ``clean`` used to sweep: build, egg-info, caches."""
    files = [
        root / "build" / "important.txt",
        root / "src" / "x.egg-info" / "PKG-INFO",
        root / "pkg" / "__pycache__" / "mod.cpython-311.pyc",
        root / ".pytest_cache" / "README.md",
    ]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("keep\n")
    return files


def test_clean_removes_only_the_logs_under_home(tmp_path: Path) -> None:
    files = user_files(tmp_path)
    home = tmp_path / "securecomm-data"
    initialised = run_in(tmp_path, "init")
    assert initialised.returncode == 0, explain(initialised)
    logs = home / "logs"
    logs.mkdir()
    (logs / "relay.log").write_text("a log\n")

    cleaned = run_in(tmp_path, "clean")
    assert cleaned.returncode == 0, explain(cleaned)
    for path in files:
        assert path.read_text() == "keep\n", f"{path} removed\n{explain(cleaned)}"
    assert not logs.exists()
    assert (home / "network.json").exists()
    assert f"removed {logs}" in cleaned.stdout, explain(cleaned)

    again = run_in(tmp_path, "clean")
    assert again.returncode == 0, explain(again)
    assert "nothing to remove" in again.stdout, explain(again)


def test_clean_all_removes_home_and_nothing_else(tmp_path: Path) -> None:
    files = user_files(tmp_path)
    home = tmp_path / "securecomm-data"
    initialised = run_in(tmp_path, "init")
    assert initialised.returncode == 0, explain(initialised)

    refused = run_in(tmp_path, "clean", "--all")  # stdin is not a terminal: no one to ask
    assert refused.returncode == 2, explain(refused)
    assert (home / "network.json").exists()

    cleaned = run_in(tmp_path, "clean", "--all", "--yes")
    assert cleaned.returncode == 0, explain(cleaned)
    assert not home.exists()
    assert f"removed {home}" in cleaned.stdout, explain(cleaned)
    for path in files:
        assert path.read_text() == "keep\n", f"{path} removed\n{explain(cleaned)}"


def test_clean_all_refuses_a_directory_that_is_not_a_data_directory(tmp_path: Path) -> None:
    files = user_files(tmp_path)
    refused = run_in(tmp_path, "clean", "--all", "--yes", "--home", str(tmp_path))
    assert refused.returncode == 2, explain(refused)
    assert "not a securecomm data directory" in refused.stderr, explain(refused)
    for path in files:
        assert path.read_text() == "keep\n", f"{path} removed\n{explain(refused)}"


def test_clean_help_says_it_stays_in_home() -> None:
    helped = subprocess.run(
        [*CLI, "clean", "--help"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert helped.returncode == 0, explain(helped)
    flat = " ".join(helped.stdout.split())
    assert "under the current directory" not in flat
    assert "nothing outside it" in flat


# up that cannot start


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    up = start_up(tmp_path_factory.mktemp("local") / "home")
    yield up
    finish_up(up)


def test_a_second_up_on_the_same_home_fails_at_once(shared: Up) -> None:
    before = sorted(processes_of(shared.home))
    began = time.monotonic()
    second = cli(shared.home, "up")
    took = time.monotonic() - began
    assert second.returncode == 1, explain(second)
    assert "securecomm is up" not in second.stdout, explain(second)
    assert "stopped" not in second.stderr, explain(second)
    for port in (shared.relay_port, *shared.ports.values()):
        assert f"127.0.0.1:{port}" in second.stderr, explain(second)
    assert "another 'securecomm up'" in second.stderr, explain(second)
    assert "--home" in second.stderr, explain(second)
    assert took < 10, explain(second)
    # The first is untouched, and nothing of the second is left.
    assert sorted(processes_of(shared.home)) == before
    assert healthy(shared.relay_url)
    assert all(healthy(shared.url(name)) for name in NAMES)


def keygen(name: str, out: Path, *flags: str) -> None:
    """``securecomm keygen NAME --out OUT``, as a person does on their own machine."""
    made = subprocess.run(
        [*CLI, "keygen", name, "--out", str(out), *flags],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )
    assert made.returncode == 0, explain(made)


def test_a_key_file_put_in_a_persons_home_is_registered_and_used(
    shared: Up, tmp_path: Path
) -> None:
    """A key exported from the page (the CLI's key file format), put where the README says,
    HOME/people/NAME/users/NAME.key: `register NAME` joins that home to the network and
    lists that key, and the CLI reads as NAME with it. It said "not set up" before."""
    keygen("dana", tmp_path)
    users = shared.home / "people" / "dana" / "users"
    users.mkdir(parents=True)
    (users / "dana.key").write_bytes((tmp_path / "dana.key").read_bytes())
    registered = cli(shared.home, "register", "dana")
    assert registered.returncode == 0, explain(registered)
    assert Identity.load(tmp_path / "dana.key").public.short_fingerprint() in registered.stdout
    message_id = send(shared.home, "for dana's exported key", to="dana")
    read = cli(shared.home, "read", message_id, "--as", "dana")
    assert read.returncode == 0, explain(read)
    assert "for dana's exported key" in read.stdout, explain(read)


def test_a_locked_key_file_put_there_is_registered_with_the_options_its_hint_names(
    shared: Up, tmp_path: Path
) -> None:
    """The page's exported key has a passphrase: `register` without a terminal hinted "add
    --ask-passphrase or --passphrase-file", and register had no --ask-passphrase; given
    one with no terminal to ask on, a command said "internal error (EOFError)"."""
    secret = tmp_path / "passphrase"
    secret.write_text("plum orbit candle seventy\n")
    keygen("edna", tmp_path, "--passphrase-file", str(secret))
    users = shared.home / "people" / "edna" / "users"
    users.mkdir(parents=True)
    (users / "edna.key").write_bytes((tmp_path / "edna.key").read_bytes())
    locked = cli(shared.home, "register", "edna")
    assert locked.returncode == 1, explain(locked)
    assert "hint: add --ask-passphrase or --passphrase-file" in locked.stderr, explain(locked)
    asked = cli(shared.home, "register", "edna", "--ask-passphrase")  # no terminal: said so
    assert asked.returncode == 1, explain(asked)
    assert "no passphrase was typed (the input ended)" in asked.stderr, explain(asked)
    registered = cli(shared.home, "register", "edna", "--passphrase-file", str(secret))
    assert registered.returncode == 0, explain(registered)


def test_an_operator_checks_a_service_of_up_s_data_directory_as_the_readme_says(
    shared: Up,
) -> None:
    """`audit verify --name alpha` and `db status` run on the data directory `up` runs,
    as the README shows them: each finds the service's own home in it (HOME/alpha,
    HOME/relay). They said "no pinned key for 'alpha'", and that alpha's database was
    "none yet, or empty" (looking in HOME/custodians/alpha, where nothing is)."""
    send(shared.home, "something to audit")
    for flags in ((), ("--remote",)):
        verified = cli(shared.home, "audit", "verify", "--name", "alpha", *flags)
        assert verified.returncode == 0, explain(verified)
        assert re.fullmatch(
            r"audit log of alpha: \d+ entries; chain and signatures verify\n", verified.stdout
        ), explain(verified)
    for where, named in (("alpha/custodians/alpha", ["--name", "alpha"]), ("relay/relay", [])):
        status = cli(shared.home, "db", "status", *named)
        assert status.returncode == 0, explain(status)
        assert f"{shared.home / where}/" in status.stdout, explain(status)
        assert "this securecomm's: up to date" in status.stdout, explain(status)
    assert not (shared.home / "custodians").exists()
    # A typo said "no pinned key for 'alpah'"; from a person's home, without --remote,
    # "no database for alpha" with no word of where to look.
    typo = cli(shared.home, "audit", "verify", "--name", "alpah")
    assert typo.returncode == 2, explain(typo)
    assert "no custodian named 'alpah' (known: alpha, bravo, charlie, delta, echo)" in (
        typo.stderr
    ), explain(typo)
    bobs = cli(shared.home / "people" / "bob", "audit", "verify", "--name", "alpha")
    assert bobs.returncode == 2, explain(bobs)
    assert "hint: this is not custodian alpha's home" in bobs.stderr, explain(bobs)
    assert "--remote" in bobs.stderr, explain(bobs)


def test_clean_refuses_while_the_home_s_services_run(shared: Up) -> None:
    logs = shared.home / "logs"
    assert logs.exists()
    for flags in ((), ("--all", "--yes")):
        refused = cli(shared.home, "clean", *flags)
        assert refused.returncode == 1, explain(refused)
        assert "are running" in refused.stderr and "nothing was removed" in refused.stderr
        assert logs.exists() and (shared.home / "network.json").exists()
    assert healthy(shared.relay_url)


@contextlib.contextmanager
def _charlie_s_port_taken(home: Path) -> Iterator[tuple[int, dict[str, int]]]:
    """HOME's settings, with charlie's port held by another program while inside: that
    port, and every custodian's."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {name: free_port() for name in NAMES} | {"charlie": port}
        write_config(home, free_port(), ports)
        yield port, ports


def test_up_refuses_a_port_another_program_listens_on(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with _charlie_s_port_taken(home) as (port, _ports):
        initialised = cli(home, "init")
        assert initialised.returncode == 0, explain(initialised)
        refused = cli(home, "up")
    assert refused.returncode == 1, explain(refused)
    assert "securecomm is up" not in refused.stdout, explain(refused)
    assert re.search(rf"charlie\b.*127\.0\.0\.1:{port}\b", refused.stderr), explain(refused)
    assert "another program" in refused.stderr, explain(refused)
    # Made with that port: changing the settings would now be refused, so not offered.
    assert "choose other ports" not in refused.stderr, explain(refused)
    assert "keep the ports they were made with" in refused.stderr, explain(refused)
    assert not (home / "logs").exists(), "up started services before checking its ports"
    assert processes_of(home) == []


def test_a_first_up_on_a_taken_port_makes_nothing_that_fixes_the_ports(tmp_path: Path) -> None:
    """A first `up` beside another one made every party's home with the ports taken, then
    hinted "choose other ports in HOME/securecomm.toml"; done, the next `up` refused the
    change ("a service's own home says it listens elsewhere"). Now a first `up` checks
    the ports before it makes any party's home, so the change the hint offers is taken."""
    home = tmp_path / "home"
    with _charlie_s_port_taken(home) as (port, ports):
        refused = cli(home, "up")
    assert refused.returncode == 1, explain(refused)
    assert re.search(rf"charlie\b.*127\.0\.0\.1:{port}\b", refused.stderr), explain(refused)
    assert "nothing was started or made but the settings" in refused.stderr, explain(refused)
    assert f"choose other ports in {home / 'securecomm.toml'}" in refused.stderr
    assert sorted(p.name for p in home.iterdir()) == ["securecomm.toml"]
    other = free_port()
    write_config(home, free_port(), ports | {"charlie": other})
    initialised = cli(home, "init")  # up's own first step
    assert initialised.returncode == 0, explain(initialised)
    assert f"port = {other}" in (home / "charlie" / "securecomm.toml").read_text()
    assert processes_of(home) == []


def test_up_refuses_a_port_changed_after_the_network_was_made(tmp_path: Path) -> None:
    """The relay's port edited in the data directory's securecomm.toml after `init`: the
    relay's own home still says the old one, so the relay would listen there while `up`
    waited on the new one (a minute, then a failure naming nothing). It is refused at
    once, naming both places."""
    home = tmp_path / "home"
    ports = {name: free_port() for name in NAMES}
    old, new = free_port(), free_port()
    write_config(home, old, ports)
    initialised = cli(home, "init")
    assert initialised.returncode == 0, explain(initialised)
    write_config(home, new, ports)
    refused = cli(home, "up", timeout=30)
    assert refused.returncode == 2, explain(refused)
    assert (
        f"the relay: port {new} in the settings, {old} in {home / 'relay' / 'securecomm.toml'}"
    ) in refused.stderr, explain(refused)
    assert "make a new data directory" in refused.stderr, explain(refused)
    assert not (home / "logs").exists(), "up started services before checking its ports"
    assert processes_of(home) == []


def test_a_service_that_exits_while_starting_is_named_with_its_reason(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ports = {name: free_port() for name in NAMES}
    write_config(home, free_port(), ports)
    initialised = cli(home, "init")
    assert initialised.returncode == 0, explain(initialised)
    # A database the custodian cannot open: it exits before it answers.
    (home / "delta" / "custodians" / "delta" / "custodian.db").write_bytes(b"not a database " * 100)
    failed = cli(home, "up")
    assert failed.returncode == 1, explain(failed)
    assert "securecomm is up" not in failed.stdout, explain(failed)
    assert "delta: exited while starting: exited with code 1" in failed.stderr, explain(failed)
    assert "DatabaseError" in failed.stderr, explain(failed)
    assert str(home / "logs" / "delta.log") in failed.stderr, explain(failed)
    assert processes_of(home) == []


# a service stopping under up


def test_a_stopped_custodian_is_reported_with_how_to_start_it_again(tmp_path: Path) -> None:
    up = start_up(tmp_path / "home")
    restarted: subprocess.Popen[bytes] | None = None
    try:
        up.kill("charlie")
        wait_for(lambda: "charlie stopped" in up.stderr.read_text(), 15, "up to report charlie")
        report = up.stderr.read_text()
        found = re.search(r"^\s+(securecomm custodian serve --home .*)$", report, re.M)
        assert found, up.output()
        assert f"--home {up.home / 'charlie'} " in found.group(1), up.output()
        # The command given starts charlie again, on its port, with its identity.
        command = [*CLI, *found.group(1).split()[1:]]
        with open(tmp_path / "charlie.log", "wb") as log:
            restarted = subprocess.Popen(
                command, stdout=log, stderr=log, start_new_session=True, env=clean_env()
            )
        wait_for(lambda: healthy(up.url("charlie")), 30, "charlie to answer again")
    finally:
        if restarted is not None:
            restarted.terminate()
            restarted.wait(timeout=30)
        finish_up(up)


# custodian pending


def test_pending_shows_local_time_and_age(shared: Up) -> None:
    home = shared.home
    message_id = send(home, "wait for the operator", "--require-approval")
    bob = Identity.load(user_key_path(home, "bob"))
    with ServiceClient(shared.url("alpha"), "alpha", bob) as alpha:
        asked = alpha.request("POST", "/v1/releases", body={"v": 1, "message_id": message_id})
    assert asked.status_code == 202
    pending = cli(home, "custodian", "pending", "--name", "alpha")
    assert pending.returncode == 0, explain(pending)
    named = cli(home, "custodian", "pending", "alpha")  # stop 31: the usage, exit 2
    assert named.returncode == 0 and message_id in named.stdout, explain(named)
    for words in ([], ["alpha", "--name", "bravo"]):  # none named, or two
        unclear = cli(home, "custodian", "pending", *words)
        assert unclear.returncode == 2 and "custodian" in unclear.stderr, explain(unclear)
    # From custodian alpha's own home, which holds no operator key: alpha is the one meant,
    # and the refusal says where the operator's key is to be found.
    custodian_home = cli(home / "alpha", "custodian", "pending")
    assert custodian_home.returncode == 1, explain(custodian_home)
    assert "no operator key for alpha" in custodian_home.stderr, explain(custodian_home)
    assert "is custodian alpha's home" in custodian_home.stderr
    assert "--operator-key" in custodian_home.stderr
    # From alpha's operator's own home, which holds that one operator key: alpha is meant.
    # approve and deny take the custodian as a word too, as pending does (before, both
    # wanted --name: "the following arguments are required: --name").
    operator_home = home / "people" / "alpha-operator"
    inferred = cli(operator_home, "custodian", "pending")
    assert inferred.returncode == 0 and message_id in inferred.stdout, explain(inferred)
    release = next(line for line in inferred.stdout.splitlines() if message_id in line).split()[0]
    for words, said in (
        ([], "which custodian? name one: securecomm custodian approve RELEASE_ID alpha"),
        (["bravo", "--name", "charlie"], "two custodians named"),
    ):
        unclear = cli(home, "custodian", "approve", release, *words)
        assert unclear.returncode == 2 and said in unclear.stderr, explain(unclear)
    approved = cli(home, "custodian", "approve", release, "alpha")
    assert approved.stdout == f"alpha: release {release} approved\n", explain(approved)
    line = next(line for line in pending.stdout.splitlines() if message_id in line)
    today = time.strftime("%Y-%m-%d")
    assert re.search(rf"requested {today} \d\d:\d\d \((just now|\d+ s ago)\)$", line), line
    assert not re.search(r"\b\d{10}\b", line), line  # no raw epoch seconds


@pytest.mark.parametrize(
    ("seconds_ago", "age"),
    [(0, "just now"), (42, "42 s ago"), (200, "3 min ago"), (7300, "2 h ago"), (-30, "in 30 s")],
)
def test_local_time_and_age(seconds_ago: int, age: str) -> None:
    epoch = 1_796_059_444
    shown = local_time_and_age(epoch, now=epoch + seconds_ago)
    assert shown == f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(epoch))} ({age})"


# the demo


def test_the_demo_says_what_a_share_is(tmp_path: Path) -> None:
    demo = run_in(tmp_path, "demo")
    assert demo.returncode == 0, explain(demo)
    flat = " ".join(demo.stdout.split())
    explained = (
        "A share is a piece of the message key; on its own it says nothing of the key."
        " Any 3 of the 5 shares rebuild the key; fewer than 3 reveal nothing,"
        " because every possible key fits them equally well."
    )
    assert explained in flat, demo.stdout
    assert "bob reads: 'Meet at the north gate at 06:00.'" in demo.stdout


# the relay's own size limit, which a person's home does not hold


def _send_stdin(home: Path, message: bytes) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "send", "--from", "alice", "--to", "bob", "-", "--home", str(home)],
        input=message.decode("ascii"),
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )


def test_a_message_over_the_limit_the_relay_was_given_is_refused_before_any_deposit(
    tmp_path: Path,
) -> None:
    """The relay's limit lives in the relay's home; alice's home does not know it, and her
    send asks the relay instead of trusting a default that is higher."""
    limit = 2 * 1024 * 1024
    up = start_up(tmp_path / "home", max_envelope_bytes=limit)
    try:
        assert (
            f"max_envelope_bytes = {limit}" in (up.home / "relay" / "securecomm.toml").read_text()
        )
        # From standard input, in one envelope (a --file over 1 MiB is streamed instead).
        big = b"x" * (limit * 3 // 4 + 4096)  # over 2 MiB once in base64
        refused = _send_stdin(up.home, big)
        assert refused.returncode == 2, explain(refused)
        assert f"over the relay's limit of {limit:,} bytes" in refused.stderr, explain(refused)
        assert "no share was deposited" in refused.stderr, explain(refused)
        # The way out first: the hint named only the relay's setting, which its sender
        # cannot change, and not that a file is streamed whatever its size.
        assert "hint: save it to a file and give --file PATH" in refused.stderr
        # More than the CLI holds of standard input: refused as it is read, with that hint.
        endless = _send_stdin(up.home, b"z" * (64 * 1024 * 1024 + 1))
        assert endless.returncode == 2, explain(endless)
        assert "the message is larger than 64 MiB" in endless.stderr, explain(endless)
        assert "hint: save it to a file and give --file PATH" in endless.stderr
        # A device given as --file has no size before its end: not streamed, and the hint
        # said to give --file, which was given.
        device = cli(up.home, "send", "--from", "alice", "--to", "bob", "--file", "/dev/zero")
        assert device.returncode == 2, explain(device)
        assert "the message is larger than 64 MiB" in device.stderr, explain(device)
        assert "hint: /dev/zero is not a regular file" in device.stderr, explain(device)
        # Under the relay's limit, though over the size that goes without asking: sent.
        sent = _send_stdin(up.home, b"y" * (1024 * 1024 + 4096))
        assert sent.returncode == 0, explain(sent)
    finally:
        finish_up(up)


def test_sigterm_while_up_starts_leaves_no_service_behind(tmp_path: Path) -> None:
    """Stopped while it is still starting its services (before it listens for signals
    itself), `up` stops what it started instead of leaving it running."""
    home = tmp_path / "home"
    write_config(home, free_port(), {name: free_port() for name in NAMES})
    initialised = cli(home, "init")
    assert initialised.returncode == 0, explain(initialised)
    err = tmp_path / "up.err"
    with open(err, "wb") as errors:
        up = subprocess.Popen(
            [*CLI, "up", "--home", str(home)],
            stdout=subprocess.DEVNULL,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=clean_env(),
        )
    try:
        wait_for(lambda: "starting the relay" in err.read_text(), 30, "up to start starting")
        wait_for(lambda: len(processes_of(home)) > 1, 30, "a service to be started")
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 130, err.read_text()
    finally:
        if up.poll() is None:
            up.kill()
    wait_for(lambda: processes_of(home) == [], 15, "every service to be gone")
    assert "Traceback" not in err.read_text()


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGHUP], ids=["kill-9", "hangup"])
def test_no_service_outlives_an_up_that_is_killed_or_whose_terminal_closes(
    tmp_path: Path, how: signal.Signals
) -> None:
    """Each service runs in a session of its own; `up` killed outright, or ended by the
    SIGHUP of its terminal closing, left all twelve processes running, and the next `up`
    said "another 'securecomm up' on this data directory is running: ... Ctrl-C in its
    terminal", of an `up` that was gone. Now they stop with it, and `up` starts again."""
    up = start_up(tmp_path / "home")
    assert up.process is not None
    assert len(processes_of(up.home)) > 6  # up, and the relay's and custodians' processes
    up.process.send_signal(how)
    up.process.wait(timeout=30)
    try:
        wait_for(lambda: processes_of(up.home) == [], 20, "every service to stop with up")
    finally:
        stop_up(up)  # kills what is left, if the test failed
    assert "Traceback" not in up.output()
    again = start_up(up.home, ports=up.ports, relay_port=up.relay_port)  # the same ports
    try:
        said = read(again.home, send(again.home, "after the restart"))
        assert said.stdout == "after the restart", explain(said)
    finally:
        finish_up(again)


def test_up_upgrades_a_database_made_before_migrations_and_says_so(tmp_path: Path) -> None:
    """Here one person runs every service, so ``up`` runs ``db upgrade`` for them."""
    home = tmp_path / "home"
    ports = {name: free_port() for name in NAMES}
    relay_port = free_port()
    write_config(home, relay_port, ports)
    initialised = cli(home, "init")
    assert initialised.returncode == 0, explain(initialised)
    old = Path(__file__).parents[1] / "fixtures" / "schema1" / "sqlite" / "relay.sql"
    with sqlite3.connect(home / "relay" / "relay" / "relay.db") as db:
        db.executescript(old.read_text())
    db.close()
    up = start_up(home, ports=ports, relay_port=relay_port)
    try:
        said = up.stderr.read_text()
        assert "upgraded the relay's database from schema schema_version 1 to relay_" in said
        assert "custodian alpha" not in said  # made by its service, not upgraded
        status = cli(home / "relay", "db", "status")
        assert "this securecomm's: up to date" in status.stdout, explain(status)
    finally:
        finish_up(up)
