"""ServiceClient with the relay's key: a real relay (in-process, through httpx's WSGI
transport) and something in between that alters its answers. Every forgery is refused as
an AnswerSignatureError before any of it is used, errors included (spec §11.4)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from securecomm.client.flows import relay_key
from securecomm.client.transport import ServiceClient
from securecomm.client.trust import KnownKeys
from securecomm.errors import AnswerSignatureError, IdentityError, ServiceError
from securecomm.httpsig import ANSWER_HEADER, answer_binding, sign_answer
from securecomm.identity import Identity

from ._services import Service, make_envelope, relay, settings_for

ALICE = Identity.generate("alice")
BOB = Identity.generate("bob")
MALLORY = Identity.generate("relay")  # a key of its own under the relay's name

Alter = Callable[[httpx.Request, httpx.Response], httpx.Response]


class Between(httpx.BaseTransport):
    """A man in the middle: every answer goes through ``alter`` (None: passed on as is)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.alter: Alter | None = None
        self.seen: list[tuple[httpx.Request, httpx.Response]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        self.seen.append((request, response))
        return response if self.alter is None else self.alter(request, response)


def answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, content=body, headers={"Content-Type": "application/json", **(headers or {})}
    )


@pytest.fixture
def svc(tmp_path: Path) -> Service:
    return relay(settings_for(tmp_path))


@pytest.fixture
def wire(svc: Service) -> Between:
    return Between(httpx.WSGITransport(app=svc.app))


def client(svc: Service, wire: Between, who: Identity | None = BOB) -> ServiceClient:
    return ServiceClient("http://relay.test", "relay", who, transport=wire, answers=svc.public)


def post(svc: Service, wire: Between, *recipients: Identity) -> str:
    envelope = make_envelope(ALICE, list(recipients) or [BOB])
    client(svc, wire).request("POST", "/api/v1/messages", raw=envelope.to_bytes(), sign=False)
    return envelope.id


def inbox(svc: Service, wire: Between) -> list[str]:
    page = client(svc, wire).request("GET", "/api/v1/inbox", params={"limit": "100"}).json()
    return [m["id"] for m in page["messages"]]


def test_genuine_answers_pass_errors_included(svc: Service, wire: Between) -> None:
    message_id = post(svc, wire)
    assert inbox(svc, wire) == [message_id]
    got = client(svc, wire).request("GET", f"/api/v1/messages/{message_id}")
    assert got.status_code == 200
    with pytest.raises(ServiceError) as missing:
        client(svc, wire).request("GET", f"/api/v1/messages/{'0' * 32}")
    assert missing.value.code == "not_found"
    with pytest.raises(ServiceError) as unregistered:
        client(svc, wire, None).request("GET", "/api/v1/directory/nobody", sign=False)
    assert unregistered.value.code == "not_found"


def test_an_inbox_answer_replaced_by_an_empty_one_is_refused(svc: Service, wire: Between) -> None:
    post(svc, wire)
    wire.alter = lambda request, response: answer(
        200, b'{"messages":[],"next":null}\n', dict(response.headers)
    )
    with pytest.raises(AnswerSignatureError, match="not the one it signed"):
        inbox(svc, wire)


def test_an_inbox_answer_with_an_entry_removed_and_no_signature_is_refused(
    svc: Service, wire: Between
) -> None:
    kept, hidden = post(svc, wire), post(svc, wire)
    assert sorted(inbox(svc, wire)) == sorted([kept, hidden])

    def hide_one(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        page = json.loads(response.content)
        page["messages"] = [m for m in page["messages"] if m["id"] != hidden]
        return answer(200, json.dumps(page, sort_keys=True, separators=(",", ":")).encode())

    wire.alter = hide_one
    with pytest.raises(AnswerSignatureError, match="carries no Securecomm-Answer-Signature"):
        inbox(svc, wire)


def test_a_forged_no_such_message_is_refused_not_taken_for_the_relays(
    svc: Service, wire: Between
) -> None:
    message_id = post(svc, wire)
    wire.alter = lambda request, response: answer(
        404, b'{"code":"not_found","message":"no message for you"}\n'
    )
    with pytest.raises(AnswerSignatureError, match=r"\(HTTP 404\) carries no"):
        client(svc, wire).request("GET", f"/api/v1/messages/{message_id}")


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_front_s_unsigned_gateway_error_reads_as_unavailable_and_nothing_in_it_is_believed(
    svc: Service, wire: Between, status: int
) -> None:
    """nginx before the relay's replicas answers 502 itself when none can be reached: the
    client says the relay is unavailable (not that it was attacked), and takes no code or
    message from a body nobody signed."""
    message_id = post(svc, wire)
    wire.alter = lambda request, response: answer(
        status, b'{"code":"not_found","message":"no message for you"}\n'
    )
    with pytest.raises(ServiceError) as unavailable:
        client(svc, wire).request("GET", f"/api/v1/messages/{message_id}")
    assert unavailable.value.code == "unreachable"
    assert f"a proxy in front of it answered HTTP {status}" in str(unavailable.value)
    assert "no message for you" not in str(unavailable.value)


def test_the_relays_own_404_to_another_request_cannot_stand_for_this_one(
    svc: Service, wire: Between
) -> None:
    """A genuine, relay-signed "no message for you" (to a request for another id) replayed."""
    message_id = post(svc, wire)
    with pytest.raises(ServiceError):
        client(svc, wire).request("GET", f"/api/v1/messages/{'0' * 32}")
    _, recorded = wire.seen[-1]
    wire.alter = lambda request, response: answer(404, recorded.content, dict(recorded.headers))
    with pytest.raises(AnswerSignatureError, match="another request"):
        client(svc, wire).request("GET", f"/api/v1/messages/{message_id}")


def test_a_message_fetch_answered_with_another_messages_signed_answer_is_refused(
    svc: Service, wire: Between
) -> None:
    first, second = post(svc, wire), post(svc, wire)
    client(svc, wire).request("GET", f"/api/v1/messages/{first}")
    _, recorded = wire.seen[-1]
    wire.alter = lambda request, response: answer(200, recorded.content, dict(recorded.headers))
    with pytest.raises(AnswerSignatureError, match="its path, nonce differ"):
        client(svc, wire).request("GET", f"/api/v1/messages/{second}")


def test_a_directory_entry_fetched_for_another_name_with_the_clients_challenge(
    svc: Service, wire: Between
) -> None:
    """The middlebox forwards the client's challenge with another path: the relay signs
    mallory's entry with the client's nonce, and the path gives it away."""
    for who in (BOB, Identity.generate("mallory")):
        body = {"v": 1, "identity": who.public.to_json()}
        client(svc, wire, who).request("PUT", f"/api/v1/directory/{who.name}", body=body)
    inner = wire.inner

    def elsewhere(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        other = httpx.Request("GET", "http://relay.test/api/v1/directory/mallory")
        other.headers.update(request.headers)
        forwarded = inner.handle_request(other)
        forwarded.read()
        return answer(forwarded.status_code, forwarded.content, dict(forwarded.headers))

    wire.alter = elsewhere
    with pytest.raises(AnswerSignatureError, match="its path differs"):
        client(svc, wire, None).request("GET", "/api/v1/directory/bob", sign=False)


def test_a_directory_entry_signed_by_another_key_is_refused(svc: Service, wire: Between) -> None:
    body = {"v": 1, "identity": BOB.public.to_json()}
    client(svc, wire).request("PUT", "/api/v1/directory/bob", body=body)
    impostor = Identity.generate("bob")
    entry = {
        "identity": impostor.public.to_json(),
        "fingerprint": impostor.public.fingerprint_hex,
        "updated_at": 1,
    }
    forged = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"

    def resigned(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        binding = answer_binding(
            method=request.method,
            path=request.url.path,
            query=request.url.query.decode(),
            headers=dict(request.headers),
        )
        header = sign_answer(MALLORY, binding, status=200, body=forged)
        return answer(200, forged, {ANSWER_HEADER: header})

    wire.alter = resigned
    with pytest.raises(AnswerSignatureError, match="signed by another key") as caught:
        client(svc, wire, None).request("GET", "/api/v1/directory/bob", sign=False)
    assert MALLORY.public.short_fingerprint() in str(caught.value)


def test_a_forged_posting_receipt_is_refused(svc: Service, wire: Between) -> None:
    """The receipt names the right id and digest, but it is not the relay's word."""
    envelope = make_envelope(ALICE, [BOB])

    def unsigned(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        return answer(201, response.content)

    wire.alter = unsigned
    with pytest.raises(AnswerSignatureError, match=r"\(HTTP 201\) carries no"):
        client(svc, wire).request("POST", "/api/v1/messages", raw=envelope.to_bytes(), sign=False)


def test_a_client_without_the_relays_key_checks_nothing(svc: Service, wire: Between) -> None:
    wire.alter = lambda request, response: answer(200, b'{"messages":[],"next":null}\n')
    plain = ServiceClient("http://relay.test", "relay", BOB, transport=wire)
    assert plain.request("GET", "/api/v1/inbox").json() == {"messages": [], "next": None}
    assert ANSWER_HEADER not in wire.seen[-1][0].headers  # nor asks for a challenge answer


def test_no_relay_key_pinned_is_refused_with_a_hint(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with pytest.raises(IdentityError, match="no key is pinned for the relay") as caught:
        relay_key(settings)
    assert caught.value.hint is not None and "join" in caught.value.hint
    known = KnownKeys.load(tmp_path)
    known.pin(MALLORY.public)
    assert relay_key(settings, known) == MALLORY.public


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        (httpx.ReadTimeout, "http://alpha.test did not answer within 2.5 s"),
        (httpx.WriteTimeout, "http://alpha.test did not answer within 2.5 s"),
        (httpx.ConnectTimeout, "cannot reach http://alpha.test (ConnectTimeout)"),
        (httpx.ConnectError, "cannot reach http://alpha.test (ConnectError)"),
        (httpx.RemoteProtocolError, "cannot reach http://alpha.test (RemoteProtocolError)"),
    ],
)
def test_a_service_that_hangs_is_told_from_one_that_is_down(
    failure: type[httpx.TransportError], said: str
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise failure("on the way", request=request)

    client = ServiceClient(
        "http://alpha.test", "alpha", timeout=2.5, transport=httpx.MockTransport(answer)
    )
    with client, pytest.raises(ServiceError) as caught:
        client.request("GET", "/v1/identity", sign=False)
    assert (caught.value.code, caught.value.message) == ("unreachable", said)


def test_a_cookie_a_service_sets_is_never_sent_back() -> None:
    """One pool serves every identity of a process: a cookie kept from one caller's answer
    would travel on another's request."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={}, headers={"Set-Cookie": "session=alice; Path=/"})

    client = ServiceClient("http://alpha.test", "alpha", transport=httpx.MockTransport(answer))
    with client:
        client.request("GET", "/v1/identity", sign=False)
        client.request("GET", "/v1/identity", sign=False)
    assert len(seen) == 2
    assert all("cookie" not in request.headers for request in seen)


def test_a_plain_http_pool_loads_no_ca_and_would_refuse_any_certificate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loading the system's CAs cost a command-line process tens of milliseconds before its
    first request; a pool to an http:// URL never makes a TLS connection, so it gets a
    context that trusts nothing (were it ever used, every certificate is refused), while a
    pool to an https:// URL gets the trust anchor it was given."""
    from securecomm.client import transport

    asked: list[str | None] = []
    real = transport.tls_context

    def counted(trust: str | None = None) -> ssl.SSLContext:
        asked.append(trust)
        return real(trust)

    monkeypatch.setattr(transport, "tls_context", counted)
    plain = ServiceClient("http://127.0.0.1:9", "alpha")
    try:
        assert asked == []
        context = plain._transport._pool._ssl_context  # type: ignore[attr-defined]
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert context.cert_store_stats()["x509_ca"] == 0
    finally:
        plain.close()
    secure = ServiceClient("https://127.0.0.1:9", "alpha", trust=None)
    try:
        assert asked == [None]
        context = secure._transport._pool._ssl_context  # type: ignore[attr-defined]
        assert context is real(None)
    finally:
        secure.close()
