"""``securecomm relay serve``, ``securecomm custodian serve``, ``securecomm db`` and
``securecomm mitm``: running the services and keeping their databases' schema, and a man
in the middle to test them.

The services' web stack is imported inside each command, so the other commands start
without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Settings, load_settings
from ..errors import ParameterError
from ..network import NETWORK_FILE
from ._common import (
    check_output,
    command_group,
    home_option,
    port_number,
    positive_int,
    service_settings,
    warn_if_browsers_refuse,
)

if TYPE_CHECKING:
    from ..service.storage import Schema


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.home)


def cmd_relay_serve(args: argparse.Namespace) -> None:
    from ..relay.app import create_relay_app
    from ..service.serve import serve

    settings = _settings(args)
    _check_relay_home(settings)
    warn_if_browsers_refuse(settings.server_url)
    serve(
        lambda: create_relay_app(settings),
        name="relay",
        host=args.host or settings.server_host,
        port=args.port or settings.server_port,
        workers=args.workers or settings.workers,
        tls=_tls(settings, settings.server_url),
        insecure_http=args.insecure_http,
    )


def _check_relay_home(settings: Settings) -> None:
    """Refuse, before the relay makes an identity there, a home that is not the relay's: a
    custodian's, or one that joined a network without a relay key of its own (a person's),
    where a new key could never be the relay's card."""
    own = settings.own_custodian
    if own is not None:
        raise ParameterError(
            f"{settings.home} is custodian {own.name}'s home, not the relay's (its"
            " securecomm.toml says so in [custodian]); nothing was started"
        )
    key = settings.relay_dir() / "identity.key"
    if not key.exists() and (settings.home / NETWORK_FILE).exists():
        error = ParameterError(
            f"{settings.home} joined a network but has no relay key ({key}): it is not the"
            " relay's home; nothing was started"
        )
        error.hint = "give the --home that `relay init` made"
        raise error


def _tls(settings: Settings, url: str) -> tuple[Path, Path] | None:
    """The service's certificate chain and key, if it has them; a warning if the
    certificate is not for the host of the URL clients reach it at (a renewed one for
    another name, say), which every client would then refuse."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    from ..tls import certificate_problem

    problem = certificate_problem(settings.tls_cert, url)
    if problem is not None and settings.tls_cert.exists():
        print(f"warning: {settings.tls_cert}: {problem}", file=sys.stderr)
    return settings.tls_cert, settings.tls_key


def _custodian_name(settings: Settings, name: str | None) -> str:
    """The custodian ``name``, or the one whose home ``settings`` are; refused in a sentence
    if neither says which."""
    own = settings.own_custodian
    if own is not None and name not in (None, own.name):
        raise ParameterError(
            f"{settings.home} is custodian {own.name}'s home, not {name}'s"
            " (its securecomm.toml says so in [custodian])"
        )
    chosen = name or (own.name if own is not None else None)
    if chosen is None:
        raise ParameterError(
            f"which custodian? {settings.home} is not a custodian's home (no [custodian] in"
            " its securecomm.toml): give --name, or the --home that `custodian init` made"
        )
    return chosen


def cmd_custodian_serve(args: argparse.Namespace) -> None:
    from ..custodian.app import create_custodian_app, load_operator
    from ..service.serve import serve

    settings = _settings(args)
    name = _custodian_name(settings, args.name)
    custodian = settings.custodian(name)
    load_operator(settings, name)  # refuse here, in a sentence, not in a worker
    serve(
        lambda: create_custodian_app(settings, name),
        name=name,
        host=args.host or custodian.host,
        port=args.port or custodian.port,
        workers=args.workers or settings.workers,
        tls=_tls(settings, custodian.url),
        insecure_http=args.insecure_http,
    )


def database_of(settings: Settings, name: str | None) -> tuple[str, str, Schema]:
    """Which service's database: the relay's (``name`` "relay", or none for a home that is
    not a custodian's), else the custodian's; who it is, its URL and its schema."""
    from ..custodian.tables import schema as custodian_schema
    from ..relay.tables import schema as relay_schema

    if name == "relay" or (name is None and settings.own_custodian is None):
        return "the relay", settings.relay_database(), relay_schema
    name = _custodian_name(settings, name)
    return f"custodian {name}", settings.custodian_database(name), custodian_schema


def cmd_db_status(args: argparse.Namespace) -> None:
    from ..service.storage import LEGACY_REVISION, database_revision, shown

    who, url, schema = database_of(service_settings(args, args.name), args.name)
    found = database_revision(url, schema)
    print(f"{who}'s database: {shown(url)}")
    if found is None:
        print(f"  none yet, or empty: the service makes schema {schema.head} when it first starts")
    elif found == schema.head:
        print(f"  at schema {found}, this securecomm's: up to date")
    elif schema.is_newer(found):
        print(f"  at schema {found}, newer than this securecomm knows ({schema.head})")
    elif found == LEGACY_REVISION:
        print(f"  made before migrations ({found}): run `securecomm db upgrade`")
    else:
        print(
            f"  at schema {found}; this securecomm needs {schema.head}: run `securecomm db upgrade`"
        )


def cmd_db_upgrade(args: argparse.Namespace) -> None:
    from ..service.storage import upgrade_database

    who, url, schema = database_of(service_settings(args, args.name), args.name)
    before, after = upgrade_database(url, schema)
    if before == after:
        print(f"{who}'s database is at schema {after} already: nothing to do")
    elif before is None:
        print(f"{who}'s database was empty: made schema {after}")
    else:
        print(f"{who}'s database upgraded from schema {before} to {after}")


def cmd_mitm(args: argparse.Namespace) -> None:
    import signal
    import threading

    from .._files import write_atomic
    from ..config import address_of
    from ..testing.mitm import Proxy

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdecimal() or int(port) > 65535:
        raise ParameterError(
            f"--listen {args.listen!r}: expected HOST:PORT, the port 0 (any free one) to 65535"
        )
    try:
        address_of(args.upstream)
    except ParameterError as exc:
        raise ParameterError(f"--upstream: {exc}") from None
    # Now, not at the end of the session: a report from an earlier run is not replaced
    # unasked, and one that cannot be written is not found out after the traffic is gone.
    check_output(args.report, args.force, "--report")
    try:
        proxy = Proxy(
            args.upstream,
            listen=(host, int(port)),
            mode=args.mode,
            field_name=args.field,
            match=args.match,
            direction=args.direction,
            limit=args.limit,
            watch=[text.encode("utf-8") for text in args.watch or []],
            log=lambda line: print(line, flush=True),
        )
    except OSError as exc:
        raise ParameterError(
            f"cannot listen on {args.listen}: {exc.strerror or exc}"
            " (another program, or a running service, holds it? choose another --listen)"
        ) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    proxy.start()
    print(
        f"mitm ({args.mode}) listening on {proxy.url}, forwarding to {args.upstream}; Ctrl-C stops",
        flush=True,
    )
    try:
        stop.wait()
    finally:
        proxy.stop()
        report = proxy.report()
        alarms = report["alarms"]
        print(
            f"\n{len(report['exchanges'])} exchange(s), {len(report['alterations'])}"
            f" alteration(s), {len(alarms)} alarm(s)"
            + (": " + "; ".join(alarms) if alarms else ": nothing watched was seen")
        )
        for alteration in report["alterations"]:
            print(
                f"  #{alteration['exchange']} {alteration['mode']} {alteration['path']}:"
                f" {alteration['detail']} -> {alteration['verdict']}"
                + (
                    f" ({alteration['status']} {alteration['code']})"
                    if alteration["status"]
                    else ""
                )
            )
        if args.report:
            write_atomic(Path(args.report), json.dumps(report, indent=2).encode() + b"\n")
            print(f"report saved to {args.report}")


def add_commands(sub: Any) -> tuple[Any, Any]:
    """Add ``relay``, ``custodian serve`` and ``mitm``; return the ``relay`` and ``custodian``
    groups' subparsers, which the other audiences' commands join."""

    def serving(p: argparse.ArgumentParser) -> None:
        home_option(p)
        p.add_argument("--host", help="address to listen on (default from the config)")
        p.add_argument(
            "--port", type=port_number, help="port to listen on (default from the config)"
        )
        p.add_argument("--workers", type=positive_int, help="gunicorn worker processes (default 2)")
        p.add_argument(
            "--insecure-http",
            action="store_true",
            help="allow plain HTTP on an address other than loopback (a network you trust)",
        )

    relay_sub = command_group(
        sub, "relay", "run the relay service", "The relay stores sealed envelopes; never a key."
    )
    p = relay_sub.add_parser(
        "serve",
        help="serve the relay under gunicorn",
        description="Serve the relay's HTTP/JSON API where HOME's settings say (`relay init`"
        " writes them from its URL; default 127.0.0.1:5000), and the network file in HOME,"
        " if there is one. Creates its identity and database under HOME/relay on first start.",
    )
    serving(p)
    p.set_defaults(func=cmd_relay_serve)

    cust_sub = command_group(
        sub,
        "custodian",
        "run a custodian, or act as its operator",
        "A custodian keeps one share per message and releases it only as the"
        " sender's policy allows.",
    )
    p = cust_sub.add_parser(
        "serve",
        help="serve one custodian under gunicorn",
        description="Serve the custodian whose home HOME is (made by `custodian init`; it"
        " listens where its URL says), or custodian NAME of a shared home (alpha..echo"
        " default to 127.0.0.1:5101..5105). Creates its own identity and database on first"
        " start; its operator's public key must be at HOME/custodians/NAME/operator.pub"
        " (the operator makes it with keygen).",
    )
    p.add_argument("--name", help="which custodian (default: the one HOME was made for)")
    serving(p)
    p.set_defaults(func=cmd_custodian_serve)

    db_sub = command_group(
        sub,
        "db",
        "check or upgrade a service's database schema",
        "A service makes its database's schema when it first starts, and refuses to start"
        " on a schema older or newer than its own. After installing a newer securecomm:"
        " stop every service on the database, back it up (docs/operations.md), run"
        " `securecomm db upgrade`, start them again. The whole upgrade is one transaction.",
    )
    for verb, func, text in (
        ("status", cmd_db_status, "say which schema the database is at; change nothing"),
        ("upgrade", cmd_db_upgrade, "bring the database to this securecomm's schema"),
    ):
        p = db_sub.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        home_option(p)
        p.add_argument(
            "--name",
            help="whose database: relay, or a custodian's name (default: the party whose"
            " home --home is; a home that is no custodian's is the relay's)",
        )
        p.set_defaults(func=func)

    from ..testing import MODES

    p = sub.add_parser(
        "mitm",
        help="a man in the middle on one link, for testing",
        description="Forward every request from --listen to --upstream (the relay or a"
        " custodian), report each JSON field classified (ciphertext, nonce, tag, sealed share,"
        " signature, public key, identifier, readable text), raise an alarm if a --watch text"
        " appears anywhere in any encoding, and in an active mode alter the traffic as an"
        " attacker would. Point a client at it with SECURECOMM_SERVER_URL or"
        " SECURECOMM_CUSTODIAN_<NAME>_URL.",
    )
    p.add_argument("--listen", required=True, metavar="HOST:PORT", help="where to listen")
    p.add_argument("--upstream", required=True, metavar="URL", help="where to forward")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="passive",
        help="passive (default), or an attack: flip, swap, replay, drop, truncate, inject;"
        " unsign removes the relay's signature from answers (with --direction response)",
    )
    p.add_argument("--field", help="the JSON field to flip or swap (default: any)")
    p.add_argument("--match", metavar="REGEX", help="only alter exchanges whose path matches")
    p.add_argument(
        "--direction",
        choices=("request", "response"),
        default="request",
        help="alter requests (default) or answers",
    )
    p.add_argument("--limit", type=positive_int, help="alter at most this many exchanges")
    p.add_argument(
        "--watch",
        action="append",
        metavar="TEXT",
        help="raise an alarm if TEXT crosses the wire in any encoding (repeatable)",
    )
    p.add_argument("--report", metavar="PATH", help="save the report as JSON on exit")
    p.add_argument("--force", action="store_true", help="replace the --report file if it exists")
    p.set_defaults(func=cmd_mitm)
    return relay_sub, cust_sub
