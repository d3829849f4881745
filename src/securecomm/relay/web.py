"""The web client the relay serves (spec §13): its files, read once at start with a
Content-Security-Policy that lets the page run only its own code and talk only to the
relay and the custodians, and the configuration the page starts from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from ..codes import Code
from ..config import MAX_PIECE_BYTES, Settings, origin_of
from ..errors import IdentityError
from ..identity import PublicIdentity
from ..network import NETWORK_FILE, Network
from ..service.app import ApiError

__all__ = ["Page", "bp"]

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
_WEB_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}

bp = Blueprint("web", __name__)


@dataclass(frozen=True)
class Page:
    """What the page's routes serve, made once by the app factory."""

    files: dict[str, tuple[bytes, str]]  # path under web/ -> (content, media type)
    csp: str
    config: dict[str, Any]
    network: bytes | None  # the network file this relay was given, served as it is

    @classmethod
    def of(cls, settings: Settings, relay: PublicIdentity) -> Page:
        # Read once: a handful of small files, and nothing on disk can be reached by a path.
        files = {
            path.relative_to(WEB_DIR).as_posix(): (path.read_bytes(), _WEB_TYPES[path.suffix])
            for path in WEB_DIR.rglob("*")
            if path.suffix in _WEB_TYPES
        }
        # The page runs only code from here and talks only to the relay and the custodians.
        csp = "; ".join(
            [
                "default-src 'none'",
                "script-src 'self'",
                "style-src 'self'",
                "img-src 'self' data:",
                "connect-src 'self' " + " ".join(origin_of(c.url) for c in settings.custodians),
                "base-uri 'none'",
                "form-action 'none'",
                "frame-ancestors 'none'",
            ]
        )
        data, network = _network_file(settings, relay) or (None, None)
        return cls(files, csp, _web_config(settings, relay, network), data)


def _page() -> Page:
    page: Page = current_app.extensions["page"]
    return page


def _web_file(filename: str) -> Response:
    page = _page()
    if filename not in page.files:
        raise ApiError(404, Code.NOT_FOUND, "no such file")
    content, mimetype = page.files[filename]
    response = Response(content, mimetype=mimetype)
    response.headers["Content-Security-Policy"] = page.csp
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/")
def index() -> Response:
    return _web_file("index.html")


@bp.get("/web/<path:filename>")
def web_asset(filename: str) -> Response:
    return _web_file(filename)


@bp.get("/api/v1/web-config")
def get_web_config() -> Response:
    return jsonify(_page().config)


@bp.get("/api/v1/network")
def get_network() -> Response:
    network = _page().network
    if network is None:
        raise ApiError(404, Code.NOT_FOUND, "this relay was given no network file")
    return Response(network, mimetype="application/json")


def _network_file(settings: Settings, relay: PublicIdentity) -> tuple[bytes, Network] | None:
    """HOME/network.json as given and as read, checked (spec §14.2) and naming this relay's
    own key; None if it has none.

    A relay that served a network file naming another relay would hand new clients
    someone else's keys: it refuses to start instead."""
    path = settings.home / NETWORK_FILE
    if not path.exists():
        return None
    data = path.read_bytes()
    network = Network.from_bytes(data)
    if network.relay.identity.fingerprint != relay.fingerprint:
        raise IdentityError(
            f"{path} names the relay {network.relay.identity.short_fingerprint()}, but this"
            f" relay's key is {relay.short_fingerprint()}: it will not serve it"
        )
    return data, network


def _web_config(
    settings: Settings, relay: PublicIdentity, network: Network | None
) -> dict[str, Any]:
    """What the web client needs to know: the relay's key (which signs every answer of its
    API), the custodians, where they are, and the threshold.

    A custodian's fingerprint is given where the relay knows its key, from the network
    file in its home; the page pins what it sees on first use either way and compares the
    two. The relay reads no one else's files (a client's pinned keys least of all).
    """
    keys = {} if network is None else {c.name: c.identity for c in network.custodians}
    custodians = []
    for custodian in settings.custodians:
        pinned = keys.get(custodian.name)
        custodians.append(
            {
                "name": custodian.name,
                "url": custodian.url,
                "fingerprint": pinned.fingerprint_hex if pinned else None,
            }
        )
    return {
        "v": 1,
        "relay": relay.to_json(),
        "n": settings.n_shares,
        "threshold": settings.threshold,
        "custodians": custodians,
        "max_envelope_bytes": settings.max_envelope_bytes,
        "max_payload_bytes": settings.max_payload_bytes,
        "max_piece_bytes": MAX_PIECE_BYTES,
        "origins": list(settings.allowed_origins()),
    }
