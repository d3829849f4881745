"""``securecomm relay init``, ``custodian init``, ``network create`` and ``join``:
parties on separate hosts set themselves up and exchange only cards (spec §14).

Each init makes only its own party's identity, in its own home, and writes its card;
no command here makes or reads anyone else's private key.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import SecureCommError
from ._common import CliError, home_of, home_option, positive_int, refuse_existing


def _write_card(home: Path, card: Any, force: bool) -> Path:
    from .._files import write_atomic

    path = home / f"{card.name}.card.json"
    refuse_existing(path, force, "--home")
    write_atomic(path, card.to_bytes())
    return path


def _say_card(card: Any, path: Path) -> None:
    print(f"{card.role} {card.name}: card {path}")
    print(f"fingerprint: {card.identity.short_fingerprint()}")
    print("compare it with whoever sets the network up, out of band, before they use the card")


def cmd_relay_init(args: argparse.Namespace) -> None:
    from ..config import load_settings
    from ..identity import load_or_create
    from ..network import Card

    home = home_of(args)
    settings = load_settings(home, env={})
    identity = load_or_create(settings.relay_dir() / "identity.key", "relay")
    card = Card.issue(identity, "relay", args.url)
    _say_card(card, _write_card(home, card, args.force))


def cmd_custodian_init(args: argparse.Namespace) -> None:
    from ..config import load_settings
    from ..identity import check_name, load_or_create, load_public, save_public
    from ..network import Card

    name = check_name(args.name, field="--name")
    home = home_of(args)
    try:
        operator = load_public(Path(args.operator))
    except SecureCommError as exc:
        raise CliError(
            f"--operator {args.operator}: not a public key file ({exc})",
            hint="the operator makes it on their own machine with `securecomm keygen NAME`"
            " and hands you NAME.pub (never the .key)",
            code=2,
        ) from None
    settings = load_settings(home, env={})
    directory = settings.custodian_dir(name)
    given = directory / "operator.pub"
    if given.exists() and load_public(given).fingerprint != operator.fingerprint:
        raise CliError(
            f"{given} already names another operator ({load_public(given).short_fingerprint()})",
            hint="remove it first if the operator really changed",
        )
    identity = load_or_create(directory / "identity.key", name)
    if not given.exists():
        save_public(given, operator)
    card = Card.issue(identity, "custodian", args.url, operator)
    _say_card(card, _write_card(home, card, args.force))
    print(f"operator: {operator.name} ({operator.short_fingerprint()})")


def cmd_network_create(args: argparse.Namespace) -> None:
    from .._files import write_atomic
    from ..network import Card, Network

    def read(path: str) -> Card:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror}") from None
        try:
            return Card.from_bytes(data, path)
        except SecureCommError as exc:
            raise CliError(str(exc), hint="ask its party for the card again", code=2) from None

    refuse_existing(args.out, args.force)
    relay = read(args.relay)
    custodians = tuple(read(path) for path in args.custodian)
    network = Network(relay, custodians, args.threshold)
    write_atomic(args.out, network.to_bytes())
    print(f"network: {args.out} ({network.threshold} of {len(custodians)} custodians)")
    for card in (relay, *custodians):
        print(
            f"  {card.role:<9} {card.name:<10} {card.url:<28} {card.identity.short_fingerprint()}"
        )


def add_commands(sub: Any, relay: Any, custodian: Any) -> None:
    """Add ``relay init`` and ``custodian init`` to their groups, ``network create`` and
    ``join``."""
    from ._common import command_group

    def init(group: Any, func: Any, help_text: str, description: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(
            "init", help=help_text, description=description
        )
        p.add_argument("--url", required=True, help="where clients reach it: http(s)://HOST:PORT")
        p.add_argument("--force", action="store_true", help="replace an existing card")
        home_option(p)
        p.set_defaults(func=func)
        return p

    init(
        relay,
        cmd_relay_init,
        "make this relay's identity and its card",
        "Make the relay's own identity under HOME (nothing of anyone else's) and write"
        " HOME/relay.card.json: its URL and public key, signed by it. Hand the card to"
        " whoever sets the network up and compare the fingerprint it prints.",
    )
    p = init(
        custodian,
        cmd_custodian_init,
        "make this custodian's identity and its card",
        "Make custodian NAME's own identity under HOME, keep its operator's public key"
        " (made by the operator with `securecomm keygen` on their own machine), and write"
        " HOME/NAME.card.json, signed by the custodian.",
    )
    p.add_argument("--name", required=True, help="the custodian's name (e.g. alpha)")
    p.add_argument("--operator", required=True, metavar="PUBFILE", help="the operator's .pub")

    network = command_group(
        sub,
        "network",
        "gather the parties' cards into a network file",
        "A network file names the relay and the custodians, with their keys, and the"
        " threshold; a client joins by pinning every key in it.",
    )
    p = network.add_parser(
        "create",
        help="check the cards and write the network file",
        description="Check each card's signature, refuse a name or a key given twice and a"
        " threshold above the number of custodians, and write the network file.",
    )
    p.add_argument("--relay", required=True, metavar="CARD", help="the relay's card")
    p.add_argument(
        "--custodian",
        required=True,
        action="append",
        metavar="CARD",
        help="a custodian's card, in share order (repeat for each)",
    )
    p.add_argument("--threshold", required=True, type=positive_int, help="shares needed (t)")
    p.add_argument("--out", required=True, metavar="PATH", help="where to write it")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_network_create)

    p = sub.add_parser(
        "join",
        help="pin every key of a network file in your home",
        description="Check the network file (every card's signature, no name or key twice),"
        " pin the relay's, the custodians' and their operators' keys in HOME/known_keys.json"
        " and keep the file as HOME/network.json. A key that differs from one already pinned"
        " is refused, naming both fingerprints; a change of custodians or threshold is shown"
        " and needs --accept.",
    )
    p.add_argument("network", metavar="NETWORK", help="the network file (network.json)")
    p.add_argument("--accept", action="store_true", help="accept a change of custodians")
    home_option(p)
    p.set_defaults(func=cmd_join)


def cmd_join(args: argparse.Namespace) -> None:
    from .._files import write_atomic
    from ..client.trust import KnownKeys
    from ..network import Network

    home = home_of(args)
    try:
        data = Path(args.network).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.network}: {exc.strerror}") from None
    network = Network.from_bytes(data)
    home.mkdir(parents=True, exist_ok=True)
    known = KnownKeys.load(home)
    cards = (network.relay, *network.custodians)
    operators = [c.operator for c in network.custodians if c.operator is not None]
    for identity in (*(c.identity for c in cards), *operators):
        known.check(identity)  # a changed key: refused, naming both fingerprints
    joined = home / "network.json"
    if joined.exists():
        before = Network.from_bytes(joined.read_bytes())
        was = [c.name for c in before.custodians]
        now = [c.name for c in network.custodians]
        if was != now or before.threshold != network.threshold:
            print(f"custodians: {', '.join(was)} ({before.threshold} of {len(was)})")
            print(f"     would be: {', '.join(now)} ({network.threshold} of {len(now)})")
            if not args.accept:
                raise CliError(
                    "the network file changes the custodians or the threshold; nothing was changed",
                    hint="check the change with whoever runs the network, then add --accept",
                )
    for identity in (*(c.identity for c in cards), *operators):
        known.pin(identity)
    known.save()
    write_atomic(joined, data)
    print(f"joined: {network.threshold} of {len(network.custodians)} custodians, keys pinned")
    for card in cards:
        fingerprint = card.identity.short_fingerprint()
        print(f"  {card.role:<9} {card.name:<10} {card.url:<28} {fingerprint}")
    print("compare these fingerprints with the parties, out of band")
