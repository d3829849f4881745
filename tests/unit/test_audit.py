"""The custodian's audit log: a clean log verifies; each kind of tampering names its entry."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
import sqlalchemy as sa

from securecomm._encoding import b64encode
from securecomm.custodian import audit
from securecomm.identity import Identity

CUSTODIAN = Identity.generate("alpha")
EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("deposit", {"ref": "r1", "message_id": "a" * 32, "index": 1}),
    ("deposit", {"ref": "r2", "message_id": "b" * 32, "index": 1}),
    ("release", {"ref": "r1", "message_id": "a" * 32, "recipient": "c" * 64}),
    ("refusal", {"message_id": "a" * 32, "requester": "d" * 64, "code": "not_recipient"}),
    ("delete", {"ref": "r2", "message_id": "b" * 32, "by": "e" * 64}),
    ("burn", {"ref": "r1", "message_id": "a" * 32}),
]


def build_log(identity: Identity = CUSTODIAN) -> list[dict[str, Any]]:
    metadata = sa.MetaData()
    table = audit.define(metadata)
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        metadata.create_all(conn)
        for i, (event, data) in enumerate(EVENTS):
            audit.append(conn, table, identity, event, data, 1_700_000_000 + i)
    with engine.connect() as conn:
        entries = audit.entries(conn, table)
    engine.dispose()
    return entries


@pytest.fixture(scope="module")
def clean() -> list[dict[str, Any]]:
    return build_log()


@pytest.fixture
def log(clean: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return copy.deepcopy(clean)


def rehash(entry: dict[str, Any]) -> None:
    entry["hash"] = audit._entry_hash(
        entry["seq"], entry["time"], entry["event"], entry["data"], entry["prev"]
    )


def test_clean_log_verifies(log: list[dict[str, Any]]) -> None:
    report = audit.verify(log, CUSTODIAN.public)
    assert report.ok
    assert report == audit.AuditReport(len(EVENTS))
    assert [e["seq"] for e in log] == list(range(1, len(EVENTS) + 1))
    assert log[0]["prev"] == audit.GENESIS
    for before, after in itertools.pairwise(log):
        assert after["prev"] == before["hash"]


def test_empty_log_verifies() -> None:
    assert audit.verify([], CUSTODIAN.public) == audit.AuditReport(0)


def test_truncated_log_still_verifies(log: list[dict[str, Any]]) -> None:
    # Documented limit: cutting entries off the end leaves a valid, shorter log.
    assert audit.verify(log[:3], CUSTODIAN.public) == audit.AuditReport(3)


def test_edited_data_is_a_hash_mismatch(log: list[dict[str, Any]]) -> None:
    log[3]["data"]["code"] = "approved"
    report = audit.verify(log, CUSTODIAN.public)
    assert not report.ok
    assert report.first_bad == 4
    assert report.count == 3
    assert report.reason is not None
    assert report.reason.startswith("entry 4:")
    assert "hash" in report.reason and "edited" in report.reason


@pytest.mark.parametrize("field", ["event", "time"])
def test_edited_event_or_time_is_a_hash_mismatch(log: list[dict[str, Any]], field: str) -> None:
    log[1][field] = "release" if field == "event" else log[1]["time"] + 1
    report = audit.verify(log, CUSTODIAN.public)
    assert report.first_bad == 2
    assert report.reason is not None and "hash" in report.reason


def test_edited_and_rehashed_is_a_signature_failure(log: list[dict[str, Any]]) -> None:
    log[2]["data"]["recipient"] = "f" * 64
    rehash(log[2])
    report = audit.verify(log, CUSTODIAN.public)
    assert report.first_bad == 3
    assert report.count == 2
    assert report.reason is not None
    assert report.reason.startswith("entry 3:")
    assert "not signed" in report.reason


def test_edited_rehashed_and_resigned_by_another_key_fails(log: list[dict[str, Any]]) -> None:
    # A forger with their own key, even one named like the custodian, cannot re-sign.
    forger = Identity.generate("alpha")
    log[2]["data"]["recipient"] = "f" * 64
    rehash(log[2])
    log[2]["signature"] = b64encode(forger.sign("audit", {"seq": 3, "hash": log[2]["hash"]}))
    report = audit.verify(log, CUSTODIAN.public)
    assert report.first_bad == 3
    assert report.reason is not None and "not signed" in report.reason


def test_removed_middle_entry(log: list[dict[str, Any]]) -> None:
    del log[2]
    report = audit.verify(log, CUSTODIAN.public)
    assert report.first_bad == 3
    assert report.count == 2
    assert report.reason is not None
    assert report.reason.startswith("entry 3:")
    assert "seq 4" in report.reason and "removed" in report.reason


def test_removed_middle_entry_with_renumbering(log: list[dict[str, Any]]) -> None:
    del log[2]
    for position, entry in enumerate(log, start=1):
        entry["seq"] = position
    report = audit.verify(log, CUSTODIAN.public)
    assert report.first_bad == 3
    assert report.reason is not None
    assert report.reason.startswith("entry 3:")
    assert "does not follow entry 2" in report.reason


def test_swapped_entries(log: list[dict[str, Any]]) -> None:
    log[1], log[2] = log[2], log[1]
    report = audit.verify(log, CUSTODIAN.public)
    assert report.first_bad == 2
    assert report.count == 1
    assert report.reason is not None
    assert report.reason.startswith("entry 2:")
    assert "reordered" in report.reason


def test_wrong_custodian_key(log: list[dict[str, Any]]) -> None:
    other = Identity.generate("bravo")
    report = audit.verify(log, other.public)
    assert report.first_bad == 1
    assert report.count == 0
    assert report.reason is not None
    assert report.reason.startswith("entry 1:")
    assert "not signed by bravo" in report.reason


def test_log_signed_by_another_custodian_fails_under_the_right_key() -> None:
    other = build_log(Identity.generate("alpha"))
    report = audit.verify(other, CUSTODIAN.public)
    assert report.first_bad == 1
    assert report.reason is not None and "not signed" in report.reason


@pytest.mark.parametrize(
    "damage",
    [
        lambda e: e.pop("hash"),
        lambda e: e.update(signature="not base64!"),
        lambda e: e.update(signature=b64encode(b"short")),
        lambda e: e.update(data={"x": 1.5}),
        lambda e: e.update(data="not an object"),
        lambda e: e.update(data=[1, 2]),
        lambda e: e.update(data=None),
    ],
    ids=[
        "missing-hash",
        "bad-base64",
        "short-signature",
        "float-in-data",
        "data-string",
        "data-list",
        "data-null",
    ],
)
def test_malformed_entry_is_named(log: list[dict[str, Any]], damage: Any) -> None:
    damage(log[4])
    report = audit.verify(log, CUSTODIAN.public)
    assert report.first_bad == 5
    assert report.count == 4
    assert report.reason is not None
    assert report.reason.startswith("entry 5:")


def test_first_of_several_bad_entries_is_named(log: list[dict[str, Any]]) -> None:
    log[4]["data"]["by"] = "0" * 64
    log[1]["data"]["ref"] = "r9"
    report = audit.verify(log, CUSTODIAN.public)
    assert report.first_bad == 2
