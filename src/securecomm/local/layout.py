"""Where a data directory keeps each party's home: the paths alone, without what makes
them (:mod:`.home`), so a command that only acts from a home imports nothing more."""

from __future__ import annotations

from pathlib import Path

from ..identity import check_name

__all__ = [
    "PEOPLE_DIR",
    "operator_name",
    "party_home",
    "person_home",
    "person_homes",
    "user_key_path",
]

#: Where a data directory that holds several people keeps each one's own home.
PEOPLE_DIR = "people"


def operator_name(custodian: str) -> str:
    return f"{custodian}-operator"


def person_home(home: Path, name: str) -> Path:
    """Where ``name`` acts from: their own home ``HOME/people/NAME`` in a data directory
    that keeps several (the local network's), else ``home`` itself."""
    own = home / PEOPLE_DIR / check_name(name)
    return own if own.is_dir() else home


def person_homes(home: Path) -> list[Path]:
    """The homes a data directory keeps people in: its own, and each ``HOME/people/NAME``."""
    people = home / PEOPLE_DIR
    return [home, *(sorted(p for p in people.iterdir() if p.is_dir()) if people.is_dir() else [])]


def user_key_path(home: Path, name: str) -> Path:
    """A person's key file: in their own home, ``users/NAME.key``."""
    return person_home(home, name) / "users" / f"{check_name(name)}.key"


def party_home(home: Path, name: str) -> Path:
    """Where the local network keeps party ``name``'s own home: the relay's, a custodian's."""
    return home / check_name(name)
