"""The parts of a Flask app that the relay and every custodian share.

- every error, ours or werkzeug's, is a JSON body ``{"code", "message"}``
  with a 4xx status; a bug is a 500 whose body says nothing else;
- one structured log line per request: method, path, status, duration,
  caller fingerprint; never a body, never a header value;
- signed-request authentication with durable replay protection;
- strict JSON bodies: ``application/json``, UTF-8, an object, no
  duplicate keys, no floats;
- HTTP as RFC 9110 and 9112 ask: a 405 carries ``Allow``, a body over the
  limit is a 413 whether chunked or not, an HTTP/1.1 request without
  ``Host`` is a 400.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, g, jsonify, request
from sqlalchemy.engine import Connection, Engine
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from .. import canonical, devices, errors, httpsig
from .._encoding import b64encode
from ..codes import Code
from ..errors import FormatError, ReplayError, RequestAuthError
from ..identity import Identity, PublicIdentity
from .storage import insert_new, remember_nonce

__all__ = [
    "ApiError",
    "authenticate",
    "create_app",
    "log_swept",
    "query_int",
    "read_json",
    "request_body",
    "request_target",
    "require_own_key",
    "sweep_in_passing",
    "transaction",
]

ACCESS_LOG = logging.getLogger("securecomm.access")


def log_swept(service: str, swept: Mapping[str, int]) -> None:
    """Say in the service log what a sweep dropped (how many of each), if anything."""
    if any(swept.values()):
        ACCESS_LOG.info(json.dumps({"service": service, "swept": dict(swept)}, sort_keys=True))


def sweep_in_passing(service: str, sweep: Callable[[], Mapping[str, int]]) -> None:
    """Run ``sweep`` on a request's way in: what it dropped is logged, and so is its
    failure, by name only; the request goes on either way (the sweep is tried again when
    next due)."""
    try:
        swept = sweep()
    except Exception as exc:
        ACCESS_LOG.error(
            json.dumps({"service": service, "error": type(exc).__name__, "where": "sweep"})
        )
        return
    log_swept(service, swept)


# Stable error codes for our own exceptions, most specific first.
_ERROR_CODES: list[tuple[type[errors.SecureCommError], int, str]] = [
    (errors.RequestAuthError, 401, ""),  # carries its own code
    (errors.NotRecipientError, 403, Code.NOT_RECIPIENT),
    (errors.PolicyError, 403, Code.FORBIDDEN),
    (errors.UnknownVersionError, 400, Code.UNKNOWN_VERSION),
    (errors.NonCanonicalError, 400, Code.NON_CANONICAL),
    (errors.LengthError, 400, Code.BAD_LENGTH),
    (errors.FieldError, 400, Code.BAD_FIELD),
    (errors.FormatError, 400, Code.BAD_FORMAT),
    (errors.SignatureError, 400, Code.BAD_SIGNATURE),
    (errors.ShareError, 400, Code.BAD_SHARE),
    (errors.DecryptionError, 400, Code.BAD_SEAL),
    (errors.IdentityError, 400, Code.BAD_IDENTITY),
    (errors.SecureCommError, 400, Code.BAD_REQUEST),
]

_HTTP_CODES = {
    400: Code.BAD_REQUEST,
    404: Code.NOT_FOUND,
    405: Code.METHOD_NOT_ALLOWED,
    411: Code.LENGTH_REQUIRED,
    413: Code.TOO_LARGE,
    415: Code.UNSUPPORTED_MEDIA_TYPE,
}


_READ_BYTES = 64 * 1024
_DECIMAL = re.compile(r"[0-9]{1,16}")

# What a page sends: the body's type and the four fields of a signed request (spec §11.1).
_CORS_HEADERS = (
    "Content-Type, Content-Digest, Signature, Signature-Input, Securecomm-Identity,"
    " Securecomm-Delegation"
)


class _ServiceApp(Flask):
    """Flask, and one step after every view: the nonce of a signed request that no write
    transaction of the view remembered is remembered now, before any answer is sent."""

    def dispatch_request(self) -> Any:
        try:
            answer = super().dispatch_request()
        except Exception:
            _remember_pending_nonce()  # a replay's ReplayError replaces the view's error
            raise
        _remember_pending_nonce()
        return answer


class ApiError(Exception):
    """An answer other than success, raised anywhere in a view."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.extra = extra


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    response = jsonify({"code": code, "message": message, **extra})
    response.status_code = status
    return response


def _configure_logging() -> None:
    if ACCESS_LOG.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    ACCESS_LOG.addHandler(handler)
    ACCESS_LOG.setLevel(logging.INFO)
    ACCESS_LOG.propagate = False


def create_app(
    service: str,
    identity: Identity,
    engine: Engine,
    nonces: sa.Table,
    revocations: sa.Table,
    *,
    revocations_path: str,
    max_body_bytes: int,
    cors_origins: tuple[str, ...] = (),
) -> Flask:
    """A Flask app with the shared behaviour; the service adds its own routes.

    ``cors_origins`` are the browser origins whose pages may call this service. A request
    that carries any other ``Origin`` is refused before it reaches a view.
    """
    _configure_logging()
    app = _ServiceApp(f"securecomm.{service}")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.json.sort_keys = True  # type: ignore[attr-defined]
    app.extensions["securecomm"] = {
        "service": service,
        "identity": identity,
        "engine": engine,
        "nonces": nonces,
        "revocations": revocations,
    }
    app.add_url_rule(revocations_path, view_func=_post_revocation, methods=["POST"])

    @app.before_request
    def _start() -> Response | None:
        g.started = time.perf_counter()
        g.caller = None
        g.signer = None
        environ = request.environ
        # RFC 9112 section 3.2; werkzeug would quietly use the server's own name instead.
        if environ.get("SERVER_PROTOCOL") == "HTTP/1.1" and not environ.get("HTTP_HOST"):
            return error_response(400, Code.BAD_REQUEST, "an HTTP/1.1 request must carry Host")
        origin = request.headers.get("Origin")
        if origin is not None and origin not in cors_origins and not _same_origin(origin):
            return error_response(
                403, Code.ORIGIN_NOT_ALLOWED, "pages from this origin may not call this service"
            )
        _read_chunked_body(max_body_bytes)
        return None

    @app.after_request
    def _log(response: Response) -> Response:
        caller: PublicIdentity | None = g.get("caller")
        started = g.get("started", time.perf_counter())
        ACCESS_LOG.info(
            json.dumps(
                {
                    "service": service,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                    "caller": caller.fingerprint_hex[:16] if caller else None,
                },
                sort_keys=True,
            )
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        origin = request.headers.get("Origin")
        if origin is not None and origin in cors_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            if request.method == "OPTIONS":
                response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE"
                response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
                response.headers["Access-Control-Max-Age"] = "600"
        response.vary.add("Origin")
        return response

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, str(exc), **exc.extra)

    @app.errorhandler(errors.SecureCommError)
    def _our_error(exc: errors.SecureCommError) -> Response:
        for cls, status, code in _ERROR_CODES:
            if isinstance(exc, cls):
                if isinstance(exc, errors.RequestAuthError):
                    code = exc.code
                return error_response(status, code, str(exc))
        raise AssertionError("unreachable: SecureCommError is in the table")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, Code.HTTP_ERROR)
        message = {
            404: "no such endpoint",
            405: f"method {request.method} is not allowed here",
            413: f"body larger than {max_body_bytes} bytes",
        }.get(status, exc.description or exc.name)
        response = error_response(status, code, message)
        # What werkzeug says besides its HTML body: a 405's Allow (RFC 9110 section 15.5.6).
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _bug(exc: Exception) -> Response:
        # Name the failing place, never the message: third-party messages may quote data.
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f"{frame.filename}:{frame.lineno}" if frame else "?"
        ACCESS_LOG.error(
            json.dumps({"service": service, "error": type(exc).__name__, "where": where})
        )
        return error_response(500, Code.INTERNAL_ERROR, "internal error; see the service log")

    @app.get("/healthz")
    def healthz() -> Response:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return jsonify(
            {
                "status": "ok",
                "service": service,
                "name": identity.name,
                "fingerprint": identity.public.fingerprint_hex,
            }
        )

    return app


def _read_chunked_body(max_body_bytes: int) -> None:
    """Read a chunked body whole, before any view, so one over the limit is a 413.

    werkzeug stops reading a body without Content-Length at the limit and hands the view
    what it read, so an oversized one looked cut off (400). Read here, it becomes a body
    with a Content-Length like any other.
    """
    environ = request.environ
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if not chunked or not environ.get("wsgi.input_terminated"):
        return  # no body, a Content-Length one, or a server that cannot end the stream
    stream = environ["wsgi.input"]
    body = bytearray()
    while len(body) <= max_body_bytes:
        data = stream.read(min(_READ_BYTES, max_body_bytes + 1 - len(body)))
        if not data:
            break
        body += data
    if len(body) > max_body_bytes:
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(bytes(body))
    environ["CONTENT_LENGTH"] = str(len(body))
    del environ["HTTP_TRANSFER_ENCODING"]


def _same_origin(origin: str) -> bool:
    """A page this service served itself (the relay's web client) may always call it."""
    return origin == request.host_url.rstrip("/")


def _state() -> dict[str, Any]:
    from flask import current_app

    state: dict[str, Any] = current_app.extensions["securecomm"]
    return state


def request_body() -> bytes:
    """The request's body, read once and kept for the rest of the request.

    A body of a stated length is read straight from the server's input in calls of what is
    left: werkzeug's ``get_data`` reads 64 KiB at a time, and under gunicorn each such read
    copied again whatever its socket read held beyond it, then werkzeug copied each piece
    twice more; on a 1 GiB send those copies were a tenth of the relay's time. The limit
    werkzeug's stream would enforce is checked here first. Without a length (chunked) it
    is werkzeug's read, with its limit."""
    body: bytes | None = g.get("request_body")
    if body is None:
        length = request.content_length
        if length is None:
            body = request.get_data(cache=False)
        else:
            limit = request.max_content_length
            if limit is not None and length > limit:
                raise RequestEntityTooLarge()
            source, parts, left = request.input_stream, [], length
            while left > 0:
                part = source.read(left)
                if not part:
                    raise ClientDisconnected()
                parts.append(part)
                left -= len(part)
            body = parts[0] if len(parts) == 1 else b"".join(parts)
        g.request_body = body
    return body


def read_json() -> dict[str, Any]:
    """The request body as a JSON object, or an ApiError saying what is wrong with it."""
    if request.mimetype != "application/json":
        raise ApiError(415, Code.UNSUPPORTED_MEDIA_TYPE, "the body must be application/json")
    try:
        return canonical.parse_json(request_body(), what="the body")
    except FormatError as exc:
        raise ApiError(400, Code.BAD_JSON, str(exc)) from None


def query_int(name: str, *, default: int, low: int, high: int) -> int:
    """Query parameter ``name`` as an integer in ``low..high``; ``default`` if it is absent."""
    raw = request.args.get(name)
    if raw is None:
        return default
    # Not str.isdigit(), which takes "²"; and at most 16 digits, which SQLite can bind.
    if not _DECIMAL.fullmatch(raw) or not low <= int(raw) <= high:
        raise ApiError(400, Code.BAD_FIELD, f"{name}: expected an integer in {low}..{high}")
    return int(raw)


def request_target() -> tuple[str, str]:
    """The path and query as they came over the wire, which is what signatures cover:
    werkzeug's request.path is percent-decoded."""
    raw_uri = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    path = raw_uri.split("?", 1)[0] if raw_uri else request.path
    return path, request.query_string.decode("latin-1")


def authenticate() -> PublicIdentity:
    """Check the request's signature; return who signed it.

    Its nonce (spec §11.3 step 8) is remembered by the view's first :func:`transaction`,
    with what the request changes, or, if the view opens none, right after the view: in
    both cases durably before any answer leaves, and a replay is refused."""
    state = _state()
    body = request_body()
    now = int(time.time())
    path, query = request_target()
    verified = httpsig.verify_request(
        method=request.method,
        path=path,
        query=query,
        headers=dict(request.headers.items()),
        body=body,
        audience=state["identity"].name,
        now=now,
    )
    caller = verified.identity
    delegations = [value for name, value in request.headers.items() if name.lower() == _DELEGATION]
    if delegations:
        caller = _delegating(delegations, verified.identity, now)
    g.signer = verified.identity
    g.caller = caller
    g.pending_nonce = (verified.identity.fingerprint_hex, verified.nonce, now)
    return caller


_DELEGATION = httpsig.DELEGATION_HEADER.lower()


def _delegating(values: list[str], device: PublicIdentity, now: int) -> PublicIdentity:
    """The person a device's request acts for (spec/sessions.md section 3): its delegation
    is theirs, for this device, unexpired, and not revoked here."""
    if len(values) > 1:
        raise RequestAuthError(Code.BAD_DELEGATION, f"{httpsig.DELEGATION_HEADER} given twice")
    try:
        delegation = devices.Delegation.from_header(values[0])
        delegation.check(device, now)
    except errors.DelegationExpiredError as exc:
        raise RequestAuthError(Code.DELEGATION_EXPIRED, str(exc)) from None
    except errors.SecureCommError as exc:
        raise RequestAuthError(Code.BAD_DELEGATION, f"the device's delegation: {exc}") from None
    state = _state()
    table = state["revocations"]
    with state["engine"].connect() as conn:
        revoked = conn.execute(
            sa.select(table.c.revoked_at).where(
                table.c.person_fp == delegation.person.fingerprint_hex,
                table.c.device_fp == device.fingerprint_hex,
            )
        ).first()
    if revoked is not None:
        raise RequestAuthError(
            Code.DEVICE_REVOKED,
            f"{delegation.person.name} revoked their device {delegation.label!r}",
        )
    return delegation.person


def require_own_key() -> PublicIdentity:
    """Who signed the request, refused with a 403 if it is a device acting for them: what
    outlasts a request (a device's delegation or revocation) takes the person's own key."""
    caller = authenticate()
    if not g.signer.same_keys(caller):
        raise ApiError(
            403, Code.NOT_YOUR_KEY, f"this takes {caller.name}'s own key, not a device's"
        )
    return caller


def _post_revocation() -> tuple[Response, int]:
    """A person's revocation of a device (spec/sessions.md section 3): from now on this
    service refuses the device's requests. Posting it again changes nothing."""
    caller = require_own_key()
    body = read_json()
    if set(body) != {"v", "revocation"} or body["v"] != 1 or body["v"] is True:
        raise ApiError(400, Code.BAD_FIELD, 'expected {"v": 1, "revocation": {...}}')
    revocation = devices.Revocation.from_json(body["revocation"])
    revocation.verify()
    if not revocation.person.same_keys(caller):
        raise ApiError(403, Code.NOT_YOUR_KEY, "a revocation is posted by the person who signed it")
    table = _state()["revocations"]
    row = {
        "person_fp": caller.fingerprint_hex,
        "device_fp": revocation.device,
        "revoked_at": revocation.revoked,
        "statement": canonical.dumps(revocation.to_json()).decode(),
    }
    with transaction() as conn:
        added = conn.execute(insert_new(table, conn.dialect.name), row).first() is not None
    # Signed, so that the person knows this service holds it (a custodian's answers are
    # not signed otherwise): a revocation dropped on the way is not taken for done.
    identity: Identity = _state()["identity"]
    receipt = devices.revocation_receipt(identity.name, revocation)
    answer = {"receipt": receipt, "signature": b64encode(identity.sign("revoked", receipt))}
    return jsonify(answer), 201 if added else 200


@contextlib.contextmanager
def transaction() -> Iterator[Connection]:
    """A write transaction on this service's database that also remembers the request's
    nonce: one commit, one fsync, for both. If the block fails, the nonce went with the
    rollback and is remembered after the view instead."""
    state = _state()
    pending = g.pop("pending_nonce", None)
    try:
        with state["engine"].begin() as conn:
            if pending is not None:
                remember_nonce(conn, state["nonces"], *pending)
            yield conn
    except ReplayError:
        raise
    except BaseException:
        if pending is not None:
            g.pending_nonce = pending
        raise


def _remember_pending_nonce() -> None:
    if g.get("pending_nonce") is not None:
        with transaction():
            pass  # a transaction of the nonce alone
