"""Signed answers (spec §11.4): what the relay binds an answer to, and one attack per
refusal of the client's check, in the order the spec gives them."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from securecomm import canonical
from securecomm._encoding import b64decode, b64encode
from securecomm.errors import AnswerSignatureError, SignatureError
from securecomm.httpsig import (
    ANSWER_HEADER,
    ANSWER_NONCE_HEADER,
    ANSWER_PURPOSE,
    AnswerBinding,
    answer_binding,
    sign_answer,
    sign_request,
    verify_answer,
)
from securecomm.identity import Identity

RELAY = Identity(
    "relay",
    Ed25519PrivateKey.from_private_bytes(bytes(range(64, 96))),
    X25519PrivateKey.from_private_bytes(bytes(range(96, 128))),
)
BOB = Identity.generate("bob")
MALLORY = Identity.generate("relay")  # a key of its own under the relay's name
NOW = 1_700_000_000
NONCE = "00112233445566778899aabbccddeeff"
BODY = b'{"messages":[],"next":null}\n'
BINDING = AnswerBinding("GET", "/api/v1/inbox", "limit=100", NONCE, BOB.public.fingerprint_hex)


def _signed(
    binding: AnswerBinding = BINDING, *, status: int = 200, body: bytes = BODY, by: Identity = RELAY
) -> str:
    return sign_answer(by, binding, status=status, body=body, now=NOW)


def _check(
    values: list[str], binding: AnswerBinding = BINDING, *, status: int = 200, body: bytes = BODY
) -> dict[str, object]:
    return verify_answer(RELAY.public, values, binding, status=status, body=body)


def _refused(fragment: str, values: list[str], **kwargs: Any) -> str:
    with pytest.raises(AnswerSignatureError) as caught:
        _check(values, **kwargs)
    message = str(caught.value)
    assert message.startswith("relay: "), message
    assert fragment in message, message
    return message


def _statement(value: str) -> dict[str, Any]:
    statement: dict[str, Any] = canonical.loads(b64decode(value, field="test"))
    return statement


def _encoded(statement: dict[str, Any]) -> str:
    return b64encode(canonical.dumps(statement))


def _resigned(statement: dict[str, Any], by: Identity = RELAY) -> str:
    unsigned = {k: v for k, v in statement.items() if k != "signature"}
    return _encoded(unsigned | {"signature": b64encode(by.sign(ANSWER_PURPOSE, unsigned))})


# What is signed


def test_the_statement_names_the_request_the_status_and_the_body() -> None:
    statement = _statement(_signed())
    assert statement == {
        "v": 1,
        "signer": RELAY.public.fingerprint_hex,
        "method": "GET",
        "path": "/api/v1/inbox",
        "query": "limit=100",
        "nonce": NONCE,
        "caller": BOB.public.fingerprint_hex,
        "status": 200,
        "body_digest": "PfQMrgu03bIly5lhMkRZxFONSY/HGAqyFk4F3sxvuq0=",
        "time": NOW,
        "signature": statement["signature"],
    }
    # Checked with: printf '{"messages":[],"next":null}\n' | openssl dgst -sha256 -binary | base64
    assert _check([_signed()]) == statement


def test_the_signature_is_ed25519_for_the_purpose_answer_only() -> None:
    statement = _statement(_signed())
    unsigned = {k: v for k, v in statement.items() if k != "signature"}
    signature = b64decode(statement["signature"], field="test", length=64)
    RELAY.public.verify(signature, "answer", unsigned)
    with pytest.raises(SignatureError):
        RELAY.public.verify(signature, "receipt", unsigned)


def test_an_empty_body_and_an_error_are_signed_like_any_answer() -> None:
    unsigned = dataclasses.replace(BINDING, caller=None)
    _check([_signed(unsigned, status=204, body=b"")], unsigned, status=204, body=b"")
    error = b'{"code":"not_found","message":"no message for you"}\n'
    _check([_signed(status=404, body=error)], status=404, body=error)


# What the relay binds an answer to


def test_a_signed_request_binds_its_own_nonce_and_keyid() -> None:
    headers = sign_request(
        BOB, method="GET", path="/api/v1/inbox", query="limit=100", audience="relay", nonce=NONCE
    )
    # A challenge beside a request signature changes nothing: the signed nonce wins.
    headers[ANSWER_NONCE_HEADER] = "ff" * 16
    binding = answer_binding(method="get", path="/api/v1/inbox", query="limit=100", headers=headers)
    assert binding == BINDING


def test_an_unsigned_request_binds_its_challenge() -> None:
    headers = {ANSWER_NONCE_HEADER.lower(): NONCE}
    binding = answer_binding(method="GET", path="/api/v1/directory/bob", query="", headers=headers)
    assert binding == AnswerBinding("GET", "/api/v1/directory/bob", "", NONCE, None)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {ANSWER_NONCE_HEADER: NONCE.upper()},
        {ANSWER_NONCE_HEADER: NONCE[:-1]},
        {ANSWER_NONCE_HEADER: f" {NONCE}"},
        {"Signature-Input": "sig1=junk"},
    ],
    ids=["none", "upper-case", "short", "space", "malformed-signature-input"],
)
def test_without_a_well_formed_nonce_the_answer_binds_none(headers: dict[str, str]) -> None:
    binding = answer_binding(method="GET", path="/api/v1/network", query="", headers=headers)
    assert (binding.nonce, binding.caller) == (None, None)


def test_a_request_whose_signature_fails_still_binds_what_it_claimed() -> None:
    """The answer says what was received (here: refused), not that it was accepted."""
    headers = sign_request(BOB, method="GET", path="/x", audience="relay", nonce=NONCE)
    headers["Signature"] = "sig1=:" + b64encode(bytes(64)) + ":"
    binding = answer_binding(method="GET", path="/x", query="", headers=headers)
    assert (binding.nonce, binding.caller) == (NONCE, BOB.public.fingerprint_hex)


# The client's check refuses, in order


def test_missing_or_repeated_header() -> None:
    assert "carries no Securecomm-Answer-Signature" in _refused("(HTTP 200)", [])
    _refused("carries 2 headers", [_signed(), _signed()])


@pytest.mark.parametrize(
    "value",
    [
        "not base64!",
        b64encode(b"{}")[:-1] + "x",  # not canonical base64
        b64encode(b'{ "v": 1}'),  # not canonical JSON
        b64encode(b"[1]"),
    ],
    ids=["not-base64", "non-canonical-base64", "non-canonical-json", "not-an-object"],
)
def test_malformed_header(value: str) -> None:
    _refused("is malformed", [value])


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("v", 2),
        ("signer", "AB" * 32),
        ("method", 7),
        ("nonce", "x" * 32),
        ("caller", "00" * 31),
        ("status", 99),
        ("status", True),
        ("body_digest", b64encode(bytes(31))),
        ("time", -1),
        ("signature", b64encode(bytes(63))),
        ("extra", 1),
    ],
)
def test_malformed_member(member: str, value: object) -> None:
    statement = _statement(_signed()) | {member: value}
    message = _refused("is malformed", [_encoded(statement)])
    assert str(value) not in message or len(str(value)) < 4  # quotes no value


def test_missing_member() -> None:
    statement = _statement(_signed())
    del statement["time"]
    _refused("is malformed", [_encoded(statement)])


def test_signed_by_another_key() -> None:
    message = _refused("signed by another key", [_signed(by=MALLORY)])
    assert MALLORY.public.short_fingerprint() in message
    assert RELAY.public.short_fingerprint() in message


def test_another_key_that_claims_the_relay_as_signer_does_not_verify() -> None:
    statement = _statement(_signed(by=MALLORY)) | {"signer": RELAY.public.fingerprint_hex}
    _refused("does not verify", [_resigned(statement, MALLORY)])


def test_an_altered_statement_does_not_verify() -> None:
    statement = _statement(_signed()) | {"time": NOW + 1}
    _refused("does not verify", [_encoded(statement)])


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"nonce": "ff" * 16}, "nonce"),
        ({"method": "DELETE"}, "method"),
        ({"path": "/api/v1/directory/mallory"}, "path"),
        ({"query": "limit=100&after=1:" + "0" * 32}, "query"),
        ({"caller": None}, "caller"),
        ({"caller": MALLORY.public.fingerprint_hex}, "caller"),
        ({"nonce": None, "caller": None}, "nonce, caller differ"),
    ],
)
def test_an_answer_to_another_request(change: dict[str, Any], named: str) -> None:
    """A genuine answer of the relay, replayed onto a request it does not answer."""
    other = dataclasses.replace(BINDING, **change)
    message = _refused("for another request", [_signed(other)])
    assert named in message


def test_another_status() -> None:
    """A genuine 200 presented as a 404 (or the other way round) is refused."""
    _refused("signed as HTTP 200, but came as 404", [_signed()], status=404)


@pytest.mark.parametrize(
    "body",
    [b"", b'{"messages":[],"next":null}', BODY + b" ", BODY.replace(b"null", b'"1:2"')],
    ids=["empty", "no-newline", "a-space-more", "another-value"],
)
def test_another_body(body: bytes) -> None:
    _refused("not the one it signed", [_signed()], body=body)


def test_refusals_come_in_the_specified_order() -> None:
    """Each step is reached only past the ones before: another key wins over another
    request, a bad signature over another body."""
    _refused(
        "signed by another key", [_signed(dataclasses.replace(BINDING, nonce=None), by=MALLORY)]
    )
    bad = _encoded(_statement(_signed()) | {"status": 404})
    _refused("does not verify", [bad], status=404, body=b"")
    _refused("for another request", [_signed(dataclasses.replace(BINDING, path="/"))], status=500)
    _refused("signed as HTTP 200", [_signed()], status=404, body=b"")


@given(body=st.binary(max_size=64), other=st.binary(max_size=64))
def test_only_the_signed_body_is_accepted(body: bytes, other: bytes) -> None:
    value = _signed(body=body)
    _check([value], body=body)
    if other != body:
        with pytest.raises(AnswerSignatureError):
            _check([value], body=other)


def test_the_service_is_named_and_the_hint_says_nothing_was_written() -> None:
    with pytest.raises(AnswerSignatureError) as caught:
        verify_answer(RELAY.public, [], BINDING, status=200, body=BODY, service="relay")
    assert caught.value.service == "relay"
    assert caught.value.hint is not None and "nothing was written" in caught.value.hint
    assert isinstance(caught.value, SignatureError)


def test_header_name() -> None:
    assert ANSWER_HEADER == "Securecomm-Answer-Signature"
    assert ANSWER_NONCE_HEADER == "Securecomm-Answer-Nonce"
