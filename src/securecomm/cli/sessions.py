"""``securecomm unlock | lock | sessions``: a person's key unlocked for a while, held by an
agent (spec/sessions.md section 1), so that the commands in between ask no passphrase."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..errors import IdentityError
from ..identity import Identity, check_name, load_public, save_public
from ..local.layout import person_home, person_homes, user_key_path
from ._common import (
    EXIT_BAD_INPUT,
    CliError,
    home_of,
    home_option,
    load_identity,
    new_passphrase,
    parse_duration,
    passphrase_options,
)

__all__ = ["add_commands"]


def _when(moment: int) -> str:
    local = time.localtime(moment)
    same_day = time.localtime()[:3] == local[:3]
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", local)


def _span(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    parts.append(f"{seconds} s" if seconds or not any(parts) else "")
    return " ".join(part for part in parts if part)


def _people(home: Path) -> list[str]:
    return sorted(key.stem for own in person_homes(home) for key in (own / "users").glob("*.key"))


def _unprotected(key_path: Path) -> bool:
    """Whether the key file opens without a passphrase (a bad file is said where it is
    loaded for use)."""
    try:
        Identity.load(key_path)
    except IdentityError:
        return False
    return True


def _name(args: argparse.Namespace, home: Path) -> str:
    if args.person is not None:
        return check_name(args.person, field="--as")
    found = _people(home)
    if len(found) == 1:
        return found[0]
    raise CliError(
        "say whose key: " + (f"{home} keeps {', '.join(found)}" if found else f"{home} keeps none"),
        hint="add --as NAME",
        code=EXIT_BAD_INPUT,
    )


def cmd_unlock(args: argparse.Namespace) -> None:
    from .. import agent  # not at import: every command's start would pay for it

    home = home_of(args)
    name = _name(args, home)
    key_path = user_key_path(home, name)
    if not key_path.exists():
        raise CliError(
            f"no identity {name!r} at {key_path}",
            hint=f"make it with: securecomm register {name}",
            code=EXIT_BAD_INPUT,
        )
    lifetime, idle = args.lifetime, min(args.idle, args.lifetime)
    if lifetime > agent.MAX_LIFETIME_SECONDS:
        raise CliError(
            f"a session lasts at most {agent.MAX_LIFETIME_SECONDS // 3600} h",
            code=EXIT_BAD_INPUT,
        )
    if _unprotected(key_path):
        print(
            f"{name}'s key has no passphrase: commands use it without asking, so there is"
            f" nothing to unlock (protect it with: securecomm passphrase --as {name})"
        )
        return
    identity = load_identity(str(key_path), args)
    public_path = key_path.with_suffix(".pub")
    if not public_path.exists():
        save_public(public_path, identity.public)
    elif not load_public(public_path).same_keys(identity.public):
        raise CliError(
            f"{public_path} holds other keys than {key_path}",
            hint="the two files must be the same identity's; restore the right .pub",
        )
    path = agent.socket_path(person_home(home, name), name)
    if path.parent.exists() and agent.lock(path):
        print(f"{name}'s earlier session is locked; a new one starts")
    agent.start(agent.Agent(identity, path, lifetime=lifetime, idle=idle))
    until = int(time.time()) + lifetime
    print(
        f"{name} unlocked until {_when(until)} (locks after {_span(idle)} without use);"
        f" 'securecomm lock --as {name}' locks it now"
    )


def cmd_passphrase(args: argparse.Namespace) -> None:
    home = home_of(args)
    name = _name(args, home)
    key_path = user_key_path(home, name)
    if not key_path.exists():
        raise CliError(f"no identity {name!r} at {key_path}", code=EXIT_BAD_INPUT)
    try:
        identity = load_identity(str(key_path), args)  # the current passphrase, if any
    except IdentityError as exc:
        if not (args.passphrase_file and "not encrypted" in str(exc)):
            raise
        # The likeliest reading: the new passphrase, given under the current one's option.
        raise CliError(
            f"{name}'s key has no passphrase yet: --passphrase-file is the current one's,"
            " and there is none; nothing was changed",
            hint="give the new one with --new-passphrase-file PATH (or, on a terminal,"
            " neither: it is asked twice)",
            code=EXIT_BAD_INPUT,
        ) from None
    if args.no_passphrase and _unprotected(key_path):
        # It said "no passphrase any more" of a key that never had one, and wrote it again.
        print(f"{key_path}: {name}'s key has no passphrase already; nothing was changed")
        return
    wanted = argparse.Namespace(
        no_passphrase=args.no_passphrase,
        passphrase_file=args.new_passphrase_file,
        ask_passphrase=False,
    )
    secret = new_passphrase(wanted, "--new-passphrase-file")
    identity.save(key_path, secret)  # atomic: the old file or the new, never half of one
    if secret is None:
        print(f"{key_path}: no passphrase any more; anyone who can read it can use it")
    else:
        print(f"{key_path}: protected by the new passphrase; 'securecomm unlock --as {name}'")
        print("  unlocks it for a while")


def cmd_lock(args: argparse.Namespace) -> None:
    from .. import agent  # not at import: every command's start would pay for it

    home = home_of(args)
    names = [check_name(args.person, field="--as")] if args.person else None
    ended = []
    for session in agent.sessions(person_homes(home)):
        if names is None or session.identity.name in names:
            agent.lock(session.path)
            ended.append(session.identity.name)
    if ended:
        print("locked: " + ", ".join(ended))
    elif names and not user_key_path(home, names[0]).exists():
        raise IdentityError(f"no identity {names[0]!r} in {home}: nothing to lock")
    elif names:
        print(f"{names[0]} was not unlocked")
    else:
        print("nothing was unlocked")


def cmd_sessions(args: argparse.Namespace) -> None:
    from .. import agent  # not at import: every command's start would pay for it

    found = agent.sessions(person_homes(home_of(args)))
    if not found:
        print("nothing is unlocked")
        return
    for session in found:
        # The idle limit is said only when it would come first.
        unused = session.idle_until < session.until
        print(
            f"{session.identity.name}  {session.identity.short_fingerprint()}"
            f"  until {_when(session.until)}"
            + (f", or {_when(session.idle_until)} if unused" if unused else "")
            + f"  (agent pid {session.pid})"
        )


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "unlock",
        help="unlock your key for a while: no passphrase until it locks",
        description="Ask for the passphrase of NAME's key once and start an agent that"
        " holds the key unlocked in memory, for this user only (a Unix socket in the"
        " home, 0600 in a 0700 directory, the caller's user id checked). The commands"
        " in between (send, read, inbox, unsend) sign and open shares through it and ask"
        " no passphrase. It locks at the first of: --for after unlocking, --idle after"
        " its last use, 'securecomm lock'. The key is never written anywhere unlocked.",
    )
    p.add_argument(
        "--as", dest="person", metavar="NAME", help="whose key (needed if the home has several)"
    )
    p.add_argument(
        "--for",
        dest="lifetime",
        type=parse_duration,
        default=parse_duration("30m"),
        metavar="DURATION",
        help="how long it stays unlocked at most (default 30m, at most 24h)",
    )
    p.add_argument(
        "--idle",
        type=parse_duration,
        default=parse_duration("10m"),
        metavar="DURATION",
        help="lock after this long without use (default 10m)",
    )
    home_option(p)
    passphrase_options(p)
    p.set_defaults(func=cmd_unlock)

    p = sub.add_parser(
        "passphrase",
        help="set, change or remove the passphrase of your key file",
        description="Write NAME's key file again under a new passphrase: asked twice on a"
        " terminal, or read from --new-passphrase-file; --no-passphrase leaves it"
        " unprotected. The current passphrase, if it has one, is asked first (or read from"
        " --passphrase-file). The file is replaced whole, at once.",
    )
    p.add_argument("--as", dest="person", metavar="NAME", help="whose key")
    passphrase_options(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--new-passphrase-file", metavar="PATH", help="the new passphrase's first line"
    )
    group.add_argument("--no-passphrase", action="store_true", help="leave the key unprotected")
    home_option(p)
    p.set_defaults(func=cmd_passphrase)

    p = sub.add_parser(
        "lock",
        help="lock an unlocked key now",
        description="End NAME's agent (or every agent of the home): the next command asks"
        " for the passphrase again.",
    )
    p.add_argument("--as", dest="person", metavar="NAME", help="whose key (default: all)")
    home_option(p)
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser(
        "sessions",
        help="list the keys unlocked, and until when",
        description="List the agents of the home: whose key, its fingerprint, when it"
        " locks, and when it would lock if unused from now.",
    )
    home_option(p)
    p.set_defaults(func=cmd_sessions)
