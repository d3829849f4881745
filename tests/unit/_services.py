"""Shared helpers for the service tests: apps on tmp_path homes, signed calls, envelopes.

Everything runs in-process through Flask's test client; nothing listens on a port.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import Headers
from werkzeug.test import TestResponse

from securecomm import httpsig
from securecomm.config import Settings, load_settings
from securecomm.custodian.app import create_custodian_app
from securecomm.envelope import Draft, Envelope, Policy, Receipt, prepare
from securecomm.identity import Identity, PublicIdentity
from securecomm.local.home import operator_name
from securecomm.protocol import DepositRequest
from tests.operators import provide_operator

CUSTODIANS = ("alpha", "bravo", "charlie", "delta", "echo")

Body = bytes | dict[str, Any] | None


def settings_for(home: Path, **changes: Any) -> Settings:
    """Settings for a fresh home, ignoring the process environment."""
    settings = load_settings(home, env={})
    return dataclasses.replace(settings, **changes) if changes else settings


def encode(body: Body) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


@dataclass(frozen=True)
class Reply:
    """What a test needs of a response, with ``json`` typed for use in tests."""

    status_code: int
    data: bytes
    headers: Headers
    mimetype: str

    @classmethod
    def of(cls, response: TestResponse) -> Reply:
        return cls(
            response.status_code, response.get_data(), response.headers, response.mimetype or ""
        )

    @property
    def json(self) -> Any:
        """The body as JSON; None unless the response says it is JSON."""
        return json.loads(self.data) if self.mimetype == "application/json" else None


@dataclass
class Service:
    """One app, its test client, and the audience name requests to it are signed for."""

    app: Flask
    client: FlaskClient
    audience: str

    @property
    def identity(self) -> Identity:
        identity: Identity = self.app.extensions["securecomm"]["identity"]
        return identity

    @property
    def public(self) -> PublicIdentity:
        return self.identity.public

    def headers(
        self,
        who: Identity,
        method: str,
        path: str,
        body: Body = None,
        *,
        query: str = "",
        audience: str | None = None,
        now: int | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        return httpsig.sign_request(
            who,
            method=method,
            path=path,
            query=query,
            body=encode(body),
            audience=audience or self.audience,
            now=now,
            nonce=nonce,
        )

    def send(
        self,
        method: str,
        path: str,
        body: Body = None,
        *,
        headers: dict[str, str] | None = None,
        query: str = "",
        content_type: str | None = "application/json",
    ) -> Reply:
        data = encode(body)
        response = self.client.open(
            path + (f"?{query}" if query else ""),
            method=method,
            data=data,
            headers=headers or {},
            content_type=content_type if body is not None else None,
        )
        return Reply.of(response)

    def call(
        self,
        who: Identity,
        method: str,
        path: str,
        body: Body = None,
        *,
        query: str = "",
        content_type: str | None = "application/json",
        audience: str | None = None,
        now: int | None = None,
    ) -> Reply:
        """A request signed by ``who`` for this service (or ``audience``), with a fresh nonce."""
        headers = self.headers(who, method, path, body, query=query, audience=audience, now=now)
        return self.send(
            method, path, body, headers=headers, query=query, content_type=content_type
        )


def relay(settings: Settings) -> Service:
    from securecomm.relay.app import create_relay_app

    app = create_relay_app(settings)
    return Service(app, app.test_client(), "relay")


def custodian(settings: Settings, name: str) -> Service:
    provide_operator(settings, name)
    app = create_custodian_app(settings, name)
    return Service(app, app.test_client(), name)


def operator(settings: Settings, name: str) -> Identity:
    """The operator key given to a custodian app before its first start."""
    return Identity.load(settings.home / "operators" / f"{operator_name(name)}.key")


# Envelopes for the relay: receipts issued directly by stand-in custodian identities.


def custodian_identities(names: Sequence[str] = CUSTODIANS) -> list[Identity]:
    return [Identity.generate(name) for name in names]


def draft_for(
    sender: Identity,
    recipients: Sequence[Identity],
    custodians: Sequence[Identity],
    *,
    threshold: int = 3,
    plaintext: bytes = b"hello",
    offline: bool = False,
) -> Draft:
    return prepare(
        plaintext,
        sender=sender.public,
        recipients=[r.public for r in recipients],
        custodians=[(c.name, None if offline else c.public.fingerprint) for c in custodians],
        threshold=threshold,
    )


def finish(
    draft: Draft, sender: Identity, custodians: Sequence[Identity], *, ref_prefix: str = "ref"
) -> Envelope:
    receipts = [
        Receipt.issue(
            c,
            i + 1,
            draft.header.message_id,
            f"{ref_prefix}{i}",
            draft.header.custodians[i].share_digest,
        )
        for i, c in enumerate(custodians)
    ]
    return draft.finish(sender, receipts)


def make_envelope(
    sender: Identity,
    recipients: Sequence[Identity],
    *,
    plaintext: bytes = b"hello",
) -> Envelope:
    custodians = custodian_identities()
    draft = draft_for(sender, recipients, custodians, plaintext=plaintext)
    return finish(draft, sender, custodians)


# Deposits for custodians.


def deposit_request(
    draft: Draft,
    position: int,
    custodian: PublicIdentity,
    sender: Identity,
    *,
    policy: Policy | None = None,
    digest_of: int | None = None,
) -> DepositRequest:
    """Share ``position`` (0-based) of ``draft``, sealed to ``custodian``.

    ``digest_of`` puts another share's digest in the request (a lying deposit).
    """
    header = draft.header
    return DepositRequest.seal(
        draft.shares[position],
        custodian=custodian,
        sender=sender.public,
        message_id=header.id,
        share_digest=header.custodians[position if digest_of is None else digest_of].share_digest,
        policy=header.policy if policy is None else policy,
        recipients=header.recipients,
    )


def custody_draft(
    sender: Identity,
    recipients: Sequence[Identity],
    custodians: Sequence[PublicIdentity],
    *,
    policy: Policy | None = None,
    plaintext: bytes = b"hello",
) -> Draft:
    return prepare(
        plaintext,
        sender=sender.public,
        recipients=[r.public for r in recipients],
        custodians=[(c.name, c.fingerprint) for c in custodians],
        threshold=3,
        policy=policy,
    )


def deposit(service: Service, draft: Draft, position: int, sender: Identity) -> Reply:
    request = deposit_request(draft, position, service.public, sender)
    return service.call(sender, "POST", "/v1/deposits", request.to_json())


def release_body(message_id: str) -> dict[str, Any]:
    return {"v": 1, "message_id": message_id}


# The access log.


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


@contextmanager
def access_log() -> Iterator[list[str]]:
    """Every message written to ``securecomm.access`` inside the block."""
    logger = logging.getLogger("securecomm.access")
    handler = ListHandler()
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
