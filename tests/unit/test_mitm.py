"""The MITM tool's own parts: the leak detector, the field classifier, the bit flipper, and
what it does to an answer's signature."""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from securecomm import httpsig
from securecomm.identity import Identity
from securecomm.testing.mitm import Proxy, _flip_string, describe_json, encodings_of


@pytest.mark.parametrize("offset", [0, 1, 2, 3, 4, 5])
def test_every_encoding_of_a_secret_is_found_at_every_alignment(offset: int) -> None:
    secret = os.urandom(32)
    spellings = encodings_of(secret)
    prefix = os.urandom(offset)
    carriers = [
        prefix + secret,
        (prefix + secret).hex().encode(),
        (prefix + secret).hex().upper().encode(),
        base64.b64encode(prefix + secret),
        base64.urlsafe_b64encode(prefix + secret).rstrip(b"="),
        urllib.parse.quote_from_bytes(prefix + secret).encode(),
    ]
    for carrier in carriers:
        framed = b'{"x":"' + carrier + b'"}'
        assert any(spelling in framed for spelling in spellings), carrier


def test_unrelated_bytes_raise_no_alarm() -> None:
    secret = os.urandom(32)
    spellings = encodings_of(secret)
    for _ in range(200):
        noise = base64.b64encode(os.urandom(256)) + os.urandom(256).hex().encode()
        assert not any(spelling in noise for spelling in spellings)


def test_text_secret_spellings() -> None:
    spellings = encodings_of(b"attack at dawn")
    assert b"attack at dawn" in spellings
    assert b"attack%20at%20dawn" in spellings
    assert b"61747461636b206174206461776e" in spellings


def test_describe_json_gives_the_seed_summary_and_classifies_fields() -> None:
    body = json.dumps(
        {
            "v": 1,
            "header": {
                "n": 5,
                "threshold": 3,
                "id": "ab" * 16,
                "sender": {"name": "alice", "sign": base64.b64encode(bytes(32)).decode()},
            },
            "ciphertext": "4teyEx+eeJT6BTsZAAAAAAAA",
            "nonce": "AAAAAAAAAAAAAAAA",
            "tag": "AAAAAAAAAAAAAAAAAAAAAA==",
            "signature": "x" * 88,
        }
    ).encode()
    lines = describe_json(body)
    assert "Ciphertext: 4teyEx+eeJT6BTsZ..." in lines
    assert "5 shares, threshold 3" in lines
    assert any(line.startswith("Nonce: ") for line in lines)
    assert any(line.startswith("Tag: ") for line in lines)
    joined = "\n".join(lines)
    assert "header.sender.sign: public key:" in joined
    assert "header.id: identifier:" in joined
    assert "header.sender.name: readable text: 'alice'" in joined
    assert "signature: signature:" in joined
    assert describe_json(b"not json") == ["(not JSON: 8 bytes)"]


def test_flip_string_keeps_the_spelling_valid_and_changes_one_bit() -> None:
    rng = random.Random(1)
    raw = os.urandom(48)
    text = base64.b64encode(raw).decode()
    flipped = base64.b64decode(_flip_string(text, rng))
    assert sum(bin(a ^ b).count("1") for a, b in zip(raw, flipped, strict=True)) == 1
    hexed = "0123456789abcdef" * 2
    changed = _flip_string(hexed, rng)
    assert len(changed) == 32 and changed != hexed
    assert sum(a != b for a, b in zip(hexed, changed, strict=True)) == 1
    assert all(c in "0123456789abcdef" for c in changed)


# What the proxy does to the relay's answer signature (spec §11.4)


@pytest.fixture
def upstream() -> Iterator[str]:
    """A stand-in relay: answers {"n": <count>} with a signature header naming the count."""
    count = itertools.count(1)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            n = next(count)
            body = json.dumps({"n": n, "pad": "abcdefgh"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header(httpsig.ANSWER_HEADER, f"signature-{n}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _get(proxy: Proxy, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(f"{proxy.url}/api/v1/inbox", headers=headers or {})


def test_unsign_removes_the_answer_signature_only(upstream: str) -> None:
    with Proxy(upstream, mode="unsign", direction="response") as proxy:
        answer = _get(proxy)
    assert httpsig.ANSWER_HEADER not in answer.headers
    assert answer.json()["n"] == 1
    assert [a.detail for a in proxy.alterations] == ["the answer's signature removed"]


def test_a_whole_answer_swapped_in_brings_its_recorded_signature(upstream: str) -> None:
    with Proxy(upstream, mode="swap", direction="response", match="inbox") as proxy:
        proxy.mode = "passive"
        first = _get(proxy)
        proxy.mode = "swap"
        second = _get(proxy)
    assert second.content == first.content
    assert second.headers[httpsig.ANSWER_HEADER] == "signature-1"
    assert proxy.alterations[0].detail.endswith("with the signature it was recorded with")


def test_an_altered_answer_keeps_strips_or_re_signs(upstream: str) -> None:
    with Proxy(upstream, mode="flip", direction="response", field_name="pad") as proxy:
        assert _get(proxy).headers[httpsig.ANSWER_HEADER] == "signature-1"
    with Proxy(upstream, mode="flip", direction="response", answer_signature="strip") as proxy:
        assert httpsig.ANSWER_HEADER not in _get(proxy).headers
    key = Identity.generate("relay")
    nonce = httpsig.new_nonce()
    with Proxy(upstream, mode="flip", direction="response", answer_signature=key) as proxy:
        answer = _get(proxy, {httpsig.ANSWER_NONCE_HEADER: nonce})
    binding = httpsig.AnswerBinding("GET", "/api/v1/inbox", "", nonce, None)
    values = answer.headers.get_list(httpsig.ANSWER_HEADER)
    httpsig.verify_answer(key.public, values, binding, status=200, body=answer.content)
    assert key.public.short_fingerprint() in proxy.alterations[0].detail


def test_unsign_and_answer_signature_are_checked() -> None:
    with pytest.raises(ValueError, match="unsign acts on answers"):
        Proxy("http://127.0.0.1:9", mode="unsign")
    with pytest.raises(ValueError, match="answer_signature"):
        Proxy("http://127.0.0.1:9", answer_signature="keep")
