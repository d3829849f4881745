"""The servers the relay is measured against, each run as ``python -m bench._ceiling_app``.

- ``ceiling``: a bare Flask app whose one POST route parses the JSON body
  and answers 201, served by securecomm's own ``serve`` (the same gunicorn
  worker class, workers, connections and timeouts as the relay): what Flask
  under that server can do at best, the framework's ceiling.
- ``mandatory``: the relay's ceiling stated honestly (issue 16): bare Flask on the same
  server doing only the work no relay may skip when it stores an envelope: read the body
  as canonical JSON (spec 1.4), check the envelope's signature under the key it names
  (7.5; the post itself is unsigned, so there is no request signature to check), one
  durable insert (SQLite in WAL mode, ``synchronous=FULL``, its write lock waited for
  as the relay waits for it: ``storage.begin_immediate``), and
  the signed answer (11.4). No field checks, no directory, no inbox rows, no SQLAlchemy.
- ``relay-normal``: the real relay with SQLite ``synchronous=NORMAL``
  instead of ``FULL``, only to put a number on what durability costs. The
  product never runs like this: an acknowledged write would not survive a
  power cut.

Both bind 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
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


def create_mandatory_app(home: str) -> Flask:
    import base64
    import os
    import sqlite3
    from pathlib import Path

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from securecomm import canonical, httpsig
    from securecomm.identity import Identity
    from securecomm.service.storage import begin_immediate

    app = Flask("securecomm.bench.mandatory")
    app.extensions["securecomm"] = {"engine": _NoEngine()}
    identity = Identity.generate("relay")
    database = Path(home) / "mandatory.db"
    # One connection per worker process, made after the fork. Not threading.local: under
    # gevent that is per greenlet, a connection per request. A transaction never yields
    # (sqlite3 blocks the worker), so the greenlets of one worker cannot interleave in it.
    opened: dict[int, sqlite3.Connection] = {}

    def connection() -> sqlite3.Connection:
        conn = opened.get(os.getpid())
        if conn is None:
            conn = sqlite3.connect(database, isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, envelope BLOB)")
            opened[os.getpid()] = conn
        return conn

    @app.post("/api/v1/messages")
    def store() -> tuple[Response, int]:
        body = request.get_data()
        document = canonical.loads(body, what="envelope")
        signature = base64.b64decode(document.pop("signature"))
        key = Ed25519PublicKey.from_public_bytes(
            base64.b64decode(document["header"]["sender"]["sign"])
        )
        try:
            key.verify(signature, b"securecomm/v1/envelope\n" + canonical.dumps(document))
        except InvalidSignature:
            return jsonify({"code": "bad_signature"}), 400
        conn = connection()
        begin_immediate(conn.execute)  # the write lock waited for as the relay waits
        conn.execute(
            "INSERT INTO messages (id, envelope) VALUES (?, ?)", (document["header"]["id"], body)
        )
        conn.execute("COMMIT")
        return jsonify({"id": document["header"]["id"], "stored": True}), 201

    @app.after_request
    def sign(response: Response) -> Response:
        if request.path.startswith("/api/"):
            binding = httpsig.answer_binding(
                method=request.method,
                path=request.path,
                query="",
                headers=dict(request.headers.items()),
            )
            response.headers[httpsig.ANSWER_HEADER] = httpsig.sign_answer(
                identity, binding, status=response.status_code, body=response.get_data()
            )
        return response

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok", "service": "mandatory"})

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
    parser.add_argument("which", choices=["ceiling", "mandatory", "relay-normal"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--home", help="the relay's home (relay-normal), a scratch directory")
    args = parser.parse_args()
    home = args.home
    factories: dict[str, tuple[Callable[[], Flask], str]] = {
        "ceiling": (create_ceiling_app, "ceiling"),
        "mandatory": (lambda: create_mandatory_app(home), "mandatory"),
        "relay-normal": (lambda: _relay_with_normal_sync(home), "relay"),
    }
    factory, name = factories[args.which]
    serve(factory, name=name, host=HOST, port=args.port, workers=args.workers)


if __name__ == "__main__":
    main()
