"""``securecomm init | up | send | inbox | read | unsend | demo | clean``: the whole system."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cli_common import (
    EXIT_BAD_INPUT,
    CliError,
    ProgressBar,
    interrupts,
    load_identity,
    message_id,
    passphrase_options,
    positive_int,
    positive_seconds,
    preview,
    read_input,
    refuse_existing,
    write_output,
)
from ._encoding import b64encode
from .config import DEFAULT_HOME, Settings, load_settings
from .envelope import Envelope, Policy, name_for_file
from .errors import SecureCommError, ServiceError
from .home import KnownKeys, config_text, init_home, user_key_path
from .identity import Identity

if TYPE_CHECKING:
    from .stack import BusyPort

_DURATION = re.compile(r"([0-9]+)([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """'90' or '90s', '30m', '12h', '1d', '2w' -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30m, 12h or 1d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _home(args: argparse.Namespace) -> Path:
    return Path(args.home) if args.home else load_settings(None).home


def _settings(args: argparse.Namespace) -> Settings:
    home = _home(args)
    if not (home / "known_keys.json").exists():
        raise CliError(f"{home} is not set up", hint="run 'securecomm init' (or 'securecomm up')")
    return load_settings(home)


def _user(args: argparse.Namespace, settings: Settings, name: str) -> Identity:
    path = user_key_path(settings.home, name)
    if not path.exists():
        raise CliError(
            f"no identity {name!r} at {path}",
            hint=f"create one with: securecomm keygen {name} --out {path.parent}",
        )
    return load_identity(str(path), args)


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def cmd_init(args: argparse.Namespace) -> None:
    report = init_home(_home(args), n=args.custodians, t=args.threshold)
    settings = load_settings(report.home)
    print(f"home: {report.home} ({settings.threshold} of {settings.n_shares} custodians)")
    print(f"created {len(report.created)} file(s)" if report.created else "nothing to create")
    for name, identity in report.identities.items():
        print(f"  {name:<18} {identity.short_fingerprint()}")


def cmd_up(args: argparse.Namespace) -> None:
    from .stack import Stack

    home = _home(args)
    report = init_home(home, n=args.custodians, t=args.threshold)
    if report.created:
        print(f"initialised {home}")
    settings = load_settings(home)
    stack = Stack(settings, workers=args.workers)
    busy = stack.busy_ports()
    if busy:
        raise _ports_in_use(busy, home)
    print(f"starting the relay and {settings.n_shares} custodians ...", file=sys.stderr)
    stack.start()
    try:
        _register_users(settings)
        print(f"securecomm is up ({settings.threshold} of {settings.n_shares}); Ctrl-C stops it")
        for process in stack.processes:
            fingerprint = report.identities[process.name].short_fingerprint()
            print(f"  {process.name:<8} {process.url:<24} {fingerprint}")
        print(f"logs: {home / 'logs'}")
        print(f"web client: open {settings.server_url}/ in a browser", flush=True)
        stack.wait()
    finally:
        print("stopping ...", file=sys.stderr, flush=True)
        stack.stop()
        print("stopped", file=sys.stderr, flush=True)


def _ports_in_use(busy: list[BusyPort], home: Path) -> CliError:
    """Refusing ``up`` when its ports are taken: which, by whom, and what to do."""
    count = "a port is" if len(busy) == 1 else f"{len(busy)} ports are"
    rows = "\n".join(f"  {b.name:<8} {b.address:<21} {b.holder}" for b in busy)
    hint = (
        f"another 'securecomm up' on this data directory ({home}) is running: use it, or"
        " stop it (Ctrl-C in its terminal) first. "
        if any(b.ours for b in busy)
        else ""
    )
    hint += (
        f"To see which program holds a port: ss -ltnp 'sport = :{busy[0].port}'. Stop it,"
        f" or choose other ports in {home / 'securecomm.toml'}, or use another --home."
    )
    return CliError(f"cannot start, nothing was started: {count} already in use\n{rows}", hint=hint)


def _register_users(settings: Settings) -> None:
    """Put each local user's public keys in the relay's directory (idempotent)."""
    from .client import ServiceClient

    for path in sorted((settings.home / "users").glob("*.key")):
        try:
            user = Identity.load(path)
        except SecureCommError:
            continue  # a passphrase-protected user registers when they first send
        with ServiceClient(settings.server_url, "relay", user) as relay:
            try:
                relay.request(
                    "PUT",
                    f"/api/v1/directory/{user.name}",
                    body={"v": 1, "identity": user.public.to_json()},
                )
            except ServiceError as exc:
                _warn(f"could not register {user.name} in the directory: {exc}")


def _policy(args: argparse.Namespace) -> Policy:
    now = int(time.time())
    return Policy(
        expires=now + args.expires if args.expires else None,
        max_releases=1 if args.burn_after_reading else None,
        require_approval=args.require_approval,
    )


def cmd_send(args: argparse.Namespace) -> None:
    from . import messaging

    settings = _settings(args)
    known = KnownKeys.load(settings.home)
    sender = _user(args, settings, args.sender)
    if args.file is not None and args.text is not None:
        raise CliError("give the message as TEXT or --file, not both", code=EXIT_BAD_INPUT)
    if args.text is not None and args.text != "-":
        message = args.text.encode("utf-8")
    else:
        message = read_input(args.file, "message")
    if not message:
        raise CliError("the message is empty", code=EXIT_BAD_INPUT)
    # Ctrl-C and SIGTERM are polled from here on: the send completes, or takes back
    # every share it deposited, and says which.
    with interrupts() as cancelled:
        result = messaging.send(
            settings,
            known,
            sender,
            args.to,
            message,
            threshold=args.threshold,
            policy=_policy(args),
            progress=ProgressBar(len(message)),
            warn=_warn,
            cancelled=cancelled,
            filename=name_for_file(args.file) if args.file not in (None, "-") else None,
        )
        _print_sent(args, result)
        if cancelled():
            _warn("the interrupt came after the relay had stored the message: it was sent")


def _print_sent(args: argparse.Namespace, result: Any) -> None:
    if args.json:
        print(
            json.dumps(
                {
                    "id": result.message_id,
                    "ciphertext_sha256": result.ciphertext_digest,
                    "relay_sha256": result.relay_digest,
                    "receipts": {r.custodian: r.ref for r in result.receipts},
                },
                sort_keys=True,
            ),
            flush=True,
        )
        return
    if args.quiet:
        print(result.message_id, flush=True)
        return
    print(f"message id:        {result.message_id}")
    print(f"ciphertext sha256: {result.ciphertext_digest}")
    print(f"relay's copy:      sha256 {result.relay_digest} (matches what was sent)")
    print("custody references:")
    for receipt in result.receipts:
        print(f"  {receipt.custodian:<8} {receipt.ref}")
    sys.stdout.flush()


def cmd_inbox(args: argparse.Namespace) -> None:
    from . import messaging

    settings = _settings(args)
    reader = _user(args, settings, args.reader)
    messages = messaging.inbox(settings, reader)
    if not messages:
        print(f"{reader.name}: no messages")
    now = int(time.time())
    for item in messages:
        when = _local_time(item["created"])
        notes = "; ".join(_inbox_notes(item, now))
        print(
            f"{item['id']}  from {item['sender']['name']:<12} {when}  {item['size']} bytes"
            + (f"  ({notes})" if notes else "")
        )


def _local_time(stamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def _inbox_notes(item: dict[str, Any], now: int) -> list[str]:
    """The policy the sender signed, then what reads of the message here found."""
    notes = []
    policy = item.get("policy") or {}
    if policy.get("max_releases") == 1:
        notes.append("burn after reading")
    elif policy.get("max_releases"):
        notes.append(f"at most {policy['max_releases']} reads")
    if policy.get("require_approval"):
        notes.append("needs the operators' approval")
    if policy.get("not_before") and now < policy["not_before"]:
        notes.append(f"not before {_local_time(policy['not_before'])}")
    if policy.get("expires"):
        expired = now >= policy["expires"]
        notes.append(f"{'expired' if expired else 'expires'} {_local_time(policy['expires'])}")
    seen = item.get("seen") or {}
    if seen.get("read_at"):
        notes.append(f"read {_local_time(seen['read_at'])}")
    if seen.get("destroyed_at"):
        notes.append("its shares are destroyed: it can no longer be read")
    return notes


def cmd_read(args: argparse.Namespace) -> None:
    from . import messaging

    settings = _settings(args)
    known = KnownKeys.load(settings.home)
    reader = _user(args, settings, args.reader)
    into_directory = args.out not in (None, "-") and Path(args.out).is_dir()
    if args.out not in (None, "-") and not into_directory:
        refuse_existing(Path(args.out), args.force)
    with interrupts() as cancelled:
        result = messaging.read(
            settings,
            known,
            reader,
            args.message_id,
            deadline=args.deadline,
            progress=ProgressBar(0, threshold=0),  # the size is unknown until fetched
            warn=_warn,
            cancelled=cancelled,
            forget=False,
        )
    named = f", file {result.filename!r}" if result.filename else ""
    print(
        f"from {result.sender.name} ({result.sender.short_fingerprint()}){named}, key rebuilt"
        f" from {', '.join(result.used)}",
        file=sys.stderr,
    )
    out = args.out
    if into_directory:
        # The sender's name was checked on decryption: no separator, not '.' or '..'.
        out = str(Path(args.out) / (result.filename or f"{args.message_id}.bin"))
        refuse_existing(Path(out), args.force)
    to_terminal = out in (None, "-") and sys.stdout.isatty()
    if to_terminal and not _printable(result.plaintext):
        raise CliError(
            f"message {args.message_id} is binary ({len(result.plaintext):,} bytes):"
            " not written to the terminal",
            hint=f"read it again with --out {result.filename or 'PATH'} (or --out DIR), or"
            " redirect standard output to a file; the shares collected are kept for that",
            code=EXIT_BAD_INPUT,
        )
    write_output(out, result.plaintext)
    if into_directory:
        print(f"saved {out}", file=sys.stderr)
    messaging.forget(settings, reader, args.message_id)
    if to_terminal and not result.plaintext.endswith(b"\n"):
        print()


def _printable(data: bytes) -> bool:
    """UTF-8 text without control characters other than tab, newline and carriage return."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any((ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127 for c in text)


def cmd_unsend(args: argparse.Namespace) -> None:
    from . import messaging

    settings = _settings(args)
    sender = _user(args, settings, args.sender)
    failed = messaging.unsend(settings, sender, args.message_id)
    for line in failed:
        _warn(f"could not destroy a share: {line}")
    print(
        f"message {args.message_id}: shares destroyed"
        f" ({len(failed)} failed), removed from the relay"
    )


def _refuse_while_running(home: Path) -> None:
    """Refuse to remove what this home's running services have open (their logs, their
    databases): a service of this home answers on its port with this home's key."""
    if not (home / "securecomm.toml").exists() and not (home / "known_keys.json").exists():
        return
    from .stack import Stack

    running = [busy.name for busy in Stack(load_settings(home)).busy_ports() if busy.ours]
    if running:
        raise CliError(
            f"the services of {home} are running ({', '.join(running)}): nothing was removed",
            hint="stop `securecomm up` (Ctrl-C in its terminal) first, then clean",
        )


def cmd_clean(args: argparse.Namespace) -> None:
    home = _home(args).absolute()  # the full path, so no one wonders what was removed
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
    shutil.rmtree(home)
    print(f"removed {home}")


def cmd_demo(args: argparse.Namespace) -> None:
    if args.offline:
        from .cli import cmd_demo_offline

        cmd_demo_offline(args)
        return
    from . import messaging
    from .stack import Stack

    started = time.perf_counter()
    say = print
    with tempfile.TemporaryDirectory(prefix="securecomm-demo-") as tmp:
        home = Path(tmp) / "home"
        say("securecomm demo: the relay and five custodians on this machine, 3 of 5 to read")
        _free_port_config(home)
        init_home(home, users=("alice", "bob", "eve"))
        settings = load_settings(home, env={})
        known = KnownKeys.load(home)
        stack = Stack(settings)
        say("\n== 1. start the relay and five custodians (each its own process)")
        stack.start()
        try:
            for process in stack.processes:
                say(f"   {process.name:<8} {process.url}")
            alice, bob, eve = (
                Identity.load(user_key_path(home, n)) for n in ("alice", "bob", "eve")
            )
            message = "Meet at the north gate at 06:00."
            say(f"\n== 2. alice sends bob: {message!r}")
            sent = messaging.send(settings, known, alice, ["bob"], message.encode())
            say(f"   message {sent.message_id}; each custodian signed a receipt:")
            for receipt in sent.receipts:
                say(f"   {receipt.custodian:<8} ref {receipt.ref}")
            say("\n== 3. what the relay stored: ciphertext and references, no key, no share")
            with sqlite3.connect(settings.relay_dir() / "relay.db") as db:
                stored = db.execute(
                    "SELECT envelope FROM messages WHERE id = ?", (sent.message_id,)
                ).fetchone()[0]
            envelope = Envelope.from_bytes(stored)
            say(f"   ciphertext: {preview(envelope.ciphertext, 44)}")
            say(f"   nonce:      {b64encode(envelope.nonce)}   tag: {b64encode(envelope.tag)}")
            n, t = envelope.header.n, envelope.header.threshold
            say(f"   {n} shares, threshold {t}, each held by a different custodian")
            say("   A share is a piece of the message key; on its own it says nothing of the key.")
            say(f"   Any {t} of the {n} shares rebuild the key; fewer than {t} reveal nothing,")
            say("   because every possible key fits them equally well.")
            found = message.encode() in stored
            say(f"   the plaintext in the relay's database: {'FOUND' if found else 'nowhere'}")
            say("\n== 4. two custodians go down: bravo and delta")
            stack.stop("bravo", "delta")
            say("\n== 5. bob reads with the three left")
            result = messaging.read(
                settings,
                known,
                bob,
                sent.message_id,
                deadline=5,
                warn=lambda line: say(f"   ({line})"),
            )
            say(f"   key rebuilt from {', '.join(result.used)}")
            say(f"   bob reads: {result.plaintext.decode()!r}")
            say("\n== 6. eve, who is not a recipient, tries")
            try:
                messaging.read(settings, known, eve, sent.message_id, deadline=5)
                say("   eve READ IT (this must never happen)")
            except SecureCommError as exc:
                say(f"   the relay: {str(exc).splitlines()[0]}")
            from .client import ServiceClient

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
    def home(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--home",
            metavar="DIR",
            help=f"data directory (env SECURECOMM_HOME, default ./{DEFAULT_HOME})",
        )

    p = sub.add_parser(
        "init",
        help="create the data directory, identities and known keys",
        description="Create what is missing: settings, identities for the relay,"
        " the custodians and their operators, alice and bob, and known_keys.json"
        " pinning every public key. Running it again changes nothing.",
    )
    home(p)
    p.add_argument("--custodians", type=positive_int, help="number of custodians n (default 5)")
    p.add_argument("--threshold", type=positive_int, help="shares needed t (default 3)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "up",
        help="run the relay and all custodians here, in the foreground",
        description="Run init if needed, start the relay and every custodian as"
        " separate processes, wait until each answers, print their URLs and"
        " fingerprints, and stop them all on Ctrl-C or SIGTERM. If a port is taken"
        " (another 'up' on this data directory, or another program), nothing is started.",
    )
    home(p)
    p.add_argument("--custodians", type=positive_int, help="number of custodians n (default 5)")
    p.add_argument("--threshold", type=positive_int, help="shares needed t (default 3)")
    p.add_argument("--workers", type=int, default=1, help="gunicorn workers per service")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser(
        "send",
        help="encrypt a message and give its key to the custodians",
        description="Encrypt TEXT (or --file, or '-' for stdin) for the"
        " recipients, deposit one key share with each custodian, and post the"
        " envelope to the relay. If any custodian does not take its share,"
        " nothing is posted and the deposits made are withdrawn.",
    )
    p.add_argument("text", nargs="?", metavar="TEXT", help="the message, or - for stdin")
    p.add_argument(
        "--file",
        metavar="PATH",
        help="send the contents of PATH; its name goes with it, encrypted, for the reader",
    )
    p.add_argument("--from", dest="sender", required=True, metavar="NAME", help="who sends")
    p.add_argument(
        "--to",
        required=True,
        action="append",
        metavar="NAME",
        help="a recipient (repeat for several)",
    )
    p.add_argument("--threshold", type=positive_int, help="shares needed to read (default: config)")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="print only the message id")
    output.add_argument(
        "--json", action="store_true", help="print the id, digests and receipts as JSON"
    )
    p.add_argument(
        "--expires",
        type=parse_duration,
        metavar="DURATION",
        help="custodians refuse releases after this long (30m, 12h, 1d, 2w)",
    )
    p.add_argument(
        "--burn-after-reading",
        action="store_true",
        help="each custodian releases its share once, then destroys it",
    )
    p.add_argument(
        "--require-approval",
        action="store_true",
        help="each release waits for the custodian's operator",
    )
    home(p)
    passphrase_options(p)
    p.set_defaults(func=cmd_send)

    p = sub.add_parser(
        "inbox",
        help="list the messages for you",
        description="List the messages the relay holds for NAME.",
    )
    p.add_argument("--as", dest="reader", required=True, metavar="NAME", help="who you are")
    home(p)
    passphrase_options(p)
    p.set_defaults(func=cmd_inbox)

    p = sub.add_parser(
        "read",
        help="collect t shares, decrypt and print a message",
        description="Fetch the envelope, check the sender's signature, ask every"
        " custodian for its share at once, check each against the signed digest,"
        " combine t good ones, check the key commitment and decrypt. Nothing is"
        " written unless every check passed.",
    )
    p.add_argument(
        "message_id", type=message_id, metavar="ID", help="the message id (from send or inbox)"
    )
    p.add_argument("--as", dest="reader", required=True, metavar="NAME", help="who you are")
    p.add_argument(
        "--out",
        metavar="PATH",
        help="write the message to PATH (all or nothing); to a directory: under the"
        " file name the sender gave",
    )
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument(
        "--deadline",
        type=positive_seconds,
        default=15.0,
        metavar="SECONDS",
        help="how long to wait for custodians (default 15)",
    )
    home(p)
    passphrase_options(p)
    p.set_defaults(func=cmd_read)

    p = sub.add_parser(
        "unsend",
        help="destroy a message you sent",
        description="Ask every custodian to destroy its share of message ID"
        " and the relay to delete the envelope. Once more than n - t shares are"
        " gone (3 of 5) no one can read it, even with the envelope; a recipient who"
        " read it before keeps what they read.",
    )
    p.add_argument("message_id", type=message_id, metavar="ID", help="the message id (from send)")
    p.add_argument("--as", dest="sender", required=True, metavar="NAME", help="who you are")
    home(p)
    passphrase_options(p)
    p.set_defaults(func=cmd_unsend)

    p = sub.add_parser(
        "demo",
        help="the whole system in about 10 seconds, narrated",
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
    home(p)
    p.add_argument("--all", action="store_true", help="also delete the data directory")
    p.add_argument("--yes", action="store_true", help="do not ask before deleting it")
    p.set_defaults(func=cmd_clean)
