"""The relay over Flask's test client: storage, reading, inbox paging, deletion, directory."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from securecomm import canonical
from securecomm._encoding import b64encode
from securecomm.envelope import Envelope
from securecomm.errors import AnswerSignatureError, SchemaError
from securecomm.httpsig import (
    ANSWER_HEADER,
    ANSWER_NONCE_HEADER,
    AnswerBinding,
    new_nonce,
    verify_answer,
)
from securecomm.identity import Identity
from securecomm.relay.app import endorsement_body
from securecomm.relay.tables import directory, schema
from securecomm.service.storage import upgrade_database

from ._services import (
    Body,
    Reply,
    Service,
    custodian_identities,
    draft_for,
    finish,
    make_envelope,
    relay,
    settings_for,
)

ALICE = Identity.generate("alice")
BOB = Identity.generate("bob")
CAROL = Identity.generate("carol")
EVE = Identity.generate("eve")


@pytest.fixture
def svc(tmp_path: Path) -> Service:
    return relay(settings_for(tmp_path))


def post(svc: Service, envelope: Envelope, path: str = "/api/v1/messages") -> Reply:
    return svc.send("POST", path, envelope.to_bytes())


def message_path(message_id: str) -> str:
    return f"/api/v1/messages/{message_id}"


# Posting


def test_post_stores_and_answers_digest_of_exact_bytes(svc: Service) -> None:
    envelope = make_envelope(ALICE, [BOB])
    data = envelope.to_bytes()
    r = post(svc, envelope)
    assert r.status_code == 201, r.json
    assert r.json == {
        "id": envelope.id,
        "digest": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "stored_at": r.json["stored_at"],
    }
    assert isinstance(r.json["stored_at"], int)
    assert r.headers["Location"].endswith(message_path(envelope.id))


def test_post_same_envelope_again_is_idempotent(svc: Service) -> None:
    envelope = make_envelope(ALICE, [BOB])
    first = post(svc, envelope)
    again = post(svc, envelope)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json == first.json


def test_post_other_bytes_under_same_id_is_a_conflict(svc: Service) -> None:
    custodians = custodian_identities()
    draft = draft_for(ALICE, [BOB], custodians)
    one = finish(draft, ALICE, custodians, ref_prefix="a")
    other = finish(draft, ALICE, custodians, ref_prefix="b")
    assert one.id == other.id and one.to_bytes() != other.to_bytes()
    assert post(svc, one).status_code == 201
    r = post(svc, other)
    assert r.status_code == 409
    assert r.json["code"] == "duplicate_id"
    # The first copy is untouched.
    got = svc.call(BOB, "GET", message_path(one.id))
    assert got.data == one.to_bytes()


def test_seed_alias_api_relay_stores_too(svc: Service) -> None:
    envelope = make_envelope(ALICE, [BOB])
    r = post(svc, envelope, "/api/relay")
    assert r.status_code == 201
    assert r.json["digest"] == hashlib.sha256(envelope.to_bytes()).hexdigest()
    # Same store as /api/v1/messages: posting there now is the idempotent repeat.
    assert post(svc, envelope).status_code == 200
    assert svc.call(BOB, "GET", message_path(envelope.id)).data == envelope.to_bytes()


def test_sender_registered_with_another_key_is_refused(svc: Service) -> None:
    body = {"v": 1, "identity": ALICE.public.to_json()}
    assert svc.call(ALICE, "PUT", "/api/v1/directory/alice", body).status_code == 201
    impostor = Identity.generate("alice")
    r = post(svc, make_envelope(impostor, [BOB]))
    assert r.status_code == 403
    assert r.json["code"] == "sender_key_mismatch"
    # The registered key itself is still welcome.
    assert post(svc, make_envelope(ALICE, [BOB])).status_code == 201


def test_envelope_with_offline_custodians_is_refused(svc: Service) -> None:
    custodians = custodian_identities()
    draft = draft_for(ALICE, [BOB], custodians, offline=True)
    envelope = draft.finish(ALICE)
    r = post(svc, envelope)
    assert r.status_code == 400
    assert r.json["code"] == "no_custodians"


def test_envelope_with_bad_signature_is_refused(svc: Service) -> None:
    envelope = make_envelope(ALICE, [BOB])
    signature = bytearray(envelope.signature)
    signature[0] ^= 1
    forged = Envelope(
        envelope.header,
        envelope.nonce,
        envelope.ciphertext,
        envelope.tag,
        envelope.receipts,
        bytes(signature),
    )
    r = post(svc, forged)
    assert r.status_code == 400
    assert r.json["code"] == "bad_signature"
    assert svc.call(BOB, "GET", "/api/v1/inbox").json["messages"] == []


# Reading


def test_recipient_and_sender_get_the_exact_stored_bytes(svc: Service) -> None:
    envelope = make_envelope(ALICE, [BOB, CAROL])
    post(svc, envelope)
    for who in (BOB, CAROL, ALICE):
        r = svc.call(who, "GET", message_path(envelope.id))
        assert r.status_code == 200, who.name
        assert r.data == envelope.to_bytes()
        assert r.mimetype == "application/json"


def test_stranger_and_missing_id_get_the_same_404(svc: Service) -> None:
    envelope = make_envelope(ALICE, [BOB])
    post(svc, envelope)
    stranger = svc.call(EVE, "GET", message_path(envelope.id))
    # The same id once it no longer exists: the body must not tell the two apart.
    assert svc.call(ALICE, "DELETE", message_path(envelope.id)).status_code == 204
    missing = svc.call(EVE, "GET", message_path(envelope.id))
    assert stranger.status_code == missing.status_code == 404
    assert stranger.data == missing.data
    assert stranger.json["code"] == "not_found"
    # And an id that never existed answers in the same shape.
    other_id = "0" * 32
    never = svc.call(BOB, "GET", message_path(other_id))
    assert never.status_code == 404
    assert never.data == stranger.data.replace(envelope.id.encode(), other_id.encode())


def test_get_unsigned_is_401(svc: Service) -> None:
    envelope = make_envelope(ALICE, [BOB])
    post(svc, envelope)
    r = svc.send("GET", message_path(envelope.id))
    assert r.status_code == 401
    assert r.json["code"] == "missing_signature"


# Inbox


def test_inbox_pages_with_limit_and_after_cursor(svc: Service) -> None:
    ids = set()
    for i in range(5):
        envelope = make_envelope(ALICE, [BOB], plaintext=f"message {i}".encode())
        assert post(svc, envelope).status_code == 201
        ids.add(envelope.id)
    # Someone else's message never shows in Bob's inbox.
    post(svc, make_envelope(ALICE, [CAROL]))

    pages = []
    query = "limit=2"
    while True:
        r = svc.call(BOB, "GET", "/api/v1/inbox", query=query)
        assert r.status_code == 200, r.json
        pages.append(r.json)
        if r.json["next"] is None:
            break
        assert len(pages) < 10
        query = f"limit=2&after={r.json['next']}"
    assert [len(p["messages"]) for p in pages] == [2, 2, 1]
    seen = [m["id"] for p in pages for m in p["messages"]]
    assert len(seen) == len(set(seen)) == 5
    assert set(seen) == ids
    first = pages[0]["messages"][0]
    assert first["sender"] == {"name": "alice", "fingerprint": ALICE.public.fingerprint_hex}
    assert set(first) == {"id", "sender", "created", "stored_at", "size", "digest", "policy"}
    assert first["policy"] == envelope.header.policy.to_json()

    everything = svc.call(BOB, "GET", "/api/v1/inbox").json
    assert [m["id"] for m in everything["messages"]] == seen
    assert everything["next"] is None


@pytest.mark.parametrize(
    "query",
    [
        "after=nonsense",
        "after=12:short",
        "after=x:" + "0" * 32,
        "after=%C2%B2:" + "0" * 32,  # a superscript digit: str.isdigit() but not int()
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=-1",
        "limit=%C2%B2",
    ],
)
def test_inbox_bad_cursor_or_limit_is_400(svc: Service, query: str) -> None:
    r = svc.call(BOB, "GET", "/api/v1/inbox", query=query)
    assert r.status_code == 400
    assert r.json["code"] == "bad_field"


# Deleting


def test_recipient_delete_removes_it_from_their_inbox_only(svc: Service) -> None:
    envelope = make_envelope(ALICE, [BOB, CAROL])
    post(svc, envelope)
    assert svc.call(BOB, "DELETE", message_path(envelope.id)).status_code == 204
    assert svc.call(BOB, "GET", "/api/v1/inbox").json["messages"] == []
    assert svc.call(BOB, "GET", message_path(envelope.id)).status_code == 404
    carol_inbox = svc.call(CAROL, "GET", "/api/v1/inbox").json["messages"]
    assert [m["id"] for m in carol_inbox] == [envelope.id]
    assert svc.call(CAROL, "GET", message_path(envelope.id)).data == envelope.to_bytes()
    assert svc.call(ALICE, "GET", message_path(envelope.id)).status_code == 200
    # Deleting twice: it is no longer Bob's to delete.
    assert svc.call(BOB, "DELETE", message_path(envelope.id)).status_code == 404


def test_sender_delete_removes_it_for_everyone(svc: Service) -> None:
    envelope = make_envelope(ALICE, [BOB, CAROL])
    post(svc, envelope)
    assert svc.call(ALICE, "DELETE", message_path(envelope.id)).status_code == 204
    for who in (BOB, CAROL):
        assert svc.call(who, "GET", "/api/v1/inbox").json["messages"] == []
        assert svc.call(who, "GET", message_path(envelope.id)).status_code == 404
    assert svc.call(ALICE, "GET", message_path(envelope.id)).status_code == 404


def test_stranger_delete_is_404_and_changes_nothing(svc: Service) -> None:
    envelope = make_envelope(ALICE, [BOB])
    post(svc, envelope)
    r = svc.call(EVE, "DELETE", message_path(envelope.id))
    assert r.status_code == 404
    assert r.json["code"] == "not_found"
    assert svc.call(BOB, "GET", message_path(envelope.id)).status_code == 200


# Directory


def directory_body(identity: Identity, endorsement: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"v": 1, "identity": identity.public.to_json()}
    if endorsement is not None:
        body["endorsement"] = endorsement
    return body


def test_directory_put_get_and_idempotent_put(svc: Service) -> None:
    r = svc.call(BOB, "PUT", "/api/v1/directory/bob", directory_body(BOB))
    assert r.status_code == 201
    assert r.json == {"name": "bob", "fingerprint": BOB.public.fingerprint_hex}
    again = svc.call(BOB, "PUT", "/api/v1/directory/bob", directory_body(BOB))
    assert again.status_code == 200
    got = svc.send("GET", "/api/v1/directory/bob")
    assert got.status_code == 200
    assert got.json["identity"] == BOB.public.to_json()
    assert got.json["fingerprint"] == BOB.public.fingerprint_hex
    missing = svc.send("GET", "/api/v1/directory/nobody")
    assert missing.status_code == 404
    assert missing.json["code"] == "not_found"


def test_directory_put_by_another_key_is_not_your_key(svc: Service) -> None:
    r = svc.call(EVE, "PUT", "/api/v1/directory/bob", directory_body(BOB))
    assert r.status_code == 403
    assert r.json["code"] == "not_your_key"
    assert svc.send("GET", "/api/v1/directory/bob").status_code == 404


def test_no_person_registers_the_name_of_the_relay_or_a_custodian(svc: Service) -> None:
    """A person named "alpha" would be pinned, by whoever looks the name up, in the place
    of custodian alpha's key (or make every send refuse alpha as changed)."""
    for name in ("alpha", "echo", "relay"):
        impostor = Identity.generate(name)
        r = svc.call(impostor, "PUT", f"/api/v1/directory/{name}", directory_body(impostor))
        assert r.status_code == 403, r.json
        assert r.json["code"] == "reserved_name"
        assert svc.send("GET", f"/api/v1/directory/{name}").status_code == 404
    carol = Identity.generate("alpha-operator")  # a person's name may contain one
    ok = svc.call(carol, "PUT", "/api/v1/directory/alpha-operator", directory_body(carol))
    assert ok.status_code == 201, ok.json


def test_no_person_registers_a_lookalike_of_a_name_taken(svc: Service) -> None:
    """Beside a registered "bob", "bob." or "b.ob" registered as well, and a sender picked
    the impostor easily; likewise "al-pha" beside custodian alpha."""
    assert svc.call(BOB, "PUT", "/api/v1/directory/bob", directory_body(BOB)).status_code == 201
    for name in ("bob.", "bob-", "bob_", "b.ob", "b-o_b", "al-pha", "relay.", "zed-"):
        impostor = Identity.generate(name)
        said = svc.send("GET", f"/api/v1/names/{name}")
        assert (said.status_code, said.json["code"]) == (403, "lookalike_name"), (name, said.json)
        r = svc.call(impostor, "PUT", f"/api/v1/directory/{name}", directory_body(impostor))
        assert (r.status_code, r.json["code"]) == (403, "lookalike_name"), (name, r.json)
        assert svc.send("GET", f"/api/v1/directory/{name}").status_code == 404
    said = svc.send("GET", "/api/v1/names/b.ob")
    assert "'b.ob' looks like 'bob'" in said.json["message"], said.json
    assert "ends in '-'" in svc.send("GET", "/api/v1/names/zed-").json["message"]
    assert svc.send("GET", "/api/v1/names/alpha").json["code"] == "reserved_name"
    # A name of its own is free; bob's own is free for bob's key, which registers again.
    assert svc.send("GET", "/api/v1/names/bobby").json == {"name": "bobby", "listed": False}
    assert svc.send("GET", "/api/v1/names/bob").json == {"name": "bob", "listed": True}
    assert svc.call(BOB, "PUT", "/api/v1/directory/bob", directory_body(BOB)).status_code == 200
    bobby = Identity.generate("bob.by")
    ok = svc.call(bobby, "PUT", "/api/v1/directory/bob.by", directory_body(bobby))
    assert ok.status_code == 201, ok.json


def test_no_person_registers_a_name_that_differs_by_a_digit_for_a_letter(svc: Service) -> None:
    """ "b0b" beside "bob", "a1pha" beside custodian alpha, "rnary" beside "mary": each read
    for the other at a glance (stop 31's rule compared separators only). The stored name's
    skeleton is made in SQL, so each pair is tried both ways round."""
    for first, second in (("bob", "b0b"), ("kirn", "kim"), ("wendy", "vv.endy"), ("c1ay", "clay")):
        holder = Identity.generate(first)
        put = svc.call(holder, "PUT", f"/api/v1/directory/{first}", directory_body(holder))
        assert put.status_code == 201, (first, put.json)
        said = svc.send("GET", f"/api/v1/names/{second}")
        assert (said.status_code, said.json["code"]) == (403, "lookalike_name"), said.json
        assert f"looks like {first!r}" in said.json["message"], said.json
        impostor = Identity.generate(second)
        r = svc.call(impostor, "PUT", f"/api/v1/directory/{second}", directory_body(impostor))
        assert (r.status_code, r.json["code"]) == (403, "lookalike_name"), (second, r.json)
    said = svc.send("GET", "/api/v1/names/a1pha")
    assert (said.status_code, said.json["code"]) == (403, "lookalike_name"), said.json
    assert "looks like 'alpha'" in said.json["message"]
    for free in ("bob2", "eli", "carol"):  # no look-alike of a name taken
        assert svc.send("GET", f"/api/v1/names/{free}").status_code == 200, free


def test_an_entry_made_before_the_lookalike_rule_stays_its_holders(svc: Service) -> None:
    """Names in data made before stay valid: an entry "b.ob" beside "bob" is still looked
    up, registered again and rotated by its holder."""
    assert svc.call(BOB, "PUT", "/api/v1/directory/bob", directory_body(BOB)).status_code == 201
    old = Identity.generate("b.ob")
    with svc.app.extensions["securecomm"]["engine"].begin() as conn:
        conn.execute(
            directory.insert().values(
                name="b.ob",
                fingerprint=old.public.fingerprint_hex,
                identity=canonical.dumps(old.public.to_json()).decode(),
                updated_at=1,
            )
        )
    assert svc.send("GET", "/api/v1/directory/b.ob").status_code == 200
    assert svc.call(old, "PUT", "/api/v1/directory/b.ob", directory_body(old)).status_code == 200
    new = Identity.generate("b.ob")
    endorsement = old.sign("directory-rotation", endorsement_body("b.ob", new.public))
    body = directory_body(new, b64encode(endorsement))
    assert svc.call(new, "PUT", "/api/v1/directory/b.ob", body).status_code == 200


def test_directory_key_change_without_endorsement_is_refused(svc: Service) -> None:
    svc.call(BOB, "PUT", "/api/v1/directory/bob", directory_body(BOB))
    new_bob = Identity.generate("bob")
    r = svc.call(new_bob, "PUT", "/api/v1/directory/bob", directory_body(new_bob))
    assert r.status_code == 409
    assert r.json["code"] == "key_changed"
    assert BOB.public.short_fingerprint() in r.json["message"]
    assert new_bob.public.short_fingerprint() in r.json["message"]
    # An endorsement signed by the new key itself, or for another purpose, is no endorsement.
    for forged in (
        new_bob.sign("directory-rotation", endorsement_body("bob", new_bob.public)),
        BOB.sign("identity", endorsement_body("bob", new_bob.public)),
    ):
        body = directory_body(new_bob, b64encode(forged))
        r = svc.call(new_bob, "PUT", "/api/v1/directory/bob", body)
        assert r.status_code == 409
        assert r.json["code"] == "key_changed"
    assert svc.send("GET", "/api/v1/directory/bob").json["fingerprint"] == (
        BOB.public.fingerprint_hex
    )


def test_directory_key_change_with_endorsement_is_accepted(svc: Service) -> None:
    svc.call(BOB, "PUT", "/api/v1/directory/bob", directory_body(BOB))
    new_bob = Identity.generate("bob")
    endorsement = BOB.sign("directory-rotation", endorsement_body("bob", new_bob.public))
    BOB.public.verify(endorsement, "directory-rotation", endorsement_body("bob", new_bob.public))
    body = directory_body(new_bob, b64encode(endorsement))
    r = svc.call(new_bob, "PUT", "/api/v1/directory/bob", body)
    assert r.status_code == 200, r.json
    assert r.json == {"name": "bob", "fingerprint": new_bob.public.fingerprint_hex}
    got = svc.send("GET", "/api/v1/directory/bob").json
    assert got["fingerprint"] == new_bob.public.fingerprint_hex
    assert got["identity"] == new_bob.public.to_json()


# Health and UI


def test_healthz(svc: Service) -> None:
    r = svc.send("GET", "/healthz")
    assert r.status_code == 200
    assert r.json["status"] == "ok"
    assert r.json["service"] == "relay"
    assert r.json["fingerprint"] == svc.public.fingerprint_hex


def test_index_is_html(svc: Service) -> None:
    r = svc.send("GET", "/")
    assert r.status_code == 200
    assert r.mimetype == "text/html"
    assert b"<html" in r.data


def test_inbox_shows_each_message_s_policy_and_null_for_one_stored_before(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    svc = relay(settings)
    older = make_envelope(ALICE, [BOB], plaintext=b"stored before policies were kept")
    assert post(svc, older).status_code == 201
    # A relay database as a release before policies made it: no policies table, and no
    # migrations yet (nor payload streams). The relay refuses it until it is upgraded, which
    # adds the table.
    database = settings.relay_dir() / "relay.db"
    with sqlite3.connect(database) as db:
        db.execute("DROP TABLE devices")
        db.execute("DROP TABLE device_revocations")
        db.execute("DROP TABLE uploads")
        db.execute("DROP INDEX ix_messages_payload_digest")
        db.execute("ALTER TABLE messages DROP COLUMN payload_digest")
        db.execute("ALTER TABLE messages DROP COLUMN payload_length")
        db.execute("DROP TABLE policies")
        db.execute("DROP TABLE alembic_version")
        db.execute("UPDATE schema_version SET version = 1")
    with pytest.raises(SchemaError, match="this securecomm needs relay_"):
        relay(settings)
    assert upgrade_database(settings.relay_database(), schema) == ("schema_version 1", schema.head)
    svc = relay(settings)
    newer = make_envelope(ALICE, [BOB], plaintext=b"with its policy")
    assert post(svc, newer).status_code == 201
    listed = {m["id"]: m["policy"] for m in svc.call(BOB, "GET", "/api/v1/inbox").json["messages"]}
    assert listed == {older.id: None, newer.id: newer.header.policy.to_json()}
    # Unsent: the policy goes with the message.
    assert svc.call(ALICE, "DELETE", f"/api/v1/messages/{newer.id}").status_code == 204
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM policies").fetchone() == (0,)


# Signed answers (spec section 11.4)


def signed_call(
    svc: Service, who: Identity, method: str, path: str, body: Body = None, *, query: str = ""
) -> tuple[Reply, AnswerBinding]:
    """A signed request, and what its answer must be bound to."""
    nonce = new_nonce()
    headers = svc.headers(who, method, path, body, query=query, nonce=nonce)
    reply = svc.send(method, path, body, headers=headers, query=query)
    return reply, AnswerBinding(method, path, query, nonce, who.public.fingerprint_hex)


def unsigned_call(
    svc: Service, method: str, path: str, body: Body = None
) -> tuple[Reply, AnswerBinding]:
    """An unsigned request with a challenge, and what its answer must be bound to."""
    nonce = new_nonce()
    reply = svc.send(method, path, body, headers={ANSWER_NONCE_HEADER: nonce})
    return reply, AnswerBinding(method, path, "", nonce, None)


def answer(svc: Service, reply: Reply, binding: AnswerBinding) -> dict[str, object]:
    """The relay's statement of ``reply``, checked as a client checks it."""
    return verify_answer(
        svc.public,
        reply.headers.getlist(ANSWER_HEADER),
        binding,
        status=reply.status_code,
        body=reply.data,
    )


def test_every_api_answer_is_signed_for_the_request_it_answers(svc: Service) -> None:
    envelope = make_envelope(ALICE, [BOB])
    calls = [
        unsigned_call(svc, "POST", "/api/v1/messages", envelope.to_bytes()),
        unsigned_call(svc, "POST", "/api/relay", envelope.to_bytes()),
        signed_call(svc, BOB, "GET", message_path(envelope.id)),
        signed_call(svc, EVE, "GET", message_path(envelope.id)),  # 404, as for no message
        signed_call(svc, BOB, "GET", "/api/v1/inbox", query="limit=100"),
        signed_call(svc, EVE, "GET", "/api/v1/inbox"),  # an empty inbox
        signed_call(svc, BOB, "PUT", "/api/v1/directory/bob", directory_body(BOB)),
        unsigned_call(svc, "GET", "/api/v1/directory/bob"),
        unsigned_call(svc, "GET", "/api/v1/directory/nobody"),  # 404
        unsigned_call(svc, "GET", "/api/v1/web-config"),
        unsigned_call(svc, "GET", "/api/v1/network"),  # 404: no network file
        unsigned_call(svc, "GET", message_path(envelope.id)),  # 401: not signed
        unsigned_call(svc, "GET", "/api/v1/nowhere"),  # no such endpoint
        signed_call(svc, BOB, "DELETE", message_path(envelope.id)),  # 204, no body
    ]
    statuses = []
    for reply, binding in calls:
        statement = answer(svc, reply, binding)
        assert statement["status"] == reply.status_code
        statuses.append(reply.status_code)
    assert statuses == [201, 200, 200, 404, 200, 200, 201, 200, 404, 200, 404, 401, 404, 204]


def test_the_message_fetch_answers_the_stored_bytes_exactly_beside_its_signature(
    svc: Service,
) -> None:
    envelope = make_envelope(ALICE, [BOB])
    post(svc, envelope)
    reply, binding = signed_call(svc, BOB, "GET", message_path(envelope.id))
    assert reply.data == envelope.to_bytes()
    answer(svc, reply, binding)


def test_an_answer_is_bound_to_its_own_request_only(svc: Service) -> None:
    """Two fetches of the same message: each answer verifies for its own request only."""
    envelope = make_envelope(ALICE, [BOB])
    post(svc, envelope)
    first, _ = signed_call(svc, BOB, "GET", message_path(envelope.id))
    second, second_binding = signed_call(svc, BOB, "GET", message_path(envelope.id))
    assert first.data == second.data
    answer(svc, second, second_binding)
    with pytest.raises(AnswerSignatureError, match="another request"):
        answer(svc, first, second_binding)


def test_an_unsigned_request_without_a_challenge_gets_an_answer_bound_to_nothing(
    svc: Service,
) -> None:
    reply = svc.send("GET", "/api/v1/directory/bob")
    binding = AnswerBinding("GET", "/api/v1/directory/bob", "", None, None)
    assert answer(svc, reply, binding)["nonce"] is None


def test_the_page_and_the_health_check_are_not_signed(svc: Service) -> None:
    for path in ("/", "/web/js/app.js", "/healthz", "/openapi.json"):
        reply = svc.send("GET", path)
        assert reply.status_code == 200, path
        assert ANSWER_HEADER not in reply.headers, path


def test_the_web_config_names_the_key_that_signs(svc: Service) -> None:
    reply, binding = unsigned_call(svc, "GET", "/api/v1/web-config")
    assert reply.json["relay"] == svc.public.to_json()
    answer(svc, reply, binding)
