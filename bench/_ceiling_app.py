"""The servers the relay is measured against, each run as ``python -m bench._ceiling_app``.

- ``ceiling``: a bare Flask app whose one POST route parses the JSON body
  and answers 201, served by securecomm's own ``serve`` (the same gunicorn
  worker class, workers, connections and timeouts as the relay): what Flask
  under that server can do at best, the framework's ceiling.
- ``relay-normal``: the real relay with SQLite ``synchronous=NORMAL``
  instead of ``FULL``, only to put a number on what durability costs. The
  product never runs like this: an acknowledged write would not survive a
  power cut.

Both bind 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from flask import Flask, Response, jsonify, request

HOST = "127.0.0.1"


class _NoEngine:
    """``serve`` disposes of the app's database engine before forking; this app has none."""

    def dispose(self) -> None:
        return None


def create_ceiling_app() -> Flask:
    app = Flask("securecomm.bench.ceiling")
    app.extensions["securecomm"] = {"engine": _NoEngine()}

    @app.post("/api/v1/messages")
    def store() -> tuple[Response, int]:
        document = json.loads(request.get_data())
        return jsonify({"id": document["header"]["id"], "stored": True}), 201

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok", "service": "ceiling"})  # what the health wait reads

    return app


def _relay_with_normal_sync(home: str) -> Flask:
    from securecomm.config import load_settings
    from securecomm.relay.app import create_relay_app
    from securecomm.service import storage

    plain = storage._sqlite_pragmas

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        plain(dbapi_connection, _record)
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    storage._sqlite_pragmas = pragmas  # open_database looks it up when it connects the event
    return create_relay_app(load_settings(home))


def main() -> None:
    from securecomm.service.serve import serve

    parser = argparse.ArgumentParser(prog="python -m bench._ceiling_app")
    parser.add_argument("which", choices=["ceiling", "relay-normal"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--home", help="the relay's home (relay-normal only)")
    args = parser.parse_args()
    if args.which == "ceiling":
        serve(create_ceiling_app, name="ceiling", host=HOST, port=args.port, workers=args.workers)
    else:
        home = args.home
        serve(
            lambda: _relay_with_normal_sync(home),
            name="relay",
            host=HOST,
            port=args.port,
            workers=args.workers,
        )


if __name__ == "__main__":
    main()
