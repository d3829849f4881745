"""Signed HTTP requests: known answers, round trips, and one attack per refusal code."""

from __future__ import annotations

import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from securecomm import canonical
from securecomm._encoding import b64decode, b64encode
from securecomm.errors import ParameterError, RequestAuthError
from securecomm.httpsig import (
    COMPONENTS,
    IDENTITY_HEADER,
    SIGNATURE_LABEL,
    SKEW_SECONDS,
    VerifiedRequest,
    content_digest,
    sign_request,
    verify_request,
)
from securecomm.identity import Identity, PublicIdentity

ALICE = Identity(
    "alice",
    Ed25519PrivateKey.from_private_bytes(bytes(range(32))),
    X25519PrivateKey.from_private_bytes(bytes(range(32, 64))),
)
ALICE_KEYID = "24f05c4ac1815e81c2e90322342a02641c59d2d548057269cee8ecc2505aa15b"
MALLORY = Identity.generate("mallory")
NOW = 1_700_000_000
NONCE = "00112233445566778899aabbccddeeff"
REQUEST: dict[str, Any] = {
    "method": "POST",
    "path": "/api/v1/messages",
    "query": "to=bob",
    "body": b'{"v":1}',
}
HEADER_NAMES = ("Content-Digest", "Signature-Input", "Signature", IDENTITY_HEADER)
CODES = {
    "missing_signature",
    "bad_signature_input",
    "bad_identity",
    "wrong_audience",
    "stale_timestamp",
    "bad_digest",
    "bad_signature",
}


def _sign(identity: Identity = ALICE, *, audience: str = "relay", **changes: Any) -> dict[str, str]:
    request = {**REQUEST, **changes}
    return sign_request(identity, audience=audience, now=NOW, nonce=NONCE, **request)


def _verify(
    headers: dict[str, str], *, audience: str = "relay", now: int = NOW, **changes: Any
) -> VerifiedRequest:
    request = {**REQUEST, **changes}
    return verify_request(headers=headers, audience=audience, now=now, **request)


def _refused(code: str, headers: dict[str, str], **kwargs: Any) -> str:
    with pytest.raises(RequestAuthError) as caught:
        _verify(headers, **kwargs)
    assert caught.value.code == code, str(caught.value)
    return str(caught.value)


def _replace_input(headers: dict[str, str], old: str, new: str) -> dict[str, str]:
    assert old in headers["Signature-Input"]
    return {**headers, "Signature-Input": headers["Signature-Input"].replace(old, new)}


# Known answers


def test_constants() -> None:
    assert SKEW_SECONDS == 300
    assert SIGNATURE_LABEL == "sig1"
    assert COMPONENTS == ("@method", "@path", "@query", "content-digest")
    assert IDENTITY_HEADER == "Securecomm-Identity"


def test_content_digest_known_answers() -> None:
    # Checked with: printf '' | openssl dgst -sha256 -binary | base64
    assert content_digest(b"") == "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    assert content_digest(b'{"v":1}') == "sha-256=:r7+dDzVgsP13legcQqCnnua2/GfgZPd4Jq7mQsrSjZE=:"


def test_signature_base_known_answer() -> None:
    headers = sign_request(
        ALICE,
        method="post",
        path="/api/v1/messages",
        query="limit=10&after=x",
        body=b'{"v":1}',
        audience="relay",
        now=NOW,
        nonce=NONCE,
    )
    params = (
        '("@method" "@path" "@query" "content-digest");created=1700000000'
        ';nonce="00112233445566778899aabbccddeeff"'
        ';keyid="24f05c4ac1815e81c2e90322342a02641c59d2d548057269cee8ecc2505aa15b"'
        ';alg="ed25519";tag="securecomm/v1/relay"'
    )
    base = (
        '"@method": POST\n'
        '"@path": /api/v1/messages\n'
        '"@query": ?limit=10&after=x\n'
        '"content-digest": sha-256=:r7+dDzVgsP13legcQqCnnua2/GfgZPd4Jq7mQsrSjZE=:\n'
        f'"@signature-params": {params}'
    )
    assert set(headers) == set(HEADER_NAMES)
    assert headers["Signature-Input"] == "sig1=" + params
    assert headers["Content-Digest"] == "sha-256=:r7+dDzVgsP13legcQqCnnua2/GfgZPd4Jq7mQsrSjZE=:"
    assert headers["Signature"] == (
        "sig1=:+fVaqOwkIx8nhK+jWy8uNGQttUlObCWK+WpdR87Iw2nyMteTPDfl5zKwklZIJbS5eKSMqhDAk5zgmrO9i/uTDw==:"
    )
    signature = b64decode(headers["Signature"][6:-1], field="test", length=64)
    ALICE.public.signing_key.verify(signature, base.encode("ascii"))  # raises if not


def test_empty_query_is_a_lone_question_mark() -> None:
    headers = _sign(method="GET", query="", body=b"")
    base = (
        '"@method": GET\n'
        '"@path": /api/v1/messages\n'
        '"@query": ?\n'
        '"content-digest": sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:\n'
        '"@signature-params": ' + headers["Signature-Input"].removeprefix("sig1=")
    )
    signature = b64decode(headers["Signature"][6:-1], field="test", length=64)
    ALICE.public.signing_key.verify(signature, base.encode("ascii"))


def test_identity_header_is_canonical_json_of_the_public_identity() -> None:
    headers = _sign()
    data = b64decode(headers[IDENTITY_HEADER], field="test")
    assert data == canonical.dumps(ALICE.public.to_json())
    assert ALICE.public.fingerprint_hex == ALICE_KEYID


# Round trips


@pytest.mark.parametrize(
    ("method", "query", "body"),
    [
        ("GET", "", b""),
        ("GET", "after=abc&limit=10", b""),
        ("POST", "", b'{"recipients":["bob"],"v":1}'),
        ("POST", "dry_run=1", b'{"recipients":["bob"],"v":1}'),
    ],
)
def test_round_trip(method: str, query: str, body: bytes) -> None:
    request: dict[str, Any] = {
        "method": method,
        "path": "/api/v1/messages",
        "query": query,
        "body": body,
    }
    headers = sign_request(ALICE, audience="relay", **request)
    verified = verify_request(headers=headers, audience="relay", **request)
    assert verified.identity == ALICE.public
    assert re.fullmatch(r"[0-9a-f]{32}", verified.nonce)
    assert headers["Signature-Input"].count(verified.nonce) == 1


def test_verified_request_carries_time_and_nonce() -> None:
    verified = _verify(_sign())
    assert verified == VerifiedRequest(ALICE.public, NOW, NONCE)


def test_fresh_nonce_per_request() -> None:
    first = sign_request(ALICE, method="GET", path="/", audience="relay")
    second = sign_request(ALICE, method="GET", path="/", audience="relay")
    assert first["Signature-Input"] != second["Signature-Input"]


def test_method_is_compared_upper_case() -> None:
    assert _verify(_sign(method="post"), method="Post").created == NOW


@pytest.mark.parametrize(
    "transform", [str.lower, str.upper, str.swapcase], ids=["lower", "upper", "swapcase"]
)
def test_header_names_are_case_insensitive(transform: Any) -> None:
    headers = {transform(name): value for name, value in _sign().items()}
    assert _verify(headers).identity == ALICE.public


def test_extra_headers_are_ignored() -> None:
    headers = {**_sign(), "Content-Type": "application/json", "Host": "127.0.0.1:5000"}
    assert _verify(headers).nonce == NONCE


# Attacks, one refusal code each


@pytest.mark.parametrize("name", HEADER_NAMES)
def test_missing_header(name: str) -> None:
    headers = _sign()
    del headers[name]
    assert name.lower() in _refused("missing_signature", headers)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Signature-Input", "bad_signature_input"),
        ("Signature", "bad_signature_input"),
        (IDENTITY_HEADER, "bad_identity"),
        ("Content-Digest", "bad_digest"),
    ],
)
def test_header_given_twice(name: str, code: str) -> None:
    headers = _sign()
    _refused(code, {**headers, name.upper(): headers[name]})


@pytest.mark.parametrize(
    "change",
    [{"method": "PUT"}, {"path": "/api/v1/messages/other"}, {"query": "to=mallory"}, {"query": ""}],
    ids=["method", "path", "query", "query-dropped"],
)
def test_altered_request_target(change: dict[str, str]) -> None:
    _refused("bad_signature", _sign(), **change)


def test_altered_body_with_the_original_digest() -> None:
    message = _refused("bad_digest", _sign(), body=b'{"secret":2}')
    assert message == "Content-Digest does not match the body"


def test_altered_body_with_a_recomputed_digest() -> None:
    headers = {**_sign(), "Content-Digest": content_digest(b'{"v":2}')}
    _refused("bad_signature", headers, body=b'{"v":2}')


@pytest.mark.parametrize("skew", [-SKEW_SECONDS - 1, SKEW_SECONDS + 1])
def test_stale_timestamp(skew: int) -> None:
    message = _refused("stale_timestamp", _sign(), now=NOW + skew)
    assert "301 s" in message
    assert ("ago" in message) == (skew > 0)


@pytest.mark.parametrize("skew", [-SKEW_SECONDS, SKEW_SECONDS])
def test_timestamp_at_the_edge_of_the_window(skew: int) -> None:
    assert _verify(_sign(), now=NOW + skew).created == NOW


@pytest.mark.parametrize(("signed_for", "checked_by"), [("alpha", "relay"), ("relay", "bravo")])
def test_wrong_audience(signed_for: str, checked_by: str) -> None:
    _refused("wrong_audience", _sign(audience=signed_for), audience=checked_by)


def test_keyid_of_another_identity() -> None:
    headers = _replace_input(_sign(), ALICE_KEYID, MALLORY.public.fingerprint_hex)
    _refused("bad_identity", headers)


def test_identity_header_of_another_key_with_the_original_keyid() -> None:
    headers = {**_sign(), IDENTITY_HEADER: _sign(MALLORY)[IDENTITY_HEADER]}
    _refused("bad_identity", headers)


def test_identity_and_keyid_swapped_to_another_key() -> None:
    headers = _replace_input(_sign(), ALICE_KEYID, MALLORY.public.fingerprint_hex)
    headers[IDENTITY_HEADER] = _sign(MALLORY)[IDENTITY_HEADER]
    _refused("bad_signature", headers)


def test_signature_made_by_another_key() -> None:
    headers = {**_sign(), "Signature": _sign(MALLORY)["Signature"]}
    _refused("bad_signature", headers)


def test_same_name_other_key() -> None:
    impostor = Identity.generate("alice")
    headers = {**_sign(impostor), IDENTITY_HEADER: _sign()[IDENTITY_HEADER]}
    _refused("bad_identity", headers)


@pytest.mark.parametrize(
    "value",
    [
        b64encode(b"not json"),
        b64encode(b'{"v": 1}'),
        b64encode(canonical.dumps({"v": 2, "name": "alice"})),
        b64encode(canonical.dumps({**ALICE.public.to_json(), "name": "Alice"})),
        b64encode(canonical.dumps(ALICE.public.to_json()) + b"\n"),
        b64encode(canonical.dumps(ALICE.public.to_json())) + "=",
        b64encode(canonical.dumps(ALICE.public.to_json()))[:-1],
        "%%%",
        "",
    ],
)
def test_identity_header_that_is_not_a_public_identity(value: str) -> None:
    message = _refused("bad_identity", {**_sign(), IDENTITY_HEADER: value})
    assert "Alice" not in message


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"content-digest")', '"content-digest" "@authority")'),
        ('"@query" ', ""),
        ('"@method" "@path"', '"@path" "@method"'),
        ("sig1=", "sig2="),
        ("sig1=", " sig1="),
        (";created=", ";created=0"),
        (";created=1700000000", ';created="1700000000"'),
        (f'nonce="{NONCE}"', f'nonce="{NONCE.upper()}"'),
        (f'nonce="{NONCE}"', f'nonce="{NONCE[:-1]}"'),
        ('alg="ed25519"', 'alg="rsa-pss-sha512"'),
        ('alg="ed25519"', 'alg="ED25519"'),
        ('alg="ed25519"', "alg=25519"),
        ('tag="securecomm/v1/', 'tag="securecomm/v2/'),
        ('tag="securecomm/v1/relay"', 'tag="securecomm/v1/relay";expires=1700000300'),
        ('tag="securecomm/v1/relay"', 'tag="securecomm/v1/relay";'),
        ('tag="securecomm/v1/relay"', 'tag="securecomm/v1/relay"\n'),
        (";", ";;"),
    ],
)
def test_malformed_signature_input(old: str, new: str) -> None:
    _refused("bad_signature_input", _replace_input(_sign(), old, new))


@pytest.mark.parametrize("param", ["created", "nonce", "keyid", "alg", "tag"])
def test_missing_param(param: str) -> None:
    headers = _sign()
    match = re.search(f';{param}=("[^"]*"|[0-9]+)', headers["Signature-Input"])
    assert match is not None
    assert param in _refused("bad_signature_input", _replace_input(headers, match[0], ""))


@pytest.mark.parametrize("param", ["created", "nonce", "keyid", "alg", "tag"])
def test_duplicated_param(param: str) -> None:
    headers = _sign()
    match = re.search(f';{param}=("[^"]*"|[0-9]+)', headers["Signature-Input"])
    assert match is not None
    headers = _replace_input(headers, match[0], match[0] * 2)
    assert param in _refused("bad_signature_input", headers)


def test_params_in_another_order_are_signed_as_sent() -> None:
    headers = _replace_input(_sign(), ';alg="ed25519"', "")
    headers = _replace_input(headers, 'content-digest")', 'content-digest");alg="ed25519"')
    _refused("bad_signature", headers)  # parses, but it is not what was signed


@pytest.mark.parametrize(
    "value",
    ["", "sig1", "sig1=::", "sig1=:!!!!:", "sig2=:AAAA:", "sig1=:AAA=:", "sig1=AAAA", "garbage"],
)
def test_garbage_signature(value: str) -> None:
    _refused("bad_signature_input", {**_sign(), "Signature": value})


@pytest.mark.parametrize("length", [0, 63, 65])
def test_signature_of_wrong_length(length: int) -> None:
    value = f"sig1=:{b64encode(bytes(length))}:"
    assert f"length {length}" in _refused("bad_signature_input", {**_sign(), "Signature": value})


def test_signature_base64_not_canonical() -> None:
    good = _sign()["Signature"]
    assert good.endswith("w==:")
    _refused("bad_signature_input", {**_sign(), "Signature": good[:-4] + "x==:"})


def test_request_target_outside_visible_ascii() -> None:
    _refused("bad_signature", _sign(), path="/api/v1/messages\n")
    _refused("bad_signature", _sign(), path="/api/v1/méssages")


def test_refusals_come_in_the_specified_order() -> None:
    headers = _replace_input(_sign(audience="alpha"), ALICE_KEYID, MALLORY.public.fingerprint_hex)
    _refused("bad_identity", headers, now=NOW + 1000)
    _refused("wrong_audience", _sign(audience="alpha"), now=NOW + 1000, body=b"")
    _refused("stale_timestamp", _sign(), now=NOW + 1000, body=b"")
    _refused("bad_digest", _sign(), body=b"", method="PUT")


# Caller errors when signing


@pytest.mark.parametrize(
    "change",
    [
        {"path": "api/v1/messages"},
        {"path": "/a b"},
        {"path": "/é"},
        {"query": "a=1\nb=2"},
        {"method": "GET\n"},
        {"audience": "Relay"},
        {"audience": ""},
        {"nonce": "00"},
        {"nonce": NONCE.upper()},
        {"now": -1},
    ],
)
def test_sign_refuses_bad_arguments(change: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {**REQUEST, "audience": "relay", "now": NOW, **change}
    with pytest.raises(ParameterError):
        sign_request(ALICE, **arguments)


# Property: arbitrary header values are refused with RequestAuthError only

VALID = _sign()


def _header_value(name: str) -> st.SearchStrategy[str]:
    good = VALID[name]
    return st.one_of(
        st.just(good),
        st.text(),
        st.builds(
            lambda cut, text: good[:cut] + text + good[cut:],
            st.integers(0, len(good)),
            st.text(max_size=8),
        ),
    )


@given(st.fixed_dictionaries({name: _header_value(name) for name in HEADER_NAMES}))
def test_arbitrary_header_values_raise_only_request_auth_errors(headers: dict[str, str]) -> None:
    try:
        verified = _verify(headers)
    except RequestAuthError as exc:
        assert exc.code in CODES
    else:
        assert headers == VALID
        assert verified.identity == PublicIdentity.from_json(ALICE.public.to_json())


def test_messages_do_not_quote_header_values() -> None:
    long_name = "zzzzzzzz" * 100
    headers = _replace_input(_sign(), ";alg=", f';{long_name}="1";alg=')
    assert "zzzz" not in _refused("bad_signature_input", headers)
    identity = b64encode(canonical.dumps({**ALICE.public.to_json(), "name": long_name.upper()}))
    assert "ZZZZ" not in _refused("bad_identity", {**_sign(), IDENTITY_HEADER: identity})
