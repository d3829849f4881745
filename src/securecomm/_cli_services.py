"""``securecomm relay …``, ``securecomm custodian …`` and ``securecomm audit …``.

Imported by :mod:`securecomm.cli` only; the services' web stack is imported
inside each command, so the offline commands start without it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import Settings, load_settings
from .errors import IdentityError, ParameterError


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.home)


def cmd_relay_serve(args: argparse.Namespace) -> None:
    from .relay.app import create_relay_app
    from .service.serve import serve

    settings = _settings(args)
    serve(
        lambda: create_relay_app(settings),
        name="relay",
        host=args.host or settings.server_host,
        port=args.port or settings.server_port,
        workers=args.workers or settings.workers,
    )


def cmd_custodian_serve(args: argparse.Namespace) -> None:
    from .custodian.app import create_custodian_app, load_operator
    from .service.serve import serve

    settings = _settings(args)
    custodian = settings.custodian(args.name)
    load_operator(settings, args.name)  # refuse here, in a sentence, not in a worker
    serve(
        lambda: create_custodian_app(settings, args.name),
        name=args.name,
        host=args.host or custodian.host,
        port=args.port or custodian.port,
        workers=args.workers or settings.workers,
    )


def _operator_client(args: argparse.Namespace) -> Any:
    from .client import ServiceClient
    from .home import operator_name
    from .identity import Identity

    settings = _settings(args)
    url = args.url or settings.custodian(args.name).url
    key = settings.home / "operators" / f"{operator_name(args.name)}.key"
    if not key.exists():
        raise IdentityError(f"no operator key for {args.name} at {key}")
    return ServiceClient(url, args.name, Identity.load(key))


def cmd_custodian_pending(args: argparse.Namespace) -> None:
    with _operator_client(args) as client:
        answer = client.request("GET", "/v1/releases", params={"status": "pending"}).json()
    pending = answer["releases"]
    if not pending:
        print(f"{args.name}: no pending releases")
    for item in pending:
        who = item["recipient"]
        print(
            f"{item['release_id']}  message {item['message_id']}  for {who['name']}"
            f"  requested {local_time_and_age(item['created'])}"
        )


def local_time_and_age(epoch: int, now: float | None = None) -> str:
    """``1796059444`` -> ``2026-11-30 17:40 (3 min ago)``, in this machine's time zone."""
    now = time.time() if now is None else now
    seconds = int(now - epoch)
    ago = abs(seconds)
    if ago < 5:
        age = "just now"
    else:
        units = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
        unit, size = next((unit, size) for unit, size in units if ago >= size)
        amount = f"{ago // size} {unit}"
        age = f"{amount} ago" if seconds > 0 else f"in {amount}"  # in: the clocks differ
    return f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(epoch))} ({age})"


def _decide(args: argparse.Namespace, verdict: str) -> None:
    with _operator_client(args) as client:
        client.request("POST", f"/v1/releases/{args.release_id}/{verdict}")
    print(
        f"{args.name}: release {args.release_id} {dict(approve='approved', deny='denied')[verdict]}"
    )


def cmd_custodian_approve(args: argparse.Namespace) -> None:
    _decide(args, "approve")


def cmd_custodian_deny(args: argparse.Namespace) -> None:
    _decide(args, "deny")


def cmd_audit_verify(args: argparse.Namespace) -> None:
    from .custodian import audit
    from .home import load_public

    settings = _settings(args)
    directory = settings.custodian_dir(args.name)
    public = load_public(Path(args.key) if args.key else directory / "identity.pub")
    if args.file:
        report = audit.verify(_saved_pages(args.file), public)
    elif args.remote or args.url:
        with _operator_client(args) as client:

            def fetch(after: int) -> dict[str, Any]:
                params = {"after": str(after), "limit": str(audit.PAGE_MAX_ENTRIES)}
                page: dict[str, Any] = client.request("GET", "/v1/audit", params=params).json()
                return page

            report = audit.verify(audit.paged(fetch), public)
    else:
        import sqlalchemy as sa

        from .custodian.app import audit_log

        database = settings.custodian_database(args.name)
        if database.startswith("sqlite:///") and not Path(database[10:]).exists():
            raise ParameterError(f"no database for {args.name} at {database[10:]}")
        engine = sa.create_engine(database)
        with engine.connect() as conn:

            def read(after: int) -> dict[str, Any]:
                return audit.page(conn, audit_log, after=after, limit=audit.PAGE_MAX_ENTRIES)

            report = audit.verify(audit.paged(read), public)
        engine.dispose()
    if report.ok:
        print(f"audit log of {args.name}: {report.count} entries; chain and signatures verify")
        return
    print(f"audit log of {args.name}: FAILED at {report.reason}", file=sys.stderr)
    print(f"the first {report.count} entries verify", file=sys.stderr)
    raise SystemExit(1)


def _saved_pages(files: list[str]) -> Iterator[Any]:
    """The entries of pages saved from GET /v1/audit, given first to last."""
    for position, file in enumerate(files, start=1):
        try:
            page = json.loads(Path(file).read_text("utf-8"))
            entries, cursor = page["entries"], page.get("next")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise ParameterError(f"{file}: not an audit log saved from GET /v1/audit") from None
        if not isinstance(entries, list):
            raise ParameterError(f"{file}: not an audit log saved from GET /v1/audit")
        yield from entries
        if cursor is not None and position == len(files):
            raise ParameterError(
                f"{file}: the log goes on after entry {cursor}; save every page"
                f" (GET /v1/audit?after={cursor} next) and give each with --file, in order"
            )


def cmd_mitm(args: argparse.Namespace) -> None:
    import signal
    import threading

    from ._files import write_atomic
    from .mitm import Proxy

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdecimal():
        raise ParameterError(f"--listen {args.listen!r}: expected HOST:PORT")
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


def add_commands(sub: Any) -> None:
    """Register the service commands on the top-level subparsers."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--home",
            metavar="DIR",
            help="data directory (env SECURECOMM_HOME, default ./securecomm-data)",
        )

    def serving(p: argparse.ArgumentParser) -> None:
        common(p)
        p.add_argument("--host", help="address to listen on (default from the config)")
        p.add_argument("--port", type=int, help="port to listen on (default from the config)")
        p.add_argument("--workers", type=int, help="gunicorn worker processes (default 2)")

    def group(name: str, help_text: str, description: str) -> Any:
        parser = sub.add_parser(name, help=help_text, description=description)
        return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)

    relay_sub = group(
        "relay", "run the relay service", "The relay stores sealed envelopes; never a key."
    )
    p = relay_sub.add_parser(
        "serve",
        help="serve the relay under gunicorn",
        description="Serve the relay's HTTP/JSON API (default 127.0.0.1:5000). Creates its"
        " identity and database under HOME/relay on first start.",
    )
    serving(p)
    p.set_defaults(func=cmd_relay_serve)

    cust_sub = group(
        "custodian",
        "run a custodian, or act as its operator",
        "A custodian keeps one share per message and releases it only as the"
        " sender's policy allows.",
    )
    p = cust_sub.add_parser(
        "serve",
        help="serve one custodian under gunicorn",
        description="Serve custodian NAME (alpha..echo default to 127.0.0.1:5101..5105)."
        " Creates its identity, its operator's key and its database on first start.",
    )
    p.add_argument("--name", required=True, help="which custodian (e.g. alpha)")
    serving(p)
    p.set_defaults(func=cmd_custodian_serve)
    for verb, func, text in (
        ("pending", cmd_custodian_pending, "list releases waiting for approval"),
        ("approve", cmd_custodian_approve, "approve a pending release"),
        ("deny", cmd_custodian_deny, "deny a pending release"),
    ):
        p = cust_sub.add_parser(
            verb,
            help=text,
            description=f"As the custodian's operator,"
            f" {text} (signed with HOME/operators/NAME-operator.key).",
        )
        if verb != "pending":
            p.add_argument("release_id", metavar="ID", help="the release id")
        p.add_argument("--name", required=True, help="which custodian (e.g. alpha)")
        p.add_argument("--url", help="the custodian's URL (default from the config)")
        common(p)
        p.set_defaults(func=func)

    audit_sub = group(
        "audit", "check a custodian's audit log", "Audit logs are hash-chained and signed."
    )
    p = audit_sub.add_parser(
        "verify",
        help="verify a custodian's audit log",
        description="Check every entry's hash link and signature and name the first that"
        " fails: an edited, removed or reordered entry. Reads the custodian's database under"
        " HOME; with --remote, the running custodian's GET /v1/audit, page by page, signed"
        " with HOME/operators/NAME-operator.key; or pages saved from it with --file.",
    )
    p.add_argument("--name", required=True, help="which custodian (e.g. alpha)")
    p.add_argument(
        "--remote", action="store_true", help="ask the running custodian, as its operator"
    )
    p.add_argument("--url", help="the custodian's URL for --remote (default from the config)")
    p.add_argument(
        "--file",
        action="append",
        help="a JSON page saved from GET /v1/audit; repeat for each page, first to last",
    )
    p.add_argument(
        "--key", help="the custodian's .pub file (default HOME/custodians/NAME/identity.pub)"
    )
    common(p)
    p.set_defaults(func=cmd_audit_verify)

    from .mitm import MODES

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
        help="passive (default), or an attack: flip, swap, replay, drop, truncate, inject",
    )
    p.add_argument("--field", help="the JSON field to flip or swap (default: any)")
    p.add_argument("--match", metavar="REGEX", help="only alter exchanges whose path matches")
    p.add_argument(
        "--direction",
        choices=("request", "response"),
        default="request",
        help="alter requests (default) or answers",
    )
    p.add_argument("--limit", type=int, help="alter at most this many exchanges")
    p.add_argument(
        "--watch",
        action="append",
        metavar="TEXT",
        help="raise an alarm if TEXT crosses the wire in any encoding (repeatable)",
    )
    p.add_argument("--report", metavar="PATH", help="save the report as JSON on exit")
    p.set_defaults(func=cmd_mitm)
