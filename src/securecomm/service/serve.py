"""Running a service under gunicorn, never Flask's development server."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

__all__ = ["serve"]


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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(factory: Callable[[], Flask], *, name: str, host: str, port: int, workers: int) -> None:
    """Build the app once here (identity, schema), then serve it with gunicorn's workers."""
    app = factory()
    app.extensions["securecomm"]["engine"].dispose()
    if not _is_loopback(host):
        print(
            f"warning: {name} listens on {host}, not loopback, over plain HTTP. Contents stay"
            " sealed and signed, but metadata is visible: put TLS in front of it.",
            file=sys.stderr,
        )
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": 4,
        "timeout": 30,
        "graceful_timeout": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": f"securecomm-{name}",
    }
    print(f"{name} listening on http://{host}:{port}", file=sys.stderr, flush=True)
    _Gunicorn(factory, options).run()
