"""``securecomm register | contacts``: a person makes their own identity, lists it in the
relay's directory, and keeps the keys of the people they write to."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from ..codes import Code
from ..errors import ServiceError
from ._common import (
    EXIT_BAD_INPUT,
    CliError,
    home_of,
    home_option,
    load_identity,
    new_passphrase,
    new_passphrase_options,
    require_whole_fingerprint,
    settings_of,
)


def _own_home(args: argparse.Namespace, name: str) -> Path:
    """Where ``name`` keeps their identity: their home in a data directory that keeps
    several people (the local network's; made and joined on first use, or when only their
    key file was put there), else HOME."""
    from ..client.trust import join
    from ..local.layout import PEOPLE_DIR
    from ..network import NETWORK_FILE

    home = home_of(args)
    people = home / PEOPLE_DIR
    if not people.is_dir():
        return home
    own = people / name
    if not (own / NETWORK_FILE).exists():  # new, or only a key file put there (the page's)
        if not (home / NETWORK_FILE).exists():
            raise CliError(f"{home} keeps people's homes but has no {NETWORK_FILE} to join")
        join(own, (home / NETWORK_FILE).read_bytes())
    return own


def _refused_by_relay(exc: ServiceError, name: str) -> CliError | None:
    """The relay's refusal of ``name`` itself (spec §14.6) said plainly; None for any other
    error. (cmd_register removes the home it made for the name.)"""
    if exc.code not in {Code.RESERVED_NAME, Code.LOOKALIKE_NAME}:
        return None
    return CliError(
        f"the relay refuses the name {name!r}: {exc.message}; nothing was written",
        hint="choose another name, one that reads as no name registered at a glance",
        code=EXIT_BAD_INPUT,
    )


def cmd_register(args: argparse.Namespace) -> None:
    from ..config import load_settings
    from ..identity import NAME_SEPARATORS, check_name, new_name_refusal
    from ..local.layout import PEOPLE_DIR

    name = check_name(args.name, field="NAME")
    if name in load_settings(home_of(args)).party_names():  # before its home is made
        raise CliError(
            f"{name!r} is the name of the relay or a custodian of this network: a person"
            " cannot take it; nothing was written",
            hint="choose another name",
            code=EXIT_BAD_INPUT,
        )
    people = home_of(args) / PEOPLE_DIR
    fresh = people / name if people.is_dir() and not (people / name).exists() else None
    held = (people / name if people.is_dir() else home_of(args)) / "users" / f"{name}.key"
    ending = None if held.exists() else new_name_refusal(name)  # a new name only
    if ending is not None:  # before its home or a key is made
        raise CliError(
            f"{ending}; nothing was written",
            hint=f"choose another name, such as {name.rstrip(NAME_SEPARATORS)!r} if it is free",
            code=EXIT_BAD_INPUT,
        )
    home = _own_home(args, name)
    try:
        _register_from(args, name, home)
    except BaseException:
        if fresh is not None:  # a home made for a registration that did not happen goes
            shutil.rmtree(fresh, ignore_errors=True)
        raise


def _register_from(args: argparse.Namespace, name: str, home: Path) -> None:
    """``cmd_register`` once ``name``'s home is ready."""
    from ..client import flows
    from ..client.trust import KnownKeys
    from ..identity import Identity, save_public

    settings = settings_of(args, name)  # the home _own_home made ready
    key_path = home / "users" / f"{name}.key"
    made = not key_path.exists()
    if made:
        try:  # a look-alike of a name taken: refused before a key is made
            flows.refuse_name(settings, name)
        except ServiceError as exc:
            raise _refused_by_relay(exc, name) or exc from None
        secret = new_passphrase(args)
        identity = Identity.generate(name)
    else:
        identity = load_identity(str(key_path), args)
    known = KnownKeys.load(home)
    contact = known.get(name)
    if made and contact is not None:  # someone this home writes to holds the name
        raise CliError(
            f"the name {name!r} is a contact's: this home knows {name} by another key"
            f" ({contact.short_fingerprint()}); nothing was written",
            hint="choose another name",
            code=EXIT_BAD_INPUT,
        )
    known.check(identity.public)  # a contact pinned under this name: refused, both named
    listed = flows.listed(settings, name)
    if listed is not None and listed.fingerprint != identity.public.fingerprint:
        raise CliError(
            f"the name {name!r} is taken in the relay's directory by another key"
            f" ({listed.short_fingerprint()}); nothing was written",
            hint="choose another name" if made else f"{key_path} is not the key registered",
            code=EXIT_BAD_INPUT,
        )
    if made:
        key_path.parent.mkdir(parents=True, exist_ok=True)
        identity.save(key_path, secret)
    try:
        new = flows.register(settings, identity)
    except BaseException as exc:
        if made:  # nothing written: the key of a registration that did not happen goes
            key_path.unlink(missing_ok=True)
        if isinstance(exc, ServiceError):
            raise _refused_by_relay(exc, name) or exc from None
        raise
    if made:
        save_public(key_path.with_suffix(".pub"), identity.public)
    known.pin(identity.public)
    known.verified.add(name)
    known.save()
    state = "registered" if new else "already registered"
    print(f"{name}: {state} with the relay at {settings.server_url}")
    print(f"key: {key_path}" + ("" if made and secret else " (no passphrase)" if made else ""))
    print(f"fingerprint: {identity.public.short_fingerprint()}")
    print("give this fingerprint to the people who will write to you, out of band")


def _person(args: argparse.Namespace) -> Any:
    from ..local.layout import PEOPLE_DIR, person_homes

    home = home_of(args)
    if args.person is None and (home / PEOPLE_DIR).is_dir():
        names = ", ".join(own.name for own in person_homes(home)[1:])
        raise CliError(
            f"whose contacts? {home} holds the homes of several people ({names})",
            hint="say whose with --as NAME",
            code=EXIT_BAD_INPUT,
        )
    settings = settings_of(args, args.person)
    users = settings.home / "users"
    # users/NAME.key, or users/NAME.device.key on a device: whose home this is.
    held = sorted({key.stem.removesuffix(".device") for key in users.glob("*.key")})
    if args.person is not None and held and args.person not in held:
        raise CliError(
            f"{settings.home} is the home of {', '.join(held)}, not {args.person}'s: its"
            " contacts are theirs; nothing was read or marked",
            hint=f"give {args.person}'s own --home",
            code=EXIT_BAD_INPUT,
        )
    return settings


def cmd_contacts(args: argparse.Namespace) -> None:
    from ..client.trust import KnownKeys, network_keys
    from ..network import joined

    settings = _person(args)
    known = KnownKeys.load(settings.home)
    network = joined(settings.home)
    roles = {}
    if network is not None:
        roles = {identity.name: "operator" for identity in network_keys(network)}
        roles[network.relay.name] = "relay"
        roles.update({card.name: "custodian" for card in network.custodians})
    people = {name: key for name, key in known.keys.items() if name not in roles}
    if not people:
        print("no contacts pinned yet: a contact is pinned the first time you write to them")
    for name, key in sorted(people.items()):
        state = "verified" if name in known.verified else "not compared"
        if (settings.home / "users" / f"{name}.key").exists():
            state = "you"
        print(f"  {name:<18} {key.short_fingerprint()}  {state}")
    if args.all:
        for name, role in sorted(roles.items()):
            print(f"  {name:<18} {known.require(name).short_fingerprint()}  {role}")


def cmd_contacts_verify(args: argparse.Namespace) -> None:
    from ..client import flows
    from ..client.trust import KnownKeys

    said = " ".join(args.fingerprint)
    require_whole_fingerprint(
        said,
        "nothing was marked",
        printed_by=f"{args.name}'s `securecomm register` (or the page's Identity tab)",
    )
    settings = _person(args)
    known = KnownKeys.load(settings.home)
    if known.get(args.name) is None:
        try:
            listed = flows.listed(settings, args.name)
        except ServiceError as exc:
            raise CliError(f"{args.name} is not pinned here, and {exc}") from None
        if listed is None:
            raise CliError(
                f"no one named {args.name!r} is pinned here or registered with the relay",
                hint=f"{args.name} registers with `securecomm register {args.name}`",
            )
        known.keys[args.name] = listed  # kept only if the fingerprint matches, below
    key = known.verify(args.name, said)
    known.save()
    print(f"{args.name}: {key.short_fingerprint()} verified")


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "register",
        help="make your identity and list it in the relay's directory",
        description="Make NAME's identity in your home (a passphrase protects the key"
        " file: asked on the terminal, or --passphrase-file; --no-passphrase for scripts"
        " and demos), list its public keys in the directory of the relay your home joined,"
        " and print the fingerprint to give the people who will write to you. Run again,"
        " it registers the same key again. A name another key holds is refused and nothing"
        " is written.",
    )
    p.add_argument("name", metavar="NAME", help="your name in the directory")
    new_passphrase_options(p)
    home_option(p)
    p.set_defaults(func=cmd_register)

    contacts = sub.add_parser(
        "contacts",
        help="the people whose keys you pinned, and which you compared",
        description="List the people whose keys are pinned in your home (the first time"
        " you write to someone, their key is pinned from the relay's directory), each"
        " marked verified once you compared its fingerprint with them out of band.",
    )

    def listing_options(p: argparse.ArgumentParser, default: Any = None) -> None:
        # A verb's options keep what was given before it (`contacts --as alice verify`):
        # on a verb their default is SUPPRESS, as a verb's default would replace it.
        p.add_argument(
            "--as", dest="person", metavar="NAME", default=default, help="whose contacts"
        )
        home_option(p, default)

    listing_options(contacts)
    contacts.add_argument(
        "--all", action="store_true", help="also the relay's, custodians' and operators' keys"
    )
    contacts.set_defaults(func=cmd_contacts)
    verbs = contacts.add_subparsers(dest="contacts_command", metavar="COMMAND")
    p = verbs.add_parser(
        "list",
        help="the same as no command: list them",
        description="List your pinned contacts, as `securecomm contacts` alone does.",
    )
    p.add_argument(
        "--all",
        action="store_true",
        default=argparse.SUPPRESS,
        help="also the relay's, custodians' and operators' keys",
    )
    listing_options(p, argparse.SUPPRESS)
    p = verbs.add_parser(
        "verify",
        help="mark a contact as compared out of band",
        description="Compare FINGERPRINT, as NAME told it to you over another channel,"
        " with the key pinned for NAME (or, if none is yet, the one the relay's directory"
        " lists, which is then pinned), and mark NAME verified if they are the same.",
    )
    p.add_argument("name", metavar="NAME", help="the contact")
    p.add_argument(
        "fingerprint",
        metavar="FINGERPRINT",
        nargs="+",
        help="as they told it to you: its eight groups of four, quoted or not",
    )
    listing_options(p, argparse.SUPPRESS)
    p.set_defaults(func=cmd_contacts_verify)
