"""Signed HTTP calls to a relay or a custodian (httpx).

Every error a service answers becomes a :class:`ServiceError` with its
HTTP status and stable code; a service that cannot be reached becomes one
with status 0 and code ``unreachable``. A service that signs its answers
(the relay, spec §11.4) is given its pinned key: then every answer, an
error as much as a success, is checked to be its signed answer to this very
request before anything of it is used (:class:`AnswerSignatureError`).
"""

from __future__ import annotations

import atexit
import functools
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from .. import canonical, httpsig
from ..codes import Code
from ..devices import DeviceKeys
from ..errors import FormatError, ServiceError
from ..identity import Keys, PublicIdentity

__all__ = ["ServiceClient", "answer_json", "close_idle_pools", "tls_context"]

#: What a proxy or load balancer answers itself when the service behind it cannot be reached.
_GATEWAY = frozenset({502, 503, 504})

_tls_lock = threading.Lock()
_tls_contexts: dict[str | None, ssl.SSLContext] = {}

#: An idle kept-alive connection is dropped after this many seconds: well under the
#: services' own keep-alive (serve.HEADER_SECONDS, 5 s), so a request never goes out on a
#: connection the service is closing at that moment.
KEEPALIVE_SECONDS = 2.0


@dataclass
class _Pool:
    transport: httpx.HTTPTransport
    users: int = 0
    idle_since: float = 0.0


_pools_lock = threading.Lock()
_pools: dict[tuple[str, str | None], _Pool] = {}


def _close_where(condition: Callable[[_Pool], bool]) -> None:
    """Close and forget the pools ``condition`` picks; the caller holds ``_pools_lock``."""
    for key, pool in list(_pools.items()):
        if condition(pool):
            pool.transport.close()
            del _pools[key]


def _acquire(base_url: str, trust: str | None) -> httpx.BaseTransport:
    """The process's one connection pool to ``base_url``: a send or a read makes a dozen
    calls to six services, and a client and its connections per call cost more CPU than
    the cryptography of the whole cycle (issue 16). httpx's transport may be shared
    between threads. A pool no one has used for longer than its connections live is
    closed here.

    Requests go to the transport itself, not through an ``httpx.Client``: what a Client
    adds (cookies, redirects, auth, default headers, URL merging) is nothing a call here
    uses, and cost a third of httpx's CPU per request (0.12 of 0.36 ms). So no cookie a
    service might set is kept, or sent from one identity's call on another's."""
    now = time.monotonic()
    with _pools_lock:
        _close_where(lambda pool: not pool.users and now - pool.idle_since > KEEPALIVE_SECONDS)
        entry = _pools.get((base_url, trust))
        if entry is None:
            secure = base_url.startswith("https://")
            entry = _pools[(base_url, trust)] = _Pool(
                httpx.HTTPTransport(
                    verify=tls_context(trust) if secure else _trusts_nothing(),
                    limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS),
                )
            )
        entry.users += 1
        return entry.transport


def _release(base_url: str, trust: str | None) -> None:
    with _pools_lock:
        entry = _pools.get((base_url, trust))
        if entry is not None:
            entry.users -= 1
            if not entry.users:
                entry.idle_since = time.monotonic()


def close_idle_pools() -> None:
    """Close the kept-alive connections no call is using. A process that is about to stop
    services it called (``up``, ``demo``, a test) calls this first: a service waits for an
    idle kept-alive connection to go before it stops, up to its graceful timeout (5 s)."""
    with _pools_lock:
        _close_where(lambda pool: not pool.users)


@atexit.register
def _close_pools() -> None:
    with _pools_lock:
        _close_where(lambda pool: True)


def answer_json(response: httpx.Response) -> Any:
    """A service's answer body as JSON (spec 1.4.1: the values of canonical JSON, any
    spelling); ``FormatError`` for anything else."""
    return canonical.parse_json(response.content, what="unusable answer")


def tls_context(trust: str | None = None) -> ssl.SSLContext:
    """httpx builds a TLS context (loading every CA certificate) per client, even for plain
    http: some 16 ms of CPU, twelve times in a send. Build one per trust anchor, once per
    process: the CA given (PEM), or the system's trust store for None."""
    with _tls_lock:
        if trust not in _tls_contexts:
            _tls_contexts[trust] = (
                httpx.create_ssl_context()
                if trust is None
                else ssl.create_default_context(cadata=trust)
            )
        return _tls_contexts[trust]


@functools.cache
def _trusts_nothing() -> ssl.SSLContext:
    """The TLS context of the pools to plain-http URLs, which never make a TLS connection
    (a pool serves one scheme and host): no CA at all, so it would refuse any certificate
    were it ever asked to. Loading the system's CAs for them cost every command-line
    process some 16-56 ms of CPU before its first request (issue 16). One per process,
    as each context costs some 0.4 ms to make."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error under an httpx error, if that is what it is."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class ServiceClient:
    """One service at ``base_url``, called as ``identity``, for the audience ``audience``."""

    def __init__(
        self,
        base_url: str,
        audience: str,
        identity: Keys | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        trust: str | None = None,
        answers: PublicIdentity | None = None,
    ) -> None:
        """``trust``: the CA (PEM) the service's TLS certificate must chain to; None for the
        system's trust store. Only ``https://`` URLs use it.

        ``answers``: the pinned key that signs this service's answers (the relay's); every
        answer must then carry its signature for the request it answers. None for a service
        whose answers are signed objects of their own (a custodian's)."""
        self.base_url = base_url.rstrip("/")
        self.audience = audience
        self.identity = identity
        self.trust = trust
        self.answers = answers
        self.timeout = timeout
        self._timeouts = httpx.Timeout(timeout).as_dict()
        # A transport of the caller's (a test's) is this client's alone; else the pool.
        self._own = transport is not None
        self._open = True
        self._transport = transport if transport is not None else _acquire(self.base_url, trust)

    def close(self) -> None:
        """Close a client made on the caller's transport; give a pooled one back, its
        connections kept for the process's next call to the same service."""
        if not self._open:
            return
        self._open = False
        if self._own:
            self._transport.close()
        else:
            _release(self.base_url, self.trust)

    def _tls_message(self, error: ssl.SSLError) -> str:
        """Which host refused, why, and what was expected of it."""
        host = httpx.URL(self.base_url).host
        why = getattr(error, "verify_message", None) or error.reason or type(error).__name__
        expected = (
            "a certificate for that host from the CA in the network file"
            if self.trust is not None
            else "a certificate for that host from a CA this system trusts"
        )
        return f"TLS with {host} refused: {why}; expected {expected}"

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        params: dict[str, str] | None = None,
        sign: bool = True,
        content_type: str = "application/json",
        digest: str | None = None,
    ) -> httpx.Response:
        """Send one request; return the response if its status is 2xx, else raise.
        ``raw`` is sent as it is, as ``content_type``; ``body`` as canonical JSON; ``digest``
        is ``raw``'s Content-Digest if the caller computed it already."""
        content = raw if raw is not None else (canonical.dumps(body) if body is not None else b"")
        query = str(httpx.QueryParams(params or {}))
        headers = {"Content-Type": content_type} if content else {}
        # Fresh for every request: the answer must be signed for this one (spec §11.4).
        nonce = httpsig.new_nonce()
        if sign:
            if self.identity is None:
                raise ValueError("a signed request needs an identity")
            headers |= httpsig.sign_request(
                self.identity,
                method=method,
                path=path,
                query=query,
                body=content,
                audience=self.audience,
                nonce=nonce,
                digest=digest,
            )
        elif self.answers is not None:
            headers[httpsig.ANSWER_NONCE_HEADER] = nonce
        outgoing = httpx.Request(
            method,
            self.base_url + path + (f"?{query}" if query else ""),
            content=content,
            headers=headers,
            extensions={"timeout": self._timeouts},
        )
        try:
            response = self._transport.handle_request(outgoing)
            response.request = outgoing
            try:
                response.read()
            finally:
                response.close()
        except httpx.HTTPError as exc:
            refused = _tls_failure(exc)
            if refused is not None:
                raise ServiceError(
                    self.audience, 0, Code.TLS_REFUSED, self._tls_message(refused)
                ) from None
            if isinstance(exc, httpx.TimeoutException) and not isinstance(
                exc, httpx.ConnectTimeout
            ):
                # It took the connection (or the request): it hangs rather than being down.
                reason = f"{self.base_url} did not answer within {self.timeout:g} s"
            else:
                reason = f"cannot reach {self.base_url} ({type(exc).__name__})"
            raise ServiceError(self.audience, 0, Code.UNREACHABLE, reason) from None
        signatures = response.headers.get_list(httpsig.ANSWER_HEADER)
        if self.answers is not None and not signatures and response.status_code in _GATEWAY:
            # A front (nginx before the relay's replicas) answering for a replica it could not
            # reach. Unsigned, so nothing in it is believed: the service is unreachable, as
            # when a connection is refused.
            raise ServiceError(
                self.audience,
                response.status_code,
                Code.UNREACHABLE,
                f"{self.base_url} is unavailable: a proxy in front of it answered"
                f" HTTP {response.status_code}",
            )
        if self.answers is not None:
            caller = self.identity.signer.fingerprint_hex if sign and self.identity else None
            httpsig.verify_answer(
                self.answers,
                signatures,
                httpsig.AnswerBinding(method.upper(), path, query, nonce, caller),
                status=response.status_code,
                body=response.content,
                service=self.audience,
            )
        if response.status_code >= 400:
            try:
                answer = answer_json(response)
                code, message = str(answer["code"]), str(answer["message"])
            except (FormatError, KeyError, TypeError):
                code, message = Code.HTTP_ERROR, f"HTTP {response.status_code}"
            failure = ServiceError(self.audience, response.status_code, code, message)
            if code == Code.DEVICE_REVOKED and isinstance(self.identity, DeviceKeys):
                failure.hint = self.identity.revoked_hint
            raise failure
        return response
