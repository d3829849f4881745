"""A custodian that lies, for integration tests: the real custodian app, one thing changed.

    python tests/integration/evil_custodian.py --name charlie --home H --port P [--lie share]

``--lie share`` (the default): every release carries the custodian's share
with one byte of its value flipped, sealed to the recipient and signed with
the custodian's real key. The release is well formed and validly signed;
only the digest the sender signed can show that the share is wrong.

``--lie deposit``: releases are honest, but every deposit is refused with
503, so a sender sees the other custodians take their shares and this one
not (the send must withdraw the others).

Everything else (identity, storage, audit log, gunicorn) is what
``securecomm custodian serve`` runs: ``create_custodian_app`` under
``securecomm.service.serve.serve``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

from flask import Flask, Response, request

from securecomm.config import load_settings
from securecomm.custodian.app import create_custodian_app
from securecomm.identity import Identity, PublicIdentity
from securecomm.protocol import Release
from securecomm.service.app import error_response
from securecomm.service.serve import serve
from securecomm.shares import Share

_honest_issue: Callable[[Identity, Share, str, PublicIdentity], Release] = Release.issue


def _lying_issue(
    cls: type[Release],
    custodian: Identity,
    share: Share,
    message_id: str,
    recipient: PublicIdentity,
) -> Release:
    """Release.issue, but for a share whose first value byte is flipped."""
    value = bytearray(share.value)
    value[0] ^= 0x01
    wrong = dataclasses.replace(share, value=bytes(value))
    return _honest_issue(custodian, wrong, message_id, recipient)


def _refuse_deposits(app: Flask) -> None:
    @app.before_request
    def refuse() -> Response | None:
        if request.method == "POST" and request.path == "/v1/deposits":
            return error_response(503, "unavailable", "this custodian takes no deposits today")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--name", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--lie", choices=("share", "deposit"), default="share")
    args = parser.parse_args()

    if args.lie == "share":
        # Patched before the app is built and before gunicorn forks, so every worker lies.
        setattr(Release, "issue", classmethod(_lying_issue))  # noqa: B010
    settings = load_settings(args.home)
    settings.custodian(args.name)  # fail early on a name the config does not know

    def factory() -> Flask:
        app = create_custodian_app(settings, args.name)
        if args.lie == "deposit":
            _refuse_deposits(app)
        return app

    serve(
        factory,
        name=f"evil-{args.name}",
        host=args.host,
        port=args.port,
        workers=args.workers,
    )


if __name__ == "__main__":
    main()
