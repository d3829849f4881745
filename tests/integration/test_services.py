"""The relay and five custodians as real gunicorn processes on loopback."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from securecomm import httpsig
from securecomm.client.transport import ServiceClient
from securecomm.envelope import Envelope, Policy, Receipt, prepare
from securecomm.errors import ServiceError
from securecomm.identity import Identity, PublicIdentity, load_public
from securecomm.protocol import DepositRequest, Release
from securecomm.shares import Share
from tests.backends import Backend

from .conftest import NAMES, Service, Stack, engine_of, free_port, stored_bytes, write_config
from .test_cli_system import audit


def custodian_keys(stack: Stack) -> dict[str, PublicIdentity]:
    return {name: load_public(stack.home / "custodians" / name / "identity.pub") for name in NAMES}


def send(
    stack: Stack,
    sender: Identity,
    recipients: list[Identity],
    message: bytes,
    policy: Policy | None = None,
    *,
    post: bool = True,
) -> tuple[Envelope, list[Receipt]]:
    """The send flow by hand: deposit five shares, then post the envelope (unless not
    ``post``)."""
    keys = custodian_keys(stack)
    policy = policy or Policy()
    draft = prepare(
        message,
        sender=sender.public,
        recipients=[r.public for r in recipients],
        custodians=[(name, keys[name].fingerprint) for name in NAMES],
        threshold=3,
        policy=policy,
    )
    receipts = []
    for i, name in enumerate(NAMES):
        request = DepositRequest.for_draft(draft, i, keys[name], sender.public)
        with ServiceClient(stack.custodians[name].url, name, sender) as client:
            answer = client.request("POST", "/v1/deposits", body=request.to_json())
        assert answer.status_code == 201
        receipt = Receipt.from_json(answer.json())
        receipt.verify(keys[name])
        receipts.append(receipt)
    envelope = draft.finish(sender, receipts)
    if not post:
        return envelope, receipts
    with ServiceClient(stack.relay.url, "relay") as relay:
        stored = relay.request("POST", "/api/v1/messages", raw=envelope.to_bytes(), sign=False)
    assert stored.status_code == 201
    assert stored.json()["digest"] == hashlib.sha256(envelope.to_bytes()).hexdigest()
    return envelope, receipts


def release(stack: Stack, name: str, reader: Identity, message_id: str) -> httpx.Response:
    with ServiceClient(stack.custodians[name].url, name, reader) as client:
        return client.request("POST", "/v1/releases", body={"v": 1, "message_id": message_id})


def read(stack: Stack, reader: Identity, message_id: str, names: list[str]) -> bytes:
    keys = custodian_keys(stack)
    with ServiceClient(stack.relay.url, "relay", reader) as relay:
        envelope = Envelope.from_bytes(
            relay.request("GET", f"/api/v1/messages/{message_id}").content
        )
    envelope.verify(None, keys, recipient=reader.public)
    shares: dict[str, Share] = {}
    for name in names:
        answer = release(stack, name, reader, message_id)
        shares[name] = Release.from_json(answer.json()).open(reader, keys[name])
    return envelope.open(shares)


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "securecomm.cli", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_five_deposits_three_releases_and_none_to_a_stranger(stack: Stack) -> None:
    alice, bob, eve = (Identity.generate(n) for n in ("alice", "bob", "eve"))
    envelope, receipts = send(stack, alice, [bob], b"the vault code is 4711")
    assert [r.custodian for r in receipts] == list(NAMES)
    assert read(stack, bob, envelope.id, ["bravo", "delta", "echo"]) == b"the vault code is 4711"
    with ServiceClient(stack.relay.url, "relay", eve) as relay, pytest.raises(ServiceError) as no:
        relay.request("GET", f"/api/v1/messages/{envelope.id}")
    assert (no.value.status, no.value.code) == (404, "not_found")
    for name in NAMES:
        with pytest.raises(ServiceError) as refused:
            release(stack, name, eve, envelope.id)
        assert (refused.value.status, refused.value.code) == (403, "not_recipient")
    # The relay's database never held the message, the key or a share (though it holds
    # the envelope: its id is there).
    database = stored_bytes(stack.database_url("relay"))
    assert envelope.id.encode() in database
    assert b"vault code" not in database
    assert b"vault code".hex().encode() not in database.lower()


def test_a_pending_release_approved_and_one_denied(stack: Stack) -> None:
    alice, bob = Identity.generate("alice"), Identity.generate("bob")
    envelope, _ = send(stack, alice, [bob], b"needs two people", Policy(require_approval=True))
    first = release(stack, "alpha", bob, envelope.id)
    second = release(stack, "bravo", bob, envelope.id)
    assert first.status_code == second.status_code == 202
    pending = cli("custodian", "pending", "--name", "alpha", home=stack.home)
    assert first.json()["release_id"] in pending.stdout, pending.stderr
    approved = cli(
        "custodian", "approve", first.json()["release_id"], "--name", "alpha", home=stack.home
    )
    assert approved.returncode == 0, approved.stderr
    denied = cli(
        "custodian", "deny", second.json()["release_id"], "--name", "bravo", home=stack.home
    )
    assert denied.returncode == 0, denied.stderr
    keys = custodian_keys(stack)
    with ServiceClient(stack.custodians["alpha"].url, "alpha", bob) as alpha:
        answer = alpha.request("GET", f"/v1/releases/{first.json()['release_id']}")
    share = Release.from_json(answer.json()).open(bob, keys["alpha"])
    assert share.index == 1
    with (
        ServiceClient(stack.custodians["bravo"].url, "bravo", bob) as bravo,
        pytest.raises(ServiceError) as refused,
    ):
        bravo.request("GET", f"/v1/releases/{second.json()['release_id']}")
    assert (refused.value.status, refused.value.code) == (403, "denied")


def test_unsend_destroys_the_shares(stack: Stack) -> None:
    alice, bob = Identity.generate("alice"), Identity.generate("bob")
    envelope, receipts = send(stack, alice, [bob], b"never mind")
    for receipt in receipts:
        with ServiceClient(
            stack.custodians[receipt.custodian].url, receipt.custodian, alice
        ) as client:
            assert client.request("DELETE", f"/v1/deposits/{receipt.ref}").status_code == 204
    with ServiceClient(stack.relay.url, "relay", alice) as relay:
        assert relay.request("DELETE", f"/api/v1/messages/{envelope.id}").status_code == 204
    for name in NAMES:
        with pytest.raises(ServiceError) as refused:
            release(stack, name, bob, envelope.id)
        assert (refused.value.status, refused.value.code) == (410, "destroyed")


def test_burn_after_reading(stack: Stack) -> None:
    """Read once: bob's read again (its answers lost on the way, say) is given the same
    releases, carol's finds the shares destroyed, and once bob says he has the message,
    so does his."""
    alice, bob, carol = (Identity.generate(n) for n in ("alice", "bob", "carol"))
    envelope, _ = send(stack, alice, [bob, carol], b"read once", Policy(max_releases=1))
    three = ["alpha", "charlie", "echo"]
    assert read(stack, bob, envelope.id, three) == b"read once"
    assert read(stack, bob, envelope.id, three) == b"read once"
    with pytest.raises(ServiceError) as refused:
        read(stack, carol, envelope.id, three)
    assert (refused.value.status, refused.value.code) == (410, "destroyed")
    for name in three:
        with ServiceClient(stack.custodians[name].url, name, bob) as client:
            client.request("DELETE", "/v1/releases", params={"message_id": envelope.id})
    with pytest.raises(ServiceError) as refused:
        read(stack, bob, envelope.id, three)
    assert (refused.value.status, refused.value.code) == (410, "destroyed")


def test_an_audit_log_edited_by_hand_is_caught(stack: Stack) -> None:
    alice, bob = Identity.generate("alice"), Identity.generate("bob")
    send(stack, alice, [bob], b"audited")
    clean = cli("audit", "verify", "--name", "charlie", home=stack.home)
    assert clean.returncode == 0, clean.stderr
    assert "chain and signatures verify" in clean.stdout
    database = engine_of(stack.database_url("charlie"))
    try:
        with database.begin() as conn:
            first_seq = conn.execute(sa.text("SELECT min(seq) FROM audit_log")).scalar_one()
            data = json.loads(
                conn.execute(
                    sa.text("SELECT data FROM audit_log WHERE seq = :seq"), {"seq": first_seq}
                ).scalar_one()
            )
            data["sender"] = "0" * 64
            conn.execute(
                sa.text("UPDATE audit_log SET data = :data WHERE seq = :seq"),
                {"data": json.dumps(data, sort_keys=True, separators=(",", ":")), "seq": first_seq},
            )
    finally:
        database.dispose()
    caught = cli("audit", "verify", "--name", "charlie", home=stack.home)
    assert caught.returncode == 1
    assert f"entry {first_seq}: its contents do not match its hash" in caught.stderr


def test_a_replayed_request_is_refused_even_after_a_restart(stack: Stack) -> None:
    alice, bob = Identity.generate("alice"), Identity.generate("bob")
    envelope, _ = send(stack, alice, [bob], b"once only")
    body = json.dumps({"v": 1, "message_id": envelope.id}).encode()
    headers = httpsig.sign_request(
        bob, method="POST", path="/v1/releases", body=body, audience="delta"
    )
    headers["Content-Type"] = "application/json"
    url = f"{stack.custodians['delta'].url}/v1/releases"
    assert httpx.post(url, content=body, headers=headers).status_code == 200
    replay = httpx.post(url, content=body, headers=headers)
    assert (replay.status_code, replay.json()["code"]) == (401, "replayed_request")
    stack.custodians["delta"].stop()
    stack.custodians["delta"].start()
    again = httpx.post(url, content=body, headers=headers)
    assert (again.status_code, again.json()["code"]) == (401, "replayed_request")
    # The same request signed for another custodian is refused there too.
    other = httpx.post(f"{stack.custodians['echo'].url}/v1/releases", content=body, headers=headers)
    assert (other.status_code, other.json()["code"]) == (401, "wrong_audience")


def test_kill_9_right_after_201_keeps_the_message(tmp_path: Path, backend: Backend) -> None:
    home = tmp_path / "home"
    ports = {name: free_port() for name in NAMES}
    relay_port = free_port()
    write_config(home, relay_port, ports, backend=backend)
    custodians = {name: Service("custodian", name, port, home) for name, port in ports.items()}
    relay = Service("relay", "relay", relay_port, home)
    stack = Stack(home, relay, custodians)
    try:
        for service in stack.all():
            service.start()
        alice, bob = Identity.generate("alice"), Identity.generate("bob")
        envelope, _ = send(stack, alice, [bob], b"survives kill -9")
        relay.kill9()
        relay.start()
        assert read(stack, bob, envelope.id, ["alpha", "bravo", "charlie"]) == b"survives kill -9"
    finally:
        for service in stack.all():
            service.stop()


def test_every_process_is_gone_after_stop(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ports = {name: free_port() for name in NAMES}
    write_config(home, free_port(), ports)
    service = Service("custodian", "alpha", ports["alpha"], home)
    service.start()
    assert service.process is not None
    group = service.process.pid
    service.stop()
    time.sleep(0.2)
    leftover = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


def _race(calls: int, action: Callable[[], int]) -> list[int]:
    """Run ``action`` from ``calls`` threads released at once; return the status codes."""
    barrier = threading.Barrier(calls)
    codes: list[int] = []

    def run() -> None:
        barrier.wait()
        codes.append(action())

    threads = [threading.Thread(target=run) for _ in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(codes)


def _signed_post(service: Service, who: Identity, path: str, body: dict[str, object]) -> int:
    content = json.dumps(body).encode()
    headers = httpsig.sign_request(
        who, method="POST", path=path, body=content, audience=service.name
    )
    headers["Content-Type"] = "application/json"
    return httpx.post(service.url + path, content=content, headers=headers, timeout=30).status_code


def _each_in_turn(
    readers: list[Identity], service: Service, body: dict[str, object]
) -> Callable[[], int]:
    """A release request signed by the next of ``readers`` each time it is called."""
    turns = iter(readers)
    lock = threading.Lock()

    def ask() -> int:
        with lock:
            reader = next(turns)
        return _signed_post(service, reader, "/v1/releases", body)

    return ask


def test_concurrent_releases_never_exceed_max_releases(stack: Stack) -> None:
    """Four recipients ask at once for a burn-after-reading share: exactly one wins. One
    recipient asking four times at once is released the share once, and given the same
    answer the other three times."""
    alice = Identity.generate("alice")
    readers = [Identity.generate(n) for n in ("bob", "carol", "dave", "erin")]
    bravo = stack.custodians["bravo"]
    for _ in range(5):
        envelope, _ = send(stack, alice, readers, b"race", Policy(max_releases=1))
        body: dict[str, object] = {"v": 1, "message_id": envelope.id}
        assert _race(4, _each_in_turn(readers, bravo, body)) == [200, 410, 410, 410]
        once, _ = send(stack, alice, readers, b"race", Policy(max_releases=1))
        body = {"v": 1, "message_id": once.id}
        codes = _race(4, functools.partial(_signed_post, bravo, readers[0], "/v1/releases", body))
        assert codes == [200, 200, 200, 200]
        events = [e["event"] for e in audit(stack.home, bravo.url, "bravo")]
        assert events[-4:].count("release_repeated") == 3, events[-6:]


def test_concurrent_identical_deposits_get_one_201(stack: Stack) -> None:
    alice, bob = Identity.generate("alice"), Identity.generate("bob")
    keys = custodian_keys(stack)
    draft = prepare(
        b"twice",
        sender=alice.public,
        recipients=[bob.public],
        custodians=[(n, keys[n].fingerprint) for n in NAMES],
        threshold=3,
    )
    deposit = DepositRequest.for_draft(draft, 0, keys["alpha"], alice.public).to_json()
    codes = _race(
        4, lambda: _signed_post(stack.custodians["alpha"], alice, "/v1/deposits", deposit)
    )
    assert codes == [201, 409, 409, 409]


def test_a_cursor_beyond_every_stored_value_is_an_empty_page(stack: Stack) -> None:
    """The largest ``after`` each page allows names nothing stored: an empty last page (on
    PostgreSQL such a number once overflowed its INTEGER parameter: a 500)."""
    bob = Identity.generate("bob")
    operator = Identity.load(stack.home / "operators" / "alpha-operator.key")
    with ServiceClient(stack.relay.url, "relay", bob) as relay:
        inbox = relay.request("GET", "/api/v1/inbox", params={"after": f"{10**12 - 1}:{'f' * 32}"})
    assert inbox.json() == {"messages": [], "next": None}
    with ServiceClient(stack.custodians["alpha"].url, "alpha", operator) as alpha:
        log = alpha.request("GET", "/v1/audit", params={"after": str(2**53 - 1)})
    assert (log.json()["entries"], log.json()["next"]) == ([], None)
