"""The services' HTTP, over Flask's test client: 405 with Allow, chunked bodies over the
limit, a request without Host, and the audit log a page at a time.

tests/integration/test_service_http.py sends the same requests to gunicorn over a socket.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from werkzeug.test import EnvironBuilder, run_wsgi_app

from securecomm import canonical
from securecomm.config import Settings
from securecomm.custodian import audit
from securecomm.custodian import openapi as custodian_openapi
from securecomm.custodian.tables import audit_log
from securecomm.errors import FormatError
from securecomm.identity import Identity
from securecomm.relay import openapi as relay_openapi

from ._services import Reply, Service, custodian, make_envelope, operator, relay, settings_for

ALICE, BOB = Identity.generate("alice"), Identity.generate("bob")

# A value each path parameter accepts, so the path routes and only the method is wrong.
_PARAMETERS = {"message_id": "0" * 32, "release_id": "0" * 32, "ref": "r1", "name": "alice"}
_PARAMETERS |= {"filename": "js/app.js", "device": "0" * 64}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_for(tmp_path / "home")


@pytest.fixture
def alpha(settings: Settings) -> Iterator[Service]:
    service = custodian(settings, "alpha")
    yield service
    service.app.extensions["securecomm"]["engine"].dispose()


@pytest.fixture
def the_relay(settings: Settings) -> Iterator[Service]:
    service = relay(settings)
    yield service
    service.app.extensions["securecomm"]["engine"].dispose()


# 405 names what the path accepts (RFC 9110 section 15.5.6).


def _documented_paths(document: dict[str, Any]) -> Iterator[tuple[str, set[str]]]:
    for template, item in document["paths"].items():
        path = re.sub(r"\{([^}]+)\}", lambda m: _PARAMETERS[m.group(1)], template)
        yield path, {method.upper() for method in item if method != "parameters"}


@pytest.mark.parametrize("kind", ["relay", "custodian"])
def test_every_405_has_allow_and_the_json_error(
    kind: str, alpha: Service, the_relay: Service
) -> None:
    service, document = (
        (the_relay, relay_openapi.DOCUMENT)
        if kind == "relay"
        else (alpha, custodian_openapi.DOCUMENT)
    )
    paths = list(_documented_paths(document))
    assert len(paths) >= 8
    for path, methods in paths:
        for wrong in ("PATCH", "PUT", "DELETE", "POST"):
            if wrong in methods:
                continue
            r = service.send(wrong, path)
            assert r.status_code == 405, (wrong, path, r.status_code)
            assert r.json == {
                "code": "method_not_allowed",
                "message": f"method {wrong} is not allowed here",
            }
            allowed = {m.strip() for m in r.headers.get("Allow", "").split(",")}
            assert methods | {"OPTIONS"} <= allowed, (wrong, path, allowed)
            assert wrong not in allowed
            if "GET" in methods:
                assert "HEAD" in allowed


def test_allow_lists_each_method_of_a_path_with_several(alpha: Service) -> None:
    r = alpha.send("PUT", "/v1/deposits")
    assert r.status_code == 405
    assert set(r.headers["Allow"].split(", ")) == {"POST", "DELETE", "OPTIONS"}


# A chunked body over the limit is 413 too_large, as one with Content-Length is.


def _chunked(service: Service, path: str, body: bytes) -> Reply:
    """``body`` as gunicorn hands a chunked one to the app: no Content-Length, and the
    server ends the stream (``wsgi.input_terminated``)."""
    response = service.client.open(
        path,
        method="POST",
        input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    return Reply.of(response)


def test_a_chunked_body_over_the_limit_is_too_large(tmp_path: Path) -> None:
    envelope = make_envelope(ALICE, [BOB]).to_bytes()
    service = relay(settings_for(tmp_path / "home", max_envelope_bytes=len(envelope)))
    try:
        over = _chunked(service, "/api/v1/messages", envelope + b" ")
        assert over.status_code == 413
        assert over.json == {
            "code": "too_large",
            "message": f"body larger than {len(envelope)} bytes",
        }
        # The same with Content-Length, as before.
        sized = service.send("POST", "/api/v1/messages", envelope + b" ")
        assert (sized.status_code, sized.json) == (over.status_code, over.json)
        # Exactly the limit is read whole, not taken for cut off.
        stored = _chunked(service, "/api/v1/messages", envelope)
        assert stored.status_code == 201, stored.json
        assert stored.json["size"] == len(envelope)
    finally:
        service.app.extensions["securecomm"]["engine"].dispose()


def test_a_chunked_body_over_the_limit_is_too_large_before_the_signature(
    alpha: Service,
) -> None:
    limit = 1024 * 1024
    body = b"{" + b" " * (limit - 1)  # over it by one byte once the brace closes
    r = _chunked(alpha, "/v1/deposits", body + b"}")
    assert r.status_code == 413
    assert r.json["code"] == "too_large"
    # At the limit the body is whole: the unsigned request is refused for its signature.
    r = _chunked(alpha, "/v1/deposits", body)
    assert r.status_code == 401
    assert r.json["code"] == "missing_signature"


# An HTTP/1.1 request must carry Host (RFC 9112 section 3.2).


def _without_host(service: Service, protocol: str) -> tuple[int, Any]:
    environ = EnvironBuilder(path="/healthz").get_environ()
    del environ["HTTP_HOST"]
    environ["SERVER_PROTOCOL"] = protocol
    body, status, _ = run_wsgi_app(service.app, environ, buffered=True)
    return int(status.split()[0]), json.loads(b"".join(body))


def test_an_http_1_1_request_without_host_is_a_bad_request(alpha: Service) -> None:
    status, answer = _without_host(alpha, "HTTP/1.1")
    assert status == 400
    assert answer == {"code": "bad_request", "message": "an HTTP/1.1 request must carry Host"}
    # HTTP/1.0 had no Host; it may go without.
    status, answer = _without_host(alpha, "HTTP/1.0")
    assert (status, answer["status"]) == (200, "ok")


# The audit log, a page at a time.


def _fill(service: Service, count: int) -> None:
    """``count`` entries, signed by the custodian, straight into its log."""
    state = service.app.extensions["securecomm"]
    with state["engine"].begin() as conn:
        for i in range(count):
            audit.append(conn, audit_log, state["identity"], "deposit", {"ref": f"r{i}"}, 1000 + i)


def _page(service: Service, who: Identity, query: str = "") -> dict[str, Any]:
    r = service.call(who, "GET", "/v1/audit", query=query)
    assert r.status_code == 200, r.json
    page: dict[str, Any] = r.json
    return page


def test_audit_pages_follow_next_to_the_end(alpha: Service, settings: Settings) -> None:
    op = operator(settings, "alpha")
    _fill(alpha, audit.PAGE_DEFAULT_ENTRIES + audit.PAGE_MAX_ENTRIES + 7)
    first = _page(alpha, op)
    assert set(first) == {"custodian", "entries", "next"}
    assert [e["seq"] for e in first["entries"]] == list(range(1, audit.PAGE_DEFAULT_ENTRIES + 1))
    assert first["next"] == audit.PAGE_DEFAULT_ENTRIES
    most = _page(alpha, op, f"after={first['next']}&limit={audit.PAGE_MAX_ENTRIES}")
    assert len(most["entries"]) == audit.PAGE_MAX_ENTRIES
    assert most["entries"][0]["seq"] == audit.PAGE_DEFAULT_ENTRIES + 1
    last = _page(alpha, op, f"after={most['next']}&limit={audit.PAGE_MAX_ENTRIES}")
    assert [e["seq"] for e in last["entries"]] == list(range(most["next"] + 1, most["next"] + 8))
    assert last["next"] is None
    # A page that ends exactly at the last entry says so; after the end, an empty page.
    exact = _page(alpha, op, f"after={most['next']}&limit=7")
    assert exact["next"] is None
    assert _page(alpha, op, f"after={most['next'] + 7}") == {**exact, "entries": []}


def test_an_empty_log_is_one_empty_page(alpha: Service, settings: Settings) -> None:
    page = _page(alpha, operator(settings, "alpha"))
    assert (page["entries"], page["next"]) == ([], None)


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        f"limit={audit.PAGE_MAX_ENTRIES + 1}",
        "limit=ten",
        "limit=",
        "limit=%C2%B2",  # "²": str.isdigit() takes it, int() does not
        "after=-1",
        "after=1.5",
        "after=0x10",
        f"after={2**53}",
        "after=99999999999999999999",  # too big for SQLite to bind
    ],
)
def test_audit_refuses_a_bad_limit_or_after(alpha: Service, settings: Settings, query: str) -> None:
    r = alpha.call(operator(settings, "alpha"), "GET", "/v1/audit", query=query)
    assert r.status_code == 400, query
    assert r.json["code"] == "bad_field"
    assert r.json["message"].startswith(query.split("=")[0] + ": expected an integer in ")


def _walk(service: Service, who: Identity, limit: int) -> Iterator[Any]:
    def fetch(after: int) -> dict[str, Any]:
        page = _page(service, who, f"after={after}&limit={limit}")
        assert len(page["entries"]) <= limit
        return page

    return audit.paged(fetch)


def _tampered(service: Service, op: Identity, *statements: str) -> audit.AuditReport:
    """Run ``statements`` on the custodian's log, verify it page by page, put it back."""
    engine = service.app.extensions["securecomm"]["engine"]
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(sa.select(audit_log)).mappings()]
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    report = audit.verify(_walk(service, op, 10), service.public)
    with engine.begin() as conn:
        conn.execute(audit_log.delete())
        conn.execute(audit_log.insert(), rows)
    return report


def test_the_chain_is_checked_across_page_boundaries(alpha: Service, settings: Settings) -> None:
    """Pages of 10: whatever is done to the entries on either side of a boundary is named."""
    op = operator(settings, "alpha")
    _fill(alpha, 25)
    report = audit.verify(_walk(alpha, op, 10), alpha.public)
    assert (report.ok, report.count) == (True, 25)
    forged = canonical.dumps({"ref": "forged"}).decode()
    cases = {
        # The first entry of the second page edited.
        (f"UPDATE audit_log SET data = '{forged}' WHERE seq = 11",): (
            11,
            "entry 11: its contents do not match its hash (edited)",
        ),
        # The last entry of the first page removed: its successor moves up to position 10.
        ("DELETE FROM audit_log WHERE seq = 10",): (
            10,
            "entry 10: has seq 11 (an entry was removed or reordered)",
        ),
        # The entries either side of the second boundary swapped, seqs and all.
        (
            "UPDATE audit_log SET seq = -1 WHERE seq = 20",
            "UPDATE audit_log SET seq = 20 WHERE seq = 21",
            "UPDATE audit_log SET seq = 21 WHERE seq = -1",
        ): (20, "entry 20: does not follow entry 19 (an entry was removed, reordered or edited)"),
    }
    for statements, (first_bad, reason) in cases.items():
        report = _tampered(alpha, op, *statements)
        assert (report.first_bad, report.reason) == (first_bad, reason), statements
    assert audit.verify(_walk(alpha, op, 10), alpha.public).ok


def _pages(*pages: dict[str, Any]) -> Any:
    """A log whose pages are ``pages``, each the answer to the ``after`` that reaches it."""
    by_after = {0: pages[0]}
    for previous, page in itertools.pairwise(pages):
        by_after[previous["next"]] = page
    return lambda after: by_after[after]


def _entries(*seqs: int) -> list[dict[str, int]]:
    return [{"seq": seq} for seq in seqs]


def test_paged_follows_next_and_stops_at_null() -> None:
    fetch = _pages(
        {"entries": _entries(1, 2), "next": 2},
        {"entries": _entries(3, 4), "next": 4},
        {"entries": _entries(5), "next": None},
    )
    assert [e["seq"] for e in audit.paged(fetch)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "page",
    [
        {"entries": _entries(1, 2), "next": 1},  # would read entry 2 twice
        {"entries": _entries(1, 2), "next": 5},  # would skip entries 3 to 5
        {"entries": [], "next": 7},  # would ask for the same page for ever
        {"entries": _entries(1, 2), "next": "2"},
        {"entries": _entries(1, 2), "next": True},
        {"entries": {"seq": 1}, "next": None},
    ],
)
def test_paged_refuses_a_cursor_that_is_not_the_last_seq(page: dict[str, Any]) -> None:
    with pytest.raises(FormatError, match="audit page after 0: "):
        list(audit.paged(lambda after: page))
