"""A custodian: keeps one share per message, sealed, and releases it only as the policy says.

A deposit arrives sealed to this custodian (HPKE); the custodian opens it
once, to check it against the digest the sender will sign, and stores it
sealed as it came. A release opens it again and seals it to the recipient.
Every deposit, release, refusal, approval and deletion goes into the
hash-chained audit log in the same transaction as the change it records.
"""

from __future__ import annotations

import time

from flask import Flask
from sqlalchemy.engine import Engine

from ..config import Settings
from ..errors import IdentityError
from ..identity import PublicIdentity, load_or_create, load_public
from ..service.app import create_app, log_swept
from ..service.storage import open_database
from . import views
from .tables import nonces, revocations, schema

__all__ = ["create_custodian_app", "load_operator"]

#: A deposit is one sealed share and its policy: small.
MAX_BODY_BYTES = 1024 * 1024


def load_operator(settings: Settings, name: str) -> PublicIdentity:
    """The public key of custodian ``name``'s operator, as its home was given it.

    Never made here: an operator makes their own key on their own machine.
    """
    path = settings.custodian_dir(name) / "operator.pub"
    if not path.exists():
        raise IdentityError(
            f"custodian {name} has no operator: {path} is missing; it will not start without"
            " one. Have the operator run `securecomm keygen NAME` on their own machine and put"
            f" the NAME.pub it writes at {path} (for the local network, `securecomm init`"
            " writes it)"
        )
    return load_public(path)


def create_custodian_app(settings: Settings, name: str, *, engine: Engine | None = None) -> Flask:
    """Custodian ``name`` of ``settings``: its own identity (made on first start), its
    operator's public key (given, never made here), its database, and its views."""
    identity = load_or_create(settings.custodian_dir(name) / "identity.key", name)
    operator = load_operator(settings, name)
    db = engine or open_database(settings.custodian_database(name), schema)
    app = create_app(
        name,
        identity,
        db,
        nonces,
        revocations,
        revocations_path="/v1/revocations",
        max_body_bytes=MAX_BODY_BYTES,
        cors_origins=settings.allowed_origins(),
    )
    app.extensions["custodian"] = views.Custodian.of(name, identity, operator, db)
    log_swept(name, views.sweep_kept(db, int(time.time())))  # what a previous run left
    app.register_blueprint(views.bp)
    return app
