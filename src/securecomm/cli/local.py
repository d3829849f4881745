"""``securecomm init | up | demo | clean``: the whole system on this machine, in one data
directory."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._encoding import b64encode
from ..config import MAX_RELAY_REPLICAS, Settings, load_settings
from ..errors import SecureCommError, ServiceError
from ..identity import Identity
from ..local.layout import PEOPLE_DIR, party_home, user_key_path
from ._common import (
    EXIT_BAD_INPUT,
    CliError,
    home_of,
    home_option,
    integer,
    positive_int,
    preview,
    warn,
    warn_if_browsers_refuse,
)
from .offline import cmd_demo_offline

if TYPE_CHECKING:
    from ..local.stack import BusyPort


def cmd_init(args: argparse.Namespace) -> None:
    from ..local.home import init_home

    report = init_home(home_of(args), n=args.custodians, t=args.threshold, tls=args.tls)
    settings = load_settings(report.home)
    print(f"home: {report.home} ({settings.threshold} of {settings.n_shares} custodians)")
    print(f"created {len(report.created)} file(s)" if report.created else "nothing to create")
    for name, identity in report.identities.items():
        print(f"  {name:<18} {identity.short_fingerprint()}")


def cmd_up(args: argparse.Namespace) -> None:
    from .._signals import stop_signals
    from ..local.home import init_home, plan_home, ports_fixed
    from ..local.stack import Stack

    home = home_of(args)
    # Ports taken are said before any party's home is made: each keeps the port it is made
    # with, so the settings file's ports can be changed only until then.
    plan = plan_home(home, n=args.custodians, t=args.threshold)
    fixed = ports_fixed(home, plan)
    if not fixed and (busy := Stack(plan, replicas=args.relay_replicas).busy_ports()):
        raise _ports_in_use(busy, home, fixed=False)
    report = init_home(home, n=args.custodians, t=args.threshold, tls=args.tls)
    if report.created:
        print(f"initialised {home}")
    settings = load_settings(home)
    stack = Stack(settings, workers=args.workers, replicas=args.relay_replicas)
    stack.check()  # nginx, for replicas
    busy = stack.busy_ports()
    if busy:
        raise _ports_in_use(busy, home, fixed=True)
    _upgrade_databases(home, settings)
    relay = "the relay" if stack.front is None else f"{len(stack.front.replicas)} relay replicas"
    print(f"starting {relay} and {settings.n_shares} custodians ...", file=sys.stderr)
    # Until stack.wait() takes the signals over, SIGTERM and SIGHUP interrupt like Ctrl-C,
    # so what was started is stopped in order (their default would end this process at once).
    others = [sig for sig in stop_signals() if sig != signal.SIGINT]  # Ctrl-C raises
    previous = {sig: signal.signal(sig, _interrupted) for sig in others}
    try:
        stack.start()  # stops what it started if interrupted
    except BaseException:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise
    try:
        _register_users(home)
        print(f"securecomm is up ({settings.threshold} of {settings.n_shares}); Ctrl-C stops it")
        width = max(8, *(len(process.name) for process in stack.processes))
        for process in stack.processes:
            fingerprint = report.identities[process.identity_name].short_fingerprint()
            print(f"  {process.name:<{width}} {process.url:<24} {fingerprint}")
        if stack.front is not None:
            print(
                f"  relay-front (nginx) spreads requests over relay-1 ... relay-"
                f"{len(stack.front.replicas)}, one database; its configuration:"
                f" {stack.front.config}"
            )
        print(f"logs: {home / 'logs'}")
        print(f"web client: open {settings.server_url}/ in a browser", flush=True)
        if settings.tls_ca is not None:
            from ..tls import chromium_trust_flag

            print(
                f"  its certificate is from this network's own CA, {home / 'tls' / 'ca.pem'}:"
                " import that into the browser as a trusted authority (or start Chromium"
                f" with {chromium_trust_flag(settings.tls_ca.encode())})",
                flush=True,
            )
        warn_if_browsers_refuse(settings.server_url)  # after the lines it is about
        stack.wait()
    finally:
        print("stopping ...", file=sys.stderr, flush=True)
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("stopped", file=sys.stderr, flush=True)


def _upgrade_databases(home: Path, settings: Settings) -> None:
    """Bring each local service's database to this securecomm's schema before starting it
    (here one person runs every service; on its own host a service asks its operator to:
    docs/operations.md). An empty one is left for its service to make; a newer one is
    refused, naming it."""
    import sqlalchemy as sa

    from ..service.storage import database_revision, upgrade_database
    from .services import database_of

    for name in ("relay", *(c.name for c in settings.custodians)):
        who, url, schema = database_of(load_settings(party_home(home, name)), name)
        try:
            found = database_revision(url, schema)
        except sa.exc.SQLAlchemyError:
            continue  # not a database it can open: its service says so, with its log
        if found in (None, schema.head):
            continue
        before, after = upgrade_database(url, schema)
        print(f"upgraded {who}'s database from schema {before} to {after}", file=sys.stderr)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _ports_in_use(busy: list[BusyPort], home: Path, *, fixed: bool) -> CliError:
    """Refusing ``up`` when its ports are taken: which, by whom, and what to do. Other ports
    are offered only while they can still be chosen (not ``fixed``: no party's home made)."""
    count = "a port is" if len(busy) == 1 else f"{len(busy)} ports are"
    width = max(8, *(len(b.name) for b in busy))
    rows = "\n".join(f"  {b.name:<{width}} {b.address:<21} {b.holder}" for b in busy)
    hint = (
        f"another 'securecomm up' on this data directory ({home}) is running: use it, or"
        " stop it (Ctrl-C in its terminal) first. "
        if any(b.ours for b in busy)
        else ""
    )
    hint += f"To see which program holds a port: ss -ltnp 'sport = :{busy[0].port}'. Stop it"
    hint += (
        ", or use another --home (this data directory's services keep the ports they were"
        " made with)."
        if fixed
        else f", or choose other ports in {home / 'securecomm.toml'} (nothing else is made"
        " yet: its services take their ports from it), or use another --home."
    )
    made = "nothing was started" if fixed else "nothing was started or made but the settings"
    return CliError(f"cannot start, {made}: {count} already in use\n{rows}", hint=hint)


def _register_users(home: Path) -> None:
    from ..local.home import register_people

    for name, why in register_people(home).items():
        warn(f"could not register {name} in the directory: {why}")


def _refuse_while_running(home: Path) -> None:
    """Refuse to remove what this home's running services have open (their logs, their
    databases): a service of this home answers on its port with this home's key."""
    if not (home / "securecomm.toml").exists() and not (home / "known_keys.json").exists():
        return
    from ..local.stack import Stack

    running = [busy.name for busy in Stack(load_settings(home)).busy_ports() if busy.ours]
    if running:
        raise CliError(
            f"the services of {home} are running ({', '.join(running)}): nothing was removed",
            hint="stop `securecomm up` (Ctrl-C in its terminal) first, then clean",
        )


def cmd_clean(args: argparse.Namespace) -> None:
    home = home_of(args).absolute()  # the full path, so no one wonders what was removed
    _refuse_while_running(home)
    # Only what the services write and can write again; keys, messages and settings stay.
    leftovers = [path for path in (home / "logs",) if path.exists()]
    for path in leftovers:
        shutil.rmtree(path)
        print(f"removed {path}")
    if not leftovers:
        print(f"{home}: nothing to remove")
    if not args.all or not home.exists():
        return
    if not ((home / "securecomm.toml").exists() or (home / "known_keys.json").exists()):
        raise CliError(
            f"{home} is not a securecomm data directory (no securecomm.toml or known_keys.json)",
            hint="name the data directory with --home; nothing was deleted",
            code=EXIT_BAD_INPUT,
        )
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(
                f"refusing to delete {home} without confirmation",
                hint="add --yes",
                code=EXIT_BAD_INPUT,
            )
        answer = input(f"delete {home} with every key and message in it? [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            print("kept")
            return
    from .. import agent
    from ..local.layout import person_homes

    for session in agent.sessions(person_homes(home)):  # no key left unlocked for no one
        agent.lock(session.path)
        print(f"locked {session.identity.name}'s session")
    shutil.rmtree(home)
    print(f"removed {home}")


def cmd_demo(args: argparse.Namespace) -> None:
    if args.offline:
        cmd_demo_offline(args)
        return
    from ..client import flows
    from ..client.transport import ServiceClient
    from ..client.trust import KnownKeys
    from ..envelope import Envelope
    from ..local.home import init_home
    from ..local.stack import Stack

    started = time.perf_counter()
    say = print
    with tempfile.TemporaryDirectory(prefix="securecomm-demo-") as tmp:
        home = Path(tmp) / "home"
        say("securecomm demo: the relay and five custodians on this machine, 3 of 5 to read")
        _free_port_config(home)
        init_home(home, users=("alice", "bob", "eve"))
        settings = load_settings(home, env={})
        stack = Stack(settings)
        say("\n== 1. start the relay and five custodians (each its own process, its own home)")
        stack.start()
        try:
            for process in stack.processes:
                say(f"   {process.name:<8} {process.url}")
            _register_users(home)
            # Each person acts from their own home: their key, their pins, their settings.
            homes = {name: home / PEOPLE_DIR / name for name in ("alice", "bob", "eve")}
            alice, bob, eve = (Identity.load(user_key_path(h, n)) for n, h in homes.items())
            mine = {name: load_settings(h, env={}) for name, h in homes.items()}
            pins = {name: KnownKeys.load(h) for name, h in homes.items()}
            message = "Meet at the north gate at 06:00."
            say(f"\n== 2. alice sends bob: {message!r}")
            sent = flows.send(mine["alice"], pins["alice"], alice, ["bob"], message.encode())
            say(f"   message {sent.message_id}; each custodian signed a receipt:")
            for receipt in sent.receipts:
                say(f"   {receipt.custodian:<8} ref {receipt.ref}")
            say("\n== 3. what the relay stored: ciphertext and references, no key, no share")
            # Asked as anyone would, through the relay's API: the demo reads no service's
            # database (alice, the sender, may fetch what she posted).
            with ServiceClient(settings.server_url, "relay", alice) as relay:
                stored = relay.request("GET", f"/api/v1/messages/{sent.message_id}").content
            envelope = Envelope.from_bytes(stored)
            say(f"   ciphertext: {preview(envelope.ciphertext, 44)}")
            say(f"   nonce:      {b64encode(envelope.nonce)}   tag: {b64encode(envelope.tag)}")
            n, t = envelope.header.n, envelope.header.threshold
            say(f"   {n} shares, threshold {t}, each held by a different custodian")
            say("   A share is a piece of the message key; on its own it says nothing of the key.")
            say(f"   Any {t} of the {n} shares rebuild the key; fewer than {t} reveal nothing,")
            say("   because every possible key fits them equally well.")
            found = message.encode() in stored
            say(f"   the plaintext in what the relay stored: {'FOUND' if found else 'nowhere'}")
            say("\n== 4. two custodians go down: bravo and delta")
            stack.stop("bravo", "delta")
            say("\n== 5. bob reads with the three left")
            result = flows.read(
                mine["bob"],
                pins["bob"],
                bob,
                sent.message_id,
                deadline=5,
                warn=lambda line: say(f"   ({line})"),
            )
            say(f"   key rebuilt from {', '.join(result.used)}")
            say(f"   bob reads: {result.plaintext.decode()!r}")
            say("\n== 6. eve, who is not a recipient, tries")
            try:
                flows.read(mine["eve"], pins["eve"], eve, sent.message_id, deadline=5)
                say("   eve READ IT (this must never happen)")
            except SecureCommError as exc:
                say(f"   the relay: {str(exc).splitlines()[0]}")
            with ServiceClient(settings.custodian("alpha").url, "alpha", eve) as alpha:
                try:
                    alpha.request(
                        "POST", "/v1/releases", body={"v": 1, "message_id": sent.message_id}
                    )
                    say("   alpha RELEASED A SHARE TO EVE (this must never happen)")
                except ServiceError as exc:
                    say(f"   custodian alpha: {exc.reason}")
        finally:
            say("\n== 7. stop everything")
            stack.stop()
    say(f"\ndone in {time.perf_counter() - started:.1f} s")


def _free_port_config(home: Path) -> None:
    """A settings file on free loopback ports, so the demo never meets a running system."""
    import socket

    from ..local.home import config_text

    def port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            number: int = sock.getsockname()[1]
            return number

    home.mkdir(parents=True)
    names = ("alpha", "bravo", "charlie", "delta", "echo")
    text = config_text(5, 3, relay_port=port(), ports={name: port() for name in names})
    (home / "securecomm.toml").write_text(text)


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="create the data directory, identities and known keys",
        description="Make the local network's data directory from the steps of a"
        " deployment across hosts (docs/deployment.md), each party in its own home:"
        " relay/ (relay init), alpha/ ... echo/ (custodian init, given only its operator's"
        " .pub), people/NAME/ for the five operators and alice and bob (their own keys),"
        " network.json made from the cards, and every home joined to it. Running it again"
        " changes nothing.",
    )
    _network_options(p)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "up",
        help="run the relay and all custodians here, in the foreground",
        description="Run init if needed, start the relay and every custodian as"
        " separate processes, each from its own home, wait until each answers, register"
        " the people, print the URLs and fingerprints, and stop them all on Ctrl-C, SIGTERM"
        " or SIGHUP (its terminal closed); killed outright, it takes them with it. If a port"
        " is taken (another 'up' on this data directory, or another program), nothing is"
        " started."
        " With --relay-replicas N (or [server] replicas = N in HOME/securecomm.toml) the"
        " relay runs as N processes on one database behind one address: Debian's nginx"
        " (package nginx-light) listens on the relay's URL and spreads the requests over"
        " them, moving to another when one cannot be reached.",
    )
    _network_options(p)
    p.add_argument("--workers", type=positive_int, default=1, help="gunicorn workers per service")
    p.add_argument(
        "--relay-replicas",
        type=_replicas,
        metavar="N",
        help="run the relay as N processes (relay-1 ... relay-N, each on a free loopback"
        " port) behind nginx on the relay's address, all on the relay's one database: its"
        " SQLite file, which takes their writes one at a time, or PostgreSQL ([server]"
        f" database_url in HOME/relay/securecomm.toml). 1 to {MAX_RELAY_REPLICAS}; default"
        " [server] replicas in HOME/securecomm.toml, else 1: the relay alone, no nginx",
    )
    p.set_defaults(func=cmd_up)

    p = sub.add_parser(
        "demo",
        help="the whole system in a few seconds, narrated",
        description="Start the relay and five custodians in a temporary"
        " directory, send a message from alice to bob, show what the relay"
        " stored, stop two custodians, read with the three left, show a"
        " stranger refused, and stop everything.",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="only the cryptography, no servers (encrypt, split, combine, decrypt)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "clean",
        help="remove the logs in the data directory",
        description="Remove what the services wrote and will write again (the logs)"
        " from the data directory HOME, and nothing outside it; with --all, also HOME"
        " itself, every key and message in it (asks first, unless --yes).",
    )
    home_option(p)
    p.add_argument("--all", action="store_true", help="also delete the data directory")
    p.add_argument("--yes", action="store_true", help="do not ask before deleting it")
    p.set_defaults(func=cmd_clean)


def _replicas(value: str) -> int:
    """An argparse type: a number of relay replicas, 1 to MAX_RELAY_REPLICAS."""
    count = integer(value)
    if not 1 <= count <= MAX_RELAY_REPLICAS:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected 1 (the relay alone) to {MAX_RELAY_REPLICAS}"
        )
    return count


def _network_options(p: argparse.ArgumentParser) -> None:
    """What `init` and `up` share: where, how many custodians, how many to read, HTTPS."""
    home_option(p)
    p.add_argument("--custodians", type=positive_int, help="number of custodians n (default 5)")
    p.add_argument("--threshold", type=positive_int, help="shares needed t (default 3)")
    p.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS, with certificates from the network's own CA (HOME/tls/ca.pem);"
        " only for a new data directory",
    )
