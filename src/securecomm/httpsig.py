"""Signed HTTP requests, and signed answers.

A client signs method, path, query and the RFC 9530 ``Content-Digest`` of a
request with its Ed25519 key, for one named service (the audience), with a
time and a random nonce (RFC 9421 message signatures over a fixed component
list). The service also MUST refuse a nonce it has seen for the same key
inside the window; that store is the service's, not this module's.

The relay signs its answers in turn: a statement in one header that binds
the answer's status and body digest to the request it answers (method, path,
query, the request's nonce and signer), so a client can tell the relay's
answer to *this* request from a forged or replayed one.

Wire format: spec/format-v1.md sections 11.1-11.3 (requests) and 11.4
(answers). No web framework here.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidSignature

from . import _fields, canonical
from ._encoding import b64decode, b64encode
from .codes import Code
from .errors import (
    AnswerSignatureError,
    FormatError,
    ParameterError,
    RequestAuthError,
    SignatureError,
)
from .identity import SIGNATURE_LENGTH_BYTES, Keys, PublicIdentity, format_fingerprint

__all__ = [
    "ANSWER_HEADER",
    "ANSWER_NONCE_HEADER",
    "ANSWER_PURPOSE",
    "COMPONENTS",
    "DELEGATION_HEADER",
    "IDENTITY_HEADER",
    "SIGNATURE_LABEL",
    "SKEW_SECONDS",
    "AnswerBinding",
    "VerifiedRequest",
    "answer_binding",
    "content_digest",
    "new_nonce",
    "sign_answer",
    "sign_request",
    "verify_answer",
    "verify_request",
]

SKEW_SECONDS = 300
SIGNATURE_LABEL = "sig1"
COMPONENTS = ("@method", "@path", "@query", "content-digest")
IDENTITY_HEADER = "Securecomm-Identity"
#: A device's delegation beside its signed request (spec/sessions.md section 3).
DELEGATION_HEADER = "Securecomm-Delegation"
_ALGORITHM = "ed25519"
_TAG_PREFIX = "securecomm/v1/"

_NONCE = re.compile(r"[0-9a-f]{32}")
_AUDIENCE = r"[a-z0-9][a-z0-9._-]{0,63}"  # a name, spec section 1.6
# Visible ASCII only, so no component value can add a line to the signature base.
_TARGET = re.compile(r"[\x21-\x7e]*")
_INNER_LIST = "(" + " ".join(f'"{name}"' for name in COMPONENTS) + ")"
_SIGNATURE_INPUT = re.compile(re.escape(f"{SIGNATURE_LABEL}={_INNER_LIST}") + r"((?:;[^;]*)+)")
_PARAM = re.compile(r'([a-z][a-z0-9_.*-]*)=(?:([0-9]{1,15})|"([\x20\x21\x23-\x5b\x5d-\x7e]*)")')
_PARAM_VALUES = {
    "created": re.compile(r"0|[1-9][0-9]*"),
    "nonce": _NONCE,
    "keyid": re.compile(r"[0-9a-f]{64}"),
    "alg": re.compile(re.escape(_ALGORITHM)),
    "tag": re.compile(re.escape(_TAG_PREFIX) + _AUDIENCE),
}
_SIGNATURE = re.compile(re.escape(SIGNATURE_LABEL) + r"=:([A-Za-z0-9+/=]*):")
_HEADERS = ("signature-input", "signature", IDENTITY_HEADER.lower(), "content-digest")


@dataclass(frozen=True)
class VerifiedRequest:
    """Who signed a request that verified, when, and with which nonce (for replay checks)."""

    identity: PublicIdentity
    created: int
    nonce: str


def new_nonce() -> str:
    """16 fresh random bytes in lowercase hex: a request's nonce, or an answer's challenge."""
    return os.urandom(16).hex()


def content_digest(body: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` field value of ``body``: ``sha-256=:<base64>:``."""
    return f"sha-256=:{b64encode(hashlib.sha256(body).digest())}:"


def _signature_base(method: str, path: str, query: str, digest: str, params: str) -> bytes:
    # Starts with '"@method"', so it never collides with Identity.sign inputs,
    # which start with b"securecomm/v1/".
    values = (method, path, "?" + query, digest)
    lines = [f'"{name}": {value}' for name, value in zip(COMPONENTS, values, strict=True)]
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode("ascii")


def sign_request(
    identity: Keys,
    *,
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    audience: str,
    now: int | None = None,
    nonce: str | None = None,
    digest: str | None = None,
) -> dict[str, str]:
    """Headers to add: Content-Digest, Signature-Input, Signature, Securecomm-Identity.

    ``digest`` is ``content_digest(body)`` when the caller has it already (an upload hashes
    its next piece while one is on its way); a wrong one only gets the request refused."""
    method = method.upper()
    if not all(_TARGET.fullmatch(value) for value in (method, path, query)):
        raise ParameterError("request method, path and query: only visible ASCII is allowed")
    if not path.startswith("/"):
        raise ParameterError("request path: must start with '/'")
    if not re.fullmatch(_AUDIENCE, audience):
        raise ParameterError("audience: not a valid service name")
    nonce = new_nonce() if nonce is None else nonce
    if not _NONCE.fullmatch(nonce):
        raise ParameterError("nonce: expected 32 lowercase hex digits")
    created = int(time.time()) if now is None else now
    if created < 0:
        raise ParameterError(f"created: {created} is negative")
    params = (
        f'{_INNER_LIST};created={created};nonce="{nonce}"'
        f';keyid="{identity.signer.fingerprint_hex}";alg="{_ALGORITHM}"'
        f';tag="{_TAG_PREFIX}{audience}"'
    )
    digest = content_digest(body) if digest is None else digest
    signature = identity.sign_bytes(_signature_base(method, path, query, digest, params))
    identity_json = canonical.dumps(identity.signer.to_json())
    headers = {
        "Content-Digest": digest,
        "Signature-Input": f"{SIGNATURE_LABEL}={params}",
        "Signature": f"{SIGNATURE_LABEL}=:{b64encode(signature)}:",
        IDENTITY_HEADER: b64encode(identity_json),
    }
    if identity.delegation_header is not None:
        headers[DELEGATION_HEADER] = identity.delegation_header
    return headers


def _one(found: dict[str, list[str]], name: str, code: str) -> str:
    """The one value of header ``name``; a header given twice is refused with ``code``."""
    if len(found[name]) > 1:
        raise RequestAuthError(code, f"{name} header given {len(found[name])} times")
    return found[name][0]


def _bad_input(message: str) -> RequestAuthError:
    return RequestAuthError(Code.BAD_SIGNATURE_INPUT, message)


def _parse_params(text: str) -> dict[str, str]:
    """The parameters after the inner list (``;a=1;b="x"``), each checked once."""
    params: dict[str, str] = {}
    for item in text[1:].split(";"):
        match = _PARAM.fullmatch(item)
        if match is None:
            raise _bad_input("Signature-Input: malformed parameter")
        name, integer, string = match.groups()
        if name not in _PARAM_VALUES:
            raise _bad_input("Signature-Input: unknown parameter")
        if name in params:
            raise _bad_input(f"Signature-Input: parameter {name} given twice")
        value = string if integer is None else integer
        if (integer is not None) != (name == "created") or not _PARAM_VALUES[name].fullmatch(value):
            raise _bad_input(f"Signature-Input: parameter {name} is not valid")
        params[name] = value
    if missing := sorted(set(_PARAM_VALUES) - set(params)):
        raise _bad_input(f"Signature-Input: missing {', '.join(missing)}")
    return params


def verify_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    audience: str,
    now: int | None = None,
) -> VerifiedRequest:
    """Raise RequestAuthError(code, message) unless the request is signed as described.

    ``headers`` is any mapping whose ``items()`` gives (name, value) pairs;
    names are matched case-insensitively and a name given twice is refused.
    The caller MUST still refuse a nonce already seen for this key
    (:class:`~securecomm.errors.ReplayError`).
    """
    found = _found(headers)
    for name in _HEADERS:
        if name not in found:
            raise RequestAuthError(Code.MISSING_SIGNATURE, f"request has no {name} header")
    signature_input = _one(found, "signature-input", Code.BAD_SIGNATURE_INPUT)
    signature_field = _one(found, "signature", Code.BAD_SIGNATURE_INPUT)

    if (input_match := _SIGNATURE_INPUT.fullmatch(signature_input)) is None:
        raise _bad_input(f"Signature-Input: expected {SIGNATURE_LABEL}={_INNER_LIST};<params>")
    params = _parse_params(input_match.group(1))
    if (signature_match := _SIGNATURE.fullmatch(signature_field)) is None:
        raise _bad_input(f"Signature: expected {SIGNATURE_LABEL}=:<base64>:")
    try:
        signature = b64decode(signature_match[1], field="Signature", length=SIGNATURE_LENGTH_BYTES)
    except FormatError as exc:
        raise _bad_input(str(exc)) from None

    # Messages quote no header value but the keyid's short form: a name or JSON key
    # read from the identity header is attacker text of any length.
    who = f"keyid {format_fingerprint(bytes.fromhex(params['keyid']))}"
    identity_header = _one(found, IDENTITY_HEADER.lower(), Code.BAD_IDENTITY)
    stage = "not canonical padded base64"
    try:
        identity_json = b64decode(identity_header, field=IDENTITY_HEADER)
        stage = "not canonical JSON"
        obj = canonical.loads(identity_json, what=IDENTITY_HEADER)
        stage = "not a valid public identity"
        identity = PublicIdentity.from_json(obj)
    except (FormatError, ValueError) as exc:
        reason = f"{stage} ({type(exc).__name__})"
        raise RequestAuthError(Code.BAD_IDENTITY, f"{IDENTITY_HEADER}: {reason}") from None
    if identity.fingerprint_hex != params["keyid"]:
        raise RequestAuthError(Code.BAD_IDENTITY, f"{IDENTITY_HEADER}: its key is not {who}")

    if params["tag"] != _TAG_PREFIX + audience:
        raise RequestAuthError(
            Code.WRONG_AUDIENCE, f"request from {who} is not meant for {audience}"
        )
    created = int(params["created"])
    age = (int(time.time()) if now is None else now) - created
    if abs(age) > SKEW_SECONDS:
        when = f"{age} s ago" if age > 0 else f"{-age} s in the future"
        window = f"the window is ±{SKEW_SECONDS} s"
        raise RequestAuthError(Code.STALE_TIMESTAMP, f"request signed {when}; {window}")
    digest = _one(found, "content-digest", Code.BAD_DIGEST)
    if digest != content_digest(body):
        raise RequestAuthError(Code.BAD_DIGEST, "Content-Digest does not match the body")

    method = method.upper()
    if not all(_TARGET.fullmatch(value) for value in (method, path, query)):
        raise RequestAuthError(Code.BAD_SIGNATURE, "request target is not visible ASCII")
    base = _signature_base(method, path, query, digest, signature_input.partition("=")[2])
    try:
        identity.signing_key.verify(signature, base)
    except InvalidSignature:
        raise RequestAuthError(Code.BAD_SIGNATURE, f"signature by {who} does not verify") from None
    return VerifiedRequest(identity, created, params["nonce"])


# Signed answers (spec section 11.4).

ANSWER_HEADER = "Securecomm-Answer-Signature"
#: What an unsigned request carries for its answer to be bound to it (a signed one has its nonce).
ANSWER_NONCE_HEADER = "Securecomm-Answer-Nonce"
ANSWER_PURPOSE = "answer"
_ANSWER_MEMBERS = {
    "v",
    "signer",
    "method",
    "path",
    "query",
    "nonce",
    "caller",
    "status",
    "body_digest",
    "time",
    "signature",
}
_BINDING = ("method", "path", "query", "nonce", "caller")


@dataclass(frozen=True)
class AnswerBinding:
    """The request an answer is for, as the service received it or the client sent it.

    ``nonce`` is the request's own (signed request) or its challenge (unsigned); ``caller``
    the fingerprint its ``Signature-Input`` names, None for an unsigned request.
    """

    method: str
    path: str
    query: str
    nonce: str | None
    caller: str | None


def _found(headers: Mapping[str, str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in headers.items():
        found.setdefault(str(name).lower(), []).append(value)
    return found


def answer_binding(
    *, method: str, path: str, query: str, headers: Mapping[str, str]
) -> AnswerBinding:
    """What a service binds its answer to: the nonce and keyid of the request's one
    well-formed ``Signature-Input`` (verified or not: the answer says what was received),
    else its one well-formed ``Securecomm-Answer-Nonce`` (caller None), else neither."""
    found = _found(headers)
    inputs = found.get("signature-input", [])
    if len(inputs) == 1 and (match := _SIGNATURE_INPUT.fullmatch(inputs[0])) is not None:
        try:
            params = _parse_params(match.group(1))
        except RequestAuthError:
            pass
        else:
            return AnswerBinding(method.upper(), path, query, params["nonce"], params["keyid"])
    challenges = found.get(ANSWER_NONCE_HEADER.lower(), [])
    if len(challenges) == 1 and _NONCE.fullmatch(challenges[0]):
        return AnswerBinding(method.upper(), path, query, challenges[0], None)
    return AnswerBinding(method.upper(), path, query, None, None)


def _body_digest(body: bytes) -> str:
    return b64encode(hashlib.sha256(body).digest())


def sign_answer(
    identity: Keys,
    binding: AnswerBinding,
    *,
    status: int,
    body: bytes,
    now: int | None = None,
) -> str:
    """The ``Securecomm-Answer-Signature`` value for an answer of ``status`` and ``body``
    to the request ``binding`` describes: base64 of the canonical JSON of the signed
    statement."""
    statement: dict[str, object] = {
        "v": 1,
        "signer": identity.public.fingerprint_hex,
        **asdict(binding),  # method, path, query, nonce, caller
        "status": status,
        "body_digest": _body_digest(body),
        "time": int(time.time()) if now is None else now,
    }
    statement["signature"] = b64encode(identity.sign(ANSWER_PURPOSE, statement))
    return b64encode(canonical.dumps(statement))


def _statement(value: str, service: str) -> dict[str, object]:
    """The statement in a header value, every member checked for its type (step 2)."""
    try:
        obj = canonical.loads(b64decode(value, field=ANSWER_HEADER), what=ANSWER_HEADER)
        statement = dict(_fields.expect_object(obj, "answer", _ANSWER_MEMBERS, versioned=True))
        _fields.fingerprint_hex(statement["signer"], "answer.signer")
        for name in ("method", "path", "query"):
            if not isinstance(statement[name], str):
                raise FormatError(f"answer.{name}: expected a string")
        if statement["nonce"] is not None:
            _fields.matching(statement["nonce"], "answer.nonce", _NONCE, "32 hex digits")
        if statement["caller"] is not None:
            _fields.fingerprint_hex(statement["caller"], "answer.caller")
        _fields.integer(statement["status"], "answer.status", 100, 599)
        b64decode(statement["body_digest"], field="answer.body_digest", length=32)
        _fields.integer(statement["time"], "answer.time", 0, _fields.TIME_MAX_SECONDS)
        b64decode(statement["signature"], field="answer.signature", length=SIGNATURE_LENGTH_BYTES)
    except (FormatError, ValueError) as exc:
        # Name the rule, never the value: the header is whoever-sent-it's text.
        raise AnswerSignatureError(
            service, f"its answer's {ANSWER_HEADER} is malformed ({type(exc).__name__})"
        ) from None
    return statement


def verify_answer(
    signer: PublicIdentity,
    values: list[str],
    binding: AnswerBinding,
    *,
    status: int,
    body: bytes,
    service: str = "relay",
) -> dict[str, object]:
    """Raise :class:`AnswerSignatureError` unless ``values`` (every ``Securecomm-Answer-
    Signature`` the answer carried) is one statement, signed by ``signer``, of exactly this
    ``status`` and ``body`` in answer to the request ``binding``; return the statement.

    The order of spec §11.4: present once, well-formed, the pinned key, a good signature,
    this request, this status, this body. Messages quote no value from the answer.
    """
    if len(values) != 1:
        given = "carries no" if not values else f"carries {len(values)} headers"
        raise AnswerSignatureError(
            service,
            f"its answer (HTTP {status}) {given} {ANSWER_HEADER}: it is not signed by the"
            f" {service}",
        )
    statement = _statement(values[0], service)
    pinned = signer.short_fingerprint()
    if statement["signer"] != signer.fingerprint_hex:
        seen = format_fingerprint(bytes.fromhex(str(statement["signer"])))
        raise AnswerSignatureError(
            service, f"its answer is signed by another key ({seen}), not the pinned {pinned}"
        )
    unsigned = {k: v for k, v in statement.items() if k != "signature"}
    signature = b64decode(str(statement["signature"]), field="answer.signature")
    try:
        signer.verify(signature, ANSWER_PURPOSE, unsigned)
    except SignatureError:
        raise AnswerSignatureError(
            service, f"its answer's signature does not verify under its key ({pinned})"
        ) from None
    differs = [name for name in _BINDING if statement[name] != getattr(binding, name)]
    if differs:
        raise AnswerSignatureError(
            service,
            f"its signed answer is for another request (its {', '.join(differs)} differ"
            f"{'s' if len(differs) == 1 else ''}): replayed, or the request was altered",
        )
    if statement["status"] != status:
        raise AnswerSignatureError(
            service, f"its answer was signed as HTTP {statement['status']}, but came as {status}"
        )
    if statement["body_digest"] != _body_digest(body):
        raise AnswerSignatureError(
            service, "the body of its answer is not the one it signed (altered on the way)"
        )
    return statement
