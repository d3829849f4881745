"""The services' HTTP as gunicorn serves it, over raw sockets on loopback: 405 with Allow,
a chunked body over the limit, a request without Host; and ``audit verify`` reading a
running custodian's log page by page."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from securecomm import canonical
from securecomm.client.transport import ServiceClient
from securecomm.custodian import audit
from securecomm.custodian.tables import audit_log
from securecomm.envelope import Receipt, prepare
from securecomm.identity import Identity
from securecomm.local.home import config_text, operator_name

from .conftest import NAMES, Service, free_port

RELAY_LIMIT_BYTES = 64 * 1024
CUSTODIAN_LIMIT_BYTES = 1024 * 1024
ENTRIES = 2 * audit.PAGE_MAX_ENTRIES + 50  # three pages for every reader


@dataclass
class Services:
    home: Path
    relay: Service
    alpha: Service


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """The relay (with a small body limit) and custodian alpha, as real processes."""
    home = tmp_path_factory.mktemp("http") / "home"
    home.mkdir()
    ports = {name: free_port() for name in NAMES}
    relay_port = free_port()
    (home / "securecomm.toml").write_text(
        config_text(
            len(NAMES), 3, relay_port=relay_port, ports=ports, max_envelope_bytes=RELAY_LIMIT_BYTES
        )
    )
    started = Services(
        home,
        Service("relay", "relay", relay_port, home),
        Service("custodian", "alpha", ports["alpha"], home),
    )
    try:
        started.relay.start()
        started.alpha.start()
        yield started
    finally:
        started.relay.stop()
        started.alpha.stop()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(service: Service, head: str, body: bytes = b"") -> Answer:
    """Send ``head`` (lines without their CRLFs) and ``body`` as they are; read the answer."""
    request = "".join(f"{line}\r\n" for line in head.strip().splitlines()) + "\r\n"
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        sock.sendall(request.encode("latin-1") + body)
        received = bytearray()
        while data := sock.recv(65536):
            received += data
    header_block, _, content = bytes(received).partition(b"\r\n\r\n")
    status_line, *lines = header_block.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, content)


def chunked(body: bytes, size: int = 16 * 1024) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%b\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def post_chunked(service: Service, path: str, body: bytes) -> Answer:
    head = f"""
POST {path} HTTP/1.1
Host: 127.0.0.1:{service.port}
Content-Type: application/json
Transfer-Encoding: chunked
Connection: close
"""
    return exchange(service, head, chunked(body))


# 405 (RFC 9110 section 15.5.6)


@pytest.mark.parametrize(("kind", "path"), [("relay", "/api/v1/inbox"), ("alpha", "/v1/audit")])
def test_a_405_names_the_methods_the_path_takes(services: Services, kind: str, path: str) -> None:
    service = services.relay if kind == "relay" else services.alpha
    answer = exchange(service, f"DELETE {path} HTTP/1.1\nHost: 127.0.0.1\nConnection: close")
    assert answer.status == 405
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["code"] == "method_not_allowed"
    assert set(answer.headers["allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


# A chunked body over the limit


def an_envelope(size: int) -> bytes:
    """A well-formed envelope the relay stores, padded with spaces before its last brace
    to ``size`` bytes (JSON whitespace: still the same document, no longer canonical)."""
    alice, bob = Identity.generate("alice"), Identity.generate("bob")
    custodians = [Identity.generate(name) for name in NAMES]
    draft = prepare(
        b"hello",
        sender=alice.public,
        recipients=[bob.public],
        custodians=[(c.name, c.public.fingerprint) for c in custodians],
        threshold=3,
    )
    header = draft.header
    receipts = [
        Receipt.issue(c, i + 1, header.message_id, f"r{i}", header.custodians[i].share_digest)
        for i, c in enumerate(custodians)
    ]
    raw = draft.finish(alice, receipts).to_bytes()
    return raw[:-1] + b" " * (size - len(raw)) + raw[-1:]


def test_a_chunked_body_over_the_limit_is_413(services: Services) -> None:
    over = post_chunked(services.relay, "/api/v1/messages", an_envelope(RELAY_LIMIT_BYTES + 1))
    assert over.status == 413
    assert over.json() == {
        "code": "too_large",
        "message": f"body larger than {RELAY_LIMIT_BYTES} bytes",
    }
    # At the limit the body is read whole: the relay parses it and refuses its padding.
    whole = post_chunked(services.relay, "/api/v1/messages", an_envelope(RELAY_LIMIT_BYTES))
    assert whole.status == 400
    assert whole.json()["code"] == "non_canonical"


def test_a_chunked_body_over_a_custodians_limit_is_413_before_its_signature(
    services: Services,
) -> None:
    body = b"{" + b" " * (CUSTODIAN_LIMIT_BYTES - 2) + b"}"
    over = post_chunked(services.alpha, "/v1/deposits", body + b" ")
    assert (over.status, over.json()["code"]) == (413, "too_large")
    unsigned = post_chunked(services.alpha, "/v1/deposits", body)
    assert (unsigned.status, unsigned.json()["code"]) == (401, "missing_signature")


# Host (RFC 9112 section 3.2)


@pytest.mark.parametrize("kind", ["relay", "alpha"])
def test_an_http_1_1_request_without_host_is_400(services: Services, kind: str) -> None:
    service = services.relay if kind == "relay" else services.alpha
    missing = exchange(service, "GET /healthz HTTP/1.1\nConnection: close")
    assert missing.status == 400
    assert missing.json() == {
        "code": "bad_request",
        "message": "an HTTP/1.1 request must carry Host",
    }
    empty = exchange(service, "GET /healthz HTTP/1.1\nHost:\nConnection: close")
    assert empty.status == 400
    named = exchange(service, "GET /healthz HTTP/1.1\nHost: 127.0.0.1\nConnection: close")
    assert (named.status, named.json()["status"]) == (200, "ok")
    old = exchange(service, "GET /healthz HTTP/1.0")  # HTTP/1.0 had no Host
    assert (old.status, old.json()["status"]) == (200, "ok")


# audit verify, page by page


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "securecomm.cli", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def long_log(services: Services) -> Iterator[sa.Engine]:
    """ENTRIES entries in alpha's log, signed with alpha's key, written to its database."""
    directory = services.home / "custodians" / "alpha"
    identity = Identity.load(directory / "identity.key")
    engine = sa.create_engine(f"sqlite:///{directory / 'custodian.db'}")
    with engine.begin() as conn:
        for i in range(ENTRIES):
            audit.append(conn, audit_log, identity, "deposit", {"ref": f"r{i}"}, 1_800_000_000)
    yield engine
    engine.dispose()


@contextmanager
def tampered(engine: sa.Engine, *statements: str) -> Iterator[None]:
    """Run ``statements`` on the log; put it back afterwards."""
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(sa.select(audit_log)).mappings()]
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(audit_log.delete())
            conn.execute(audit_log.insert(), rows)


M = audit.PAGE_MAX_ENTRIES
FORGED = canonical.dumps({"ref": "forged"}).decode()
# What is done to the entries either side of a page boundary, and what is named.
BOUNDARY_CASES = {
    "edited": (
        (f"UPDATE audit_log SET data = '{FORGED}' WHERE seq = {M + 1}",),
        f"entry {M + 1}: its contents do not match its hash (edited)",
    ),
    "removed": (
        (f"DELETE FROM audit_log WHERE seq = {2 * M}",),
        f"entry {2 * M}: has seq {2 * M + 1} (an entry was removed or reordered)",
    ),
    "reordered": (
        (
            f"UPDATE audit_log SET seq = -1 WHERE seq = {M}",
            f"UPDATE audit_log SET seq = {M} WHERE seq = {M + 1}",
            f"UPDATE audit_log SET seq = {M + 1} WHERE seq = -1",
        ),
        f"entry {M}: does not follow entry {M - 1}",
    ),
}


@pytest.mark.parametrize("source", ["--remote", "database"])
def test_audit_verify_walks_every_page(
    services: Services, long_log: sa.Engine, source: str
) -> None:
    where = [source] if source == "--remote" else []
    result = cli(services.home, "audit", "verify", "--name", "alpha", *where)
    assert result.returncode == 0, result.stderr
    assert f"{ENTRIES} entries; chain and signatures verify" in result.stdout


@pytest.mark.parametrize("case", list(BOUNDARY_CASES))
@pytest.mark.parametrize("source", ["--remote", "database"])
def test_audit_verify_names_an_entry_changed_at_a_page_boundary(
    services: Services, long_log: sa.Engine, source: str, case: str
) -> None:
    statements, named = BOUNDARY_CASES[case]
    where = [source] if source == "--remote" else []
    with tampered(long_log, *statements):
        result = cli(services.home, "audit", "verify", "--name", "alpha", *where)
    assert result.returncode == 1, result.stdout
    assert f"FAILED at {named}" in result.stderr


def test_audit_verify_reads_saved_pages_and_wants_all_of_them(
    services: Services, long_log: sa.Engine, tmp_path: Path
) -> None:
    operator = Identity.load(services.home / "operators" / f"{operator_name('alpha')}.key")
    files: list[Path] = []
    after = 0
    with ServiceClient(services.alpha.url, "alpha", operator) as client:
        while True:
            params = {"after": str(after), "limit": str(M)}
            page = client.request("GET", "/v1/audit", params=params).json()
            files.append(tmp_path / f"page{len(files) + 1}.json")
            files[-1].write_text(json.dumps(page))
            if page["next"] is None:
                break
            after = page["next"]
    assert len(files) == 3
    given = [arg for file in files for arg in ("--file", str(file))]
    result = cli(services.home, "audit", "verify", "--name", "alpha", *given)
    assert result.returncode == 0, result.stderr
    assert f"{ENTRIES} entries; chain and signatures verify" in result.stdout
    result = cli(services.home, "audit", "verify", "--name", "alpha", *given[:4])
    assert result.returncode != 0
    assert f"the log goes on after entry {2 * M}" in result.stderr
