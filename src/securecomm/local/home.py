"""The data directory: identities, known keys, settings; created by ``securecomm init``.

::

    HOME/securecomm.toml               settings (securecomm.config)
    HOME/known_keys.json               every public key this client trusts, pinned
    HOME/relay/identity.key|.pub       the relay
    HOME/relay/custodians/NAME.pub     each custodian's public key, as the relay is given it
    HOME/custodians/NAME/identity.key|.pub, operator.pub
    HOME/operators/NAME-operator.key|.pub
    HOME/users/NAME.key|.pub           people (alice and bob for trying it out)
    HOME/logs/NAME.log                 what `securecomm up` started
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .._files import write_atomic
from ..client.trust import KnownKeys
from ..config import CONFIG_FILE, DEFAULT_CUSTODIANS, load_settings
from ..errors import ParameterError
from ..identity import Identity, PublicIdentity, check_name, load_or_create, save_public

__all__ = [
    "DEFAULT_USERS",
    "InitReport",
    "config_text",
    "init_home",
    "operator_name",
    "person_home",
    "user_key_path",
]

DEFAULT_USERS = ("alice", "bob")


def operator_name(custodian: str) -> str:
    return f"{custodian}-operator"


#: Where a data directory that holds several people keeps each one's own home.
PEOPLE_DIR = "people"


def person_home(home: Path, name: str) -> Path:
    """Where ``name`` acts from: their own home ``HOME/people/NAME`` in a data directory
    that keeps several (the local network's), else ``home`` itself."""
    own = home / PEOPLE_DIR / check_name(name)
    return own if own.is_dir() else home


def user_key_path(home: Path, name: str) -> Path:
    """A person's key file: in their own home, ``users/NAME.key``."""
    return person_home(home, name) / "users" / f"{check_name(name)}.key"


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
) -> str:
    """A securecomm.toml on loopback: the relay on ``relay_port``; custodians named and placed
    by ``ports`` (default alpha, bravo, ... on 5101, 5102, ...)."""
    if ports is None:
        names = list(DEFAULT_CUSTODIANS) + [f"custodian{i}" for i in range(6, n + 1)]
        ports = {name: 5101 + i for i, name in enumerate(names[:n])}
    lines = [
        "# securecomm settings; the environment overrides them (see README).",
        "[server]",
        'host = "127.0.0.1"',
        f"port = {relay_port}",
    ]
    if max_envelope_bytes is not None:
        lines.append(f"max_envelope_bytes = {max_envelope_bytes}")
    lines += ["", "[shares]", f"n = {len(ports)}", f"threshold = {t}", ""]
    for name, port in ports.items():
        lines += ["[[custodians]]", f'name = "{name}"', 'host = "127.0.0.1"', f"port = {port}", ""]
    return "\n".join(lines)


def init_home(
    home: Path,
    *,
    n: int | None = None,
    t: int | None = None,
    users: Iterable[str] = DEFAULT_USERS,
) -> InitReport:
    """Create what is missing under ``home``: settings, every identity, the known keys.

    Existing files are kept; running it twice changes nothing. ``n`` and
    ``t`` only apply when there is no settings file yet.
    """
    created: list[str] = []
    home.mkdir(parents=True, exist_ok=True)
    config = home / CONFIG_FILE
    if not config.exists():
        write_atomic(config, config_text(n or 5, t or 3).encode())
        created.append(str(config))
    settings = load_settings(home, env={})
    if (n is not None and n != settings.n_shares) or (t is not None and t != settings.threshold):
        raise ParameterError(
            f"{home} is set up for {settings.threshold} of {settings.n_shares} custodians;"
            " choose another --home for other numbers"
        )
    known = KnownKeys.load(home)
    identities: dict[str, PublicIdentity] = {}

    def make(path: Path, name: str) -> Identity:
        existed = path.exists()
        identity = load_or_create(path, name)
        if not existed:
            created.append(str(path))
        identities[name] = identity.public
        known.pin(identity.public)
        return identity

    make(settings.relay_dir() / "identity.key", "relay")
    for custodian in settings.custodians:
        key = make(settings.custodian_dir(custodian.name) / "identity.key", custodian.name)
        # The relay is handed each custodian's public key, for the page's configuration.
        given = settings.relay_dir() / "custodians" / f"{custodian.name}.pub"
        if not given.exists():
            given.parent.mkdir(parents=True, exist_ok=True)
            save_public(given, key.public)
        operator = make(
            home / "operators" / f"{operator_name(custodian.name)}.key",
            operator_name(custodian.name),
        )
        pub = settings.custodian_dir(custodian.name) / "operator.pub"
        if not pub.exists():
            save_public(pub, operator.public)
    for user in users:
        make(user_key_path(home, user), user)
    known.save()
    os.chmod(home, 0o700)
    return InitReport(home, tuple(created), identities)
