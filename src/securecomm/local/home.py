"""The single-machine network: every party in its own home under one data directory,
made by exactly the steps a deployment across hosts takes (``securecomm.parties``'
relay and custodian init, each given only its operator's public key; the network file
made from the cards; every home joining it). ``securecomm up`` then registers the people
with the relay it started. No home holds another party's private key, even here.

::

    HOME/securecomm.toml           where the local parties listen (the plan; optional)
    HOME/network.json              the network file, made from the cards
    HOME/relay/                    the relay's home
    HOME/NAME/                     each custodian's home (alpha ... echo)
    HOME/people/NAME/              each person's home: the operators, alice, bob
    HOME/logs/NAME.log             what `securecomm up` started
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .._files import write_atomic
from ..client.trust import KnownKeys, join
from ..config import (
    CONFIG_FILE,
    DEFAULT_CUSTODIANS,
    DEFAULT_MAX_ENVELOPE_BYTES,
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_SENDER_BYTES,
    Settings,
    load_settings,
)
from ..errors import ParameterError
from ..identity import Identity, PublicIdentity, load_or_create, save_public
from ..network import NETWORK_FILE, Card, Network, joined
from ..parties import card_path, init_custodian, init_relay
from ..tls import CA_CERT, CertificateAuthority, make_ca
from .layout import PEOPLE_DIR, operator_name, party_home, person_home, user_key_path

__all__ = [
    "DEFAULT_USERS",
    "InitReport",
    "config_text",
    "init_home",
    "operator_name",
    "party_home",
    "people_of",
    "person_home",
    "register_people",
    "user_key_path",
]

DEFAULT_USERS = ("alice", "bob")


@dataclass(frozen=True)
class InitReport:
    home: Path
    created: tuple[str, ...]
    identities: dict[str, PublicIdentity]


def config_text(
    n: int,
    t: int,
    *,
    relay_port: int = 5000,
    ports: Mapping[str, int] | None = None,
    max_envelope_bytes: int | None = None,
    database_urls: Mapping[str, str] | None = None,
    max_payload_bytes: int | None = None,
    max_sender_bytes: int | None = None,
) -> str:
    """A securecomm.toml on loopback: the relay on ``relay_port``; custodians named and placed
    by ``ports`` (default alpha, bravo, ... on 5101, 5102, ...). ``database_urls``: the
    database of the relay (key ``"relay"``) and of each custodian (by name) that does not
    keep its default SQLite file."""
    if ports is None:
        names = list(DEFAULT_CUSTODIANS) + [f"custodian{i}" for i in range(6, n + 1)]
        ports = {name: 5101 + i for i, name in enumerate(names[:n])}
    databases = dict(database_urls or {})
    unknown = set(databases) - {"relay", *ports}
    if unknown:
        raise ParameterError(f"database_urls: no service named {', '.join(sorted(unknown))}")
    lines = [
        "# securecomm settings; the environment overrides them (see README).",
        "[server]",
        'host = "127.0.0.1"',
        f"port = {relay_port}",
        *_database(databases.get("relay")),
    ]
    limits = {
        "max_envelope_bytes": max_envelope_bytes,
        "max_payload_bytes": max_payload_bytes,
        "max_sender_bytes": max_sender_bytes,
    }
    lines += [f"{name} = {value}" for name, value in limits.items() if value is not None]
    lines += ["", "[shares]", f"n = {len(ports)}", f"threshold = {t}", ""]
    for name, port in ports.items():
        lines += ["[[custodians]]", f'name = "{name}"', 'host = "127.0.0.1"', f"port = {port}"]
        lines += [*_database(databases.get(name)), ""]
    return "\n".join(lines)


def init_home(
    home: Path,
    *,
    n: int | None = None,
    t: int | None = None,
    users: Iterable[str] = DEFAULT_USERS,
    tls: bool = False,
) -> InitReport:
    """Make what is missing of the local network under ``home``, party by party.

    Existing files are kept; running it twice changes nothing. ``n`` and ``t`` only
    apply when there is no settings file yet. With ``tls`` the services serve HTTPS with
    certificates from a CA of the network's own (``HOME/tls``, the coordinator's), which
    the network file carries; a network made without it is not changed to it.
    """
    created: list[str] = []
    plan = plan_home(home, n=n, t=t, created=created)
    if (n is not None and n != plan.n_shares) or (t is not None and t != plan.threshold):
        raise ParameterError(
            f"{home} is set up for {plan.threshold} of {plan.n_shares} custodians;"
            " choose another --home for other numbers"
        )
    network_file = home / NETWORK_FILE
    existing = joined(home)
    if tls and existing is not None and existing.tls_ca is None:
        refused = ParameterError(f"{home} was set up without TLS; nothing was changed")
        refused.hint = (
            "--tls makes a new data directory (its own CA, https:// URLs): give another"
            " --home; or leave --tls out to go on with this one over HTTP"
        )
        raise refused
    ca = _local_ca(home, created) if tls and existing is None else None
    scheme = "https" if ca is not None else "http"
    identities: dict[str, PublicIdentity] = {}

    def person(name: str) -> Identity:
        """A person on their own machine: their key in their own home."""
        path = home / PEOPLE_DIR / name / "users" / f"{name}.key"
        if not path.exists():
            created.append(str(path))
        identity = load_or_create(path, name)
        if not path.with_suffix(".pub").exists():
            save_public(path.with_suffix(".pub"), identity.public)
        identities[name] = identity.public
        return identity

    def card(name: str, make: Callable[[Path], Card]) -> Card:
        own = party_home(home, name)
        path = card_path(own, name)
        if path.exists():
            made = Card.from_bytes(path.read_bytes(), str(path))
        else:
            made = make(own)
            created.append(str(path))
        identities[name] = made.identity
        return made

    def certificate(name: str, host: str) -> list[str]:
        """The party's TLS certificate in its own home, and the settings naming it."""
        if ca is None:
            return []
        if not (party_home(home, name) / "tls" / f"{name}.pem").exists():
            ca.issue(name, [host, "localhost"]).write(party_home(home, name) / "tls")
        return ["", "[tls]", f'cert = "tls/{name}.pem"', f'key = "tls/{name}.key"']

    def url(address: str) -> str:
        return address.replace("http://", f"{scheme}://", 1)

    relay_settings = [*_relay_settings(plan), *certificate("relay", plan.server_host)]
    relay = card(
        "relay",
        functools.partial(init_relay, url=url(plan.server_url), settings=relay_settings),
    )
    custodians = []
    for custodian in plan.custodians:
        operator = person(operator_name(custodian.name)).public  # only the .pub is handed on
        make = functools.partial(
            init_custodian,
            name=custodian.name,
            url=url(custodian.url),
            operator=operator,
            settings=[
                *_database(custodian.database_url),
                *certificate(custodian.name, custodian.host),
            ],
        )
        custodians.append(card(custodian.name, make))
    if existing is None:
        tls_ca = None if ca is None else ca.pem.decode()
        made = Network(relay, tuple(custodians), plan.threshold, tls_ca)
        write_atomic(network_file, made.to_bytes())
        created.append(str(network_file))
    people = [person(name) for name in users]
    network = network_file.read_bytes()
    for name in ("relay", *(c.name for c in plan.custodians)):
        join(party_home(home, name), network)
    for name in (*(operator_name(c.name) for c in plan.custodians), *(p.name for p in people)):
        join(home / PEOPLE_DIR / name, network)
    # The people trying it out on one machine have, in effect, compared fingerprints: each
    # pins the others' keys as `contacts verify` would.
    for someone in people:
        known = KnownKeys.load(home / PEOPLE_DIR / someone.name)
        for other in people:
            known.pin(other.public)
            known.verified.add(other.name)
        known.save()
    return InitReport(home, tuple(created), identities)


def plan_home(
    home: Path, *, n: int | None = None, t: int | None = None, created: list[str] | None = None
) -> Settings:
    """The first step of :func:`init_home`, alone: the data directory and its settings
    file (where every party listens), made if missing (and named in ``created``)."""
    _refuse_a_shared_home(home)
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    config = home / CONFIG_FILE
    if not config.exists():
        write_atomic(config, config_text(n or 5, t or 3).encode())
        if created is not None:
            created.append(str(config))
    return load_settings(home, env={})


def ports_fixed(home: Path, plan: Settings) -> bool:
    """Whether a party's own home is made already, keeping the port it was made with (so
    the settings file's ports can no longer be changed)."""
    names = ("relay", *(c.name for c in plan.custodians))
    return any((party_home(home, name) / CONFIG_FILE).exists() for name in names)


def _relay_settings(plan: Settings) -> list[str]:
    """The plan's relay settings beyond where it listens, for the relay's own home."""
    lines = _database(plan.relay_database_url)
    if plan.relay_database_password_file is not None:
        # Where the plan's settings said, from the relay's home too.
        password_file = str(plan.relay_database_password_file.absolute())
        lines.append(f"database_password_file = {json.dumps(password_file)}")
    for name, value, default in (
        ("max_envelope_bytes", plan.max_envelope_bytes, DEFAULT_MAX_ENVELOPE_BYTES),
        ("max_payload_bytes", plan.max_payload_bytes, DEFAULT_MAX_PAYLOAD_BYTES),
        ("max_sender_bytes", plan.max_sender_bytes, DEFAULT_MAX_SENDER_BYTES),
    ):
        if value != default:
            lines.append(f"{name} = {value}")
    if plan.web_origins:
        lines.append("web_origins = [" + ", ".join(f'"{o}"' for o in plan.web_origins) + "]")
    return lines


def _database(url: str | None) -> list[str]:
    """A party's own database setting, carried from the plan to its home (none: its
    default SQLite file there)."""
    # JSON's string escapes are TOML's basic string's.
    return [] if url is None else [f"database_url = {json.dumps(url)}"]


def _refuse_a_shared_home(home: Path) -> None:
    """A data directory from before each party had its own home (one ``users/``, one
    ``custodians/``, one ``known_keys.json`` for all) is not mixed with the new layout."""
    shared = ("users", "custodians", "operators", "known_keys.json")
    found = [name for name in shared if (home / name).exists()]
    if found:
        error = ParameterError(
            f"{home} holds every party's keys in one place ({', '.join(found)}), as securecomm"
            " did before each party had its own home; nothing was changed"
        )
        error.hint = (
            "use another --home for the local network (or, to start afresh, `securecomm"
            f" clean --all --home {home}`, which deletes its keys and messages)"
        )
        raise error


def people_of(home: Path) -> list[str]:
    """The people with a home in the local network, operators aside (who need no entry in
    the relay's directory)."""
    people = home / PEOPLE_DIR
    found = sorted(p.name for p in people.iterdir() if p.is_dir()) if people.is_dir() else []
    return [name for name in found if not name.endswith("-operator")]


def register_people(home: Path) -> dict[str, str]:
    """Register each person of the local network from their own home, as `securecomm
    register` does (again is harmless); return those that failed, with why. A person
    whose key has a passphrase is skipped: they register themselves."""
    from ..client import flows
    from ..errors import SecureCommError

    failed = {}
    for name in people_of(home):
        own = home / PEOPLE_DIR / name
        try:
            person = Identity.load(user_key_path(own, name))
        except SecureCommError:
            continue
        try:
            flows.register(load_settings(own), person)
        except SecureCommError as exc:
            failed[name] = str(exc)
    return failed


def _local_ca(home: Path, created: list[str]) -> CertificateAuthority:
    """The local network's CA (``HOME/tls``): what a coordinator keeps, off every
    service's home."""
    directory = home / "tls"
    if (directory / CA_CERT).exists():
        return CertificateAuthority.load(directory)
    ca = make_ca("securecomm local network CA")
    ca.write(directory)
    created.append(str(directory / CA_CERT))
    return ca
