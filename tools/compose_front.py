"""Write docker-compose's relay front: docker/relay-front.conf (plain HTTP, for
docker-compose.yml) and docker/relay-front.tls.conf (for docker-compose.tls.yml).

They are the ``upstream`` and ``server`` blocks that ``securecomm up --relay-replicas``
writes for its own front (``securecomm.local.front.server_block``), with Compose's
names: nginx's official image includes them in its ``http`` block from
/etc/nginx/conf.d/default.conf. tests/unit/test_docker.py checks that the files are
what this writes and that nginx accepts them. After changing the front::

    .venv/bin/python tools/compose_front.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from securecomm.config import (
    DEFAULT_MAX_ENVELOPE_BYTES,
    DEFAULT_RELAY_PORT,
    request_limit_bytes,
)
from securecomm.local.front import UpstreamTls, server_block

__all__ = ["REPLICAS", "configs"]

ROOT = Path(__file__).resolve().parents[1]
#: The relay's replicas, by their Compose service names.
REPLICAS = ("relay-1", "relay-2")
#: Where the overlay mounts the relay's certificate and key, and the network's CA.
TLS_CERT, TLS_KEY, TLS_CA = "/tls/relay.pem", "/tls/relay.key", "/tls/ca.pem"
#: The name the relay's certificate is issued for, which the front checks at the replicas.
RELAY_NAME = "web"
#: Across containers a replica that is down may not refuse a connection at once (its
#: address is gone), so one that failed is left out this long instead of costing every
#: request a connection timeout.
SET_ASIDE_SECONDS = 10

HEADER = """\
# docker-compose's relay front: nginx spreads the relay's requests over its replicas.
# Written by tools/compose_front.py from what `securecomm up --relay-replicas` writes
# for its own front (securecomm/local/front.py says why each setting); edit there.
# nginx resolves the replicas' names when it starts: after recreating a replica's
# container, restart this one too (`docker-compose restart web`).
"""


def configs() -> dict[Path, str]:
    """{path: text} of both files."""
    replicas = [f"{name}:{DEFAULT_RELAY_PORT}" for name in REPLICAS]

    def block(tls: bool) -> str:
        return server_block(
            listen=str(DEFAULT_RELAY_PORT),
            replicas=replicas,
            max_body_bytes=request_limit_bytes(DEFAULT_MAX_ENVELOPE_BYTES),
            tls=(TLS_CERT, TLS_KEY) if tls else None,
            upstream_tls=UpstreamTls(TLS_CA, RELAY_NAME) if tls else None,
            set_aside=SET_ASIDE_SECONDS,
        )

    return {
        ROOT / "docker" / "relay-front.conf": HEADER + "\n" + block(tls=False),
        ROOT / "docker" / "relay-front.tls.conf": HEADER + "\n" + block(tls=True),
    }


def main() -> None:
    for path, text in configs().items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, "utf-8")
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
