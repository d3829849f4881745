"""Running a service under gunicorn, never Flask's development server.

The worker class is gevent (issue 13): each connection is a greenlet that reads its
request while the worker goes on serving others, so slow or hostile clients that
trickle their headers or bodies hold only a greenlet each, never the worker. gunicorn's
gthread, used before, reads a request in one of its few threads: 12-16 such connections
made a service unreachable. A request's headers must arrive within ``keepalive``
seconds; a body may take its time, up to the size limit the app enforces, which answers
413 on ``Content-Length`` before reading it. bench/slow_clients.py measures this front
beside gthread (with more threads), granian, uvicorn and nginx in front: every probe
answered in milliseconds under 64 header and 64 body tricklers, at gthread's CPU per
request (within a few per cent).
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import socket
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from ..errors import ParameterError

__all__ = ["HEADER_SECONDS", "WORKER_CONNECTIONS", "serve"]

WORKER_CONNECTIONS = 1000
HEADER_SECONDS = 5


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # Each worker builds its own app, so no database connection crosses a fork.
        return self._factory()


def _check_tls(name: str, cert: Path, key: Path) -> None:
    """Refuse here, in a sentence, what gunicorn would refuse in each worker."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ParameterError(f"{name}: no TLS file at {exc.filename}") from None
    except (ssl.SSLError, OSError) as exc:
        raise ParameterError(
            f"{name}: {cert} and {key} are not a certificate and its key ({exc})"
        ) from None


def _bind(name: str, host: str, port: int) -> int:
    """The file descriptor of a socket bound to ``host``:``port``, for gunicorn to listen on
    (its ``fd://`` bind, which takes the descriptor over).

    Bound here, an address gunicorn could not listen on is refused in a sentence (gunicorn
    would print nothing useful and retry for half a minute, after "listening" was said),
    and held from then on: no other process can take the port before gunicorn listens."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ParameterError(f"{name}: cannot listen on {host}: {exc.strerror}") from None
    family, kind, proto, _, address = found[0]
    bound = socket.socket(family, kind, proto)
    bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
    try:
        bound.bind(address)
    except OSError as exc:
        bound.close()
        why = {
            errno.EADDRINUSE: "another process listens there (is it running already?)",
            errno.EADDRNOTAVAIL: f"{host} is not an address of this machine",
            errno.EACCES: "a port below 1024 needs more privilege",
        }.get(exc.errno or 0, exc.strerror or type(exc).__name__)
        error = ParameterError(f"{name}: cannot listen on {host}:{port}: {why}")
        error.hint = "give another --port (or --host), or stop what holds it"
        raise error from None
    return bound.detach()  # gunicorn's now: it closes this descriptor once it has its own


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: glibc's mallopt parameters (malloc.h) and the values a service runs with.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest
_TRIM_THRESHOLD_BYTES = 128 * 1024 * 1024


def _keep_freed_memory() -> None:
    """Have glibc keep the memory a request freed for the next, instead of handing it back
    to the system after every request and taking it again, page fault by page fault.

    A stream's range or piece (4 MiB) is held in a few buffers of that size for each
    request. By default glibc maps and unmaps such buffers, or trims its heap under them,
    each time: serving 1 GiB of ranges took about 516,000 minor page faults in the relay's
    worker (every byte faulted in twice) and 2.7 s of system time; with these settings
    2,300 the first time, then none, and 0.6 s, and one client's ranges came 1.4x as fast
    (114-127 against 172-187 MB/s). What a worker keeps is at most its own peak, which it
    reached anyway. Elsewhere than glibc nothing changes."""
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)


def _has_setting(name: str) -> bool:
    """Whether the installed gunicorn knows the setting ``name``."""
    from gunicorn.config import KNOWN_SETTINGS

    return any(setting.name == name for setting in KNOWN_SETTINGS)


def serve(
    factory: Callable[[], Flask],
    *,
    name: str,
    host: str,
    port: int,
    workers: int,
    tls: tuple[Path, Path] | None = None,
    insecure_http: bool = False,
) -> None:
    """Build the app once here (identity, schema), then serve it with gunicorn's workers,
    over TLS when ``tls`` (certificate chain, key) is given.

    Plain HTTP on an address other than loopback is refused unless ``insecure_http``:
    contents stay sealed and signed, but who talks to whom would be on the wire."""
    if tls is None and not _is_loopback(host) and not insecure_http:
        raise ParameterError(
            f"{name} would listen on {host} over plain HTTP; give it a certificate ([tls]"
            " cert and key in its securecomm.toml; `securecomm tls issue` makes one), or"
            " say --insecure-http for a network you trust"
        )
    if tls is not None:
        _check_tls(name, *tls)
    listener = _bind(name, host, port)
    _keep_freed_memory()  # before the workers fork, which inherit it
    app = factory()
    app.extensions["securecomm"]["engine"].dispose()
    if tls is None and not _is_loopback(host):
        print(
            f"warning: {name} listens on {host}, not loopback, over plain HTTP (--insecure-http)."
            " Contents stay sealed and signed, but metadata is visible.",
            file=sys.stderr,
        )
    options: dict[str, Any] = {
        "bind": f"fd://{listener}",
        "workers": workers,
        "worker_class": "gevent",
        # Connections a worker holds at once, slow ones included (one greenlet each).
        "worker_connections": WORKER_CONNECTIONS,
        # Seconds for a request's headers to arrive (and an idle keep-alive to last).
        "keepalive": HEADER_SECONDS,
        "timeout": 30,
        "graceful_timeout": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": f"securecomm-{name}",
    }
    if _has_setting("control_socket_disable"):
        # gunicorn 25.1 and later open a control socket by default, at
        # $XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl: outside the service's
        # home, one path for every gunicorn of the user (each new one takes it over, and
        # the first to stop deletes it for all). A service is stopped by signals; none.
        options["control_socket_disable"] = True
    if tls is not None:
        options |= {"certfile": str(tls[0]), "keyfile": str(tls[1])}
    scheme = "https" if tls is not None else "http"
    where = f"[{host}]" if ":" in host else host  # an IPv6 address, as a URL writes it
    print(f"{name} listening on {scheme}://{where}:{port}", file=sys.stderr, flush=True)
    _Gunicorn(factory, options).run()
