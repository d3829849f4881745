"""The services' OpenAPI documents, checked against the running services.

The relay and five custodians run as real processes (conftest's ``stack``).
Each document must be what the service serves and valid OpenAPI 3.1. Then
schemathesis sends every operation generated requests, valid and invalid,
unsigned and signed, and every answer must be documented: no 5xx, a
documented status and content type, a body that fits the response schema.
Fuzzing rarely gets past a refusal, so a scripted walk through every success
path (deposit, release, approval, envelope, inbox, directory, devices) checks
those answers with the same checks.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import schemathesis
from flask import Flask
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from securecomm import canonical, httpsig
from securecomm._encoding import b64decode, b64encode
from securecomm.config import load_settings
from securecomm.custodian import openapi as custodian_openapi
from securecomm.custodian.app import create_custodian_app
from securecomm.devices import (
    Delegation,
    DeviceKeys,
    delegate,
    open_person_key,
    revoke,
    seal_person_key,
)
from securecomm.envelope import Envelope, Policy, Receipt, prepare, prepare_stream
from securecomm.errors import FormatError
from securecomm.identity import Identity, Keys, PublicIdentity
from securecomm.local.home import operator_name
from securecomm.protocol import DepositRequest, Release
from securecomm.relay import openapi as relay_openapi
from securecomm.relay.app import create_relay_app
from securecomm.service import openapi as service_openapi
from securecomm.stream import SEALED_CHUNK_BYTES
from tests.operators import provide_operator

from .conftest import Service, Stack

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    unsupported_method,  # a 405 must carry Allow (RFC 9110 section 15.5.6)
]

# Bounded and repeatable: a fixed seed, derandomized generation, valid and invalid
# data, no stateful phase (it needs links the documents do not declare).
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20250101,
        "generation": {"mode": "all", "max-examples": 30, "deterministic": True},
        "phases": {"stateful": {"enabled": False}},
    }
)
RELAY = schemathesis.openapi.from_dict(relay_openapi.DOCUMENT, config=CONFIG)
CUSTODIAN = schemathesis.openapi.from_dict(custodian_openapi.DOCUMENT, config=CONFIG)

F = TypeVar("F", bound=Callable[..., Any])
# schema.parametrize() is typed as returning a bare Callable; name what it does.
relay_cases: Callable[[F], F] = RELAY.parametrize()
custodian_cases: Callable[[F], F] = CUSTODIAN.parametrize()

AnyCase = schemathesis.Case[Any]
STRANGER = Identity.generate("stranger")


@dataclass(frozen=True)
class Signer:
    """A ``requests`` auth hook: signs each request as sent (spec section 11).

    ``requests`` calls it once the body and URL are final, so the signature
    covers exactly the bytes and path on the wire; the generated values of the
    four signature headers are replaced.
    """

    identity: Identity
    audience: str

    def __call__(self, request: Any) -> Any:
        path, _, query = request.path_url.partition("?")
        body = request.body or b""
        request.headers.update(
            httpsig.sign_request(
                self.identity,
                method=request.method,
                path=path,
                query=query,
                body=body.encode() if isinstance(body, str) else body,
                audience=self.audience,
            )
        )
        return request


def operator_of(stack: Stack, name: str) -> Identity:
    return Identity.load(stack.home / "operators" / f"{operator_name(name)}.key")


# The documents themselves.


@pytest.mark.parametrize(
    ("kind", "document"),
    [("relay", relay_openapi.DOCUMENT), ("custodian", custodian_openapi.DOCUMENT)],
)
def test_served_document_is_the_module_document(
    stack: Stack, kind: str, document: dict[str, Any]
) -> None:
    service = stack.relay if kind == "relay" else stack.custodians["alpha"]
    response = httpx.get(f"{service.url}/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == document
    served = schemathesis.openapi.from_dict(response.json(), config=CONFIG)
    served.validate()  # against the OpenAPI 3.1 meta-schema
    for path, method in _documented(document):  # each resolves: refs, parameters
        assert served[path][method].label == f"{method.upper()} {path}"


def test_the_validator_refuses_an_invalid_document() -> None:
    broken = {**relay_openapi.DOCUMENT, "paths": {"/x": {"get": {"responses": "none"}}}}
    with pytest.raises(Exception, match="responses"):
        schemathesis.openapi.from_dict(broken, config=CONFIG).validate()


ANY_BASE64 = re.compile(service_openapi.base64_string()["pattern"])


def test_base64_patterns_accept_exactly_what_the_decoder_accepts() -> None:
    alphabet = string.ascii_letters + string.digits + "+/"
    for length in range(0, 70):
        exact = re.compile(service_openapi.base64_string(length)["pattern"])
        text = b64encode(bytes(range(length)))
        assert exact.search(text) and ANY_BASE64.search(text)
        assert not exact.search(b64encode(bytes(length + 1)))
        # Every spelling of the last character: only the canonical one decodes.
        last = len(text.rstrip("=")) - 1
        for char in alphabet if length else ():
            variant = text[:last] + char + text[last + 1 :]
            try:
                b64decode(variant, field="test", length=length)
                canonical = True
            except FormatError:
                canonical = False
            assert bool(exact.search(variant)) == canonical, variant
            assert bool(ANY_BASE64.search(variant)) == canonical, variant


def _routes(app: Flask) -> set[tuple[str, str]]:
    """(path template, method) of every route, in OpenAPI's spelling."""
    return {
        (re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }


def test_every_route_is_documented(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, env={})
    provide_operator(settings, "alpha")
    for app, document in [
        (create_relay_app(settings), relay_openapi.DOCUMENT),
        (create_custodian_app(settings, "alpha"), custodian_openapi.DOCUMENT),
    ]:
        app.extensions["securecomm"]["engine"].dispose()
        assert _routes(app) == _documented(document)


# Generated requests against the live services.


@relay_cases
def test_relay_unsigned(case: AnyCase, stack: Stack) -> None:
    case.call_and_validate(base_url=stack.relay.url, checks=CHECKS)


@relay_cases
def test_relay_signed(case: AnyCase, stack: Stack) -> None:
    signer = Signer(STRANGER, "relay")
    case.call_and_validate(base_url=stack.relay.url, checks=CHECKS, auth=signer)


@custodian_cases
def test_custodian_unsigned(case: AnyCase, stack: Stack) -> None:
    case.call_and_validate(base_url=stack.custodians["alpha"].url, checks=CHECKS)


@custodian_cases
def test_custodian_signed_by_a_stranger(case: AnyCase, stack: Stack) -> None:
    signer = Signer(STRANGER, "alpha")
    case.call_and_validate(base_url=stack.custodians["alpha"].url, checks=CHECKS, auth=signer)


@custodian_cases
def test_custodian_signed_by_its_operator(case: AnyCase, stack: Stack) -> None:
    signer = Signer(operator_of(stack, "alpha"), "alpha")
    case.call_and_validate(base_url=stack.custodians["alpha"].url, checks=CHECKS, auth=signer)


# Every success path, scripted, under the same checks.


@dataclass
class Api:
    """Signed calls to one service; each answer is checked against the document."""

    service: Service
    audience: str
    schema: schemathesis.BaseSchema
    client: httpx.Client

    def call(
        self,
        as_: Keys | None,
        method: str,
        template: str,
        expect: int | tuple[int, ...],
        *,
        body: Any = None,
        raw: bytes | None = None,
        query: str = "",
        content_type: str = "application/json",
        **path_parameters: str,
    ) -> httpx.Response:
        path = template.format(**path_parameters)
        content = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if content else {}
        if as_ is not None:
            headers |= httpsig.sign_request(
                as_, method=method, path=path, query=query, body=content, audience=self.audience
            )
        url = f"{self.service.url}{path}" + (f"?{query}" if query else "")
        response = self.client.request(method, url, content=content, headers=headers)
        expected = expect if isinstance(expect, tuple) else (expect,)
        assert response.status_code in expected, (method, path, response.text)
        operation = self.schema[template][method]
        operation.Case(path_parameters=path_parameters).validate_response(response, checks=CHECKS)
        return response


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def test_success_paths_match_the_documents(stack: Stack, http: httpx.Client) -> None:
    alice, bob = Identity.generate("alice"), Identity.generate("bob")
    relay = Api(stack.relay, "relay", RELAY, http)
    alpha = Api(stack.custodians["alpha"], "alpha", CUSTODIAN, http)
    operator = operator_of(stack, "alpha")
    for api in (relay, alpha):
        api.call(None, "GET", "/healthz", 200)
        api.call(None, "GET", "/openapi.json", 200)
    relay.call(None, "GET", "/", 200)

    # Custodians: identities, then deposits of every share.
    custodians: dict[str, PublicIdentity] = {}
    for name, service in stack.custodians.items():
        api = Api(service, name, CUSTODIAN, http)
        answer = api.call(None, "GET", "/v1/identity", 200).json()
        custodians[name] = PublicIdentity.from_json(answer["identity"])

    def send(policy: Policy) -> tuple[Envelope, dict[str, str]]:
        draft = prepare(
            b"meet at noon",
            sender=alice.public,
            recipients=[bob.public],
            custodians=[(name, key.fingerprint) for name, key in custodians.items()],
            threshold=3,
            policy=policy,
        )
        receipts, refs = [], {}
        for position, (name, key) in enumerate(custodians.items()):
            deposit = DepositRequest.for_draft(draft, position, key, alice.public)
            api = Api(stack.custodians[name], name, CUSTODIAN, http)
            answer = api.call(alice, "POST", "/v1/deposits", 201, body=deposit.to_json()).json()
            receipt = Receipt.from_json(answer)
            receipt.verify(key)
            receipts.append(receipt)
            refs[name] = receipt.ref
            if name == "alpha":
                api.call(alice, "POST", "/v1/deposits", 409, body=deposit.to_json())
        return draft.finish(alice, receipts), refs

    free, _ = send(Policy())
    gated, _ = send(Policy(require_approval=True))
    refused, _ = send(Policy(require_approval=True))
    unsent, unsent_refs = send(Policy())

    # The relay: directory, envelope, inbox.
    relay.call(alice, "PUT", "/api/v1/directory/{name}", 201, body=_entry(alice), name="alice")
    relay.call(alice, "PUT", "/api/v1/directory/{name}", 200, body=_entry(alice), name="alice")
    relay.call(None, "GET", "/api/v1/directory/{name}", 200, name="alice")
    relay.call(None, "GET", "/api/v1/directory/{name}", 404, name="nobody")
    relay.call(bob, "PUT", "/api/v1/directory/{name}", 403, body=_entry(alice), name="alice")
    raw = free.to_bytes()
    stored = relay.call(None, "POST", "/api/v1/messages", 201, raw=raw).json()
    assert stored["digest"] == hashlib.sha256(raw).hexdigest()
    relay.call(None, "POST", "/api/v1/messages", 200, raw=raw)
    relay.call(None, "POST", "/api/relay", 200, raw=raw)
    relay.call(None, "POST", "/api/relay", 201, raw=gated.to_bytes())
    relay.call(None, "POST", "/api/v1/messages", 400, raw=raw + b" ")
    page = relay.call(bob, "GET", "/api/v1/inbox", 200, query="limit=1").json()
    assert len(page["messages"]) == 1 and page["next"]
    relay.call(bob, "GET", "/api/v1/inbox", 200, query=f"after={page['next']}")
    one = "/api/v1/messages/{message_id}"
    got = relay.call(bob, "GET", one, 200, message_id=free.id)
    assert got.content == raw
    relay.call(STRANGER, "GET", one, 404, message_id=free.id)
    relay.call(bob, "DELETE", one, 204, message_id=free.id)
    relay.call(alice, "DELETE", one, 204, message_id=gated.id)
    relay.call(bob, "GET", one, 404, message_id=free.id)

    # The relay: a payload stream (format v2), uploaded, posted with its document, read.
    draft = prepare_stream(
        3 * 65536,
        sender=alice.public,
        recipients=[bob.public],
        custodians=[(name, key.fingerprint) for name, key in custodians.items()],
        threshold=3,
    )
    sealed = b"".join(draft.seal([bytes(3 * 65536)]))
    upload, piece = "/api/v1/uploads/{message_id}", 2 * SEALED_CHUNK_BYTES
    opening = {"v": 2, "length": len(sealed)}
    mid = draft.header.id
    relay.call(alice, "PUT", upload, 201, body=opening, message_id=mid)
    relay.call(alice, "PUT", upload, 200, body=opening, message_id=mid)
    relay.call(bob, "PUT", upload, 409, body=opening, message_id=mid)
    octets = "application/octet-stream"
    for offset in range(0, len(sealed), piece):
        relay.call(
            alice, "POST", upload, 200, raw=sealed[offset : offset + piece],
            query=f"offset={offset}", content_type=octets, message_id=mid,
        )  # fmt: skip
    relay.call(
        alice, "POST", upload, 409, raw=sealed[:piece], query="offset=0",
        content_type=octets, message_id=mid,
    )  # fmt: skip
    assert relay.call(alice, "GET", upload, 200, message_id=mid).json()["received"] == len(sealed)
    relay.call(bob, "GET", upload, 404, message_id=mid)
    receipts = []
    for position, (name, key) in enumerate(custodians.items()):
        deposit = DepositRequest.for_draft(draft, position, key, alice.public)
        api = Api(stack.custodians[name], name, CUSTODIAN, http)
        receipts.append(
            Receipt.from_json(
                api.call(alice, "POST", "/v1/deposits", 201, body=deposit.to_json()).json()
            )
        )
    document = draft.finish(alice, receipts, hashlib.sha256(sealed).digest())
    relay.call(None, "POST", "/api/v1/messages", 201, raw=document.to_bytes())
    payload = "/api/v1/messages/{message_id}/payload"
    fetched = relay.call(bob, "GET", payload, 200, query=f"length={piece}", message_id=mid).content
    fetched += relay.call(bob, "GET", payload, 200, query=f"offset={piece}", message_id=mid).content
    assert fetched == sealed
    relay.call(bob, "GET", payload, 400, query="offset=1", message_id=mid)
    relay.call(STRANGER, "GET", payload, 404, message_id=mid)
    relay.call(alice, "DELETE", one, 204, message_id=mid)
    relay.call(alice, "PUT", upload, 201, body=opening, message_id="0" * 32)
    relay.call(alice, "DELETE", upload, 204, message_id="0" * 32)
    relay.call(alice, "DELETE", upload, 404, message_id="0" * 32)

    # A custodian: releases with and without approval, refusals, deletion, audit.
    released = alpha.call(bob, "POST", "/v1/releases", 200, body=_ask(free)).json()
    assert Release.from_json(released).open(bob, custodians["alpha"]).index == 1
    alpha.call(STRANGER, "POST", "/v1/releases", 403, body=_ask(free))
    rid = alpha.call(bob, "POST", "/v1/releases", 202, body=_ask(gated)).json()["release_id"]
    release = "/v1/releases/{release_id}"  # and its /approve, /deny
    alpha.call(bob, "GET", release, 202, release_id=rid)
    alpha.call(operator, "GET", release, 202, release_id=rid)
    listed = alpha.call(operator, "GET", "/v1/releases", 200).json()["releases"]
    assert [item["release_id"] for item in listed] == [rid]
    alpha.call(bob, "GET", "/v1/releases", 403)
    alpha.call(bob, "POST", release + "/approve", 403, release_id=rid)
    alpha.call(operator, "POST", release + "/approve", 200, release_id=rid)
    alpha.call(operator, "POST", release + "/deny", 409, release_id=rid)
    alpha.call(operator, "GET", release, 200, release_id=rid)
    alpha.call(bob, "GET", release, 200, release_id=rid)
    alpha.call(bob, "GET", release, 200, release_id=rid)  # kept for bob, given again
    alpha.call(bob, "DELETE", "/v1/releases", 400, query="message_id=nope")
    for _ in range(2):  # acknowledging twice is fine
        alpha.call(
            bob, "DELETE", "/v1/releases", 200, query=f"message_id={_ask(gated)['message_id']}"
        )
    alpha.call(bob, "GET", release, 410, release_id=rid)
    alpha.call(operator, "GET", "/v1/releases", 200, query="status=released")
    rid = alpha.call(bob, "POST", "/v1/releases", 202, body=_ask(refused)).json()["release_id"]
    alpha.call(operator, "POST", release + "/deny", 200, release_id=rid)
    alpha.call(bob, "GET", release, 403, release_id=rid)
    for who, status in [(alice, 204), (alice, 204), (bob, 404)]:  # deleting twice is fine
        alpha.call(who, "DELETE", "/v1/deposits/{ref}", status, ref=unsent_refs["alpha"])
    alpha.call(bob, "POST", "/v1/releases", 410, body=_ask(unsent))
    alpha.call(bob, "POST", "/v1/releases", 404, body={"v": 1, "message_id": "0" * 32})
    log = alpha.call(operator, "GET", "/v1/audit", 200).json()
    assert {entry["event"] for entry in log["entries"]} >= {"deposit", "release", "delete"}
    assert log["next"] is None
    first = alpha.call(operator, "GET", "/v1/audit", 200, query="limit=1").json()
    assert [entry["seq"] for entry in first["entries"]] == [1] and first["next"] == 1
    rest = alpha.call(operator, "GET", "/v1/audit", 200, query="after=1&limit=1000").json()
    assert first["entries"] + rest["entries"] == log["entries"]
    alpha.call(operator, "GET", "/v1/audit", 400, query="limit=1001")
    alpha.call(bob, "GET", "/v1/audit", 403)

    # Devices: bob adds one, which fetches its key and acts for him, until he revokes it.
    phone = Identity.generate("bob")
    fingerprint = phone.public.fingerprint_hex
    delegation = delegate(bob, phone.public, "phone", 3600)
    grant = {
        "v": 1,
        "delegation": delegation.to_json(),
        "sealed_key": b64encode(seal_person_key(bob, phone.public)),
    }
    devices = "/api/v1/directory/{name}/devices"
    device, key_path = devices + "/{device}", devices + "/{device}/key"
    relay.call(bob, "PUT", device, 404, body=grant, name="bob", device=fingerprint)
    relay.call(bob, "PUT", "/api/v1/directory/{name}", 201, body=_entry(bob), name="bob")
    relay.call(bob, "PUT", device, 201, body=grant, name="bob", device=fingerprint)
    relay.call(bob, "PUT", device, 200, body=grant, name="bob", device=fingerprint)
    relay.call(alice, "PUT", device, 403, body=grant, name="bob", device=fingerprint)
    listed = relay.call(None, "GET", devices, 200, name="bob").json()["devices"]
    assert listed == [{"delegation": delegation.to_json(), "revocation": None}]
    relay.call(None, "GET", devices, 404, name="nobody")
    fetched = relay.call(phone, "GET", key_path, 200, name="bob", device=fingerprint).json()
    relay.call(bob, "GET", key_path, 403, name="bob", device=fingerprint)
    sealed_key = b64decode(fetched["sealed_key"], field="sealed_key")
    person_key = open_person_key(sealed_key, phone, bob.public)
    acting = DeviceKeys(phone, Delegation.from_json(fetched["delegation"]), person_key)
    relay.call(acting, "GET", key_path, 200, name="bob", device=fingerprint)
    relay.call(acting, "GET", "/api/v1/inbox", 200)
    released = alpha.call(acting, "POST", "/v1/releases", 200, body=_ask(free)).json()
    assert Release.from_json(released).open(acting, custodians["alpha"]).index == 1
    relay.call(acting, "PUT", device, 403, body=grant, name="bob", device=fingerprint)
    revocation = {"v": 1, "revocation": revoke(bob, fingerprint).to_json()}
    web = relay.call(None, "GET", "/api/v1/web-config", 200).json()
    services = [
        (relay, "/api/v1/revocations", PublicIdentity.from_json(web["relay"])),
        (alpha, "/v1/revocations", custodians["alpha"]),
    ]
    for api, revocations, service_key in services:
        api.call(acting, "POST", revocations, 403, body=revocation)
        api.call(alice, "POST", revocations, 403, body=revocation)
        answer = api.call(bob, "POST", revocations, 201, body=revocation).json()
        service_key.verify(
            b64decode(answer["signature"], field="signature"), "revoked", answer["receipt"]
        )
        assert answer["receipt"] == {
            "v": 1,
            "service": api.audience,
            "person": bob.public.fingerprint_hex,
            "device": fingerprint,
        }
        assert api.call(bob, "POST", revocations, 200, body=revocation).json() == answer
    refusals = [
        relay.call(acting, "GET", "/api/v1/inbox", 401),
        alpha.call(acting, "POST", "/v1/releases", 401, body=_ask(free)),
        relay.call(acting, "GET", key_path, 401, name="bob", device=fingerprint),
        relay.call(phone, "GET", key_path, 403, name="bob", device=fingerprint),
        relay.call(bob, "PUT", device, 409, body=grant, name="bob", device=fingerprint),
    ]
    assert {answer.json()["code"] for answer in refusals} == {"device_revoked"}
    listed = relay.call(None, "GET", devices, 200, name="bob").json()["devices"]
    assert listed == [{"delegation": delegation.to_json(), "revocation": revocation["revocation"]}]


def _entry(identity: Identity) -> dict[str, Any]:
    return {"v": 1, "identity": identity.public.to_json()}


def _ask(envelope: Envelope) -> dict[str, Any]:
    return {"v": 1, "message_id": envelope.id}


# Inputs that made the relay answer 500 (fixed in b2fae1b), and one that still does.

_CURSOR_ID = "0" * 32


@pytest.mark.parametrize(
    "query",
    [
        "limit=%C2%B2",  # "²": str.isdigit() is true, int() raises ValueError
        f"after=%C2%B2:{_CURSOR_ID}",  # the same in the cursor
        f"after=99999999999999999999:{_CURSOR_ID}",  # OverflowError binding to SQLite
    ],
)
def test_inbox_refuses_numbers_int_cannot_read(
    stack: Stack, http: httpx.Client, query: str
) -> None:
    relay = Api(stack.relay, "relay", RELAY, http)
    relay.call(STRANGER, "GET", "/api/v1/inbox", 400, query=query)


def test_recipients_sharing_a_key(stack: Stack, http: httpx.Client) -> None:
    """Two recipient names on one key: the format refuses it (it gave a 500 once)."""
    dora, erin = Identity.generate("dora"), Identity.generate("erin")
    slots = [(name, bytes([i + 1]) * 32) for i, name in enumerate(("alpha", "bravo"))]
    draft = prepare(
        b"hi", sender=dora.public, recipients=[erin.public], custodians=slots, threshold=2
    )
    receipts = [  # format-valid; the relay checks the sender's signature only
        Receipt(slot.name, i + 1, draft.header.message_id, f"r{i}", slot.share_digest, bytes(64))
        for i, slot in enumerate(draft.header.custodians)
    ]
    document = draft.finish(dora, receipts).to_json()
    alias = {**document["header"]["recipients"][0], "name": "erin-work"}
    document["header"]["recipients"].append(alias)
    del document["signature"]
    document["signature"] = b64encode(dora.sign("envelope", document))
    relay = Api(stack.relay, "relay", RELAY, http)
    answer = relay.call(None, "POST", "/api/v1/messages", (400,), raw=canonical.dumps(document))
    assert answer.json()["code"] == "bad_field"
