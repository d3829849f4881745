"""How a service party sets itself up in its own home (spec §14): ``relay init`` and
``custodian init``, and the card each writes. The single-machine network is made by the
same functions, one home per party.

A party makes only its own identity; a custodian is *given* its operator's public key
(the operator makes their key on their own machine) and never sees a private key of
anyone else's.

A relay's home::

    HOME/securecomm.toml        [server] url, host, port: where it listens
    HOME/relay/identity.key     its identity (made here, mode 0600) and .pub
    HOME/relay.card.json        its card
    HOME/network.json           the network file it serves (after `join`)

A custodian's home::

    HOME/securecomm.toml        [custodian] name, url, host, port
    HOME/custodians/NAME/identity.key, identity.pub, operator.pub
    HOME/NAME.card.json         its card
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._files import write_atomic
from .config import CONFIG_FILE, address_of, load_settings
from .errors import ParameterError
from .identity import PublicIdentity, check_name, load_or_create, load_public, save_public
from .network import Card

__all__ = ["card_path", "init_custodian", "init_relay"]


def card_path(home: Path, name: str) -> Path:
    return home / f"{check_name(name)}.card.json"


def init_relay(home: Path, url: str, *, settings: Sequence[str] = ()) -> Card:
    """Make the relay's identity under ``home`` (kept if it exists), say where it listens,
    and write its card. ``settings``: more TOML lines, appended to its ``[server]`` table
    (a line ``[table]`` starts another)."""
    Card.check_url(url)
    _own_settings(home, url, "server", None, settings)
    identity = load_or_create(load_settings(home, env={}).relay_dir() / "identity.key", "relay")
    card = Card.issue(identity, "relay", url)
    write_atomic(card_path(home, "relay"), card.to_bytes())
    return card


def init_custodian(
    home: Path, name: str, url: str, operator: PublicIdentity, *, settings: Sequence[str] = ()
) -> Card:
    """Make custodian ``name``'s identity under ``home``, keep its operator's public key,
    say where it listens, and write its card. An operator other than the one it was
    given before is refused: nothing is changed."""
    check_name(name, field="custodian name")
    Card.check_url(url)
    given = load_settings(home, env={}).custodian_dir(name) / "operator.pub"
    if given.exists():
        before = load_public(given)
        if before.fingerprint != operator.fingerprint:
            error = ParameterError(
                f"{given} already names another operator ({before.short_fingerprint()});"
                " nothing was changed"
            )
            error.hint = "remove it first if the operator really changed"
            raise error
    _own_settings(home, url, "custodian", name, settings)
    directory = load_settings(home, env={}).custodian_dir(name)
    identity = load_or_create(directory / "identity.key", name)
    if not given.exists():
        save_public(given, operator)
    card = Card.issue(identity, "custodian", url, operator)
    write_atomic(card_path(home, name), card.to_bytes())
    return card


def _own_settings(
    home: Path, url: str, section: str, name: str | None, extra: Sequence[str]
) -> None:
    """Write HOME/securecomm.toml saying where this party listens (the host and port of its
    URL); an existing one must already say the same URL, and is never rewritten."""
    party = "relay" if name is None else "custodian"
    path = home / CONFIG_FILE
    url = url.rstrip("/")
    if path.exists():
        settings = load_settings(home, env={})
        own = settings.own_custodian
        if (own.name if own else None) != name:
            whose = (
                f"custodian {own.name}'s home, not {name or 'the relay'}'s"
                if own
                else "not a custodian's home (its securecomm.toml has no [custodian])"
            )
            error = ParameterError(f"{home} is {whose}; nothing was changed")
            error.hint = f"each party has a home of its own: give this {party} another --home"
            raise error
        said = settings.server_url if name is None else own.url if own else None
        if said != url:
            error = ParameterError(
                f"{path} says this {party} is at {said}, not {url}; nothing was changed"
            )
            error.hint = f"edit [{section}] url, host and port there, or use another --home"
            raise error
        if "[tls]" in extra and settings.tls_cert is None:
            error = ParameterError(f"{path} names no TLS certificate; nothing was changed")
            error.hint = "add [tls] cert and key to it by hand (see docs/deployment.md)"
            raise error
        return
    host, port = address_of(url)
    lines = [f"# Where this {party} listens; edit host to bind another address.", f"[{section}]"]
    if name is not None:
        lines.append(f'name = "{name}"')
    lines += [f'url = "{url}"', f'host = "{host}"', f"port = {port}", *extra, ""]
    home.mkdir(parents=True, exist_ok=True)
    # Private: it may name a database URL with its password in it.
    write_atomic(path, "\n".join(lines).encode(), private=True)
