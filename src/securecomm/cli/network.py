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
from ._common import (
    CliError,
    check_output,
    home_of,
    home_option,
    positive_int,
    refuse_existing,
    require_whole_fingerprint,
)


def _copy_card(card: Any, path: str | None) -> Path | None:
    """The card also where its party will pick it up to hand on (``--card``)."""
    if path is None:
        return None
    from .._files import write_atomic

    write_atomic(path, card.to_bytes())
    return Path(path)


def _say_card(card: Any, path: Path) -> None:
    print(f"{card.role} {card.name}: card {path}")
    print(f"fingerprint: {card.identity.short_fingerprint()}")
    print("compare it with whoever sets the network up, out of band, before they use the card")


def cmd_relay_init(args: argparse.Namespace) -> None:
    from ..parties import card_path, init_relay

    home = home_of(args)
    _check_url(args.url)
    refuse_existing(card_path(home, "relay"), args.force, "--home")
    check_output(args.card, args.force, "--card")
    card = init_relay(home, args.url, settings=_tls_settings(args, home))
    _say_card(card, _copy_card(card, args.card) or card_path(home, "relay"))


def cmd_custodian_init(args: argparse.Namespace) -> None:
    from ..identity import check_name, load_public
    from ..parties import card_path, init_custodian

    name = check_name(args.name, field="--name")
    home = home_of(args)
    _check_url(args.url)
    refuse_existing(card_path(home, name), args.force, "--home")
    check_output(args.card, args.force, "--card")
    try:
        operator = load_public(Path(args.operator))
    except SecureCommError as exc:
        raise CliError(
            f"--operator {args.operator}: not a public key file ({exc})",
            hint="the operator makes it on their own machine with `securecomm keygen NAME`"
            " and hands you NAME.pub (never the .key)",
            code=2,
        ) from None
    card = init_custodian(home, name, args.url, operator, settings=_tls_settings(args, home))
    _say_card(card, _copy_card(card, args.card) or card_path(home, name))
    print(f"operator: {operator.name} ({operator.short_fingerprint()})")


def _tls_settings(args: argparse.Namespace, home: Path) -> list[str]:
    """The [tls] table for a new home's settings, naming the certificate and key given."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise CliError("give --tls-cert and --tls-key together", code=2)
    if args.tls_cert is None:
        return []
    for option, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if not (home / path).is_file():  # relative to the home, as the settings read it
            raise CliError(f"{option} {path}: no such file (relative paths are from --home)",
                           code=2)  # fmt: skip
    if not args.url.startswith("https://"):
        raise CliError("a service with a certificate is reached over https: --url https://...",
                       code=2)  # fmt: skip
    from ..tls import certificate_problem

    problem = certificate_problem(home / args.tls_cert, args.url)
    if problem is not None:
        raise CliError(f"--tls-cert {args.tls_cert}: {problem}",
                       hint="issue one for that host: securecomm tls issue", code=2)  # fmt: skip
    return ["", "[tls]", f'cert = "{args.tls_cert}"', f'key = "{args.tls_key}"']


def _tls_ca(args: argparse.Namespace) -> str | None:
    """The CA certificate given with --tls-ca, as PEM text."""
    if not args.tls_ca:
        return None
    try:
        return Path(args.tls_ca).read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--tls-ca {args.tls_ca}: cannot read it ({exc})", code=2) from None


def _check_url(url: str) -> None:
    from ..config import address_of
    from ..network import Card

    try:
        address_of(url)
        Card.check_url(url)
    except SecureCommError as exc:
        raise CliError(f"--url: {exc}", hint="e.g. --url http://127.0.0.2:5000", code=2) from None


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

    check_output(args.out, args.force)
    relay = read(args.relay)
    custodians = tuple(read(path) for path in args.custodian)
    network = Network(relay, custodians, args.threshold, _tls_ca(args))
    write_atomic(args.out, network.to_bytes())
    print(f"network: {args.out} ({network.threshold} of {len(custodians)} custodians)")
    for card in (relay, *custodians):
        print(
            f"  {card.role:<9} {card.name:<10} {card.url:<28} {card.identity.short_fingerprint()}"
        )
    print(f"network fingerprint: {network.short_fingerprint()}")
    # Over a private CA, the person needs its certificate too, to reach the relay at all.
    ca = f" --tls-ca {Path(args.tls_ca).name}" if network.tls_ca is not None else ""
    print(
        "give it to each party with the file; a person may then join from the relay:"
        f" securecomm join {relay.url} --fingerprint '{network.short_fingerprint()}'{ca}"
    )
    if ca:
        print(f"  (with a copy of {args.tls_ca}, given with the fingerprint)")


def add_commands(sub: Any, relay: Any, custodian: Any) -> None:
    """Add ``relay init`` and ``custodian init`` to their groups, ``network create`` and
    ``join``."""
    from ._common import command_group

    def init(group: Any, func: Any, help_text: str, description: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(
            "init", help=help_text, description=description
        )
        p.add_argument("--url", required=True, help="where clients reach it: http(s)://HOST:PORT")
        p.add_argument(
            "--card",
            metavar="PATH",
            help="also write the card here, to hand on (it is always kept in HOME)",
        )
        p.add_argument(
            "--tls-cert",
            metavar="PEM",
            help="its TLS certificate chain (`tls issue` makes one), for the new settings",
        )
        p.add_argument("--tls-key", metavar="KEY", help="the key of --tls-cert")
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
    p.add_argument(
        "--tls-ca",
        metavar="PEM",
        help="the CA the services' certificates chain to (`tls ca` makes one; without it,"
        " clients use the system's trust store)",
    )
    p.add_argument("--out", required=True, metavar="PATH", help="where to write it")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_network_create)

    p = sub.add_parser(
        "join",
        help="pin every key of a network file in your home",
        description="Check the network file (every card's signature, no name or key twice),"
        " pin the relay's, the custodians' and their operators' keys in HOME/known_keys.json"
        " and keep the file as HOME/network.json. From a relay's URL, the file it serves is"
        " taken only if its fingerprint is the one you were given (--fingerprint). A key"
        " that differs from one already pinned is refused, naming both fingerprints; a"
        " change of custodians or threshold is shown and needs --accept.",
    )
    p.add_argument(
        "network",
        metavar="NETWORK",
        nargs="?",  # after --fingerprint's groups it is taken from among them (cmd_join)
        help="the network file (network.json), or the relay's URL to fetch it from",
    )
    p.add_argument(
        "--fingerprint",
        metavar="FP",
        nargs="+",
        help="the network's fingerprint, as whoever set it up told you, quoted or not"
        " (needed to join from a URL the first time)",
    )
    p.add_argument(
        "--tls-ca",
        metavar="PEM",
        help="the CA of the relay's certificate, to join from an https:// URL of a network"
        " with a private CA (the network file carries it after)",
    )
    p.add_argument("--accept", action="store_true", help="accept a change of custodians")
    home_option(p)
    p.set_defaults(func=cmd_join)


def _fetch_network(
    url: str, fingerprint: str | None, home: Path, tls_ca: str | None = None
) -> bytes:
    """The network file a relay serves. Without the fingerprint the person was given out
    of band (:func:`_check_fingerprint` compares it), only a home that joined before may
    fetch it (its pins decide)."""
    from ..client.transport import ServiceClient
    from ..codes import Code
    from ..errors import ServiceError
    from ..network import NETWORK_FILE, Network

    if fingerprint is None and not (home / NETWORK_FILE).exists():
        raise CliError(
            f"joining from {url} needs the network's fingerprint",
            hint="ask whoever set the network up for the fingerprint `network create`"
            " printed, and give it with --fingerprint (or join with the network file itself)",
            code=2,
        )
    if tls_ca is None and (home / NETWORK_FILE).exists():
        tls_ca = Network.from_bytes((home / NETWORK_FILE).read_bytes()).tls_ca
    with ServiceClient(url.rstrip("/"), "relay", timeout=10.0, trust=tls_ca) as relay:
        try:
            data = relay.request("GET", "/api/v1/network", sign=False).content
        except ServiceError as exc:
            if exc.code == Code.UNREACHABLE and url.startswith("http://"):
                # A TLS relay closes a request in the clear unanswered: a bare ReadError.
                raise CliError(
                    str(exc),
                    hint="is the relay up at that address? If it speaks TLS, its URL starts"
                    " with https://",
                ) from None
            if exc.code != Code.TLS_REFUSED or tls_ca is not None:
                raise
            raise CliError(
                str(exc),
                hint="if the network has a private CA, give its certificate with --tls-ca"
                " (from whoever set the network up, with the fingerprint)",
            ) from None
    return data


def _check_fingerprint(data: bytes, fingerprint: str | None, source: str) -> None:
    """Refuse the network file ``data`` (from ``source``: a relay's URL, or a file's path)
    unless its fingerprint is the one given, if one was."""
    from ..identity import fingerprint_matches
    from ..network import Network

    if fingerprint is None:
        return
    require_whole_fingerprint(
        fingerprint, "not joined, nothing was written", printed_by="`network create`"
    )
    network = Network.from_bytes(data)
    if not fingerprint_matches(network.fingerprint, fingerprint):
        served = "serves" if source.startswith(("http://", "https://")) else "is"
        raise CliError(
            f"the network file {source} {served} has fingerprint"
            f" {network.short_fingerprint()}, not {fingerprint.strip()}: not joined,"
            " nothing was written",
            hint="this is another network than the one you were told of (changed on its"
            " way to you?); ask whoever set it up, over another channel",
        )


def _network_and_fingerprint(args: argparse.Namespace) -> None:
    """``--fingerprint 6707 fdec ... URL`` as typed: the fingerprint's groups are one
    string, and a last word that is no group of hex digits is the NETWORK argparse gave
    them."""
    groups = list(args.fingerprint or [])
    if args.network is None and groups and set(groups[-1].lower()) - set("0123456789abcdef:"):
        args.network = groups.pop()
    if args.network is None:
        raise CliError(
            "name the network: its file (network.json) or the relay's URL",
            hint="securecomm join http://RELAY:5000/ --fingerprint '6707 fdec ...'",
            code=2,
        )
    args.fingerprint = " ".join(groups) if groups else None


def cmd_join(args: argparse.Namespace) -> None:
    from ..client.trust import join
    from ..errors import FormatError, ParameterError

    home = home_of(args)
    _network_and_fingerprint(args)
    if args.network.startswith(("http://", "https://")):
        data = _fetch_network(args.network, args.fingerprint, home, _tls_ca(args))
    else:
        try:
            data = Path(args.network).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {args.network}: {exc.strerror}") from None
    try:
        _check_fingerprint(data, args.fingerprint, args.network)
        network = join(home, data, accept=args.accept)
    except (FormatError, ParameterError) as exc:
        exc.args = (f"{args.network}: {exc}",)  # the same error, saying which file
        raise
    print(f"joined: {network.threshold} of {len(network.custodians)} custodians, keys pinned")
    for card in (network.relay, *network.custodians):
        fingerprint = card.identity.short_fingerprint()
        print(f"  {card.role:<9} {card.name:<10} {card.url:<28} {fingerprint}")
    print(f"network fingerprint: {network.short_fingerprint()}")
    print("compare it with whoever set the network up, out of band")
