"""A custodian's HTTP API (spec §12): deposits, releases, the operator's decisions and
the audit log. Each view reads the state, asks :mod:`.policy` where a rule decides,
and records what it did in the audit log in the same transaction."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy.engine import Connection, Engine

from .. import canonical, hpke
from .._encoding import b64encode
from .._fields import HEX_MESSAGE_ID as _HEX_ID
from ..codes import Code
from ..envelope import Policy, Receipt, share_digest
from ..identity import Identity, PublicIdentity
from ..protocol import DepositRequest, Release, deposit_info
from ..service.app import (
    ApiError,
    authenticate,
    error_response,
    query_int,
    read_json,
    require_own_key,
    sweep_in_passing,
    transaction,
)
from ..service.storage import insert_new, scrub, sweep_due
from ..shares import Share
from . import audit, openapi
from .policy import Decision, Deposit, Outcome, Verdict, decide, uses_up
from .tables import (
    _COUNT_RELEASE,
    _DEPOSIT_OF_MESSAGE,
    audit_log,
    deposits,
    kept_releases,
    releases,
)

__all__ = ["KEEP_SECONDS", "Custodian", "bp", "sweep_kept"]

#: How long a release given once is kept for its reader, in case its answer was lost on
#: the way (spec section 12.2): the reader's next read within that time is answered again.
KEEP_SECONDS = 3600

bp = Blueprint("custodian", __name__)

# The deposit a release or a deletion decides on, locked until its transaction ends
# (PostgreSQL: FOR NO KEY UPDATE; SQLite's write lock does it there): two workers that
# read the same count of releases would both release a burn-after-reading share.
_DEPOSIT_OF_MESSAGE_LOCKED = _DEPOSIT_OF_MESSAGE.with_for_update(key_share=True)
_DEPOSIT = sa.select(deposits).where(deposits.c.ref == sa.bindparam("ref"))
_DEPOSIT_LOCKED = _DEPOSIT.with_for_update(key_share=True)


# The request of a reader for a share that still stands: one approved and not collected,
# else a denial (final), else one pending.
_STANDING_RELEASE = (
    sa.select(releases.c.id, releases.c.status)
    .where(
        releases.c.ref == sa.bindparam("ref"),
        releases.c.recipient_fp == sa.bindparam("recipient_fp"),
        releases.c.status.in_(("pending", "approved", "denied")),
    )
    .order_by(
        (releases.c.status == "approved").desc(),
        (releases.c.status == "denied").desc(),
        releases.c.created,
    )
    .limit(1)
)


_KEPT = sa.select(kept_releases.c.answer).where(
    kept_releases.c.ref == sa.bindparam("ref"),
    kept_releases.c.recipient_fp == sa.bindparam("recipient_fp"),
    kept_releases.c.created > sa.bindparam("oldest"),
)
_UNKEEP = kept_releases.delete().where(
    kept_releases.c.ref == sa.bindparam("ref"),
    kept_releases.c.recipient_fp == sa.bindparam("recipient_fp"),
)
_KEEP = kept_releases.insert()
_EXPIRED_KEPT = kept_releases.delete().where(kept_releases.c.created <= sa.bindparam("oldest"))


@dataclass(frozen=True)
class Custodian:
    """What every view of one custodian needs, set up once by the app factory."""

    name: str
    identity: Identity
    operator: PublicIdentity
    db: Engine
    identity_document: dict[str, Any]
    identity_signature: str  # signed once: Ed25519 is deterministic

    @classmethod
    def of(cls, name: str, identity: Identity, operator: PublicIdentity, db: Engine) -> Custodian:
        document = identity.public.to_json()
        return cls(
            name, identity, operator, db, document, b64encode(identity.sign("identity", document))
        )


def here() -> Custodian:
    custodian: Custodian = current_app.extensions["custodian"]
    return custodian


def _policy_of(row: Any) -> Policy:
    return Policy.from_json(canonical.loads(row.policy.encode()), "policy")


def _deposit(row: Any) -> Deposit | None:
    """A deposits row as the release rule sees it."""
    if row is None:
        return None
    recipients = canonical.loads(row.recipients.encode())
    return Deposit(
        _policy_of(row),
        frozenset((r["name"], r["fingerprint"]) for r in recipients),
        row.releases,
        str(row.destroyed_why) if row.destroyed_at is not None else None,
    )


def _who(caller: PublicIdentity) -> tuple[str, str]:
    return caller.name, caller.fingerprint_hex


def log(conn: Connection, event: str, **data: Any) -> None:
    """Append ``event`` to the audit log; one that a device asked for (spec/sessions.md
    section 3) names the device too, beside its person."""
    c = here()
    signer, caller = g.get("signer"), g.get("caller")
    if signer is not None and caller is not None and not signer.same_keys(caller):
        data["device"] = signer.fingerprint_hex
    audit.append(conn, audit_log, c.identity, event, data, int(time.time()))


def require_operator() -> PublicIdentity:
    c = here()
    caller = authenticate()
    if caller.fingerprint != c.operator.fingerprint:
        raise ApiError(403, Code.NOT_OPERATOR, f"only {c.name}'s operator may do this")
    return caller


@bp.get("/v1/identity")
def get_identity() -> Response:
    c = here()
    return jsonify({"identity": c.identity_document, "signature": c.identity_signature})


@bp.post("/v1/deposits")
def post_deposit() -> tuple[Response, int]:
    c = here()
    sender = require_own_key()  # a device does not send (spec/sessions.md 3.2)
    deposit = DepositRequest.from_json(read_json())
    info = deposit_info(c.name, deposit.index, deposit.message_id, sender.fingerprint_hex)
    share = Share.from_bytes(
        hpke.open(deposit.sealed_share, c.identity.kem_private_key, info), name="share"
    )
    message_id = bytes.fromhex(deposit.message_id)
    if (
        share.index != deposit.index
        or share.split_id != message_id
        or share_digest(message_id, c.name, share) != deposit.share_digest
    ):
        raise ApiError(
            400,
            Code.DIGEST_MISMATCH,
            "the sealed share does not match the digest, index or message id",
        )
    ref = os.urandom(16).hex()
    now = int(time.time())
    values = {
        "ref": ref,
        "message_id": deposit.message_id,
        "share_index": deposit.index,
        "sender_fp": sender.fingerprint_hex,
        "share_digest": b64encode(deposit.share_digest),
        "sealed_share": deposit.sealed_share,
        "policy": canonical.dumps(deposit.policy.to_json()).decode(),
        "recipients": canonical.dumps([r.to_json() for r in deposit.recipients]).decode(),
        "releases": 0,
        "created": now,
    }
    duplicate = ApiError(
        409, Code.DUPLICATE_DEPOSIT, f"a share of message {deposit.message_id} is already here"
    )
    with transaction() as conn:
        # Not stored if a share of the message is here, or was stored at this moment by
        # another request (on PostgreSQL this insert waits for it on the unique message_id).
        if conn.execute(insert_new(deposits, conn.dialect.name), values).first() is None:
            raise duplicate
        log(
            conn,
            "deposit",
            ref=ref,
            message_id=deposit.message_id,
            index=deposit.index,
            sender=sender.fingerprint_hex,
            share_digest=b64encode(deposit.share_digest),
        )
    receipt = Receipt.issue(c.identity, deposit.index, message_id, ref, deposit.share_digest)
    return jsonify(receipt.to_json()), 201


@bp.delete("/v1/deposits")
def withdraw_deposit() -> tuple[str, int]:
    """Unsend by message id: for a sender who never got the receipt (and its ref)."""
    c = here()
    caller = authenticate()
    message_id = _message_id_argument()
    with c.db.connect() as conn:
        # Only the caller's: another's deposit is answered as none, without its ref.
        ref = conn.execute(
            sa.select(deposits.c.ref).where(
                deposits.c.message_id == message_id,
                deposits.c.sender_fp == caller.fingerprint_hex,
            )
        ).scalar()
    if ref is None:
        raise ApiError(404, Code.NO_DEPOSIT, f"no deposit of yours for message {message_id}")
    return destroy_deposit(ref, caller)


def _message_id_argument() -> str:
    """The request's ``message_id`` query argument, checked."""
    return _checked_message_id(request.args.get("message_id", ""))


def _checked_message_id(message_id: object) -> str:
    """``message_id`` (a query argument or a body field) if it is 32 lowercase hex digits."""
    if not isinstance(message_id, str) or not _HEX_ID.fullmatch(message_id):
        raise ApiError(400, Code.BAD_FIELD, "message_id: expected 32 lowercase hex digits")
    return message_id


@bp.delete("/v1/deposits/<ref>")
def delete_deposit(ref: str) -> tuple[str, int]:
    return destroy_deposit(ref, authenticate())


def destroy_deposit(ref: str, caller: PublicIdentity) -> tuple[str, int]:
    c = here()
    with transaction() as conn:
        row = conn.execute(_DEPOSIT_LOCKED, {"ref": ref}).first()
        if row is None or row.sender_fp != caller.fingerprint_hex:
            raise ApiError(404, Code.NO_DEPOSIT, f"no deposit {ref} of yours")
        destroyed = row.destroyed_at is None
        if destroyed:
            _destroy(conn, ref, "unsent")
        # And the releases kept for their readers (a share burnt already may have some).
        dropped = conn.execute(kept_releases.delete().where(kept_releases.c.ref == ref)).rowcount
        if destroyed or dropped:
            log(conn, "delete", ref=ref, message_id=row.message_id, by=caller.fingerprint_hex)
    if destroyed or dropped:
        scrub(c.db)
    return "", 204


@bp.post("/v1/releases")
def post_release() -> tuple[Response, int]:
    c = here()
    caller = authenticate()
    body = read_json()
    if set(body) != {"v", "message_id"} or body["v"] != 1 or isinstance(body["v"], bool):
        raise ApiError(400, Code.BAD_FIELD, 'expected {"v": 1, "message_id": "<32 hex>"}')
    message_id = _checked_message_id(body["message_id"])
    now = int(time.time())
    with transaction() as conn:
        row = conn.execute(_DEPOSIT_OF_MESSAGE_LOCKED, {"message_id": message_id}).first()
        kept = _kept(conn, row, caller, now)
        decision = decide(_deposit(row), _who(caller), now, kept=kept is not None)
        if decision.outcome is Outcome.REFUSE:
            return refuse(conn, decision, caller, message_id=message_id)
        assert row is not None
        if decision.outcome is Outcome.REPEAT:
            assert kept is not None
            return _repeat(conn, row, caller, kept)
        if decision.outcome is Outcome.RELEASE:
            release, burned = _release(conn, row, caller)
            _log_release(conn, row, caller, burned)
        else:
            # One request per reader and share: a reader who asks again (its last read
            # ended without this share, or forgot the id) gets the request it has, so the
            # operator never sees the same request twice, an approval given after that read
            # is collected now rather than asked for anew, and a denial stands: the operator
            # is not asked again (spec section 12.2). The rule passed the deposit as it
            # stands, so an approved request releases.
            standing = conn.execute(
                _STANDING_RELEASE, {"ref": row.ref, "recipient_fp": caller.fingerprint_hex}
            ).first()
            if standing is not None and standing.status == "denied":
                denial = decide(_deposit(row), _who(caller), now, Verdict.DENIED)
                return refuse(conn, denial, caller, message_id=message_id, release_id=standing.id)
            if standing is None or standing.status == "pending":
                release_id = standing.id if standing else _ask_operator(conn, row, caller, now)
                return jsonify({"v": 1, "status": "pending", "release_id": release_id}), 202
            release, burned = _collect(conn, row, caller, standing.id)
    if burned:
        scrub(c.db)
    return jsonify(release.to_json()), 200


def _kept(conn: Connection, row: Any, caller: PublicIdentity, now: int) -> str | None:
    """The release of ``row``'s share kept for ``caller`` (its answer, as given), if any."""
    if row is None:
        return None
    answer: str | None = conn.execute(
        _KEPT,
        {"ref": row.ref, "recipient_fp": caller.fingerprint_hex, "oldest": now - KEEP_SECONDS},
    ).scalar()
    return answer


def _repeat(
    conn: Connection, row: Any, caller: PublicIdentity, answer: str
) -> tuple[Response, int]:
    """Answer again the release kept for ``caller``: nothing new is given (the same share,
    sealed to the same key), and it is not counted again."""
    log(
        conn,
        "release_repeated",
        ref=row.ref,
        message_id=row.message_id,
        recipient=caller.fingerprint_hex,
    )
    return Response(answer + "\n", 200, mimetype="application/json"), 200  # as jsonify


def sweep_kept(db: Engine, now: int) -> dict[str, int]:
    """Delete the kept releases whose time is up, once a minute per process (and the first
    time), and scrub them from the disk: how many."""
    if not sweep_due(db, kept_releases.name, now):
        return {}
    with db.begin() as conn:
        swept = conn.execute(_EXPIRED_KEPT, {"oldest": now - KEEP_SECONDS}).rowcount
    if swept:
        scrub(db)
    return {kept_releases.name: swept}


@bp.before_app_request
def _sweep_when_due() -> None:
    # On any request, not only a release's: a custodian asked for nothing else keeps no
    # release past its time for longer than a minute after its next request of any kind.
    c = here()
    sweep_in_passing(c.name, lambda: sweep_kept(c.db, int(time.time())))


def _ask_operator(conn: Connection, row: Any, caller: PublicIdentity, now: int) -> str:
    """Record a pending release of ``row``'s share to ``caller`` for the operator: its id."""
    release_id = os.urandom(16).hex()
    conn.execute(
        releases.insert().values(
            id=release_id,
            ref=row.ref,
            recipient_fp=caller.fingerprint_hex,
            recipient=canonical.dumps(caller.to_json()).decode(),
            status="pending",
            created=now,
        )
    )
    log(
        conn,
        "release_requested",
        ref=row.ref,
        release_id=release_id,
        requester=caller.fingerprint_hex,
    )
    return release_id


@bp.get("/v1/releases/<release_id>")
def get_release(release_id: str) -> tuple[Response, int]:
    c = here()
    caller = authenticate()
    now = int(time.time())
    with transaction() as conn:
        pending = conn.execute(sa.select(releases).where(releases.c.id == release_id)).first()
        is_operator = caller.fingerprint == c.operator.fingerprint
        if pending is None or (pending.recipient_fp != caller.fingerprint_hex and not is_operator):
            raise ApiError(404, Code.NO_RELEASE, f"no release {release_id} for you")
        summary = {"v": 1, "release_id": release_id, "status": pending.status}
        if is_operator:
            return jsonify(summary), 202 if pending.status == "pending" else 200
        # A request still pending releases nothing, so a reader polling it waits for no
        # release of the same share and holds none up.
        still = pending.status == "pending"
        row = conn.execute(_DEPOSIT if still else _DEPOSIT_LOCKED, {"ref": pending.ref}).first()
        kept = _kept(conn, row, caller, now) if pending.status == "released" else None
        decision = decide(
            _deposit(row), _who(caller), now, Verdict(pending.status), kept=kept is not None
        )
        if decision.outcome is Outcome.WAIT:
            return jsonify(summary), 202
        if decision.outcome is Outcome.REPEAT:
            assert kept is not None
            return _repeat(conn, row, caller, kept)
        if decision.outcome is Outcome.REFUSE:
            return refuse(
                conn,
                decision,
                caller,
                message_id=row.message_id if row else None,
                release_id=release_id,
            )
        assert row is not None
        release, burned = _collect(conn, row, caller, release_id)
    if burned:
        scrub(c.db)
    return jsonify(release.to_json()), 200


def _collect(
    conn: Connection, row: Any, caller: PublicIdentity, release_id: str
) -> tuple[Release, bool]:
    """Release the share of ``row`` to ``caller`` for the approved release ``release_id``,
    which is collected once."""
    claimed = conn.execute(
        releases.update()
        .where(releases.c.id == release_id, releases.c.status == "approved")
        .values(status="released")
    ).rowcount
    if not claimed:
        raise ApiError(410, Code.ALREADY_RELEASED, "this release was already collected")
    release, burned = _release(conn, row, caller)
    _log_release(conn, row, caller, burned, release_id=release_id)
    return release, burned


def _log_release(
    conn: Connection,
    row: Any,
    caller: PublicIdentity,
    burned: bool,
    release_id: str | None = None,
) -> None:
    approved = {} if release_id is None else {"release_id": release_id}
    log(
        conn,
        "release",
        ref=row.ref,
        message_id=row.message_id,
        recipient=caller.fingerprint_hex,
        **approved,
    )
    if burned:
        log(conn, "burn", ref=row.ref, message_id=row.message_id)


def record_verdict(release_id: str, verdict: str) -> Response:
    caller = require_operator()
    with transaction() as conn:
        # A share destroyed since it was asked for (unsent, or burnt by another reader's
        # release) leaves nothing to decide: said, rather than an approval that gives nothing.
        gone = conn.execute(
            sa.select(deposits.c.message_id, deposits.c.destroyed_why)
            .join(releases, releases.c.ref == deposits.c.ref)
            .where(
                releases.c.id == release_id,
                releases.c.status == "pending",
                deposits.c.destroyed_at.is_not(None),
            )
        ).first()
        if gone is not None:
            raise ApiError(
                410,
                Code.DESTROYED,
                f"the share of message {gone.message_id} was destroyed ({gone.destroyed_why})"
                f" since release {release_id} was asked for: there is nothing to decide",
            )
        done = conn.execute(
            releases.update()
            .where(releases.c.id == release_id, releases.c.status == "pending")
            .values(status=verdict, decided_at=int(time.time()))
        ).rowcount
        if not done:
            exists = conn.execute(
                sa.select(releases.c.status).where(releases.c.id == release_id)
            ).scalar()
            if exists is None:
                raise ApiError(404, Code.NO_RELEASE, f"no release {release_id}")
            # The same verdict again (an operator not sure the first one went through) is
            # answered with where the release stands and recorded once; an approval whose
            # release was collected since is such a repeat. The other verdict is too late.
            if exists != verdict and (verdict, exists) != ("approved", "released"):
                raise ApiError(409, Code.NOT_PENDING, f"release {release_id} is {exists}")
            return jsonify({"v": 1, "release_id": release_id, "status": exists})
        log(conn, verdict, release_id=release_id, operator=caller.fingerprint_hex)
    return jsonify({"v": 1, "release_id": release_id, "status": verdict})


@bp.post("/v1/releases/<release_id>/approve")
def approve(release_id: str) -> Response:
    return record_verdict(release_id, "approved")


@bp.post("/v1/releases/<release_id>/deny")
def deny(release_id: str) -> Response:
    return record_verdict(release_id, "denied")


@bp.delete("/v1/releases")
def acknowledge_releases() -> Response:
    """Its reader has the message: the release kept for it here (spec section 12.2) is
    deleted now rather than when its time is up."""
    c = here()
    caller = authenticate()
    message_id = _message_id_argument()
    deleted = False
    with transaction() as conn:
        row = conn.execute(_DEPOSIT_OF_MESSAGE, {"message_id": message_id}).first()
        if row is not None:
            who = {"ref": row.ref, "recipient_fp": caller.fingerprint_hex}
            deleted = conn.execute(_UNKEEP, who).rowcount > 0
            if deleted:
                log(
                    conn,
                    "release_acknowledged",
                    ref=row.ref,
                    message_id=message_id,
                    recipient=caller.fingerprint_hex,
                )
    if deleted:
        scrub(c.db)
    return jsonify({"v": 1, "message_id": message_id, "kept": False})


@bp.delete("/v1/releases/<release_id>")
def withdraw_release(release_id: str) -> Response:
    """Its reader no longer needs a release that waits for the operator, or was approved and
    not collected (a read that succeeded with other shares): off the operator's list, for
    good (spec section 12.2)."""
    caller = authenticate()
    mine = (releases.c.id == release_id) & (releases.c.recipient_fp == caller.fingerprint_hex)
    with transaction() as conn:
        withdrawn = conn.execute(
            releases.update()
            .where(mine, releases.c.status.in_(("pending", "approved")))
            .values(status="withdrawn", decided_at=int(time.time()))
        ).rowcount
        if withdrawn:
            log(conn, "release_withdrawn", release_id=release_id, requester=caller.fingerprint_hex)
        else:
            status = conn.execute(sa.select(releases.c.status).where(mine)).scalar()
            if status is None:
                raise ApiError(404, Code.NO_RELEASE, f"no release {release_id} for you")
            if status != "withdrawn":  # withdrawn again: where it stands, audited once
                raise ApiError(409, Code.NOT_PENDING, f"release {release_id} is {status}")
    return jsonify({"v": 1, "release_id": release_id, "status": "withdrawn"})


@bp.get("/v1/releases")
def list_releases() -> Response:
    c = here()
    require_operator()
    status = request.args.get("status", "pending")
    if status not in {"pending", "approved", "denied", "released", "withdrawn"}:
        raise ApiError(
            400, Code.BAD_FIELD, "status: pending, approved, denied, released or withdrawn"
        )
    listed = releases.c.status == status
    if status == "pending":  # the operator's list: none whose share was destroyed since
        listed &= deposits.c.destroyed_at.is_(None)
    with c.db.connect() as conn:
        rows = conn.execute(
            sa.select(releases, deposits.c.message_id)
            .join(deposits, deposits.c.ref == releases.c.ref)
            .where(listed)
            .order_by(releases.c.created)
        ).fetchall()
    return jsonify(
        {
            "releases": [
                {
                    "release_id": r.id,
                    "message_id": r.message_id,
                    "recipient": canonical.loads(r.recipient.encode()),
                    "status": r.status,
                    "created": r.created,
                }
                for r in rows
            ]
        }
    )


@bp.get("/v1/audit")
def get_audit() -> Response:
    c = here()
    require_operator()
    after = query_int("after", default=0, low=0, high=audit.SEQ_MAX)
    limit = query_int(
        "limit", default=audit.PAGE_DEFAULT_ENTRIES, low=1, high=audit.PAGE_MAX_ENTRIES
    )
    with c.db.connect() as conn:
        page = audit.page(conn, audit_log, after=after, limit=limit)
    return jsonify({"custodian": c.identity.public.to_json(), **page})


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(openapi.DOCUMENT)


def refuse(
    conn: Connection, refusal: Decision, caller: PublicIdentity, **data: Any
) -> tuple[Response, int]:
    """Log a refusal and answer it; returned, not raised, so the entry commits."""
    assert refusal.code is not None and refusal.reason is not None
    log(conn, "refusal", code=refusal.code, requester=caller.fingerprint_hex, **data)
    return error_response(refusal.status, refusal.code, refusal.reason), refusal.status


def _release(conn: Connection, row: Any, recipient: PublicIdentity) -> tuple[Release, bool]:
    """Seal the share to ``recipient`` and count the release; True if that used it up."""
    c = here()
    info = deposit_info(c.name, row.share_index, row.message_id, row.sender_fp)
    share = Share.from_bytes(hpke.open(row.sealed_share, c.identity.kem_private_key, info))
    release = Release.issue(c.identity, share, row.message_id, recipient)
    count = row.releases + 1
    conn.execute(_COUNT_RELEASE, {"target": row.ref, "count": count})
    policy = _policy_of(row)
    if policy.gives_once:
        # Kept for its reader a while, in case this answer is lost on the way.
        who = {"ref": row.ref, "recipient_fp": recipient.fingerprint_hex}
        conn.execute(_UNKEEP, who)
        answer = canonical.dumps(release.to_json()).decode()
        conn.execute(_KEEP, {**who, "answer": answer, "created": int(time.time())})
    burned = uses_up(policy, count)
    if burned:
        _destroy(conn, row.ref, "burned")
    return release, burned


def _destroy(conn: Connection, ref: str, why: str) -> None:
    conn.execute(
        deposits.update()
        .where(deposits.c.ref == ref)
        .values(sealed_share=None, destroyed_at=int(time.time()), destroyed_why=why)
    )
