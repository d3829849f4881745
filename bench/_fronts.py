"""The same service (a relay or a custodian, built from its own home) behind each front that
bench/slow_clients.py measures, run as ``python -m bench._fronts FRONT HOME --port P``.

- ``gthread``: gunicorn's gthread worker, 2 workers x 4 threads: the services' server
  before issue 13. A worker thread reads the request itself, so a slow client holds it.
- ``gthread-64``: the same with 64 threads a worker (128 in all).
- ``gevent``: gunicorn's gevent worker, 2 workers; each connection is a greenlet.
- ``granian``: granian's WSGI interface (Rust/hyper reads the request), 2 workers.
- ``uvicorn``: uvicorn (asyncio reads the request) with a2wsgi's WSGI adapter, 2 workers.
- ``nginx``: Debian's nginx buffering every request whole, in front of ``gthread`` on a
  Unix socket.

The peers that are not installed (granian, uvicorn and a2wsgi come from
bench/requirements.txt, nginx from Debian) are reported missing by ``available()``.
Plain HTTP on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from flask import Flask

HOST = "127.0.0.1"
WORKERS = 2
FRONTS = ("gthread", "gthread-64", "gevent", "granian", "uvicorn", "nginx")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def available(front: str) -> str | None:
    """None if ``front`` can run here, else what it lacks."""
    needs = {
        "gevent": ["gevent"],
        "granian": ["granian"],
        "uvicorn": ["uvicorn", "a2wsgi"],
    }.get(front, [])
    missing = [name for name in needs if importlib.util.find_spec(name) is None]
    if front == "nginx" and NGINX is None:
        missing.append("Debian's nginx")
    return ", ".join(missing) or None


def build_app(home: str | None = None) -> Flask:
    """The relay or the custodian whose own home is ``home`` (or $BENCH_FRONT_HOME)."""
    from securecomm.config import load_settings

    settings = load_settings(Path(home or os.environ["BENCH_FRONT_HOME"]), env={})
    own = settings.own_custodian
    if own is None:
        from securecomm.relay.app import create_relay_app

        return create_relay_app(settings)
    from securecomm.custodian.app import create_custodian_app

    return create_custodian_app(settings, own.name)


def asgi_app() -> Any:
    # The optional peers are imported by name: typed as Any whether installed or not.
    return importlib.import_module("a2wsgi").WSGIMiddleware(build_app())


def _gunicorn(home: str, bind: str, worker_class: str, threads: int) -> None:
    from securecomm.service.serve import _Gunicorn

    app = build_app(home)
    app.extensions["securecomm"]["engine"].dispose()
    options: dict[str, Any] = {
        "bind": bind,
        "workers": WORKERS,
        "worker_class": worker_class,
        "threads": threads,
        "timeout": 30,
        "graceful_timeout": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
    }
    _Gunicorn(lambda: build_app(home), options).run()


_NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
pid {run}/nginx.pid;
error_log stderr warn;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    client_max_body_size {limit};
    client_header_timeout 10s;
    client_body_timeout 10s;
    upstream app {{ server unix:{run}/app.sock; keepalive 8; }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_request_buffering on;
            proxy_buffering on;
        }}
    }}
}}
"""


def _nginx(home: str, port: int) -> None:
    from securecomm.config import load_settings

    settings = load_settings(Path(home), env={})
    limit = settings.max_envelope_bytes if settings.own_custodian is None else 1024 * 1024
    run = Path(home) / "nginx"  # inside the benchmark's temporary directory
    run.mkdir(mode=0o755, exist_ok=True)
    conf = run / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(
        _NGINX_CONF.format(run=run, host=HOST, port=port, limit=limit + 64 * 1024, user=user)
    )
    assert NGINX is not None
    # In this process group: whoever stops the group stops nginx too.
    subprocess.Popen([NGINX, "-c", str(conf), "-p", str(run), "-e", "stderr"])
    _gunicorn(home, f"unix:{run}/app.sock", "gthread", 4)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._fronts")
    parser.add_argument("front", choices=FRONTS)
    parser.add_argument("home", help="the relay's or the custodian's own home")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    lacking = available(args.front)
    if lacking:
        sys.exit(f"{args.front} needs {lacking}")
    bind = f"{HOST}:{args.port}"
    if args.front in ("gthread", "gthread-64", "gevent"):
        threads = {"gthread": 4, "gthread-64": 64, "gevent": 1}[args.front]
        worker_class = "gevent" if args.front == "gevent" else "gthread"
        _gunicorn(args.home, bind, worker_class, threads)
    elif args.front == "granian":
        os.environ["BENCH_FRONT_HOME"] = args.home
        importlib.import_module("granian").Granian(
            "bench._fronts:build_app",
            address=HOST,
            port=args.port,
            interface="wsgi",
            workers=WORKERS,
            factory=True,
            log_level="warning",
        ).serve()
    elif args.front == "uvicorn":
        os.environ["BENCH_FRONT_HOME"] = args.home
        importlib.import_module("uvicorn").run(
            "bench._fronts:asgi_app",
            factory=True,
            host=HOST,
            port=args.port,
            workers=WORKERS,
            log_level="warning",
            access_log=False,
        )
    else:
        _nginx(args.home, args.port)


if __name__ == "__main__":
    main()
