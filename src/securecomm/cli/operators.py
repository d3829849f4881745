"""``securecomm custodian pending | approve | deny`` and ``securecomm audit verify``: a
custodian's operator at work."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..codes import Code
from ..config import Settings, load_settings
from ..errors import IdentityError, ParameterError, ServiceError
from ._common import CliError, command_group, home_flag, home_of, home_option, service_settings


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.home)


def _operator_client(args: argparse.Namespace, settings: Settings | None = None) -> Any:
    from ..client.transport import ServiceClient
    from ..local.home import operator_name
    from ._common import load_identity

    settings = settings or _settings(args)
    _refuse_unjoined(settings, args)
    url = args.url or settings.custodian(args.name).url
    name = operator_name(args.name)
    places = _operator_key_places(settings, args.name)
    key = (
        Path(args.operator_key)
        if args.operator_key
        else next((path for path in places if path.exists()), places[0])
    )
    if not key.exists():
        error = IdentityError(
            f"no operator key for {args.name} at {key}"
            + ("" if args.operator_key else f" (nor at {places[1]})"),
        )
        if settings.own_custodian is not None and not args.operator_key:
            error.hint = (
                f"{settings.home} is custodian {settings.own_custodian.name}'s home, which"
                " holds no operator's key: run this from the operator's own home (--home,"
                f" where `securecomm keygen {name}` or `register {name}` put it), or give"
                " --operator-key PATH"
            )
        raise error
    return ServiceClient(url, args.name, load_identity(str(key), args), trust=settings.tls_ca)


def _refuse_unjoined(settings: Settings, args: argparse.Namespace) -> None:
    """An operator's home that joined no network (and has no settings file) knows no
    custodian's URL: it would ask this machine's embedded defaults (127.0.0.1:5101 ...),
    reaching nothing, or another network's custodian running here."""
    from ..config import CONFIG_FILE
    from ..network import NETWORK_FILE

    home = settings.home
    if args.url or (home / NETWORK_FILE).exists() or (home / CONFIG_FILE).exists():
        return
    raise CliError(
        f"{home} joined no network: it does not know where custodian {args.name} is",
        hint="join the network file the coordinator sent first: securecomm join"
        f" network.json{home_flag(home)} (or give --url)",
        code=2,
    )


def _operator_key_places(settings: Settings, custodian: str) -> list[Path]:
    """Where an operator's home keeps the key of ``custodian``'s operator, first first."""
    from ..local.home import operator_name, user_key_path

    name = operator_name(custodian)
    return [user_key_path(settings.home, name), settings.home / "operators" / f"{name}.key"]


def _which_custodian(args: argparse.Namespace, settings: Settings, verb: str) -> str:
    """The custodian a verb acts on: the one named (as a word, or --name); else the one
    whose home this is; else the one whose operator's key this home holds, if just one."""
    named: list[str] = list(dict.fromkeys(n for n in (args.custodian, args.name) if n))
    if len(named) > 1:
        raise CliError(
            f"two custodians named: {named[0]!r} and --name {named[1]!r}; give one", code=2
        )
    if named:
        return named[0]
    if settings.own_custodian is not None:
        return settings.own_custodian.name
    held = [
        c.name
        for c in settings.custodians
        if any(place.exists() for place in _operator_key_places(settings, c.name))
    ]
    if len(held) == 1:
        return held[0]
    release = "" if verb == "pending" else " RELEASE_ID"
    raise CliError(
        f"which custodian? name one: securecomm custodian {verb}{release} alpha"
        + (f" (this home holds the operator keys of {', '.join(held)})" if held else ""),
        code=2,
    )


def _pending(client: Any) -> list[dict[str, Any]]:
    from ..client.transport import answer_json

    answer = answer_json(client.request("GET", "/v1/releases", params={"status": "pending"}))
    return list(answer["releases"])


def cmd_custodian_pending(args: argparse.Namespace) -> None:
    settings = _settings(args)
    args.name = _which_custodian(args, settings, "pending")
    with _operator_client(args, settings) as client:
        pending = _pending(client)
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
    from ..client.transport import answer_json

    settings = _settings(args)
    args.name = _which_custodian(args, settings, verdict)
    with _operator_client(args, settings) as client:
        try:
            answer = client.request("POST", f"/v1/releases/{args.release_id}/{verdict}")
        except ServiceError as exc:
            if exc.code != Code.NO_RELEASE:
                raise
            raise _no_such_release(args, verdict, _pending(client)) from None
    status = answer_json(answer).get("status")
    said = {"released": "approved, and collected by its reader since"}.get(status, status)
    print(f"{args.name}: release {args.release_id} {said}")


def _no_such_release(
    args: argparse.Namespace, verdict: str, pending: list[dict[str, Any]]
) -> CliError:
    """An id the custodian knows no release by: most often a message's id, given for the
    release its reader asked for. Then the releases waiting for that message are named."""
    where = home_flag(home_of(args))
    waiting = [item for item in pending if item["message_id"] == args.release_id]
    given = args.release_id.lower()
    started = [i for i in pending if given and i["release_id"].startswith(given)]
    if not waiting and started:
        # The start of an id, copied short: named whole, not decided on a guess.
        rows = ", ".join(
            f"{i['release_id']} (message {i['message_id']}, for {i['recipient']['name']})"
            for i in started
        )
        release = started[0]["release_id"] if len(started) == 1 else "RELEASE_ID"
        return CliError(
            f"{args.name} has no release {args.release_id}; pending releases whose id"
            f" begins so: {rows}; nothing was decided",
            hint=f"give the whole id: securecomm custodian {verdict} --name {args.name}"
            f" {release}{where}",
        )
    if not waiting:
        return CliError(
            f"{args.name} has no release {args.release_id}",
            hint=f"its pending releases: securecomm custodian pending --name {args.name}{where}",
        )
    rows = ", ".join(f"{i['release_id']} (for {i['recipient']['name']})" for i in waiting)
    release = waiting[0]["release_id"] if len(waiting) == 1 else "RELEASE_ID"
    asked = f"securecomm custodian {verdict} --name {args.name} {release}{where}"
    return CliError(
        f"{args.release_id} is a message's id, not a release's; {args.name} holds"
        f" {len(waiting)} pending release(s) of that message: {rows}; nothing was decided",
        hint=f"give the release's id: {asked}",
    )


def cmd_custodian_approve(args: argparse.Namespace) -> None:
    _decide(args, "approve")


def cmd_custodian_deny(args: argparse.Namespace) -> None:
    _decide(args, "deny")


def cmd_audit_verify(args: argparse.Namespace) -> None:
    from ..custodian import audit
    from ..identity import load_public

    settings = service_settings(args, args.name)
    own = settings.custodian_dir(args.name) / "identity.pub"
    if args.key or own.exists():
        public = load_public(Path(args.key) if args.key else own)
    else:  # a client's home: the key pinned from the network file
        from ..client.trust import KnownKeys

        settings.custodian(args.name)  # a name not in it is said so, with the names that are
        if args.remote:
            _refuse_unjoined(settings, args)
        public = KnownKeys.load(settings.home).require(args.name)
    if args.file:
        report = audit.verify(_saved_pages(args.file), public)
    elif args.remote or args.url:
        from ..client.transport import answer_json

        with _operator_client(args) as client:

            def fetch(after: int) -> dict[str, Any]:
                params = {"after": str(after), "limit": str(audit.PAGE_MAX_ENTRIES)}
                answer = client.request("GET", "/v1/audit", params=params)
                page: dict[str, Any] = answer_json(answer)
                return page

            report = audit.verify(audit.paged(fetch), public)
    else:
        from ..custodian.tables import audit_log
        from ..service.storage import connect, sqlite_file

        database = settings.custodian_database(args.name)
        file = sqlite_file(database)
        if file is not None and not file.exists():
            missing = ParameterError(f"no database for {args.name} at {file}")
            missing.hint = (
                f"this is not custodian {args.name}'s home: give its home with --home, or,"
                " as its operator, check the log it serves with --remote"
            )
            raise missing
        engine = connect(database)
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


def add_commands(sub: Any, custodian: Any) -> None:
    """Add the operator's verbs to the ``custodian`` group, and ``audit``."""

    for verb, func, text, more in (
        ("pending", cmd_custodian_pending, "list releases waiting for approval", ""),
        ("approve", cmd_custodian_approve, "approve a pending release", ""),
        (
            "deny",
            cmd_custodian_deny,
            "deny a pending release",
            " A denial is final: that reader's later requests for the same message are"
            " refused without asking you again.",
        ),
    ):
        p = custodian.add_parser(
            verb,
            help=text,
            description=f"As the custodian's operator, {text}, signed with the operator's"
            " key: --operator-key, or NAME-operator.key in HOME/users (where `keygen"
            f" NAME-operator --out HOME/users` puts it) or HOME/operators.{more}",
        )
        if verb != "pending":
            p.add_argument(
                "release_id",
                metavar="ID",
                help="the release's id, as `custodian pending` lists it (not the message's)",
            )
        p.add_argument(
            "custodian",
            nargs="?",
            metavar="NAME",
            help="which custodian (or --name); by default the one whose home HOME is, or"
            " whose operator's key it holds, if just one",
        )
        _operator_options(p, name_required=False)
        p.set_defaults(func=func)

    audit_sub = command_group(
        sub, "audit", "check a custodian's audit log", "Audit logs are hash-chained and signed."
    )
    p = audit_sub.add_parser(
        "verify",
        help="verify a custodian's audit log",
        description="Check every entry's hash link and signature and name the first that"
        " fails: an edited, removed or reordered entry. Reads the custodian's database under"
        " HOME; with --remote, the running custodian's GET /v1/audit, page by page, signed"
        " with its operator's key; or pages saved from it with --file.",
    )
    p.add_argument(
        "--remote", action="store_true", help="ask the running custodian, as its operator"
    )
    _operator_options(p)
    p.add_argument(
        "--file",
        action="append",
        help="a JSON page saved from GET /v1/audit; repeat for each page, first to last",
    )
    p.add_argument(
        "--key",
        help="the custodian's .pub file (default HOME/custodians/NAME/identity.pub, or the"
        " key pinned from the network file)",
    )
    p.set_defaults(func=cmd_audit_verify)


def _operator_options(p: argparse.ArgumentParser, *, name_required: bool = True) -> None:
    from ._common import passphrase_options

    p.add_argument("--name", required=name_required, help="which custodian (e.g. alpha)")
    p.add_argument("--url", help="the custodian's URL (default: the network file's, or config)")
    p.add_argument("--operator-key", metavar="PATH", help="the operator's key file")
    passphrase_options(p)
    home_option(p)
