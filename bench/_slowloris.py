"""Slow clients against a loopback service, and the probe that says whether it still answers.

``SlowClients`` holds ``headers`` connections that trickle their request headers and
``bodies`` connections that send whole headers, then trickle their body, one byte per
connection every ``interval`` seconds, from one thread. A connection the server closes
is opened again, as an attacker would, so the pressure stays on while it runs.
``probe`` is an ordinary request on a fresh connection, timed as a client sees it.

Used by bench/slow_clients.py (the options measured) and tests/security/
test_slow_clients.py (the product under the same attack). Loopback only, bounded by
its counts and by whoever stops it.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

__all__ = ["ProbeResult", "SlowClients", "probe", "probe_series"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# A header line the server waits to see the end of, sent a byte at a time, forever.
_HEADER_TRICKLE = b"X-Slow: a\r\n"


@dataclass
class _Conn:
    sock: socket.socket
    body: bool
    sent: int = 0


@dataclass
class SlowClients:
    """Slow connections to ``host``:``port``, kept up from ``start()`` to ``stop()``."""

    host: str
    port: int
    headers: int = 64
    bodies: int = 64
    body_path: str = "/api/v1/messages"
    body_length: int = 100_000  # under every service's limit: the server must wait for it
    interval: float = 0.5
    tls: ssl.SSLContext | None = None
    opened: int = field(default=0, init=False)  # connections opened, reopenings included
    closed_by_server: int = field(default=0, init=False)
    failed_connects: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.host not in _LOOPBACK:
            raise ValueError("slow clients only target loopback")
        self._conns: list[_Conn | None] = [None] * (self.headers + self.bodies)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _open(self, body: bool) -> _Conn | None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2.0)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
            if body:
                start = (
                    f"POST {self.body_path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {self.body_length}\r\n\r\n{{"
                )
            else:
                start = f"GET /healthz HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            sock.sendall(start.encode("ascii"))
            sock.setblocking(False)
        except OSError:
            self.failed_connects += 1
            return None
        self.opened += 1
        return _Conn(sock, body)

    def start(self) -> SlowClients:
        for index in range(len(self._conns)):
            self._conns[index] = self._open(index >= self.headers)
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)
        self._thread.start()
        return self

    def _tick(self, index: int) -> None:
        conn = self._conns[index]
        if conn is None or not self._still_held(conn):
            if conn is not None:
                self.closed_by_server += 1
                conn.sock.close()
            self._conns[index] = self._open(index >= self.headers)
            return
        payload = b"a" if conn.body else _HEADER_TRICKLE[conn.sent % len(_HEADER_TRICKLE) :][:1]
        if conn.body and conn.sent >= self.body_length - 2:
            return  # never finish the body
        try:
            conn.sock.send(payload)
            conn.sent += 1
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except OSError:
            self.closed_by_server += 1
            conn.sock.close()
            self._conns[index] = None

    def _still_held(self, conn: _Conn) -> bool:
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return True  # nothing to read: the server is still waiting for us
        except OSError:
            return False
        del data  # an answer or a close (b"") ends the hold either way
        return False

    def _run(self) -> None:
        count = len(self._conns)
        step = self.interval / max(count, 1)
        index = 0
        while not self._stop.wait(step):
            self._tick(index)
            index = (index + 1) % count

    def held(self) -> int:
        return sum(conn is not None for conn in self._conns)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for index, conn in enumerate(self._conns):
            if conn is not None:
                conn.sock.close()
                self._conns[index] = None

    def __enter__(self) -> SlowClients:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass(frozen=True)
class ProbeResult:
    status: int | None  # None: no answer (timeout, refused, reset)
    seconds: float
    error: str | None = None

    def answered_within(self, limit: float) -> bool:
        return self.status == 200 and self.seconds < limit


def probe(
    host: str,
    port: int,
    *,
    path: str = "/healthz",
    timeout: float = 1.0,
    tls: ssl.SSLContext | None = None,
) -> ProbeResult:
    """GET ``path`` on a fresh connection, as an ordinary client would; no answer within
    ``timeout`` (connect, TLS, request and answer together, within a small margin) is
    a failure."""
    if host not in _LOOPBACK:
        raise ValueError("the probe only targets loopback")
    started = time.perf_counter()
    connection: http.client.HTTPConnection
    if tls is None:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    else:
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=tls)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        response.read()
        return ProbeResult(response.status, time.perf_counter() - started)
    except (OSError, http.client.HTTPException) as exc:
        return ProbeResult(None, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()


def probe_series(
    host: str,
    port: int,
    *,
    count: int,
    every: float,
    timeout: float = 1.0,
    tls: ssl.SSLContext | None = None,
) -> list[ProbeResult]:
    """``count`` probes, one starting every ``every`` seconds (or as soon as the last ends)."""
    results = []
    for number in range(count):
        started = time.perf_counter()
        results.append(probe(host, port, timeout=timeout, tls=tls))
        if number + 1 < count:
            time.sleep(max(0.0, every - (time.perf_counter() - started)))
    return results
