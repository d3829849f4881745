"""For tests that run every service from one shared home (``tests/integration/conftest.py``
starts them that way, on free ports): make that home a client's too, as a client that
joined the network would be, pinning the keys the services made, and give it people.

The product never shares a home between parties (``securecomm init`` gives each its
own); a shared one is a test fixture's shortcut, which the services still accept."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from securecomm.client.trust import KnownKeys
from securecomm.config import load_settings
from securecomm.identity import Identity, load_or_create, load_public


def add_people(home: Path, users: Iterable[str] = ("alice", "bob")) -> dict[str, Identity]:
    """Pin the relay's and every custodian's key (made when each first started) and make
    each person's key under HOME/users; return the people."""
    settings = load_settings(home, env={})
    known = KnownKeys.load(home)
    known.pin(load_public(settings.relay_dir() / "identity.pub"))
    for custodian in settings.custodians:
        known.pin(load_public(settings.custodian_dir(custodian.name) / "identity.pub"))
    people = {name: load_or_create(home / "users" / f"{name}.key", name) for name in users}
    for person in people.values():
        known.pin(person.public)
    known.save()
    return people
