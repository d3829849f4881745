"""A custodian over Flask's test client: deposits, releases, policy, approval, unsend, audit."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from securecomm._encoding import b64decode
from securecomm.config import Settings
from securecomm.custodian import audit
from securecomm.envelope import Draft, Policy, Receipt
from securecomm.errors import IdentityError, SignatureError
from securecomm.identity import Identity, PublicIdentity
from securecomm.protocol import Release
from securecomm.shares import Share

from ._services import (
    CUSTODIANS,
    Reply,
    Service,
    access_log,
    custodian,
    custody_draft,
    deposit,
    deposit_request,
    operator,
    release_body,
    settings_for,
)

ALICE = Identity.generate("alice")
BOB = Identity.generate("bob")
EVE = Identity.generate("eve")
CAROL = Identity.generate("carol")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_for(tmp_path)


@pytest.fixture
def alpha(settings: Settings) -> Service:
    return custodian(settings, "alpha")


def held(
    svc: Service,
    policy: Policy | None = None,
    plaintext: bytes = b"hello",
    recipients: tuple[Identity, ...] = (BOB,),
) -> tuple[Draft, Receipt]:
    """A message whose share 1 is deposited with ``svc``: (draft, receipt)."""
    others = [Identity.generate(n).public for n in CUSTODIANS[1:]]
    draft = custody_draft(
        ALICE, list(recipients), [svc.public, *others], policy=policy, plaintext=plaintext
    )
    r = deposit(svc, draft, 0, ALICE)
    assert r.status_code == 201, r.json
    return draft, Receipt.from_json(r.json)


def release(svc: Service, who: Identity, message_id: str) -> Reply:
    return svc.call(who, "POST", "/v1/releases", release_body(message_id))


# Deposits


def test_five_deposits_give_receipts_signed_by_each_custodian(settings: Settings) -> None:
    services = [custodian(settings, name) for name in CUSTODIANS]
    draft = custody_draft(ALICE, [BOB], [s.public for s in services])
    receipts = []
    for position, svc in enumerate(services):
        r = deposit(svc, draft, position, ALICE)
        assert r.status_code == 201, (svc.audience, r.json)
        receipt = Receipt.from_json(r.json)
        receipt.verify(svc.public)
        assert receipt.custodian == svc.audience
        assert receipt.index == position + 1
        assert receipt.message_id == draft.header.message_id
        assert receipt.share_digest == draft.header.custodians[position].share_digest
        with pytest.raises(SignatureError):
            receipt.verify(services[(position + 1) % 5].public)
        receipts.append(receipt)
    assert len({r.ref for r in receipts}) == 5
    # The receipts finish an envelope that verifies under every custodian's pinned key.
    envelope = draft.finish(ALICE, receipts)
    envelope.verify(ALICE.public, {s.audience: s.public for s in services})


def test_duplicate_deposit_is_409(alpha: Service) -> None:
    draft, _ = held(alpha)
    r = deposit(alpha, draft, 0, ALICE)
    assert r.status_code == 409
    assert r.json["code"] == "duplicate_deposit"


def test_deposit_whose_digest_does_not_match_is_refused(alpha: Service) -> None:
    others = [Identity.generate(n).public for n in CUSTODIANS[1:]]
    draft = custody_draft(ALICE, [BOB], [alpha.public, *others])
    request = deposit_request(draft, 0, alpha.public, ALICE, digest_of=1)
    r = alpha.call(ALICE, "POST", "/v1/deposits", request.to_json())
    assert r.status_code == 400
    assert r.json["code"] == "digest_mismatch"
    # Nothing was kept: the honest deposit is still welcome.
    assert deposit(alpha, draft, 0, ALICE).status_code == 201


def test_deposit_sealed_to_another_custodian_is_refused(settings: Settings) -> None:
    alpha, bravo = custodian(settings, "alpha"), custodian(settings, "bravo")
    others = [Identity.generate(n).public for n in CUSTODIANS[2:]]
    draft = custody_draft(ALICE, [BOB], [alpha.public, bravo.public, *others])
    request = deposit_request(draft, 0, bravo.public, ALICE)
    r = alpha.call(ALICE, "POST", "/v1/deposits", request.to_json())
    assert r.status_code == 400
    assert r.json["code"] == "bad_seal"


def test_deposit_sealed_for_another_sender_is_refused(alpha: Service) -> None:
    # Sealed naming Alice as sender, but the request is signed by Eve: the HPKE info differs.
    others = [Identity.generate(n).public for n in CUSTODIANS[1:]]
    draft = custody_draft(ALICE, [BOB], [alpha.public, *others])
    request = deposit_request(draft, 0, alpha.public, ALICE)
    r = alpha.call(EVE, "POST", "/v1/deposits", request.to_json())
    assert r.status_code == 400


# Releases


def test_release_to_recipient_opens_to_the_right_share(alpha: Service) -> None:
    draft, _ = held(alpha)
    r = release(alpha, BOB, draft.header.id)
    assert r.status_code == 200, r.json
    share = Release.from_json(r.json).open(BOB, alpha.public)
    assert share == draft.shares[0]
    # Without a policy limit, it can be released again.
    again = release(alpha, BOB, draft.header.id)
    assert again.status_code == 200
    assert Release.from_json(again.json).open(BOB, alpha.public) == draft.shares[0]


def test_release_to_stranger_is_not_recipient(alpha: Service) -> None:
    draft, _ = held(alpha)
    r = release(alpha, EVE, draft.header.id)
    assert r.status_code == 403
    assert r.json["code"] == "not_recipient"
    # Same name as the recipient, another key: still not the recipient.
    fake_bob = Identity.generate("bob")
    r = release(alpha, fake_bob, draft.header.id)
    assert r.status_code == 403
    assert r.json["code"] == "not_recipient"


def test_release_of_unknown_message_is_404(alpha: Service) -> None:
    r = release(alpha, BOB, "0" * 32)
    assert r.status_code == 404
    assert r.json["code"] == "no_deposit"


def test_release_too_early(alpha: Service) -> None:
    draft, _ = held(alpha, Policy(not_before=int(time.time()) + 3600))
    r = release(alpha, BOB, draft.header.id)
    assert r.status_code == 403
    assert r.json["code"] == "too_early"


def test_release_after_expiry(alpha: Service) -> None:
    draft, _ = held(alpha, Policy(expires=int(time.time()) - 5))
    r = release(alpha, BOB, draft.header.id)
    assert r.status_code == 403
    assert r.json["code"] == "expired"


def test_release_inside_the_window(alpha: Service) -> None:
    now = int(time.time())
    draft, _ = held(alpha, Policy(not_before=now - 60, expires=now + 3600))
    assert release(alpha, BOB, draft.header.id).status_code == 200


def acknowledge(svc: Service, who: Identity, message_id: str) -> Reply:
    return svc.call(who, "DELETE", "/v1/releases", query=f"message_id={message_id}")


def test_burn_after_reading(alpha: Service, settings: Settings) -> None:
    """The share is released once. Its answer is kept for its reader only, who may have
    lost it on the way (spec section 12.2), until the reader says it has it."""
    draft, _ = held(alpha, Policy(max_releases=1), recipients=(BOB, CAROL))
    first = release(alpha, BOB, draft.header.id)
    assert first.status_code == 200
    assert Release.from_json(first.json).open(BOB, alpha.public) == draft.shares[0]
    refused = release(alpha, CAROL, draft.header.id)
    assert (refused.status_code, refused.json["code"]) == (410, "destroyed")
    again = release(alpha, BOB, draft.header.id)
    assert (again.status_code, again.data) == (200, first.data)  # the same answer, as given
    for _ in range(2):
        acked = acknowledge(alpha, BOB, draft.header.id)
        assert acked.status_code == 200, acked.json
        assert acked.json == {"v": 1, "message_id": draft.header.id, "kept": False}
    gone = release(alpha, BOB, draft.header.id)
    assert (gone.status_code, gone.json["code"]) == (410, "destroyed")
    events = [
        e["event"]
        for e in alpha.call(operator(settings, "alpha"), "GET", "/v1/audit").json["entries"]
    ]
    assert events.count("release") == 1 and events.count("burn") == 1
    assert events.count("release_repeated") == 1 and events.count("release_acknowledged") == 1


def test_a_kept_release_is_not_counted_again(alpha: Service) -> None:
    """Two releases for three recipients: bob asking twice (his first answer lost) leaves
    carol's; the third recipient finds the share used up."""
    draft, _ = held(alpha, Policy(max_releases=2), recipients=(BOB, CAROL, EVE))
    assert release(alpha, BOB, draft.header.id).status_code == 200
    assert release(alpha, BOB, draft.header.id).status_code == 200
    assert release(alpha, CAROL, draft.header.id).status_code == 200
    assert release(alpha, EVE, draft.header.id).status_code == 410
    assert release(alpha, BOB, draft.header.id).status_code == 200


def kept_releases(svc: Service) -> int:
    """How many releases ``svc`` keeps for their readers, as its database says."""
    from securecomm.custodian import tables

    with svc.app.extensions["custodian"].db.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(tables.kept_releases))
        return int(count.scalar_one())


def test_a_kept_release_ends_with_its_time_and_with_unsend(
    alpha: Service, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from securecomm.custodian import views
    from securecomm.service import storage

    burnt, _ = held(alpha, Policy(max_releases=1))
    assert release(alpha, BOB, burnt.header.id).status_code == 200
    unsent, receipt = held(alpha, Policy(max_releases=1))
    assert release(alpha, BOB, unsent.header.id).status_code == 200
    # Its sender unsends a message already burnt: what was kept for its reader goes too.
    assert alpha.call(ALICE, "DELETE", f"/v1/deposits/{receipt.ref}").status_code == 204
    r = release(alpha, BOB, unsent.header.id)
    assert (r.status_code, r.json["code"]) == (410, "destroyed")
    assert release(alpha, BOB, burnt.header.id).status_code == 200
    monkeypatch.setattr(views, "KEEP_SECONDS", 0)  # the hour is up
    storage._next_sweep.clear()
    r = release(alpha, BOB, burnt.header.id)
    assert (r.status_code, r.json["code"]) == (410, "destroyed")
    assert kept_releases(alpha) == 0


@pytest.mark.parametrize("by", ["any request", "a start"])
def test_a_kept_release_past_its_time_is_swept_without_a_release_request(
    alpha: Service, settings: Settings, monkeypatch: pytest.MonkeyPatch, by: str
) -> None:
    """A custodian asked for no release after the hour still drops what it kept: on its
    next request of any kind, or when it starts again."""
    from securecomm.custodian import views
    from securecomm.service import storage

    draft, _ = held(alpha, Policy(max_releases=1))
    assert release(alpha, BOB, draft.header.id).status_code == 200
    assert alpha.send("GET", "/healthz").status_code == 200
    assert kept_releases(alpha) == 1  # within its time: kept
    monkeypatch.setattr(views, "KEEP_SECONDS", 0)  # the hour is up
    storage._next_sweep.clear()  # and the minute since the last sweep
    if by == "any request":
        assert alpha.send("GET", "/healthz").status_code == 200
        assert kept_releases(alpha) == 0
    else:
        assert kept_releases(custodian(settings, "alpha")) == 0


def test_a_failed_sweep_is_logged_by_name_and_fails_no_request(
    alpha: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from securecomm.custodian import views

    def broken(db: object, now: int) -> dict[str, int]:
        raise RuntimeError("a message that may quote data: 5ec2e7")

    monkeypatch.setattr(views, "sweep_kept", broken)
    with access_log() as lines:
        assert alpha.send("GET", "/healthz").status_code == 200
    failed = {"service": "alpha", "error": "RuntimeError", "where": "sweep"}
    assert failed in [json.loads(line) for line in lines]
    assert not any("5ec2e7" in line for line in lines)


# Operator approval


def approval_release(alpha: Service) -> tuple[Draft, str]:
    draft, _ = held(alpha, Policy(require_approval=True))
    r = release(alpha, BOB, draft.header.id)
    assert r.status_code == 202, r.json
    assert r.json["status"] == "pending"
    release_id = r.json["release_id"]
    assert isinstance(release_id, str) and len(release_id) == 32
    assert "sealed_share" not in r.json
    return draft, release_id


def test_approval_flow(alpha: Service, settings: Settings) -> None:
    draft, release_id = approval_release(alpha)
    path = f"/v1/releases/{release_id}"
    pending = alpha.call(BOB, "GET", path)
    assert pending.status_code == 202
    assert pending.json["status"] == "pending"
    assert "sealed_share" not in pending.json

    op = operator(settings, "alpha")
    listed = alpha.call(op, "GET", "/v1/releases")
    assert listed.status_code == 200
    assert [x["release_id"] for x in listed.json["releases"]] == [release_id]

    approved = alpha.call(op, "POST", f"{path}/approve")
    assert approved.status_code == 200, approved.json
    assert approved.json["status"] == "approved"
    # The operator sees the status but never the share.
    seen_by_operator = alpha.call(op, "GET", path)
    assert "sealed_share" not in seen_by_operator.json

    got = alpha.call(BOB, "GET", path)
    assert got.status_code == 200, got.json
    assert Release.from_json(got.json).open(BOB, alpha.public) == draft.shares[0]

    # Collected once: asked again, its reader is given the same answer (the first may have
    # been lost on the way), until it says it has it.
    again = alpha.call(BOB, "GET", path)
    assert (again.status_code, again.data) == (200, got.data)
    assert acknowledge(alpha, BOB, draft.header.id).status_code == 200
    after = alpha.call(BOB, "GET", path)
    assert after.status_code == 410
    assert after.json["code"] == "already_released"


def test_its_reader_withdraws_a_release_and_no_one_can_approve_it_after(
    alpha: Service, settings: Settings
) -> None:
    """A read that succeeded with other shares takes its request back: off the operator's
    list, never released, audited once; a request of its own is needed to ask again."""
    draft, release_id = approval_release(alpha)
    path = f"/v1/releases/{release_id}"
    op = operator(settings, "alpha")
    for who in (ALICE, op):  # only the request's recipient withdraws it
        r = alpha.call(who, "DELETE", path)
        assert (r.status_code, r.json["code"]) == (404, "no_release"), r.json
    for _ in range(2):
        r = alpha.call(BOB, "DELETE", path)
        assert r.status_code == 200, r.json
        assert r.json == {"v": 1, "release_id": release_id, "status": "withdrawn"}
    assert alpha.call(op, "GET", "/v1/releases").json["releases"] == []
    listed = alpha.call(op, "GET", "/v1/releases", query="status=withdrawn").json
    assert [x["release_id"] for x in listed["releases"]] == [release_id]
    r = alpha.call(op, "POST", f"{path}/approve")
    assert (r.status_code, r.json["code"]) == (409, "not_pending"), r.json
    assert "withdrawn" in r.json["message"]
    r = alpha.call(BOB, "GET", path)
    assert (r.status_code, r.json["code"]) == (410, "withdrawn"), r.json
    events = [e["event"] for e in alpha.call(op, "GET", "/v1/audit").json["entries"]]
    assert events.count("release_withdrawn") == 1, events
    anew = release(alpha, BOB, draft.header.id)  # a new request, for the operator anew
    assert anew.status_code == 202 and anew.json["release_id"] != release_id, anew.json
    approved = alpha.call(op, "POST", f"/v1/releases/{anew.json['release_id']}/approve")
    assert approved.status_code == 200
    collected = alpha.call(BOB, "GET", f"/v1/releases/{anew.json['release_id']}")
    assert collected.status_code == 200, collected.json
    r = alpha.call(BOB, "DELETE", f"/v1/releases/{anew.json['release_id']}")
    assert (r.status_code, r.json["code"]) == (409, "not_pending"), r.json  # collected


def test_approval_denied_is_final(alpha: Service, settings: Settings) -> None:
    """Denied, the request is refused; so is a new one from the same reader (the operator
    is not asked again what it answered), audited as a refusal each time."""
    draft, release_id = approval_release(alpha)
    op = operator(settings, "alpha")
    denied = alpha.call(op, "POST", f"/v1/releases/{release_id}/deny")
    assert denied.status_code == 200
    assert denied.json["status"] == "denied"
    r = alpha.call(BOB, "GET", f"/v1/releases/{release_id}")
    assert r.status_code == 403
    assert r.json["code"] == "denied"
    for _ in range(2):
        again = release(alpha, BOB, draft.header.id)
        assert (again.status_code, again.json["code"]) == (403, "denied"), again.json
        assert "final" in again.json["message"]
    assert alpha.call(op, "GET", "/v1/releases").json["releases"] == []  # nothing asked
    entries = alpha.call(op, "GET", "/v1/audit").json["entries"]
    refusals = [e for e in entries if e["event"] == "refusal"]
    assert [e["data"]["code"] for e in refusals] == ["denied"] * 3, refusals
    assert [e["data"].get("release_id") for e in refusals] == [release_id] * 3


@pytest.mark.parametrize("how", ["unsent", "burned"])
def test_a_request_whose_share_was_destroyed_leaves_nothing_to_decide(
    alpha: Service, settings: Settings, how: str
) -> None:
    """Unsent by its sender, or burnt by another reader's release: a request still pending
    was listed for the operator, approved "approved" for nothing, and answered "waiting for
    the operator's approval" to its reader for ever."""
    policy = Policy(require_approval=True, max_releases=1 if how == "burned" else None)
    draft, receipt = held(alpha, policy, recipients=(BOB, CAROL))
    op = operator(settings, "alpha")
    asked = {who.name: release(alpha, who, draft.header.id).json for who in (BOB, CAROL)}
    if how == "burned":  # bob's release, approved and collected, burns the share
        bobs = asked["bob"]["release_id"]
        assert alpha.call(op, "POST", f"/v1/releases/{bobs}/approve").status_code == 200
        assert alpha.call(BOB, "GET", f"/v1/releases/{bobs}").status_code == 200
    else:
        assert alpha.call(ALICE, "DELETE", f"/v1/deposits/{receipt.ref}").status_code == 204
    carols = asked["carol"]["release_id"]
    r = alpha.call(CAROL, "GET", f"/v1/releases/{carols}")
    assert (r.status_code, r.json["code"]) == (410, "destroyed"), r.json
    assert alpha.call(op, "GET", "/v1/releases").json["releases"] == []
    for verdict in ("approve", "deny"):
        r = alpha.call(op, "POST", f"/v1/releases/{carols}/{verdict}")
        assert (r.status_code, r.json["code"]) == (410, "destroyed"), r.json
        assert f"was destroyed ({how})" in r.json["message"]
    r = release(alpha, CAROL, draft.header.id)
    assert (r.status_code, r.json["code"]) == (410, "destroyed"), r.json


def test_approve_by_non_operator_is_refused(alpha: Service) -> None:
    _, release_id = approval_release(alpha)
    for who in (BOB, ALICE, alpha.identity):
        r = alpha.call(who, "POST", f"/v1/releases/{release_id}/approve")
        assert r.status_code == 403
        assert r.json["code"] == "not_operator"
    assert alpha.call(BOB, "GET", f"/v1/releases/{release_id}").status_code == 202


def test_a_verdict_given_again_is_answered_as_the_first_and_recorded_once(
    alpha: Service, settings: Settings
) -> None:
    """An operator not sure an approval went through approves again: that is no error.
    The other verdict, once one is given, is too late."""
    _, release_id = approval_release(alpha)
    op = operator(settings, "alpha")
    path = f"/v1/releases/{release_id}"
    for _ in range(2):
        r = alpha.call(op, "POST", f"{path}/approve")
        assert r.status_code == 200, r.json
        assert r.json == {"v": 1, "release_id": release_id, "status": "approved"}
    r = alpha.call(op, "POST", f"{path}/deny")
    assert r.status_code == 409
    assert r.json["code"] == "not_pending"
    assert "approved" in r.json["message"]
    assert alpha.call(BOB, "GET", path).status_code == 200  # collected
    r = alpha.call(op, "POST", f"{path}/approve")
    assert r.status_code == 200, r.json
    assert r.json["status"] == "released"
    r = alpha.call(op, "POST", f"/v1/releases/{'0' * 32}/approve")
    assert r.status_code == 404

    _, denied = approval_release(alpha)
    assert alpha.call(op, "POST", f"/v1/releases/{denied}/deny").status_code == 200
    r = alpha.call(op, "POST", f"/v1/releases/{denied}/deny")
    assert (r.status_code, r.json["status"]) == (200, "denied")
    assert alpha.call(op, "POST", f"/v1/releases/{denied}/approve").status_code == 409

    events = [e["event"] for e in alpha.call(op, "GET", "/v1/audit").json["entries"]]
    assert events.count("approved") == 1
    assert events.count("denied") == 1


def test_a_reader_who_asks_again_gets_its_open_request(alpha: Service, settings: Settings) -> None:
    """A reader whose last read ended without this custodian's share (or that forgot the
    release id) asks again: it gets the request it has, not another for the operator to
    decide; once that request is approved, asking again collects the share."""
    draft, release_id = approval_release(alpha)
    op = operator(settings, "alpha")
    again = release(alpha, BOB, draft.header.id)
    assert again.status_code == 202
    assert again.json == {"v": 1, "status": "pending", "release_id": release_id}
    listed = alpha.call(op, "GET", "/v1/releases").json["releases"]
    assert [x["release_id"] for x in listed] == [release_id]

    # Another recipient's request is its own.
    carol_draft, _ = held(alpha, Policy(require_approval=True), recipients=(BOB, CAROL))
    bobs = release(alpha, BOB, carol_draft.header.id).json["release_id"]
    carols = release(alpha, CAROL, carol_draft.header.id).json["release_id"]
    assert bobs != carols

    assert alpha.call(op, "POST", f"/v1/releases/{release_id}/approve").status_code == 200
    got = release(alpha, BOB, draft.header.id)  # the approval came after the read that asked
    assert got.status_code == 200, got.json
    assert Release.from_json(got.json).open(BOB, alpha.public) == draft.shares[0]
    # Collected: the same answer again (in case it was lost), until its reader has it; then
    # the next read is a new request, for the operator again.
    assert alpha.call(BOB, "GET", f"/v1/releases/{release_id}").data == got.data
    assert release(alpha, BOB, draft.header.id).data == got.data
    assert acknowledge(alpha, BOB, draft.header.id).status_code == 200
    assert alpha.call(BOB, "GET", f"/v1/releases/{release_id}").status_code == 410
    fresh = release(alpha, BOB, draft.header.id)
    assert fresh.status_code == 202
    assert fresh.json["release_id"] != release_id

    events = [e["event"] for e in alpha.call(op, "GET", "/v1/audit").json["entries"]]
    assert events.count("release_requested") == 4  # bob's twice, carol's, bob's fresh one
    assert events.count("release") == 1


def test_release_id_is_not_for_strangers(alpha: Service) -> None:
    _, release_id = approval_release(alpha)
    r = alpha.call(EVE, "GET", f"/v1/releases/{release_id}")
    assert r.status_code == 404
    assert r.json["code"] == "no_release"


# Unsend


def test_sender_unsend_destroys_the_share(alpha: Service) -> None:
    draft, receipt = held(alpha)
    r = alpha.call(ALICE, "DELETE", f"/v1/deposits/{receipt.ref}")
    assert r.status_code == 204
    r = release(alpha, BOB, draft.header.id)
    assert r.status_code == 410
    assert r.json["code"] == "destroyed"


def test_unsend_by_someone_else_is_404(alpha: Service) -> None:
    draft, receipt = held(alpha)
    for who in (BOB, EVE):
        r = alpha.call(who, "DELETE", f"/v1/deposits/{receipt.ref}")
        assert r.status_code == 404
        assert r.json["code"] == "no_deposit"
    assert release(alpha, BOB, draft.header.id).status_code == 200


def test_unsend_by_message_id_by_someone_else_is_answered_as_for_no_deposit(
    alpha: Service,
) -> None:
    """By its message id, another's deposit was answered "no deposit REF of yours": it told
    whoever asked that a share of the message was here, and its ref. It is now answered as
    a message with no deposit here is, and stays."""
    draft, receipt = held(alpha)
    query = f"message_id={draft.header.id}"
    for who in (BOB, EVE):
        r = alpha.call(who, "DELETE", "/v1/deposits", query=query)
        none = alpha.call(who, "DELETE", "/v1/deposits", query="message_id=" + "0" * 32)
        assert (r.status_code, r.json["code"]) == (404, "no_deposit")
        assert r.json["message"] == none.json["message"].replace("0" * 32, draft.header.id)
        assert receipt.ref not in r.data.decode()
    assert release(alpha, BOB, draft.header.id).status_code == 200
    assert alpha.call(ALICE, "DELETE", "/v1/deposits", query=query).status_code == 204
    r = release(alpha, BOB, draft.header.id)
    assert (r.status_code, r.json["code"]) == (410, "destroyed")


def test_refusal_after_approval_is_audited(alpha: Service, settings: Settings) -> None:
    """An approved release whose share was unsent since is refused, and the refusal logged.

    The module's contract: every refusal goes into the audit log.
    """
    _, release_id = approval_release(alpha)
    op = operator(settings, "alpha")
    assert alpha.call(op, "POST", f"/v1/releases/{release_id}/approve").status_code == 200
    ref = alpha.call(op, "GET", "/v1/audit").json["entries"][0]["data"]["ref"]
    assert alpha.call(ALICE, "DELETE", f"/v1/deposits/{ref}").status_code == 204
    r = alpha.call(BOB, "GET", f"/v1/releases/{release_id}")
    assert r.status_code == 410
    assert r.json["code"] == "destroyed"
    events = [e["event"] for e in alpha.call(op, "GET", "/v1/audit").json["entries"]]
    assert events[-1] == "refusal", events


# Audit


def test_audit_lists_every_event_in_order_and_verifies(alpha: Service, settings: Settings) -> None:
    op = operator(settings, "alpha")
    plain, plain_receipt = held(alpha)
    gated, _ = held(alpha, Policy(require_approval=True))
    once, _ = held(alpha, Policy(max_releases=1))

    assert release(alpha, BOB, plain.header.id).status_code == 200  # release
    assert release(alpha, EVE, plain.header.id).status_code == 403  # refusal
    first = release(alpha, BOB, gated.header.id).json["release_id"]  # release_requested
    assert alpha.call(op, "POST", f"/v1/releases/{first}/approve").status_code == 200
    assert release(alpha, BOB, gated.header.id).status_code == 200  # release (the approved one)
    assert release(alpha, BOB, gated.header.id).status_code == 200  # release_repeated
    assert acknowledge(alpha, BOB, gated.header.id).status_code == 200  # release_acknowledged
    second = release(alpha, BOB, gated.header.id).json["release_id"]  # release_requested
    assert alpha.call(op, "POST", f"/v1/releases/{second}/deny").status_code == 200
    assert alpha.call(ALICE, "DELETE", f"/v1/deposits/{plain_receipt.ref}").status_code == 204
    assert release(alpha, BOB, once.header.id).status_code == 200  # release, burn

    r = alpha.call(op, "GET", "/v1/audit")
    assert r.status_code == 200
    entries = r.json["entries"]
    events = [e["event"] for e in entries]
    assert events[:13] == [
        "deposit",
        "deposit",
        "deposit",
        "release",
        "refusal",
        "release_requested",
        "approved",
        "release",
        "release_repeated",
        "release_acknowledged",
        "release_requested",
        "denied",
        "delete",
    ]
    # The last release burns the share: both are logged (their order has its own test).
    assert sorted(events[13:]) == ["burn", "release"]
    first_seen = list(dict.fromkeys(events))
    assert first_seen == [
        "deposit",
        "release",
        "refusal",
        "release_requested",
        "approved",
        "release_repeated",
        "release_acknowledged",
        "denied",
        "delete",
        "burn",
    ]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert PublicIdentity.from_json(r.json["custodian"]).fingerprint == alpha.public.fingerprint
    report = audit.verify(entries, alpha.public)
    assert report.ok, report
    assert report.count == len(entries)
    # The refusal names who was refused and why.
    refusal = entries[4]["data"]
    assert refusal["requester"] == EVE.public.fingerprint_hex
    assert refusal["code"] == "not_recipient"


def test_burn_is_logged_after_the_release_that_caused_it(
    alpha: Service, settings: Settings
) -> None:
    """A log that says "burn" and then "release" of the same ref reads as a release of a
    destroyed share; the release happened first and must come first."""
    once, _ = held(alpha, Policy(max_releases=1))
    assert release(alpha, BOB, once.header.id).status_code == 200
    entries = alpha.call(operator(settings, "alpha"), "GET", "/v1/audit").json["entries"]
    assert [e["event"] for e in entries] == ["deposit", "release", "burn"]


def test_audit_is_for_the_operator_only(alpha: Service, settings: Settings) -> None:
    held(alpha)
    custodian(settings, "bravo")  # makes bravo's operator key
    for who in (BOB, ALICE, alpha.identity, operator(settings, "bravo")):
        r = alpha.call(who, "GET", "/v1/audit")
        assert r.status_code == 403
        assert r.json["code"] == "not_operator"
    assert alpha.send("GET", "/v1/audit").status_code == 401


def _forms(data: bytes) -> list[bytes]:
    """``data`` as raw bytes, hex (both cases) and base64 (standard and URL-safe, unpadded)."""
    b64 = base64.b64encode(data)
    return [
        data,
        data.hex().encode(),
        data.hex().upper().encode(),
        b64,
        b64.rstrip(b"="),
        base64.urlsafe_b64encode(data).rstrip(b"="),
    ]


def database_bytes(settings: Settings, name: str) -> bytes:
    """Every byte of a custodian's SQLite database: the main file, its WAL and its index."""
    files = [p for p in settings.custodian_dir(name).iterdir() if p.name.startswith("custodian.db")]
    assert files, "the custodian database was not found"
    return b"".join(p.read_bytes() for p in files)


def test_no_share_in_audit_log_or_database(alpha: Service, settings: Settings) -> None:
    op = operator(settings, "alpha")
    secret_text = b"the plaintext that no custodian may hold"
    plain, plain_receipt = held(alpha, plaintext=secret_text)
    once, _ = held(alpha, Policy(max_releases=1))
    others = [Identity.generate(n).public for n in CUSTODIANS[1:]]
    gated = custody_draft(
        ALICE, [BOB], [alpha.public, *others], policy=Policy(require_approval=True)
    )
    gated_request = deposit_request(gated, 0, alpha.public, ALICE)
    assert alpha.call(ALICE, "POST", "/v1/deposits", gated_request.to_json()).status_code == 201
    release(alpha, BOB, plain.header.id)
    release(alpha, EVE, plain.header.id)
    pending = release(alpha, BOB, gated.header.id).json["release_id"]
    alpha.call(op, "POST", f"/v1/releases/{pending}/approve")
    assert alpha.call(BOB, "GET", f"/v1/releases/{pending}").status_code == 200
    release(alpha, BOB, once.header.id)
    alpha.call(ALICE, "DELETE", f"/v1/deposits/{plain_receipt.ref}")

    audit_json = alpha.call(op, "GET", "/v1/audit").data
    assert b"share_digest" in audit_json
    database = database_bytes(settings, "alpha")
    # Control: the share still held is there, sealed as it arrived, so the search can see.
    assert gated_request.sealed_share in database, "control: the held sealed share not found"
    assert gated_request.sealed_share not in audit_json, "a sealed share is in the audit JSON"
    shares: list[Share] = [d.shares[i] for d in (plain, gated, once) for i in range(5)]
    for share in shares:
        where = f"share {share.index} of {share.split_id.hex()}"
        for piece in (share.value, share.to_raw(), share.to_bytes()):
            for form in _forms(piece):
                assert form not in audit_json, f"{where} is in the audit JSON"
                assert form not in database, f"{where} is in the database files"
        assert share.to_text().encode() not in database, f"{where} is in the database files"
    assert secret_text not in database, "the plaintext is in the database files"
    assert secret_text not in audit_json, "the plaintext is in the audit JSON"


@pytest.mark.parametrize("how", ["burn", "burn, time up", "burn, unsent", "unsend"])
def test_destroyed_share_is_gone_from_the_database_files(
    alpha: Service, settings: Settings, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After burn-after-reading or unsend, the sealed share must not survive on disk:
    the custodian's own key (HOME/custodians/NAME/identity.key) still opens it. Nor the
    release kept for its reader, once acknowledged or its time is up: the reader's key
    opens that."""
    others = [Identity.generate(n).public for n in CUSTODIANS[1:]]
    policy = Policy(max_releases=1) if how.startswith("burn") else Policy()
    draft = custody_draft(ALICE, [BOB], [alpha.public, *others], policy=policy)
    request = deposit_request(draft, 0, alpha.public, ALICE)
    r = alpha.call(ALICE, "POST", "/v1/deposits", request.to_json())
    assert r.status_code == 201
    assert request.sealed_share in database_bytes(settings, "alpha"), "control: not stored"
    released = b""
    if how.startswith("burn"):
        answer = release(alpha, BOB, draft.header.id)
        assert answer.status_code == 200
        released = b64decode(answer.json["sealed_share"], field="sealed_share")
        kept = database_bytes(settings, "alpha")
        assert any(form in kept for form in _forms(released)), "control: not kept"
        if how == "burn":
            assert acknowledge(alpha, BOB, draft.header.id).status_code == 200
        elif how == "burn, unsent":
            ref = Receipt.from_json(r.json).ref
            assert alpha.call(ALICE, "DELETE", f"/v1/deposits/{ref}").status_code == 204
        else:
            from securecomm.custodian import views
            from securecomm.service import storage

            monkeypatch.setattr(views, "KEEP_SECONDS", 0)
            storage._next_sweep.clear()
    else:
        ref = Receipt.from_json(r.json).ref
        assert alpha.call(ALICE, "DELETE", f"/v1/deposits/{ref}").status_code == 204
    assert release(alpha, BOB, draft.header.id).status_code == 410
    leftovers = [
        (p.name, what)
        for p in settings.custodian_dir("alpha").iterdir()
        if p.name.startswith("custodian.db")
        for what, secret in (("share", request.sealed_share), ("release", released))
        if secret and any(form in p.read_bytes() for form in _forms(secret))
    ]
    assert leftovers == [], f"the destroyed sealed share or release is still in {leftovers}"


# Identity and health


def test_identity_document_is_signed(alpha: Service) -> None:
    r = alpha.send("GET", "/v1/identity")
    assert r.status_code == 200
    document = r.json["identity"]
    public = PublicIdentity.from_json(document)
    assert public.fingerprint == alpha.public.fingerprint
    assert public.name == "alpha"
    signature = b64decode(r.json["signature"], field="signature", length=64)
    public.verify(signature, "identity", document)
    with pytest.raises(SignatureError):
        public.verify(signature, "receipt", document)


def test_custodian_healthz(alpha: Service) -> None:
    r = alpha.send("GET", "/healthz")
    assert r.status_code == 200
    assert r.json["service"] == "alpha"
    assert r.json["fingerprint"] == alpha.public.fingerprint_hex


def test_operator_key_is_written_on_first_start(settings: Settings) -> None:
    svc = custodian(settings, "charlie")
    key_path = settings.home / "operators" / "charlie-operator.key"
    assert key_path.exists()
    op = Identity.load(key_path)
    assert op.name == "charlie-operator"
    assert op.public.fingerprint != svc.public.fingerprint
    # A second start keeps both keys.
    again = custodian(settings, "charlie")
    assert again.public.fingerprint == svc.public.fingerprint
    assert operator(settings, "charlie").public.fingerprint == op.public.fingerprint


def test_a_custodian_without_an_operator_key_refuses_to_start_and_makes_none(
    tmp_path: Path,
) -> None:
    from securecomm.cli import main
    from securecomm.custodian.app import create_custodian_app

    settings = settings_for(tmp_path)
    with pytest.raises(IdentityError) as refused:
        create_custodian_app(settings, "alpha")
    assert "operator.pub" in str(refused.value) and "securecomm keygen" in str(refused.value)
    assert not (tmp_path / "operators").exists()  # no one's private key made here
    with pytest.raises(SystemExit) as exited:
        main(["custodian", "serve", "--name", "alpha", "--home", str(tmp_path)])
    assert exited.value.code == 1
    assert not (tmp_path / "operators").exists()
