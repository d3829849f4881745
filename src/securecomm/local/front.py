"""The front of the relay's replicas: Debian's nginx, as a child of ``securecomm up``.

With ``up --relay-replicas N`` (N > 1) the relay runs as N ``relay serve`` processes from
its own home, each on an internal loopback port, all on one database; nginx listens on
the relay's address (its URL in the network file, so clients, the web page and the
network file see one relay) and spreads the requests over them (``least_conn``).

What it does, and why:

- **Moving to another replica.** nginx's default, ``proxy_next_upstream error timeout``:
  a request whose replica refuses the connection (stopped, killed) goes to the next one.
  A POST goes to the next one only if it had not been sent (nginx never retries a
  non-idempotent request it has passed on, and ``non_idempotent`` is not given: a POST
  cut off mid-way is answered 502 and the client decides). GET, PUT and DELETE may be
  passed on even after they were sent; each is signed with a nonce the replicas record
  in their one database, so one that the first replica had acted on is refused as a
  replay by the next, never done twice.
- **Slow clients.** nginx reads a request's headers (5 s, as the services allow) and
  its whole body (up to the relay's ``max_envelope_bytes`` or a payload stream's piece,
  whichever is larger; 10 s between two reads)
  before it opens a connection to a replica, and takes the replica's whole answer before
  trickling it out: a slow client holds an nginx connection, never a replica.
- **The signed requests still verify.** A signature covers the method, the path, the
  query and the body's digest (``securecomm.httpsig``), never the host: ``proxy_pass``
  without a URI passes the request target exactly as the client sent it, and the body
  unchanged. The ``Host`` header goes on as the client sent it, and
  ``X-Forwarded-Proto`` says which scheme the client used (gunicorn trusts it from
  loopback only, so the front sets it and clears the other two scheme headers).
- **TLS.** With ``up --tls`` the front serves HTTPS with the relay's own certificate and
  key (in the relay's home) and connects to the replicas over HTTPS too, checking their
  certificate against the network's CA: each replica is an ordinary ``relay serve`` of
  that home, which serves what its settings say; nothing on the way speaks plain HTTP.

Its configuration is written under the data directory (``HOME/relay-front/nginx.conf``,
with its pid file and temporary files beside it; its logs in ``HOME/logs``): nothing in
``/etc/nginx`` or ``/var`` is read or written. nginx stays in the foreground
(``daemon off``) in a process group of its own, so ``up`` stops it with the services.
Run as root, nginx's workers take the data directory owner's user and group (they write
request bodies under it); otherwise they are the user who runs ``up``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._files import write_atomic
from ..errors import ParameterError

__all__ = [
    "FRONT_DIR",
    "NGINX_PACKAGE",
    "Front",
    "find_nginx",
    "server_block",
]

#: The Debian package that gives nginx (the smallest of them does).
NGINX_PACKAGE = "nginx-light"
#: Where the front keeps its configuration, pid and temporary files, under the data directory.
FRONT_DIR = "relay-front"
#: The name of the replicas' group in the configuration.
UPSTREAM = "securecomm_relay"

# As the services themselves allow (service.serve): a request's headers must arrive within
# this many seconds, and an idle keep-alive connection lasts as long.
HEADER_SECONDS = 5
# Between two reads of a body, or two writes of an answer, before the connection is closed.
BODY_SECONDS = 10
# A replica that does not accept a connection within this is passed over.
CONNECT_SECONDS = 2
# For a replica's answer to begin (gunicorn's own timeout for a request is 30 s).
ANSWER_SECONDS = 60


#: Where nginx is looked for after PATH: Debian puts it in /usr/sbin.
SYSTEM_DIRS = ("/usr/sbin", "/usr/local/sbin")


def find_nginx(
    env: Mapping[str, str] | None = None, system_dirs: Sequence[str] = SYSTEM_DIRS
) -> str:
    """The nginx program: ``SECURECOMM_NGINX`` if set, else nginx on PATH or in Debian's
    /usr/sbin (which a user's PATH may lack); a ParameterError naming the package to
    install if there is none."""
    env = os.environ if env is None else env
    chosen = env.get("SECURECOMM_NGINX")
    if chosen:
        found = shutil.which(chosen)
        if found is None:
            raise ParameterError(f"SECURECOMM_NGINX={chosen}: no such program")
        return found
    search = os.pathsep.join([env.get("PATH", os.defpath), *system_dirs])
    found = shutil.which("nginx", path=search)
    if found is None:
        error = ParameterError("relay replicas need nginx as their front, and it is not installed")
        error.hint = (
            f"install Debian's {NGINX_PACKAGE} (apt-get install {NGINX_PACKAGE}, as root), or"
            " name another nginx with SECURECOMM_NGINX, or run one relay (--relay-replicas 1)"
        )
        raise error
    return found


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _quote(text: str) -> str:
    """A string for nginx's configuration, in double quotes."""
    if any(c in text for c in '"\\\n\r$'):
        raise ParameterError(f"nginx front: {text!r} cannot be named in its configuration")
    return f'"{text}"'


@dataclass(frozen=True)
class UpstreamTls:
    """How the front checks the replicas' certificate: the CA, and the name it is for."""

    ca: str  # the CA certificate's path, as nginx is to read it
    name: str  # a DNS name of the replicas' certificate


def server_block(
    *,
    listen: str,
    replicas: Sequence[str],
    max_body_bytes: int,
    tls: tuple[str, str] | None = None,
    upstream_tls: UpstreamTls | None = None,
    access_log: str | None = None,
    set_aside: int = 0,
) -> str:
    """The ``upstream`` and ``server`` blocks of the front (what goes inside ``http``):
    listening on ``listen`` (HOST:PORT, or a port), the replicas at ``replicas``
    (HOST:PORT each), TLS with ``tls`` (certificate chain, key), the replicas reached over
    HTTPS with ``upstream_tls``; a replica that fails is left out for ``set_aside``
    seconds (0: never). docker-compose's front has these blocks too."""
    scheme = "http" if upstream_tls is None else "https"
    if set_aside:
        # A replica that failed is left out for this long before it is tried again.
        servers = "\n".join(
            f"    server {r} max_fails=1 fail_timeout={set_aside}s;" for r in replicas
        )
    else:
        # Never left out: on loopback a replica that is down refuses a connection at once,
        # and one started again gets requests at once (left out for a while, two that
        # died in that while would be two left out, and every request answered 502).
        servers = "\n".join(f"    server {r} max_fails=0;" for r in replicas)
    lines = [
        f"upstream {UPSTREAM} {{",
        "    # The replica with the fewest requests in progress (in turn among equals).",
        "    least_conn;",
        servers,
        "}",
        "",
        "server {",
        f"    listen {listen}{' ssl' if tls else ''};",
    ]
    if tls is not None:
        lines += [
            f"    ssl_certificate {_quote(tls[0])};",
            f"    ssl_certificate_key {_quote(tls[1])};",
            "    ssl_protocols TLSv1.2 TLSv1.3;",
        ]
    if access_log is not None:
        lines.append(f"    access_log {_quote(access_log)} securecomm;")
    lines += [
        "    server_tokens off;",
        "",
        "    # Slow clients hold a connection of the front's, never a replica: the whole",
        "    # request is read before a replica is chosen, the whole answer taken from it.",
        f"    client_header_timeout {HEADER_SECONDS}s;",
        f"    keepalive_timeout {HEADER_SECONDS}s;",
        f"    client_body_timeout {BODY_SECONDS}s;",
        f"    send_timeout {BODY_SECONDS}s;",
        f"    client_max_body_size {max_body_bytes};",
        "    proxy_request_buffering on;",
        "    proxy_buffering on;",
        "",
        "    location / {",
        f"        proxy_pass {scheme}://{UPSTREAM};",
        "        # Without a URI: the request target goes on as the client sent it, which",
        "        # is what its signature covers (with the method and the body's digest).",
        "        proxy_set_header Host $http_host;",
        "        proxy_set_header X-Forwarded-For $remote_addr;",
        "        proxy_set_header X-Forwarded-Proto $scheme;",
        '        proxy_set_header X-Forwarded-Protocol "";',
        '        proxy_set_header X-Forwarded-Ssl "";',
        f"        proxy_connect_timeout {CONNECT_SECONDS}s;",
        f"        proxy_send_timeout {BODY_SECONDS}s;",
        f"        proxy_read_timeout {ANSWER_SECONDS}s;",
        "        # A replica that cannot be reached: the next one. A POST only if it was not",
        "        # sent (no non_idempotent); a signed GET, PUT or DELETE that was carries a",
        "        # nonce the replicas share, so it is never carried out twice.",
        "        proxy_next_upstream error timeout;",
    ]
    if upstream_tls is not None:
        lines += [
            "        proxy_ssl_verify on;",
            f"        proxy_ssl_trusted_certificate {_quote(upstream_tls.ca)};",
            f"        proxy_ssl_name {upstream_tls.name};",
            "        proxy_ssl_server_name on;",
            "        proxy_ssl_protocols TLSv1.2 TLSv1.3;",
        ]
    lines += [
        "    }",
        "",
        "    # The front's own refusals, in the shape of the relay's (not signed: the relay",
        "    # did not make them, and a client that checks answers says so).",
        "    error_page 413 @too_large;",
        "    error_page 502 503 504 @no_replica;",
        "    location @too_large {",
        "        default_type application/json;",
        f'        return 413 \'{{"code": "too_large", "message": "body larger than'
        f" {max_body_bytes} bytes\"}}';",
        "    }",
        "    location @no_replica {",
        "        default_type application/json;",
        '        return 502 \'{"code": "http_error", "message": "no relay replica answered"}\';',
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


#: The access log's lines, JSON like the services' own (no address, no header value).
LOG_FORMAT = (
    "log_format securecomm escape=json"
    ' \'{"service": "relay-front", "method": "$request_method", "path": "$uri",'
    ' "status": $status, "s": $request_time, "replica": "$upstream_addr",'
    ' "replica_status": "$upstream_status"}\';'
)


@dataclass(frozen=True)
class Front:
    """The local front: where it listens, the replicas, and its files under ``directory``."""

    directory: Path  # HOME/relay-front
    logs: Path  # HOME/logs
    host: str
    port: int
    replicas: tuple[int, ...]  # the replicas' ports on 127.0.0.1
    max_body_bytes: int
    tls: tuple[Path, Path] | None = None  # the relay's certificate chain and key
    ca: str | None = None  # the CA of the replicas' certificate (PEM), when they serve HTTPS

    @property
    def config(self) -> Path:
        return self.directory / "nginx.conf"

    @property
    def access_log(self) -> Path:
        return self.logs / "relay-front.access.log"

    def text(self) -> str:
        """The whole nginx.conf."""
        temp = self.directory / "tmp"
        upstream_tls = None
        if self.ca is not None:
            upstream_tls = UpstreamTls(str(self.directory / "replicas-ca.pem"), "localhost")
        tls = None if self.tls is None else (str(self.tls[0]), str(self.tls[1]))
        lines = [
            "# Written by `securecomm up` for this data directory's relay replicas, at each",
            "# start: edits are lost. nginx -p DIR -c DIR/nginx.conf -e stderr runs it.",
            "daemon off;",
            "master_process on;",
            "worker_processes auto;",
            f"pid {_quote(str(self.directory / 'nginx.pid'))};",
            f"lock_file {_quote(str(self.directory / 'nginx.lock'))};",
            "error_log stderr warn;",
        ]
        user = _worker_user(self.directory)
        if user is not None:
            lines.append(f"user {user};")
        lines += [
            "",
            "events {",
            "    worker_connections 1024;",
            "}",
            "",
            "http {",
            f"    client_body_temp_path {_quote(str(temp / 'body'))};",
            f"    proxy_temp_path {_quote(str(temp / 'proxy'))};",
            f"    fastcgi_temp_path {_quote(str(temp / 'fastcgi'))};",
            f"    uwsgi_temp_path {_quote(str(temp / 'uwsgi'))};",
            f"    scgi_temp_path {_quote(str(temp / 'scgi'))};",
            f"    {LOG_FORMAT}",
            "",
        ]
        block = server_block(
            listen=_address(self.host, self.port),
            replicas=[_address("127.0.0.1", port) for port in self.replicas],
            max_body_bytes=self.max_body_bytes,
            tls=tls,
            upstream_tls=upstream_tls,
            access_log=str(self.access_log),
        )
        lines += [f"    {line}" if line else "" for line in block.splitlines()]
        lines.append("}")
        return "\n".join(lines) + "\n"

    def write(self) -> Path:
        """Write nginx.conf (and the replicas' CA) under ``directory``; return its path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "tmp").mkdir(exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.ca is not None:
            write_atomic(self.directory / "replicas-ca.pem", self.ca.encode("ascii"))
        write_atomic(self.config, self.text().encode("utf-8"))
        return self.config

    def command(self, nginx: str) -> list[str]:
        return [nginx, "-p", str(self.directory), "-c", str(self.config), "-e", "stderr"]


def _worker_user(directory: Path) -> str | None:
    """nginx's ``user`` for its workers when it runs as root: the owner of the data
    directory (they write request bodies under it), else nothing (they run as the user
    who starts it, and nginx would ignore the directive with a warning)."""
    if os.geteuid() != 0:
        return None
    import grp
    import pwd

    home = directory.parent
    status = home.stat()
    try:
        user = pwd.getpwuid(status.st_uid).pw_name
        group = grp.getgrgid(status.st_gid).gr_name
    except KeyError:
        raise ParameterError(
            f"{home} belongs to uid {status.st_uid} (gid {status.st_gid}), which has no name"
            " here: nginx's workers cannot be given it"
        ) from None
    return f"{user} {group}"
