"""Bad input against both services: always a 4xx JSON {"code", "message"}, never a 500.

Also the access log: one JSON line per request, never a body or a header value.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from securecomm import canonical
from securecomm.config import Settings
from securecomm.identity import Identity
from securecomm.relay.app import create_relay_app

from ._services import (
    CUSTODIANS,
    Reply,
    Service,
    access_log,
    custodian,
    custodian_identities,
    custody_draft,
    deposit_request,
    make_envelope,
    operator,
    relay,
    release_body,
    settings_for,
)
from ._vectors import load

CANONICAL = load("canonical.json")
ALICE = Identity.generate("alice")
BOB = Identity.generate("bob")


def assert_json_error(r: Reply, status: int | None = None, code: str | None = None) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.data[:300])
    assert b"Traceback" not in r.data
    assert r.mimetype == "application/json", r.data[:300]
    body = json.loads(r.data)
    assert isinstance(body, dict)
    assert set(body) == {"code", "message"}, body
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in body["message"]
    if status is not None:
        assert r.status_code == status, body
    if code is not None:
        assert body["code"] == code, body


@dataclass
class Target:
    """A JSON endpoint, a valid body for it, and who signs (None: unsigned)."""

    service: Service
    method: str
    path: str
    valid: dict[str, Any]
    signer: Identity | None
    b64_field: Callable[[dict[str, Any]], None] | None  # None: the body has no base64

    def send(self, data: bytes, content_type: str = "application/json") -> Reply:
        headers = (
            self.service.headers(self.signer, self.method, self.path, data)
            if self.signer is not None
            else None
        )
        return self.service.send(
            self.method, self.path, data, headers=headers, content_type=content_type
        )

    def valid_bytes(self) -> bytes:
        return canonical.dumps(self.valid)


def _set(path: list[str], value: object) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        for key in path[:-1]:
            body = body[key]
        body[path[-1]] = value

    return change


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def settings(home: Path) -> Settings:
    return settings_for(home)


@pytest.fixture(scope="module")
def relay_svc(settings: Settings) -> Service:
    return relay(settings)


@pytest.fixture(scope="module")
def alpha(settings: Settings) -> Service:
    return custodian(settings, "alpha")


TARGETS = ["relay-envelope", "relay-directory", "custodian-deposit", "custodian-release"]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest, relay_svc: Service, alpha: Service) -> Target:
    if request.param == "relay-envelope":
        return Target(
            relay_svc,
            "POST",
            "/api/v1/messages",
            make_envelope(ALICE, [BOB]).to_json(),
            None,
            _set(["nonce"], "not base64!"),
        )
    if request.param == "relay-directory":
        return Target(
            relay_svc,
            "PUT",
            "/api/v1/directory/bob",
            {"v": 1, "identity": BOB.public.to_json()},
            BOB,
            _set(["identity", "sign"], "***="),
        )
    others = [Identity.generate(n).public for n in CUSTODIANS[1:]]
    draft = custody_draft(ALICE, [BOB], [alpha.public, *others])
    if request.param == "custodian-deposit":
        return Target(
            alpha,
            "POST",
            "/v1/deposits",
            deposit_request(draft, 0, alpha.public, ALICE).to_json(),
            ALICE,
            _set(["sealed_share"], "%%%%"),
        )
    return Target(
        alpha,
        "POST",
        "/v1/releases",
        release_body(draft.header.id),
        BOB,
        None,
    )


# The body matrix


def test_valid_body_is_not_an_error_of_its_shape(target: Target) -> None:
    # Control: the matrix below changes one thing in a body the endpoint takes.
    r = target.send(target.valid_bytes())
    assert r.status_code in {200, 201, 404, 409}, r.json


@pytest.mark.parametrize(
    "data",
    [b'{"v": 1,', b"{", b"", b"nul", b'{"v": 1}}', b"\xff\xfe{}", b"[" * 100_000],
    ids=["truncated", "open-brace", "empty", "bad-literal", "trailing", "not-utf8", "deep"],
)
def test_malformed_json(target: Target, data: bytes) -> None:
    assert_json_error(target.send(data), 400)


@pytest.mark.parametrize("data", [b"[1,2]", b'"text"', b"null", b"17", b"true"])
def test_json_that_is_not_an_object(target: Target, data: bytes) -> None:
    assert_json_error(target.send(data), 400)


def test_duplicate_keys(target: Target) -> None:
    data = target.valid_bytes()
    assert data.startswith(b"{")
    duplicated = b'{"v":1,' + data[1:]
    assert_json_error(target.send(duplicated), 400)


def test_float(target: Target) -> None:
    data = target.valid_bytes()
    assert b'"v":1' in data
    assert_json_error(target.send(data.replace(b'"v":1', b'"v":1.0', 1)), 400)
    assert_json_error(target.send(data.replace(b'"v":1', b'"v":1e0', 1)), 400)
    assert_json_error(target.send(data.replace(b'"v":1', b'"v":NaN', 1)), 400)


def _respelled(value: Any) -> Any:
    """``value`` with every object's members in reverse canonical order."""
    if isinstance(value, dict):
        return {k: _respelled(value[k]) for k in sorted(value, reverse=True)}
    if isinstance(value, list):
        return [_respelled(v) for v in value]
    return value


@pytest.mark.parametrize("target", TARGETS[1:], indirect=True)
def test_a_json_body_is_read_in_any_spelling(target: Target) -> None:
    """Spec 1.4.1: spaces, member order, escapes and a final LF are the writer's choice."""
    body = json.loads(target.valid_bytes())
    data = (json.dumps(_respelled(body), indent=2, ensure_ascii=True) + "\r\n").encode()
    assert data != target.valid_bytes()
    r = target.send(data)
    assert r.status_code in {200, 201, 404}, r.json


def test_an_envelope_is_a_document_in_its_one_spelling(relay_svc: Service) -> None:
    """Spec 1.4: the envelope posted is canonical JSON; another spelling is refused."""
    body = make_envelope(ALICE, [BOB]).to_json()
    data = json.dumps(_respelled(body)).encode()
    assert_json_error(relay_svc.send("POST", "/api/v1/messages", data), 400, "non_canonical")
    assert relay_svc.send("POST", "/api/v1/messages", canonical.dumps(body)).status_code == 201


@pytest.mark.parametrize("target", TARGETS[1:], indirect=True)
@pytest.mark.parametrize(
    "case",
    [c for c in CANONICAL["bodies"] if c["expect"] != "ok"],
    ids=lambda c: c["description"],
)
def test_json_body_refusals_of_the_vectors(target: Target, case: dict[str, Any]) -> None:
    assert case["expect"] == "FormatError"
    assert_json_error(target.send(bytes.fromhex(case["text_hex"])), 400, "bad_json")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type(target: Target, content_type: str) -> None:
    assert_json_error(target.send(target.valid_bytes(), content_type), 415)


@pytest.mark.parametrize("target", TARGETS[:3], indirect=True)
def test_bad_base64_field(target: Target) -> None:
    body = json.loads(target.valid_bytes())
    assert target.b64_field is not None
    target.b64_field(body)
    assert_json_error(target.send(canonical.dumps(body)), 400)


def test_unknown_version(target: Target) -> None:
    body = json.loads(target.valid_bytes())
    body["v"] = 2
    assert_json_error(target.send(canonical.dumps(body)), 400)


def test_extra_and_missing_fields(target: Target) -> None:
    body = json.loads(target.valid_bytes())
    assert_json_error(target.send(canonical.dumps({**body, "zzz": 1})), 400)
    del body["v"]
    assert_json_error(target.send(canonical.dumps(body)), 400)


def test_envelope_with_altered_signature(relay_svc: Service) -> None:
    body = make_envelope(ALICE, [BOB]).to_json()
    signature = bytearray(canonical.loads(canonical.dumps(body))["signature"].encode())
    signature[5] = ord("A") if signature[5] != ord("A") else ord("B")
    body["signature"] = signature.decode()
    r = relay_svc.send("POST", "/api/v1/messages", canonical.dumps(body))
    assert_json_error(r, 400, "bad_signature")


@pytest.mark.parametrize(
    "message_id",
    ["not hex but 32 characters long!!", "0123456789ABCDEF0123456789ABCDEF", "x" * 31, 7],
)
def test_release_with_malformed_message_id(alpha: Service, message_id: object) -> None:
    # The message says "expected 32 hex digits"; the id is not looked up, nor logged.
    r = alpha.call(BOB, "POST", "/v1/releases", {"v": 1, "message_id": message_id})
    assert_json_error(r, 400, "bad_field")


# Size limits


def test_relay_limit_comes_from_settings(home: Path) -> None:
    envelope = make_envelope(ALICE, [BOB]).to_bytes()
    settings = settings_for(home / "small", max_envelope_bytes=len(envelope) - 1)
    svc = Service(app := create_relay_app(settings), app.test_client(), "relay")
    assert_json_error(svc.send("POST", "/api/v1/messages", envelope), 413, "too_large")
    assert_json_error(svc.send("POST", "/api/relay", envelope), 413, "too_large")
    exact = settings_for(home / "exact", max_envelope_bytes=len(envelope))
    svc = Service(app := create_relay_app(exact), app.test_client(), "relay")
    assert svc.send("POST", "/api/v1/messages", envelope).status_code == 201


def test_custodian_oversize_body(alpha: Service) -> None:
    data = b'{"v":1,"pad":"' + b"x" * (1024 * 1024) + b'"}'
    for path in ("/v1/deposits", "/v1/releases"):
        headers = alpha.headers(BOB, "POST", path, data)
        r = alpha.send("POST", path, data, headers=headers)
        assert_json_error(r, 413, "too_large")


# Signed-request refusals, on both services


@dataclass
class Signed:
    service: Service
    method: str
    path: str
    body: bytes


@pytest.fixture(params=["relay", "custodian"])
def signed(request: pytest.FixtureRequest, relay_svc: Service, alpha: Service) -> Signed:
    if request.param == "relay":
        return Signed(relay_svc, "GET", "/api/v1/inbox", b"")
    return Signed(alpha, "POST", "/v1/releases", canonical.dumps(release_body("0" * 32)))


def _send(s: Signed, headers: dict[str, str]) -> Reply:
    return s.service.send(s.method, s.path, s.body or None, headers=headers)


def test_signed_control_is_accepted(signed: Signed) -> None:
    r = _send(signed, signed.service.headers(BOB, signed.method, signed.path, signed.body))
    assert r.status_code in {200, 404}, r.json


def test_altered_signature_bytes(signed: Signed) -> None:
    headers = signed.service.headers(BOB, signed.method, signed.path, signed.body)
    value = headers["Signature"]
    start = value.index(":") + 1
    flipped = "B" if value[start] == "A" else "A"
    headers["Signature"] = value[:start] + flipped + value[start + 1 :]
    assert_json_error(_send(signed, headers), 401, "bad_signature")


def test_stale_timestamp(signed: Signed) -> None:
    headers = signed.service.headers(
        BOB, signed.method, signed.path, signed.body, now=int(time.time() - 400)
    )
    assert_json_error(_send(signed, headers), 401, "stale_timestamp")


def test_future_timestamp(signed: Signed) -> None:
    headers = signed.service.headers(
        BOB, signed.method, signed.path, signed.body, now=int(time.time() + 400)
    )
    assert_json_error(_send(signed, headers), 401, "stale_timestamp")


def test_replayed_nonce(signed: Signed) -> None:
    headers = signed.service.headers(BOB, signed.method, signed.path, signed.body)
    first = _send(signed, headers)
    assert first.status_code in {200, 404}, first.json
    assert_json_error(_send(signed, headers), 401, "replayed_request")


def test_signed_for_another_audience(signed: Signed) -> None:
    other = "alpha" if signed.service.audience == "relay" else "relay"
    headers = signed.service.headers(BOB, signed.method, signed.path, signed.body, audience=other)
    assert_json_error(_send(signed, headers), 401, "wrong_audience")


def test_missing_signature_headers(signed: Signed) -> None:
    assert_json_error(_send(signed, {}), 401, "missing_signature")
    headers = signed.service.headers(BOB, signed.method, signed.path, signed.body)
    for name in list(headers):
        partial = {k: v for k, v in headers.items() if k != name}
        assert_json_error(_send(signed, partial), 401, "missing_signature")


@pytest.mark.parametrize("signed", ["custodian"], indirect=True)
def test_body_changed_after_signing(signed: Signed) -> None:
    headers = signed.service.headers(BOB, signed.method, signed.path, signed.body)
    altered = Signed(signed.service, signed.method, signed.path, signed.body.replace(b"0", b"1"))
    assert_json_error(_send(altered, headers), 401, "bad_digest")


def test_signed_for_another_path(signed: Signed) -> None:
    headers = signed.service.headers(BOB, signed.method, "/somewhere/else", signed.body)
    assert_json_error(_send(signed, headers), 401, "bad_signature")


@pytest.mark.parametrize(
    "header, value",
    [
        ("Signature-Input", "sig1=garbage"),
        ("Signature", "sig1=:not base64:"),
        ("Securecomm-Identity", "e30="),
    ],
)
def test_garbled_signature_headers(signed: Signed, header: str, value: str) -> None:
    headers = signed.service.headers(BOB, signed.method, signed.path, signed.body)
    headers[header] = value
    assert_json_error(_send(signed, headers), 401)


# Routing


@pytest.mark.parametrize("which", ["relay", "custodian"])
def test_unknown_route_and_wrong_method(which: str, relay_svc: Service, alpha: Service) -> None:
    svc = relay_svc if which == "relay" else alpha
    assert_json_error(svc.send("GET", "/no/such/thing"), 404, "not_found")
    assert_json_error(svc.send("DELETE", "/healthz"), 405, "method_not_allowed")
    path = "/api/v1/inbox" if which == "relay" else "/v1/deposits"
    assert_json_error(svc.send("PATCH", path, b"{}"), 405, "method_not_allowed")


def test_internal_error_is_a_bare_500(home: Path) -> None:
    settings = settings_for(home / "bug")
    app = create_relay_app(settings)
    marker = "secret-marker-4f1d"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError(marker)

    with access_log() as lines:
        r = Reply.of(app.test_client().get("/boom"))
    assert r.status_code == 500
    assert r.json == {"code": "internal_error", "message": r.json["message"]}
    assert marker.encode() not in r.data
    assert b"Traceback" not in r.data
    assert all(marker not in line for line in lines)
    assert any("RuntimeError" in line for line in lines)


# The access log


def test_access_log_one_line_per_request_and_never_a_body(relay_svc: Service) -> None:
    marker = "MARKER-5c0f1e7a9b"
    body = {"v": 1, "identity": BOB.public.to_json(), "note": marker}
    envelope = make_envelope(ALICE, [BOB], plaintext=marker.encode())
    with access_log() as lines:
        requests = [
            ("PUT", "/api/v1/directory/bob", 400, BOB),
            ("GET", "/api/v1/inbox", 200, BOB),
            ("GET", "/healthz", 200, None),
            ("POST", "/api/v1/messages", 201, None),
            ("GET", "/nope", 404, None),
        ]
        r = relay_svc.call(BOB, "PUT", "/api/v1/directory/bob", body)
        assert r.status_code == 400
        assert relay_svc.call(BOB, "GET", "/api/v1/inbox").status_code == 200
        assert relay_svc.send("GET", "/healthz").status_code == 200
        r = relay_svc.send(
            "POST",
            "/api/v1/messages",
            envelope.to_bytes(),
            headers={"X-Marker": marker, "Authorization": marker},
        )
        assert r.status_code == 201
        assert relay_svc.send("GET", "/nope").status_code == 404
    assert len(lines) == len(requests), lines
    for line, (method, path, status, who) in zip(lines, requests, strict=True):
        record = json.loads(line)
        assert "\n" not in line
        assert {"method", "path", "status", "ms", "caller"} <= set(record)
        assert record["method"] == method
        assert record["path"] == path
        assert record["status"] == status
        assert isinstance(record["ms"], int | float) and record["ms"] >= 0
        expected_caller = None if who is None else who.public.fingerprint_hex[:16]
        assert record["caller"] == expected_caller
    assert all(marker not in line for line in lines)
    assert all(envelope.to_json()["ciphertext"] not in line for line in lines)


def test_access_log_on_custodian(alpha: Service) -> None:
    marker = "MARKER-custodian-88d2"
    with access_log() as lines:
        r = alpha.call(BOB, "POST", "/v1/releases", {"v": 1, "message_id": marker})
        assert r.status_code == 400
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["service"] == "alpha"
    assert (record["method"], record["path"], record["status"]) == ("POST", "/v1/releases", 400)
    assert record["caller"] == BOB.public.fingerprint_hex[:16]
    assert marker not in lines[0]


def test_a_postgresql_url_without_its_driver_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from securecomm.errors import ParameterError
    from securecomm.service.storage import database_url

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    for url in ("postgresql://u@h/db", "postgres://u@h/db", "postgresql+psycopg://u@h/db"):
        with pytest.raises(ParameterError, match=r"securecomm\[postgres\]"):
            database_url(url)
    assert database_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


# A request's nonce is remembered in the transaction of what it changes (one commit), or
# after its view when that transaction fails or the view opens none: a copy of a request
# that was refused is refused as a replay too, whichever way the first one failed.


def _twice(service: Service, method: str, path: str, body: Any = None) -> tuple[Reply, Reply]:
    headers = service.headers(BOB, method, path, body)
    return service.send(method, path, body, headers=headers), service.send(
        method, path, body, headers=headers
    )


def test_a_copy_of_a_request_refused_before_any_transaction_is_a_replay(alpha: Service) -> None:
    first, copy = _twice(alpha, "POST", "/v1/releases", {"v": 1, "message_id": "not hex"})
    assert_json_error(first, 400, "bad_field")
    assert_json_error(copy, 401, "replayed_request")


def test_a_copy_of_a_request_refused_inside_its_transaction_is_a_replay(
    relay_svc: Service,
) -> None:
    first, copy = _twice(relay_svc, "GET", f"/api/v1/messages/{'0' * 32}")
    assert_json_error(first, 404, "not_found")
    assert_json_error(copy, 401, "replayed_request")


def test_a_copy_of_a_deposit_refused_as_a_duplicate_is_a_replay(alpha: Service) -> None:
    draft = custody_draft(
        ALICE, [BOB], [alpha.public, *(c.public for c in custodian_identities()[1:])]
    )
    body = deposit_request(draft, 0, alpha.public, ALICE).to_json()
    assert alpha.call(ALICE, "POST", "/v1/deposits", body).status_code == 201
    headers = alpha.headers(ALICE, "POST", "/v1/deposits", body)
    first = alpha.send("POST", "/v1/deposits", body, headers=headers)
    assert_json_error(first, 409, "duplicate_deposit")
    assert_json_error(
        alpha.send("POST", "/v1/deposits", body, headers=headers), 401, "replayed_request"
    )


def test_a_copy_of_a_request_that_succeeded_changes_nothing(
    alpha: Service, settings: Settings
) -> None:
    draft = custody_draft(
        ALICE, [BOB], [alpha.public, *(c.public for c in custodian_identities()[1:])]
    )
    body = deposit_request(draft, 0, alpha.public, ALICE).to_json()
    headers = alpha.headers(ALICE, "POST", "/v1/deposits", body)
    assert alpha.send("POST", "/v1/deposits", body, headers=headers).status_code == 201
    release = release_body(draft.header.id)
    first, copy = _twice(alpha, "POST", "/v1/releases", release)
    assert first.status_code == 200, first.json
    assert_json_error(copy, 401, "replayed_request")
    audit = alpha.call(operator(settings, "alpha"), "GET", "/v1/audit", query="limit=1000")
    events = [
        e["event"] for e in audit.json["entries"] if e["data"].get("message_id") == draft.header.id
    ]
    assert events == ["deposit", "release"]
