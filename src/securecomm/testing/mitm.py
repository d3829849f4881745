"""A man in the middle, for testing: a proxy that watches, reports and alters traffic.

It sits on one link (client to relay, or client to one custodian), forwards
every request upstream, and reports what it saw: each JSON field
classified (ciphertext, nonce, tag, sealed share, signature, public key,
identifier, digest, readable text) with a short preview, and an alarm if a
watched secret (a plaintext, a share, a key) shows up anywhere in a header
or a body, raw or as base64, base64url, hex or URL-encoded.

Active modes alter traffic the way an attacker on the wire could:

- ``flip``: flip one bit of a field (or of the body) and fix the
  Content-Digest, so only a signature or a seal can notice;
- ``swap``: give an exchange a field (or the whole answer) of an earlier one;
- ``replay``: send a request upstream a second time and record the answer;
- ``drop``: close the connection instead of answering;
- ``truncate``: cut a body in half;
- ``inject``: forge requests beside the real one: unsigned, stale, and
  signed by a stranger's key;
- ``unsign``: remove the relay's signature from an answer (spec §11.4),
  leaving its body as it was;
- ``drop-chunk``, ``reorder-chunks``, ``cut-chunk``, ``append-chunk``: on a body of
  sealed chunks (a version 2 stream's piece, uploaded or downloaded): leave out its
  second chunk, swap its first two, cut it at its last chunk boundary, or add a copy of
  its first chunk at its end (spec/format-v2.md 3.3).

An answer the relay signed keeps the relay's signature when it is altered
(which then no longer matches), unless the proxy is given
``answer_signature``: ``"strip"`` removes it, an identity re-signs the
altered answer for the request it answers, as someone holding that key (a
relay that lies, or a key of the attacker's own) would. A whole answer
swapped in for another brings the signature it was recorded with: an old
answer replayed as it was.

Each alteration is recorded with what the victim did. For an altered
request the victim is the service, and its answer is recorded; for an
altered answer the victim is the client, which the proxy cannot see: the
attack suite (tests/security) records the client's verdict itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from .. import httpsig, stream
from ..identity import Identity
from . import CHUNK_MODES, MODES

__all__ = ["MODES", "Alteration", "Exchange", "Proxy", "SharedCapture", "encodings_of"]

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "host",
    "content-length",
}
_KINDS = {
    "ciphertext": "ciphertext",
    "nonce": "nonce",
    "tag": "tag",
    "sealed_share": "sealed share",
    "signature": "signature",
    "endorsement": "signature",
    "sign": "public key",
    "kem": "public key",
    "key_commitment": "key commitment",
    "share_digest": "digest",
    "digest": "digest",
    "prev": "digest",
    "hash": "digest",
}
_IDENTIFIERS = {
    "id",
    "message_id",
    "ref",
    "release_id",
    "fingerprint",
    "recipient",
    "sender",
    "requester",
    "operator",
    "next",
    "new_fingerprint",
    "by",
}
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


def encodings_of(secret: bytes) -> list[bytes]:
    """The spellings of ``secret`` a careless system could leak: raw, hex, base64 and
    base64url at each of the three alignments it may sit at, URL-encoded."""
    spellings = {
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        urllib.parse.quote_from_bytes(secret).encode(),
    }
    for offset in range(3):
        padded = b"\x00" * offset + secret
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(padded).rstrip(b"=")
            # Drop the characters that mix in the padding bytes, and the last, partial group.
            start = (offset * 4 + 2) // 3
            stable = text[start : len(text) - (len(text) % 4 or 4)]
            if len(stable) >= 8:
                spellings.add(stable)
    return sorted((s for s in spellings if len(s) >= 4), key=len, reverse=True)


@dataclass
class Alteration:
    exchange: int
    mode: str
    direction: str  # "request" or "response"
    path: str
    detail: str
    victim: str  # "server" or "client"
    status: int | None = None  # the server's answer to an altered request
    code: str | None = None
    verdict: str = "unknown"  # "refused", "accepted", "no effect", or "unknown" (client side)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Exchange:
    number: int
    method: str
    path: str
    query: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    alarms: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "request_bytes": len(self.request_body),
            "response_bytes": len(self.response_body),
            "alarms": self.alarms,
        }


@dataclass
class SharedCapture:
    """What several proxies remember together, so an answer from one link can be
    swapped into another (one custodian's release served as another's)."""

    requests: list[tuple[str, bytes]] = field(default_factory=list)  # (path, body)
    responses: list[tuple[str, bytes]] = field(default_factory=list)
    #: The answer signature each recorded answer came with, by (path, body).
    answer_signatures: dict[tuple[str, bytes], str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _preview(value: str, width: int = 16) -> str:
    return value if len(value) <= width else value[:width] + "..."


def _classify(key: str, value: object) -> str:
    if key in _KINDS:
        return _KINDS[key]
    if key in _IDENTIFIERS:
        return "identifier"
    if isinstance(value, bool | int) or value is None:
        return "number" if isinstance(value, int) and not isinstance(value, bool) else "value"
    if isinstance(value, str) and _BASE64.fullmatch(value):
        return "opaque bytes"
    return "readable text"


def describe_json(body: bytes) -> list[str]:
    """Report lines for a JSON body: the seed's summary, then every field classified."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return [f"(not JSON: {len(body)} bytes)"] if body else []
    lines: list[str] = []
    if isinstance(value, dict) and isinstance(value.get("header"), dict):
        header = value["header"]
        for label, key in (("Ciphertext", "ciphertext"), ("Nonce", "nonce"), ("Tag", "tag")):
            if isinstance(value.get(key), str):
                lines.append(f"{label}: {_preview(value[key])}")
        if isinstance(header.get("n"), int):
            lines.append(f"{header['n']} shares, threshold {header.get('threshold')}")

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for key in sorted(node):
                walk(node[key], f"{path}.{key}" if path else key)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")
        else:
            key = path.rsplit(".", 1)[-1].split("[")[0]
            kind = _classify(key, node)
            shown = _preview(str(node)) if kind != "readable text" else repr(node)[:40]
            lines.append(f"  {path}: {kind}: {shown}")

    walk(value, "")
    return lines


def _string_fields(node: object, name: str | None) -> list[str]:
    """String values in a JSON document (of key ``name`` only, if given)."""
    found: list[str] = []

    def walk(item: object, key: str | None) -> None:
        if isinstance(item, dict):
            for k, v in item.items():
                walk(v, k)
        elif isinstance(item, list):
            for v in item:
                walk(v, key)
        elif isinstance(item, str) and len(item) >= 4 and (name is None or key == name):
            found.append(item)

    walk(node, None)
    return found


def _flip_string(value: str, rng: random.Random) -> str:
    """One bit flipped in the bytes a string stands for; the spelling stays valid."""
    if re.fullmatch(r"[0-9a-f]+", value):
        i = rng.randrange(len(value))
        return value[:i] + format(int(value[i], 16) ^ 1, "x") + value[i + 1 :]
    try:
        raw = base64.b64decode(value, validate=True)
        if base64.b64encode(raw).decode() == value and raw:
            changed = bytearray(raw)
            bit = rng.randrange(len(raw) * 8)
            changed[bit // 8] ^= 1 << (bit % 8)
            return base64.b64encode(bytes(changed)).decode()
    except (binascii.Error, ValueError):
        pass
    i = rng.randrange(len(value))
    return value[:i] + chr(ord(value[i]) ^ 1) + value[i + 1 :]


class Proxy:
    """One man in the middle between a client and ``upstream``.

    ``match`` (a regex on the path) and ``direction`` pick the exchanges an
    active mode alters; ``limit`` caps how many (None: all).
    """

    def __init__(
        self,
        upstream: str,
        *,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        mode: str = "passive",
        field_name: str | None = None,
        match: str | None = None,
        direction: str = "request",
        limit: int | None = None,
        watch: Iterable[bytes] = (),
        shared: SharedCapture | None = None,
        seed: int = 0,
        log: Callable[[str], None] | None = None,
        audience: str | None = None,
        answer_signature: Identity | str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        if direction not in {"request", "response"}:
            raise ValueError("direction: request or response")
        if mode in {"replay", "inject"} and direction != "request":
            raise ValueError(f"{mode} acts on requests: use direction='request'")
        if mode == "unsign" and direction != "response":
            raise ValueError("unsign acts on answers: use direction='response'")
        if isinstance(answer_signature, str) and answer_signature != "strip":
            raise ValueError("answer_signature: 'strip', an Identity, or None")
        self.upstream = upstream.rstrip("/")
        self.mode = mode
        self.field_name = field_name
        self.match = re.compile(match) if match else None
        self.direction = direction
        self.limit = limit
        self.watch = [(secret, encodings_of(secret)) for secret in watch]
        self.shared = shared or SharedCapture()
        self.rng = random.Random(seed)
        self.log = log or (lambda line: None)
        self.audience = audience  # the service behind, for forged requests
        self.answer_signature = answer_signature  # what becomes of an altered answer's
        self.exchanges: list[Exchange] = []
        self.alterations: list[Alteration] = []
        self._lock = threading.Lock()
        self._altered: set[int] = set()  # exchanges actually altered, for ``limit``
        self._http = httpx.Client(timeout=30.0)
        self._server = ThreadingHTTPServer(listen, self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # lifecycle

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Proxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # what it saw

    @property
    def alarms(self) -> list[str]:
        return [alarm for exchange in self.exchanges for alarm in exchange.alarms]

    def captured(self) -> bytes:
        """Every header and body that crossed this link, for leak checks."""
        parts: list[bytes] = []
        for exchange in self.exchanges:
            for headers in (exchange.request_headers, exchange.response_headers):
                parts.extend(f"{k}: {v}".encode() for k, v in headers.items())
            parts += [
                exchange.path.encode(),
                exchange.query.encode(),
                exchange.request_body,
                exchange.response_body,
            ]
        return b"\n".join(parts)

    def report(self) -> dict[str, Any]:
        return {
            "upstream": self.upstream,
            "mode": self.mode,
            "exchanges": [e.summary() for e in self.exchanges],
            "alterations": [a.to_json() for a in self.alterations],
            "alarms": self.alarms,
        }

    def _scan(self, exchange: Exchange) -> None:
        blobs = {
            "request headers": "\n".join(
                f"{k}: {v}" for k, v in exchange.request_headers.items()
            ).encode(),
            "request body": exchange.request_body,
            "path": (exchange.path + "?" + exchange.query).encode(),
            "response headers": "\n".join(
                f"{k}: {v}" for k, v in exchange.response_headers.items()
            ).encode(),
            "response body": exchange.response_body,
        }
        for number, (_secret, spellings) in enumerate(self.watch, start=1):
            for where, blob in blobs.items():
                if any(spelling in blob for spelling in spellings):
                    exchange.alarms.append(f"ALARM: watched secret #{number} in the {where}")

    def _selected(self, path: str) -> bool:
        if self.mode == "passive":
            return False
        if self.match is not None and not self.match.search(path):
            return False
        with self._lock:
            return self.limit is None or len(self._altered) < self.limit

    # forwarding

    def _forward(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> httpx.Response:
        return self._http.request(method, self.upstream + target, headers=headers, content=body)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                path, _, query = self.path.partition("?")
                proxy._exchange(self, self.command, path, query, headers, body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle  # noqa: N815

        return Handler

    def _exchange(
        self,
        handler: BaseHTTPRequestHandler,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        """One request through the proxy: recorded, attacked as the mode says, forwarded,
        its answer recorded and attacked, then answered."""
        exchange = self._record_exchange(method, path, query, headers, body)
        selected = self._selected(path)
        alter_request = selected and self.direction == "request"
        target = path + (f"?{query}" if query else "")
        if alter_request and self.mode == "drop":
            self._record(
                Alteration(
                    exchange.number,
                    "drop",
                    "request",
                    path,
                    "connection closed, request not forwarded",
                    "server",
                    verdict="no effect",
                )
            )
            self.log(f"#{exchange.number} {method} {path}: DROPPED")
            self._scan(exchange)
            handler.close_connection = True
            return
        sent_headers, sent_body, detail = headers, body, ""
        if alter_request and self.mode in {"flip", "truncate", "swap", *CHUNK_MODES}:
            sent_headers, sent_body, detail, target = self._alter(target, headers, body)
        try:
            upstream = self._forward(method, target, sent_headers, sent_body)
        except httpx.HTTPError as exc:
            self._scan(exchange)
            gone = {"code": "bad_gateway", "message": f"upstream: {type(exc).__name__}"}
            self._answer(
                handler, 502, {"Content-Type": "application/json"}, json.dumps(gone).encode()
            )
            return
        response_headers = {
            k: v
            for k, v in upstream.headers.items()
            if k.lower() not in _HOP_BY_HOP | {"content-encoding"}
        }
        exchange.status = upstream.status_code
        exchange.response_headers = dict(response_headers)
        exchange.response_body = upstream.content
        if alter_request:
            self._record_request_attack(exchange, upstream, detail, target)
        answered = self._answer_as_attacked(handler, exchange, selected)
        if answered is None:
            return  # the answer was withheld
        self._scan(exchange)
        self._log(exchange)
        self._answer(handler, upstream.status_code, *answered)

    def _record_exchange(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Exchange:
        with self._lock:
            exchange = Exchange(len(self.exchanges) + 1, method, path, query, dict(headers), body)
            self.exchanges.append(exchange)
        with self.shared.lock:
            self.shared.requests.append((path, body))
        return exchange

    def _record_request_attack(
        self, exchange: Exchange, upstream: httpx.Response, detail: str, target: str
    ) -> None:
        """What the service made of an altered, replayed or injected request."""
        number, method, path = exchange.number, exchange.method, exchange.path
        if detail:
            self._record(
                Alteration(
                    number,
                    self.mode,
                    "request",
                    path,
                    detail,
                    "server",
                    upstream.status_code,
                    _code(upstream.content),
                    "refused" if upstream.status_code >= 400 else "accepted",
                )
            )
        if self.mode == "replay":
            again = self._forward(method, target, exchange.request_headers, exchange.request_body)
            self._record(
                Alteration(
                    number,
                    "replay",
                    "request",
                    path,
                    "the same request sent upstream a second time",
                    "server",
                    again.status_code,
                    _code(again.content),
                    "refused" if again.status_code >= 400 else "accepted",
                )
            )
        if self.mode == "inject":
            self._inject(
                number,
                method,
                path,
                exchange.query,
                exchange.request_headers,
                exchange.request_body,
            )

    def _answer_as_attacked(
        self, handler: BaseHTTPRequestHandler, exchange: Exchange, selected: bool
    ) -> tuple[dict[str, str], bytes] | None:
        """The answer's headers and body to give back, altered as the mode says; None if it
        is withheld."""
        path, response_body = exchange.path, exchange.response_body
        headers = dict(exchange.response_headers)
        signature = _pop_header(dict(headers), httpsig.ANSWER_HEADER)
        with self.shared.lock:
            earlier = list(self.shared.responses)
            signatures = dict(self.shared.answer_signatures)
            self.shared.responses.append((path, response_body))
            if signature is not None:
                self.shared.answer_signatures[(path, response_body)] = signature
        if not (selected and self.direction == "response"):
            return headers, response_body
        if self.mode == "unsign":
            if _pop_header(headers, httpsig.ANSWER_HEADER) is not None:
                self._record(
                    Alteration(
                        exchange.number,
                        "unsign",
                        "response",
                        path,
                        "the answer's signature removed",
                        "client",
                    )
                )
            return headers, response_body
        response_body, detail, donor = self._alter_response(path, response_body, earlier)
        if detail:
            recorded = signatures.get(donor) if donor is not None else None
            detail += self._sign_altered(exchange, headers, response_body, recorded)
        if self.mode == "drop":
            self._record(
                Alteration(
                    exchange.number,
                    "drop",
                    "response",
                    path,
                    "answer withheld, connection closed",
                    "client",
                )
            )
            self._scan(exchange)
            handler.close_connection = True
            return None
        if detail:
            self._record(Alteration(exchange.number, self.mode, "response", path, detail, "client"))
        return headers, response_body

    def _sign_altered(
        self, exchange: Exchange, headers: dict[str, str], body: bytes, recorded: str | None
    ) -> str:
        """Give an altered answer the signature ``answer_signature`` says (the one a whole
        answer swapped in was recorded with, if any, by default); what was done, for the
        alteration's detail."""
        if self.answer_signature == "strip":
            _pop_header(headers, httpsig.ANSWER_HEADER)
            return ", its signature removed"
        if isinstance(self.answer_signature, Identity):
            binding = httpsig.answer_binding(
                method=exchange.method,
                path=exchange.path,
                query=exchange.query,
                headers=exchange.request_headers,
            )
            _pop_header(headers, httpsig.ANSWER_HEADER)
            headers[httpsig.ANSWER_HEADER] = httpsig.sign_answer(
                self.answer_signature, binding, status=exchange.status, body=body
            )
            key = self.answer_signature.public.short_fingerprint()
            return f", re-signed with the key {key}"
        if recorded is not None:
            _pop_header(headers, httpsig.ANSWER_HEADER)
            headers[httpsig.ANSWER_HEADER] = recorded
            return ", with the signature it was recorded with"
        return ""

    def _answer(
        self, handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def _record(self, alteration: Alteration) -> None:
        with self._lock:
            self.alterations.append(alteration)
            self._altered.add(alteration.exchange)
        self.log(
            f"#{alteration.exchange} {alteration.mode} {alteration.direction}"
            f" {alteration.path}: {alteration.detail}"
            + (
                f" -> {alteration.status} {alteration.code} ({alteration.verdict})"
                if alteration.status is not None
                else ""
            )
        )

    def _log(self, exchange: Exchange) -> None:
        self.log(f"#{exchange.number} {exchange.method} {exchange.path} -> {exchange.status}")
        for line in describe_json(exchange.request_body):
            self.log(f"   > {line}")
        for line in describe_json(exchange.response_body):
            self.log(f"   < {line}")
        for alarm in exchange.alarms:
            self.log(f"   !!! {alarm}")

    # alterations

    def _alter_body(self, body: bytes, rng: random.Random) -> tuple[bytes, str]:
        if self.mode in CHUNK_MODES:
            return _alter_chunks(self.mode, body)
        if self.mode == "truncate":
            if not body:
                return body, ""
            return body[: len(body) // 2], f"body cut from {len(body)} to {len(body) // 2} bytes"
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            document = None
        candidates = _string_fields(document, self.field_name) if document is not None else []
        if self.mode == "flip":
            if not candidates:
                if not body:
                    return body, ""
                changed = bytearray(body)
                bit = rng.randrange(len(body) * 8)
                changed[bit // 8] ^= 1 << (bit % 8)
                return bytes(changed), f"bit {bit} of the body flipped"
            target = rng.choice(candidates)
            flipped = _flip_string(target, rng)
            name = self.field_name or _key_of(document, target)
            for ascii_only in (True, False):
                old = json.dumps(target, ensure_ascii=ascii_only).encode()
                if old in body:
                    new = json.dumps(flipped, ensure_ascii=ascii_only).encode()
                    return body.replace(old, new, 1), f"one bit of {name!r} flipped"
            return body, ""
        return body, ""

    def _alter(
        self, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[dict[str, str], bytes, str, str]:
        """An altered request: headers, body, what was done, and the target it now goes to."""
        path = target.partition("?")[0]
        if self.mode == "swap":
            with self.shared.lock:
                earlier = list(self.shared.requests)
            changed, detail, _ = self._swap(path, body, earlier)
        elif not body and self.mode == "flip":
            # No body (a GET or DELETE): flip a bit of the id in the path instead.
            head, _, last = path.rpartition("/")
            if not last:
                return headers, body, "", target
            altered = head + "/" + _flip_string(last, self.rng)
            return (
                headers,
                body,
                f"one bit of the path flipped ({path} -> {altered})",
                (altered + target[len(path) :]),
            )
        else:
            changed, detail = self._alter_body(body, self.rng)
        if not detail:
            return headers, body, "", target
        fixed = dict(headers)
        for key in list(fixed):
            if key.lower() == "content-digest":
                # An attacker recomputes the digest: only the signature can catch this.
                fixed[key] = httpsig.content_digest(changed)
        return fixed, changed, detail, target

    def _swap(
        self, path: str, body: bytes, earlier: list[tuple[str, bytes]]
    ) -> tuple[bytes, str, tuple[str, bytes] | None]:
        """Give this body an earlier one's on the same route, or its ``field_name``; and
        the earlier exchange whose body it now is, if it is a whole one."""
        donors = [(p, b) for p, b in earlier if b != body and _same_route(p, path)]
        if not donors:
            return body, "", None
        donor_path, donor = donors[-1]
        if self.field_name is None:
            detail = f"body replaced with the one of an earlier {donor_path}"
            return donor, detail, (donor_path, donor)
        try:
            mine, theirs = json.loads(body), json.loads(donor)
        except (ValueError, UnicodeDecodeError):
            return body, "", None
        pairs = zip(
            _json_values(mine, self.field_name),
            _json_values(theirs, self.field_name),
            strict=False,
        )
        for old, new in pairs:
            if old != new and old in body:  # the spelling this body really uses
                return (
                    body.replace(old, new, 1),
                    f"{self.field_name!r} taken from an earlier {donor_path}",
                    None,
                )
        return body, "", None

    def _alter_response(
        self, path: str, body: bytes, earlier: list[tuple[str, bytes]]
    ) -> tuple[bytes, str, tuple[str, bytes] | None]:
        if self.mode == "swap":
            return self._swap(path, body, earlier)
        if self.mode in {"flip", "truncate", *CHUNK_MODES}:
            return (*self._alter_body(body, self.rng), None)
        return body, "", None

    def _inject(
        self, number: int, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> None:
        target = path + (f"?{query}" if query else "")
        base = {
            k: v
            for k, v in headers.items()
            if k.lower()
            not in {"signature", "signature-input", "content-digest", "securecomm-identity"}
        }
        audience = self.audience or _audience_of(headers) or "relay"
        stranger = Identity.generate("mallory")
        forged = {
            "unsigned copy": base,
            "copy signed by a stranger's key": base
            | httpsig.sign_request(
                stranger, method=method, path=path, query=query, body=body, audience=audience
            ),
            "copy re-signed 10 minutes in the past": base
            | httpsig.sign_request(
                stranger,
                method=method,
                path=path,
                query=query,
                body=body,
                audience=audience,
                now=int(time.time()) - 600,
            ),
        }
        for what, forged_headers in forged.items():
            answer = self._forward(method, target, forged_headers, body)
            self._record(
                Alteration(
                    number,
                    "inject",
                    "request",
                    path,
                    f"injected: {what}",
                    "server",
                    answer.status_code,
                    _code(answer.content),
                    "refused" if answer.status_code >= 400 else "accepted",
                )
            )


def _alter_chunks(mode: str, body: bytes) -> tuple[bytes, str]:
    """A stream's piece with its chunks moved as ``mode`` says; a body of fewer than two
    chunks is left alone."""
    size = stream.SEALED_CHUNK_BYTES
    chunks = [body[at : at + size] for at in range(0, len(body), size)]
    if len(chunks) < 2:
        return body, ""
    if mode == "drop-chunk":
        del chunks[1]
        detail = "its second chunk left out"
    elif mode == "reorder-chunks":
        chunks[0], chunks[1] = chunks[1], chunks[0]
        detail = "its first two chunks swapped"
    elif mode == "cut-chunk":
        del chunks[-1]
        detail = "cut at its last chunk boundary"
    else:
        chunks.append(chunks[0])
        detail = "a copy of its first chunk added at its end"
    return b"".join(chunks), f"stream piece of {len(body):,} bytes: {detail}"


def _pop_header(headers: dict[str, str], name: str) -> str | None:
    """Remove header ``name`` (any case) from ``headers``; its value, or None."""
    found = None
    for key in [k for k in headers if k.lower() == name.lower()]:
        found = headers.pop(key)
    return found


def _code(body: bytes) -> str | None:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value.get("code") if isinstance(value, dict) else None


def _json_values(document: object, name: str) -> list[bytes]:
    """The JSON spellings (compact and default) of every value under key ``name``."""
    found: list[bytes] = []

    def walk(item: object) -> None:
        if isinstance(item, dict):
            for key, value in item.items():
                if key == name:
                    found.append(json.dumps(value, separators=(",", ":")).encode())
                    found.append(json.dumps(value).encode())
                walk(value)
        elif isinstance(item, list):
            for value in item:
                walk(value)

    walk(document)
    return found


def _key_of(document: object, value: str) -> str:
    if isinstance(document, dict):
        for key, item in document.items():
            if item == value:
                return str(key)
            found = _key_of(item, value)
            if found:
                return found
    elif isinstance(document, list):
        for item in document:
            found = _key_of(item, value)
            if found:
                return found
    return ""


def _audience_of(headers: dict[str, str]) -> str | None:
    for key, value in headers.items():
        if key.lower() == "signature-input":
            match = re.search(r'tag="securecomm/v1/([^"]+)"', value)
            if match:
                return match.group(1)
    return None


def _same_route(a: str, b: str) -> bool:
    """Two paths of one endpoint (the ids may differ)."""
    strip = re.compile(r"/[0-9a-f]{32}")
    return strip.sub("/ID", a) == strip.sub("/ID", b)
