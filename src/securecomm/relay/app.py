"""The relay: stores sealed envelopes and a directory of public keys. Never a key, never a share.

Every envelope it accepts has been decoded under spec/format-v1.md and its
sender's signature checked; what it stores is the exact canonical bytes it
received, and it answers with their SHA-256 so the sender can compare the
relay's copy with its own.
"""

from __future__ import annotations

from flask import Flask
from sqlalchemy.engine import Engine

from ..config import Settings, request_limit_bytes
from ..identity import load_or_create
from ..service.app import create_app
from ..service.storage import open_database
from . import devices, streams, views, web
from .tables import nonces, revocations, schema
from .views import endorsement_body

__all__ = ["build_app", "create_relay_app", "endorsement_body"]


def create_relay_app(settings: Settings, *, engine: Engine | None = None) -> Flask:
    """The relay of ``settings``: its own identity (made on first start), its database,
    its API and the web page."""
    identity = load_or_create(settings.relay_dir() / "identity.key", "relay")
    db = engine or open_database(settings.relay_database(), schema)
    # Behind a proxy the page's origin is not the relay's own address: name it in web_origins
    # (or SERVER_URL, whose origin is the default).
    app = create_app(
        "relay",
        identity,
        db,
        nonces,
        revocations,
        revocations_path="/api/v1/revocations",
        # A stream's piece may be larger than the largest envelope: the envelope's own
        # limit is the view's to enforce then.
        max_body_bytes=request_limit_bytes(settings.max_envelope_bytes),
        cors_origins=settings.allowed_origins(),
    )
    app.extensions["relay"] = {
        "max_envelope_bytes": settings.max_envelope_bytes,
        "reserved_names": settings.party_names() | {identity.name},
    }
    app.extensions["page"] = web.Page.of(settings, identity.public)
    app.register_blueprint(views.bp)
    app.register_blueprint(devices.bp)
    streams.install(app, settings, db)
    app.register_blueprint(web.bp)
    return app


def build_app(home: str | None = None) -> Flask:
    """Entry point for a WSGI server: the relay app for HOME's settings."""
    from ..config import load_settings

    return create_relay_app(load_settings(home))
