"""The custodian's audit log: append-only, hash-chained, every entry signed.

Entry n carries the hash of entry n-1, its own hash over its contents and
that link, and the custodian's Ed25519 signature over ``(seq, hash)``, so
every entry is a signed checkpoint of the whole log up to it. Whoever edits,
removes or reorders an entry must rewrite every later hash and cannot
re-sign them without the custodian's key; :func:`verify` names the first
entry that does not hold. (Cutting entries off the end leaves a shorter,
valid log: only a copy of a later checkpoint held elsewhere shows that.)

An entry never holds a share: the events record references, ids,
fingerprints and digests only.

``GET /v1/audit`` answers a page at a time (spec section 12.3); :func:`paged`
walks the pages for a reader, and :func:`verify` carries the chain across them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import canonical
from .._encoding import b64decode, b64encode, labelled_hash
from ..errors import FormatError, SecureCommError
from ..identity import SIGNATURE_LENGTH_BYTES, Identity, PublicIdentity

__all__ = [
    "GENESIS",
    "PAGE_DEFAULT_ENTRIES",
    "PAGE_MAX_ENTRIES",
    "SEQ_MAX",
    "AuditReport",
    "append",
    "define",
    "entries",
    "page",
    "paged",
    "verify",
]

#: The "previous hash" of the first entry.
GENESIS = "0" * 64

#: Entries in one page of ``GET /v1/audit`` unless ``limit`` asks for fewer or more, and
#: the most it may ask for (about 500 bytes each).
PAGE_DEFAULT_ENTRIES = 500
PAGE_MAX_ENTRIES = 1000
#: The largest seq ``after`` may name: one a page's JavaScript still reads exactly.
SEQ_MAX = 2**53 - 1


def define(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "audit_log",
        metadata,
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("prev", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(88), nullable=False),
    )


def _entry_hash(seq: int, time: int, event: str, data: Mapping[str, Any], prev: str) -> str:
    body = {"seq": seq, "time": time, "event": event, "data": dict(data), "prev": prev}
    return labelled_hash("securecomm/v1/audit-entry", canonical.dumps(body)).hex()


def append(
    conn: Connection,
    table: sa.Table,
    identity: Identity,
    event: str,
    data: Mapping[str, Any],
    now: int,
) -> None:
    """Add one entry, inside the caller's transaction (so it commits with what it records).

    The next seq and its link come from the last entry, so appends take turns: on SQLite
    every write transaction already holds the database's write lock (BEGIN IMMEDIATE); on
    PostgreSQL the log's table is locked against other appends (not against readers) until
    the caller's transaction ends, so two never read the same last entry (two workers did:
    one of them failed on the seq's primary key). Whatever the caller locks, it locks before
    this: a transaction holding the log's lock waits for nothing else, so it cannot
    deadlock.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(_lock_statement(table))
    last_entry, insert = _append_statements(table)
    last = conn.execute(last_entry).first()
    seq, prev = (1, GENESIS) if last is None else (last.seq + 1, last.hash)
    digest = _entry_hash(seq, now, event, data, prev)
    signature = identity.sign("audit", {"seq": seq, "hash": digest})
    conn.execute(
        insert,
        {
            "seq": seq,
            "time": now,
            "event": event,
            "data": canonical.dumps(dict(data)).decode(),
            "prev": prev,
            "hash": digest,
            "signature": b64encode(signature),
        },
    )


@functools.cache
def _lock_statement(table: sa.Table) -> sa.TextClause:
    # SHARE ROW EXCLUSIVE: taken by one transaction at a time; plain SELECTs go on.
    return sa.text(f'LOCK TABLE "{table.name}" IN SHARE ROW EXCLUSIVE MODE')


@functools.cache
def _append_statements(table: sa.Table) -> tuple[sa.Select[Any], sa.Insert]:
    # Built once per table, values bound when run: building and cache-keying a statement
    # with its values in it, twice per request, cost more CPU than running both.
    last = sa.select(table.c.seq, table.c.hash).order_by(table.c.seq.desc()).limit(1)
    return last, table.insert()


def entries(
    conn: Connection, table: sa.Table, *, after: int = 0, limit: int | None = None
) -> list[dict[str, Any]]:
    """The entries after seq ``after`` (every one by default) as JSON, by seq; at most
    ``limit`` of them."""
    # Bound as seq is (64-bit): ``after`` may name any seq up to SEQ_MAX.
    query = sa.select(table).where(table.c.seq > after).order_by(table.c.seq)
    rows = conn.execute(query if limit is None else query.limit(limit)).fetchall()
    return [
        {
            "seq": r.seq,
            "time": r.time,
            "event": r.event,
            "data": canonical.loads(r.data.encode()),
            "prev": r.prev,
            "hash": r.hash,
            "signature": r.signature,
        }
        for r in rows
    ]


def page(
    conn: Connection, table: sa.Table, *, after: int = 0, limit: int = PAGE_DEFAULT_ENTRIES
) -> dict[str, Any]:
    """One page of ``GET /v1/audit``: up to ``limit`` entries after seq ``after``, and
    ``next``, the ``after`` of the page that follows (None on the last)."""
    rows = entries(conn, table, after=after, limit=limit + 1)
    return {"entries": rows[:limit], "next": rows[limit - 1]["seq"] if rows[limit:] else None}


def paged(fetch: Callable[[int], Mapping[str, Any]]) -> Iterator[Any]:
    """Every entry of a log read a page at a time, first to last.

    ``fetch(after)`` answers the page after seq ``after`` (0: the first), as ``GET
    /v1/audit`` does: ``{"entries": [...], "next": <seq> | null}``. A ``next`` that is not
    the page's last seq would repeat or skip entries, or never end: FormatError.
    """
    after = 0
    while True:
        page = fetch(after)
        batch, cursor = page.get("entries"), page.get("next")
        if not isinstance(batch, list):
            raise FormatError(f"audit page after {after}: no list of entries")
        yield from batch
        if cursor is None:
            return
        last = batch[-1] if batch else None
        seq = last.get("seq") if isinstance(last, Mapping) else None
        if isinstance(cursor, bool) or cursor != seq or not isinstance(seq, int) or seq <= after:
            raise FormatError(
                f"audit page after {after}: next is {cursor!r}, not the seq of its last entry"
            )
        after = seq


@dataclass(frozen=True)
class AuditReport:
    count: int
    first_bad: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad is None


def verify(log: Iterable[Mapping[str, Any]], custodian: PublicIdentity) -> AuditReport:
    """Check the chain and every signature; name the first entry (1-based position) that fails."""
    prev = GENESIS
    count = 0
    for position, entry in enumerate(log, start=1):
        count = position

        def bad(reason: str, position: int = position) -> AuditReport:
            return AuditReport(position - 1, position, reason)

        try:
            seq, time, event = entry["seq"], entry["time"], entry["event"]
            data, link, digest = entry["data"], entry["prev"], entry["hash"]
            signature = b64decode(
                entry["signature"], field="signature", length=SIGNATURE_LENGTH_BYTES
            )
        except (KeyError, TypeError, SecureCommError):
            return bad(f"entry {position}: malformed")
        if seq != position:
            return bad(f"entry {position}: has seq {seq} (an entry was removed or reordered)")
        if link != prev:
            return bad(
                f"entry {position}: does not follow entry {position - 1}"
                " (an entry was removed, reordered or edited)"
            )
        if not isinstance(data, Mapping):
            return bad(f"entry {position}: malformed (data is not an object)")
        try:
            recomputed = _entry_hash(seq, time, event, data, link)
        except SecureCommError:
            return bad(f"entry {position}: malformed")
        if recomputed != digest:
            return bad(f"entry {position}: its contents do not match its hash (edited)")
        try:
            custodian.verify(signature, "audit", {"seq": seq, "hash": digest})
        except SecureCommError:
            return bad(f"entry {position}: not signed by {custodian.name} (edited and re-hashed)")
        prev = digest
    return AuditReport(count)
