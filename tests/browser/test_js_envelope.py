"""envelope.js, protocol.js and httpsig.js against the vectors, the spec and Python.

Every case of vectors/envelope.json runs in Chromium through
tests/browser/envelope_runner.js (the valid envelope rebuilt byte for byte
from its recorded randomness, each failure refused at its stage with its
error class). Then envelopes, deposits, releases and signed requests made on
one side are read on the other. Bytes cross the page boundary as base64 (or
hex); private keys go to the page as PKCS#8 DER.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from playwright.sync_api import Page

from securecomm import canonical, errors, hpke, httpsig, protocol
from securecomm.envelope import Envelope, Policy, Receipt, Recipient, prepare, share_digest
from securecomm.identity import Identity, PublicIdentity
from securecomm.protocol import DepositRequest, Release
from securecomm.shares import Share
from tests.browser._js import b64, evaluate, pkcs8, unb64
from tests.unit._vectors import VECTORS

SPEC = Path(__file__).resolve().parents[2] / "spec" / "format-v1.md"


def verdict(call: Callable[[], str]) -> str:
    """``"ok: …"`` or the securecomm error class name, as the page reports them."""
    try:
        return f"ok: {call()}"
    except errors.SecureCommError as exc:
        return type(exc).__name__


# vectors/envelope.json

# Who is who among the file's identities, as tools/generate_vectors.py builds the envelope.
ROLES: dict[str, Any] = {
    "sender": "alice",
    "recipients": ["bob"],
    "custodians": ["alpha", "bravo", "charlie", "delta", "echo"],
    "threshold": 3,
}


def envelope_vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / "envelope.json").read_text("utf-8"))
    return data


def run(page: Page, runner: str, text: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = page.evaluate(
        "async ([runner, text, roles]) => "
        "(await import('/tests/envelope_runner.js'))[runner](text, roles)",
        [runner, text, ROLES],
    )
    return results


def test_the_roles_name_every_identity_of_the_file() -> None:
    data = envelope_vectors()
    named = [ROLES["sender"], *ROLES["recipients"], *ROLES["custodians"]]
    assert sorted(named) == sorted(data["identities"])
    assert len(data["valid"]["receipt_refs"]) == len(ROLES["custodians"])
    header = json.loads(data["valid"]["envelope"])["header"]
    assert [c["name"] for c in header["custodians"]] == ROLES["custodians"]
    assert header["threshold"] == ROLES["threshold"]


@pytest.mark.parametrize(
    ("member", "runner"),
    [
        ("valid", "runEnvelopeValid"),
        ("failures", "runEnvelopeFailures"),
        ("combine", "runEnvelopeCombine"),
        ("offline.cases", "runEnvelopeOffline"),
        ("offline.envelope_files", "runEnvelopeOfflineFiles"),
    ],
)
def test_every_envelope_case_passes(page: Page, member: str, runner: str) -> None:
    data = envelope_vectors()
    if member == "valid":
        cases = [data[member], data["valid_named"]]
    elif member.startswith("offline."):
        cases = data["offline"][member.removeprefix("offline.")]
    else:
        cases = data[member]
    assert cases, f"envelope.json: no {member} cases"
    results = run(page, runner, json.dumps(data))
    assert [r["description"] for r in results] == [c["description"] for c in cases], (
        f"envelope.json:{member}: {len(results)} cases ran, the file has {len(cases)}"
    )
    failed = [f"{r['description']}: {r['detail']}" for r in results if not r["passed"]]
    assert not failed, f"envelope.json:{member}: {len(failed)} of {len(cases)} failed:\n" + (
        "\n".join(failed)
    )


def test_the_envelope_runner_reports_failures(page: Page) -> None:
    """A wrong expectation in the file must come back as a failed case, never as a pass."""
    data = envelope_vectors()
    # One base64 digit of the sender's signature changed: the rebuilt bytes differ.
    signature = json.loads(data["valid"]["envelope"])["signature"]
    changed = ("B" if signature[0] == "A" else "A") + signature[1:]
    data["valid"]["envelope"] = data["valid"]["envelope"].replace(signature, changed)
    assert data["failures"][0]["expect"] == "UnknownVersionError"
    data["failures"][0]["expect"] = "FieldError"
    assert data["failures"][7]["stage"] == "verify"
    data["failures"][7]["stage"] = "open"
    assert data["failures"][11]["expect"] == "ShareDigestError"
    data["failures"][11]["released"] = data["valid"]["released"]  # the honest shares
    valid = run(page, "runEnvelopeValid", json.dumps(data))
    assert [r["passed"] for r in valid] == [False, True]
    assert valid[0]["detail"].startswith("envelope: got ")
    results = run(page, "runEnvelopeFailures", json.dumps(data))
    refused = [i for i, r in enumerate(results) if not r["passed"]]
    assert refused == [0, 7, 11], [r["detail"] for r in results]
    assert results[11]["detail"] == "accepted, expected ShareDigestError at open"


# Envelopes between the two sides

CUSTODIANS = ["kilo", "lima", "mike", "november"]
POLICY = Policy(not_before=1_700_000_000, expires=2_000_000_000, max_releases=2)


def parties() -> dict[str, Identity]:
    return {name: Identity.generate(name) for name in ["alice", "bob", "carol", *CUSTODIANS]}


def custodian_keys(people: dict[str, Identity]) -> dict[str, PublicIdentity]:
    return {name: people[name].public for name in CUSTODIANS}


def js_envelope(
    page: Page, people: dict[str, Identity], plaintext: bytes
) -> tuple[bytes, PublicIdentity, list[Share]]:
    """An envelope a JS sender writes (fresh randomness), with receipts signed in the page
    by the Python custodians' keys. Returns its bytes, the sender, and the shares."""
    js = evaluate(
        page,
        """
        const { identity: alice } = await Identity.generate('alice');
        const custodians = await Promise.all(arg.custodians.map(fromKeys));
        const draft = await envelope.prepare(b64decode(arg.plaintext), {
            sender: alice.public,
            recipients: await Promise.all(arg.recipients.map(publicOf)),
            custodians: custodians.map((c) => ({
                name: c.name, fingerprintHex: c.public.fingerprintHex })),
            threshold: 3,
            policy: envelope.Policy.fromJson(arg.policy, 'policy'),
        });
        const receipts = [];
        for (const [i, custodian] of custodians.entries()) {
            const receipt = new envelope.Receipt({
                custodian: custodian.name, index: i + 1, messageId: draft.header.messageId,
                ref: `js-deposit_${i}`, shareDigest: draft.header.custodians[i].shareDigest,
            });
            receipt.signature = await custodian.sign('receipt', receipt.body());
            receipts.push(receipt);
        }
        const written = await draft.finish(alice, receipts);
        return {
            envelope: b64encode(written.toBytes()),
            sender: alice.public.toJson(),
            shares: draft.shares.map((share) => b64encode(share.toBytes())),
        };
        """,
        {
            "plaintext": b64(plaintext),
            "custodians": [pkcs8(people[name]) for name in CUSTODIANS],
            "recipients": [people[name].public.to_json() for name in ("bob", "carol")],
            "policy": POLICY.to_json(),
        },
    )
    made = [Share.from_bytes(unb64(share)) for share in js["shares"]]
    return unb64(js["envelope"]), PublicIdentity.from_json(js["sender"]), made


def python_envelope(
    people: dict[str, Identity], plaintext: bytes, custodians: list[str] = CUSTODIANS
) -> tuple[Envelope, list[Share]]:
    draft = prepare(
        plaintext,
        sender=people["alice"].public,
        recipients=[people["bob"].public, people["carol"].public],
        custodians=[(name, people[name].public.fingerprint) for name in custodians],
        threshold=3,
        policy=POLICY,
    )
    receipts = [
        Receipt.issue(
            people[name],
            i + 1,
            draft.header.message_id,
            f"py-{i}",
            draft.header.custodians[i].share_digest,
        )
        for i, name in enumerate(custodians)
    ]
    return draft.finish(people["alice"], receipts), list(draft.shares)


def flip_ciphertext_bit(data: bytes) -> bytes:
    """The envelope with the last bit of its ciphertext flipped, still canonical."""
    doc = canonical.loads(data)
    ciphertext = bytearray(unb64(doc["ciphertext"]))
    ciphertext[-1] ^= 0x01
    return canonical.dumps({**doc, "ciphertext": b64(bytes(ciphertext))})


PLAINTEXT = "Meet at the north gate, grüße 😀\n".encode() + bytes(range(256))


def test_a_js_envelope_opens_in_python(page: Page) -> None:
    people = parties()
    data, sender, made = js_envelope(page, people, PLAINTEXT)
    envelope = Envelope.from_bytes(data)
    assert envelope.to_bytes() == data
    assert envelope.header.policy == POLICY
    assert [slot.name for slot in envelope.header.custodians] == CUSTODIANS
    assert [receipt.ref for receipt in envelope.receipts] == [f"js-deposit_{i}" for i in range(4)]
    for reader in ("bob", "carol"):
        envelope.verify(sender, custodian_keys(people), recipient=people[reader].public)
    assert [share.index for share in made] == [1, 2, 3, 4]
    assert {share.split_id for share in made} == {envelope.header.message_id}
    for chosen in ([0, 1, 2], [3, 0, 2], [0, 1, 2, 3]):
        assert envelope.open({CUSTODIANS[i]: made[i] for i in chosen}) == PLAINTEXT
    with pytest.raises(errors.InsufficientSharesError):
        envelope.open({CUSTODIANS[i]: made[i] for i in (1, 3)})
    with pytest.raises(errors.ShareDigestError):
        envelope.open({CUSTODIANS[1]: made[0], CUSTODIANS[2]: made[2], CUSTODIANS[3]: made[3]})
    with pytest.raises(errors.NotRecipientError):
        envelope.verify(sender, recipient=people["alice"].public)
    with pytest.raises(errors.SignatureError):
        envelope.verify(people["alice"].public)  # the Python alice is another key
    swapped = {**custodian_keys(people), "kilo": people["lima"].public}
    with pytest.raises(errors.SignatureError):
        envelope.verify(sender, swapped)


def test_a_python_envelope_opens_in_js(page: Page) -> None:
    people = parties()
    envelope, made = python_envelope(people, PLAINTEXT)
    js = evaluate(
        page,
        """
        const env = await envelope.Envelope.fromBytes(b64decode(arg.envelope));
        const sender = await publicOf(arg.sender);
        const custodians = await byName(arg.custodians);
        const reader = await publicOf(arg.reader);
        await env.verify(sender, custodians, { recipient: reader });
        const released = arg.shares.map((share) => Share.fromBytes(b64decode(share)));
        const open = (chosen) =>
            env.open(Object.fromEntries(chosen.map((i) => [arg.names[i], released[i]])));
        return {
            again: b64encode(env.toBytes()),
            opened: await Promise.all([[0, 1, 2], [3, 0, 2], [0, 1, 2, 3]].map(
                async (chosen) => b64encode(await open(chosen)))),
            two: await failure(() => open([1, 3])),
            moved: await failure(() => env.open({
                [arg.names[1]]: released[0],
                [arg.names[2]]: released[2],
                [arg.names[3]]: released[3],
            })),
            stranger: await failure(() => env.verify(sender, custodians, { recipient: sender })),
            impostor: await failure(() => env.verify(custodians[arg.names[0]], custodians)),
            swapped: await failure(() => env.verify(
                sender, { ...custodians, [arg.names[0]]: custodians[arg.names[1]] })),
        };
        """,
        {
            "envelope": b64(envelope.to_bytes()),
            "sender": people["alice"].public.to_json(),
            "custodians": [people[name].public.to_json() for name in CUSTODIANS],
            "reader": people["carol"].public.to_json(),
            "shares": [b64(share.to_bytes()) for share in made],
            "names": CUSTODIANS,
        },
    )
    assert unb64(js["again"]) == envelope.to_bytes()
    assert [unb64(opened) for opened in js["opened"]] == [PLAINTEXT] * 3
    assert (
        js["two"] == f"InsufficientSharesError: envelope {envelope.id}: 2 share(s), threshold is 3"
    )
    assert js["moved"] == (
        "ShareDigestError: custodian lima: its share does not match the digest the sender signed"
    )
    assert js["stranger"].startswith(f"NotRecipientError: envelope {envelope.id}: alice (")
    assert js["impostor"].startswith(f"SignatureError: envelope {envelope.id}: sender alice (")
    assert js["swapped"].startswith(f"SignatureError: envelope {envelope.id}: custodian kilo ")


def test_a_flipped_ciphertext_bit_is_refused_on_both_sides(page: Page) -> None:
    people = parties()
    # Made in JS, refused by Python: it decodes, and only the signature catches it.
    data, sender, _ = js_envelope(page, people, PLAINTEXT)
    Envelope.from_bytes(data).verify(sender, custodian_keys(people))
    flipped = Envelope.from_bytes(flip_ciphertext_bit(data))
    with pytest.raises(errors.SignatureError, match="envelope signature does not verify"):
        flipped.verify(sender, custodian_keys(people))
    # Made in Python, refused by JS.
    envelope, _ = python_envelope(people, PLAINTEXT)
    js = evaluate(
        page,
        """
        const sender = await publicOf(arg.sender);
        const custodians = await byName(arg.custodians);
        const verify = async (data) => {
            const env = await envelope.Envelope.fromBytes(b64decode(data));
            await env.verify(sender, custodians);
            return 'verified';
        };
        return {
            intact: await verify(arg.intact),
            flipped: await failure(() => verify(arg.flipped)),
        };
        """,
        {
            "intact": b64(envelope.to_bytes()),
            "flipped": b64(flip_ciphertext_bit(envelope.to_bytes())),
            "sender": people["alice"].public.to_json(),
            "custodians": [people[name].public.to_json() for name in CUSTODIANS],
        },
    )
    assert js["intact"] == "verified"
    assert js["flipped"].startswith("SignatureError: envelope signature does not verify under ")


def test_a_custodian_named_like_an_object_member_is_read_alike(page: Page) -> None:
    """ "constructor" is a valid name (spec 1.6); a reader that does not know its key must
    skip its receipt (spec 7.7 step 4), as Python does, not find Object's constructor."""
    names = ["constructor", "kilo", "lima"]
    people = {**parties(), "constructor": Identity.generate("constructor")}
    envelope, made = python_envelope(people, PLAINTEXT, names)
    known = {"kilo": people["kilo"].public}
    envelope.verify(people["alice"].public, known)
    envelope.verify(people["alice"].public, {})
    js = evaluate(
        page,
        """
        const env = await envelope.Envelope.fromBytes(b64decode(arg.envelope));
        const sender = await publicOf(arg.sender);
        const known = await byName(arg.known);
        const all = await byName(arg.all);
        const verify = (custodians) => failure(() => env.verify(sender, custodians));
        const released = arg.shares.map((share) => Share.fromBytes(b64decode(share)));
        return {
            some: await verify(known),
            none: await verify({}),
            all: await verify(all),
            wrong: await verify({ constructor: all.kilo }),
            opened: b64encode(await env.open(
                Object.fromEntries(arg.names.map((name, i) => [name, released[i]])))),
        };
        """,
        {
            "envelope": b64(envelope.to_bytes()),
            "sender": people["alice"].public.to_json(),
            "known": [people["kilo"].public.to_json()],
            "all": [people[name].public.to_json() for name in names],
            "shares": [b64(share.to_bytes()) for share in made],
            "names": names,
        },
    )
    assert js["some"] == js["none"] == js["all"] == "accepted"
    assert js["wrong"].startswith("SignatureError: envelope ")
    assert js["wrong"].endswith(
        ": custodian constructor in the header has another key than the"
        f" known {people['kilo'].public.short_fingerprint()}"
    )
    assert unb64(js["opened"]) == PLAINTEXT


# The custody protocol (spec section 12)


def test_js_deposit_bodies_open_at_python_custodians(page: Page) -> None:
    people = parties()
    alice = people["alice"]
    js = evaluate(
        page,
        """
        const sender = await fromKeys(arg.sender);
        const custodians = await Promise.all(arg.custodians.map(publicOf));
        const draft = await envelope.prepare(b64decode(arg.plaintext), {
            sender: sender.public,
            recipients: [await publicOf(arg.bob)],
            custodians: custodians.map((c) => ({ name: c.name, fingerprintHex: c.fingerprintHex })),
            threshold: 3,
            policy: envelope.Policy.fromJson(arg.policy, 'policy'),
        });
        const bodies = [];
        for (const [i, custodian] of custodians.entries()) {
            bodies.push(await protocol.depositBody(draft, i, custodian, sender.public));
        }
        const id = draft.header.id;
        return {
            bodies,
            shares: draft.shares.map((share) => b64encode(share.toBytes())),
            id,
            infos: [
                toHex(protocol.depositInfo('kilo', 2, id, sender.public.fingerprintHex)),
                toHex(protocol.releaseInfo('kilo', 2, id, sender.public.fingerprintHex)),
            ],
        };
        """,
        {
            "sender": pkcs8(alice),
            "custodians": [people[name].public.to_json() for name in CUSTODIANS],
            "bob": people["bob"].public.to_json(),
            "plaintext": b64(PLAINTEXT),
            "policy": POLICY.to_json(),
        },
    )
    message_id = js["id"]
    sender_fp = alice.public.fingerprint_hex
    assert js["infos"] == [
        protocol.deposit_info("kilo", 2, message_id, sender_fp).hex(),
        protocol.release_info("kilo", 2, message_id, sender_fp).hex(),
    ]
    assert len(js["bodies"]) == len(CUSTODIANS)
    for position, (name, body, share_b64) in enumerate(
        zip(CUSTODIANS, js["bodies"], js["shares"], strict=True)
    ):
        custodian = people[name]
        request = DepositRequest.from_json(body)
        assert request.to_json() == body  # exactly the members of 12.1, spelled alike
        assert (request.message_id, request.index) == (message_id, position + 1)
        assert request.policy == POLICY
        assert request.recipients == (Recipient.of(people["bob"].public),)
        info = protocol.deposit_info(name, request.index, message_id, sender_fp)
        share = Share.from_bytes(hpke.open(request.sealed_share, custodian.kem_private_key, info))
        assert share.to_bytes() == unb64(share_b64)
        assert share.index == position + 1
        assert share.split_id.hex() == message_id
        assert request.share_digest == share_digest(bytes.fromhex(message_id), name, share)
        # Bound to this custodian, this index and this sender.
        other = people[CUSTODIANS[(position + 1) % len(CUSTODIANS)]]
        for key, wrong in [
            (other.kem_private_key, info),
            (
                custodian.kem_private_key,
                protocol.deposit_info(other.name, share.index, message_id, sender_fp),
            ),
            (
                custodian.kem_private_key,
                protocol.deposit_info(name, share.index % 4 + 1, message_id, sender_fp),
            ),
            (
                custodian.kem_private_key,
                protocol.deposit_info(
                    name, share.index, message_id, people["bob"].public.fingerprint_hex
                ),
            ),
        ]:
            with pytest.raises(errors.DecryptionError):
                hpke.open(request.sealed_share, key, wrong)


def released_share(people: dict[str, Identity]) -> tuple[str, Share]:
    envelope, made = python_envelope(people, PLAINTEXT)
    return envelope.id, made[0]


def test_a_python_release_opens_in_js(page: Page) -> None:
    people = parties()
    message_id, share = released_share(people)
    release = Release.issue(people["kilo"], share, message_id, people["bob"].public)
    js = evaluate(
        page,
        """
        const reader = await fromKeys(arg.reader);
        const custodian = await publicOf(arg.custodian);
        const share = await protocol.openRelease(arg.release, reader, custodian);
        return { share: b64encode(share.toBytes()), text: share.toText() };
        """,
        {
            "release": release.to_json(),
            "reader": pkcs8(people["bob"]),
            "custodian": people["kilo"].public.to_json(),
        },
    )
    assert unb64(js["share"]) == share.to_bytes()
    assert js["text"] == share.to_text()
    assert release.open(people["bob"], people["kilo"].public) == share


def release_cases(people: dict[str, Identity]) -> list[tuple[str, Any, str]]:
    """(what, release JSON, pinned custodian): a good release and each refusal."""
    message_id, share = released_share(people)
    kilo, lima = people["kilo"], people["lima"]
    good = Release.issue(kilo, share, message_id, people["bob"].public).to_json()
    for_carol = Release.issue(kilo, share, message_id, people["carol"].public).to_json()
    signature = bytearray(unb64(good["signature"]))
    signature[10] ^= 0x04

    def signed(signer: Identity, **changes: Any) -> dict[str, Any]:
        """``good`` changed, then signed again by ``signer`` (a custodian that lies)."""
        body = {key: value for key, value in {**good, **changes}.items() if key != "signature"}
        return {**body, "signature": b64(signer.sign("release", body))}

    missing = {key: value for key, value in good.items() if key != "index"}
    return [
        ("good", good, "kilo"),
        ("sealed to another recipient", for_carol, "kilo"),
        (
            "another recipient's release, renamed",
            {**for_carol, "recipient": good["recipient"]},
            "kilo",
        ),
        ("one bit of the signature flipped", {**good, "signature": b64(bytes(signature))}, "kilo"),
        ("another custodian pinned", good, "lima"),
        ("renamed to the pinned custodian", {**good, "custodian": "lima"}, "lima"),
        ("another custodian's seal, re-signed", signed(lima, custodian="lima"), "lima"),
        ("index changed", {**good, "index": 2}, "kilo"),
        ("index changed and re-signed", signed(kilo, index=2), "kilo"),
        ("no index", missing, "kilo"),
        ("an extra member", {**good, "note": "x"}, "kilo"),
        ("version 2", {**good, "v": 2}, "kilo"),
        ("no version", {key: value for key, value in good.items() if key != "v"}, "kilo"),
        ("still pending", {**good, "status": "pending"}, "kilo"),
        ("index true", {**good, "index": True}, "kilo"),
        ("recipient in upper case", {**good, "recipient": good["recipient"].upper()}, "kilo"),
        ("signature cut short", {**good, "signature": b64(unb64(good["signature"])[:63])}, "kilo"),
        ("empty seal, signed", signed(kilo, sealed_share=""), "kilo"),
        (
            "seal cut to 47 bytes, signed",
            signed(kilo, sealed_share=b64(unb64(good["sealed_share"])[:47])),
            "kilo",
        ),
        ("not an object", [good], "kilo"),
    ]


def test_release_verdicts_equal_python(page: Page) -> None:
    people = parties()
    cases = release_cases(people)
    js: list[str] = evaluate(
        page,
        """
        const reader = await fromKeys(arg.reader);
        const custodians = await byName(arg.custodians);
        const out = [];
        for (const [release, pinned] of arg.cases) {
            try {
                const share = await protocol.openRelease(release, reader, custodians[pinned]);
                out.push('ok: ' + toHex(share.toBytes()));
            } catch (error) { out.push(error.name); }
        }
        return out;
        """,
        {
            "reader": pkcs8(people["bob"]),
            "custodians": [people[name].public.to_json() for name in ("kilo", "lima")],
            "cases": [[release, pinned] for _, release, pinned in cases],
        },
    )

    def python(release: object, pinned: str) -> str:
        return (
            Release.from_json(release).open(people["bob"], people[pinned].public).to_bytes().hex()
        )

    expected = [verdict(partial(python, release, pinned)) for _, release, pinned in cases]
    labels = [what for what, _, _ in cases]
    assert len(js) == len(expected) == len(cases)
    differ = [
        f"{w}: JS {j}, Python {p}" for w, j, p in zip(labels, js, expected, strict=True) if j != p
    ]
    assert not differ, "\n".join(differ)
    assert dict(zip(labels, js, strict=True)) | {"good": "ok"} == {
        "good": "ok",
        "sealed to another recipient": "FieldError",
        "another recipient's release, renamed": "SignatureError",
        "one bit of the signature flipped": "SignatureError",
        "another custodian pinned": "FieldError",
        "renamed to the pinned custodian": "SignatureError",
        "another custodian's seal, re-signed": "DecryptionError",
        "index changed": "SignatureError",
        "index changed and re-signed": "DecryptionError",
        "no index": "FieldError",
        "an extra member": "FieldError",
        "version 2": "UnknownVersionError",
        "no version": "UnknownVersionError",
        "still pending": "FieldError",
        "index true": "FieldError",
        "recipient in upper case": "FieldError",
        "signature cut short": "LengthError",
        "empty seal, signed": "DecryptionError",
        "seal cut to 47 bytes, signed": "DecryptionError",
        "not an object": "FieldError",
    }
    assert js[0].startswith("ok: ")


# Signed HTTP requests (spec section 11)

SPEC_KEYS = Identity(
    "alice",
    Ed25519PrivateKey.from_private_bytes(bytes(range(32))),
    X25519PrivateKey.from_private_bytes(bytes(range(32, 64))),
)
SPEC_REQUEST: dict[str, Any] = {
    "method": "POST",
    "path": "/api/v1/messages",
    "query": "limit=10&after=x",
    "audience": "relay",
    "now": 1_700_000_000,
    "nonce": "00112233445566778899aabbccddeeff",
}
SPEC_BODY = b'{"v":1}'


def spec_example() -> tuple[list[str], str]:
    """The signature base and the Signature field printed in spec section 11.2."""
    section = SPEC.read_text("utf-8").split("### 11.2 Signature base")[1].split("### 11.3")[0]
    example = section.split("Example, for a POST")[1]
    base = [line.removeprefix("    ") for line in example.splitlines() if line.startswith('    "')]
    signature = re.search(r"^    Signature: (\S+)$", example, re.MULTILINE)
    assert len(base) == 5 and signature is not None, "spec 11.2: the example is not found"
    return base, signature[1]


def test_the_example_of_spec_section_11_2(page: Page) -> None:
    base, signature = spec_example()
    js = evaluate(
        page,
        """
        const identity = await fromKeys(arg.keys);
        const headers = await httpsig.signRequest(
            identity, { ...arg.request, method: 'post', body: utf8(arg.body) });
        const params = headers['Signature-Input'].slice('sig1='.length);
        const base = httpsig.signatureBase(
            'POST', arg.request.path, arg.request.query, headers['Content-Digest'], params);
        return { headers, base: new TextDecoder().decode(base) };
        """,
        {"keys": pkcs8(SPEC_KEYS), "request": SPEC_REQUEST, "body": SPEC_BODY.decode()},
    )
    assert js["headers"]["Signature"] == signature
    assert js["base"].split("\n") == base
    python = httpsig.sign_request(SPEC_KEYS, body=SPEC_BODY, **SPEC_REQUEST)
    assert list(js["headers"]) == list(python)
    assert js["headers"] == python
    verified = httpsig.verify_request(
        method="POST",
        path=SPEC_REQUEST["path"],
        query=SPEC_REQUEST["query"],
        headers=js["headers"],
        body=SPEC_BODY,
        audience="relay",
        now=SPEC_REQUEST["now"],
    )
    assert verified.identity.to_json() == SPEC_KEYS.public.to_json()
    assert verified.nonce == SPEC_REQUEST["nonce"]


def test_a_js_signed_request_verifies_in_python(page: Page) -> None:
    body = os.urandom(300)
    js = evaluate(
        page,
        """
        const { identity } = await Identity.generate('erin');
        const post = () => httpsig.signRequest(identity, {
            method: 'POST', path: '/v1/deposits', body: b64decode(arg), audience: 'kilo' });
        return {
            public: identity.public.toJson(),
            post: await post(),
            again: await post(),
            get: await httpsig.signRequest(identity, {
                method: 'get', path: '/v1/releases/ab%2Fc', query: 'a=1&b=%C3%A9&c',
                audience: 'kilo' }),
        };
        """,
        b64(body),
    )
    public = PublicIdentity.from_json(js["public"])

    def verify(headers: dict[str, str], **request: Any) -> httpsig.VerifiedRequest:
        post: dict[str, Any] = {"method": "POST", "path": "/v1/deposits", "query": "", "body": body}
        return httpsig.verify_request(headers=headers, audience="kilo", **(post | request))

    first, second = verify(js["post"]), verify(js["again"])
    assert first.identity.to_json() == second.identity.to_json() == public.to_json()
    assert re.fullmatch("[0-9a-f]{32}", first.nonce) and first.nonce != second.nonce
    assert abs(first.created - time.time()) <= 60
    got = verify(
        js["get"], method="GET", path="/v1/releases/ab%2Fc", query="a=1&b=%C3%A9&c", body=b""
    )
    assert got.identity.to_json() == public.to_json()
    tampered: list[tuple[str, dict[str, Any]]] = [
        ("bad_digest", {"body": body + b"\x00"}),
        ("bad_signature", {"path": "/v1/deposit"}),
        ("bad_signature", {"query": "x=1"}),
        ("bad_signature", {"method": "PUT"}),
    ]
    for code, changes in tampered:
        with pytest.raises(errors.RequestAuthError) as caught:
            verify(js["post"], **changes)
        assert caught.value.code == code, changes
    with pytest.raises(errors.RequestAuthError) as caught:
        httpsig.verify_request(
            method="POST",
            path="/v1/deposits",
            query="",
            headers=js["post"],
            body=body,
            audience="lima",
        )
    assert caught.value.code == "wrong_audience"


SIGN_INPUTS: list[dict[str, Any]] = [
    {},
    {"method": "get", "query": ""},
    {"path": "//x/./../y?"},
    {"path": "/a b"},
    {"path": "/grüße"},
    {"path": "/a\nb"},
    {"path": "/a\tb"},
    {"path": "/a\x7fb"},
    {"path": "api/v1/messages"},
    {"path": ""},
    {"query": "a=1 b"},
    {"query": "a=1\r\n"},
    {"query": "a=é"},
    {"method": "GE T"},
    {"method": "GET\n"},
    {"audience": "Relay"},
    {"audience": ""},
    {"nonce": "0011"},
    {"nonce": "00112233445566778899AABBCCDDEEFF"},
    {"now": 0},
    {"now": -1},
]


def test_sign_request_verdicts_equal_python(page: Page) -> None:
    requests = [{**SPEC_REQUEST, **changes} for changes in SIGN_INPUTS]
    js: list[str] = evaluate(
        page,
        """
        const identity = await fromKeys(arg.keys);
        const out = [];
        for (const request of arg.requests) {
            try {
                const headers = await httpsig.signRequest(
                    identity, { ...request, body: utf8('{"v":1}') });
                out.push('ok: ' + headers.Signature);
            } catch (error) { out.push(error.name); }
        }
        return out;
        """,
        {"keys": pkcs8(SPEC_KEYS), "requests": requests},
    )

    def sign(request: dict[str, Any]) -> str:
        return httpsig.sign_request(SPEC_KEYS, body=SPEC_BODY, **request)["Signature"]

    python = [verdict(partial(sign, request)) for request in requests]
    assert len(js) == len(python) == len(SIGN_INPUTS)
    differ = [
        f"{changes!r}: JS {j}, Python {p}"
        for changes, j, p in zip(SIGN_INPUTS, js, python, strict=True)
        if j != p
    ]
    assert not differ, "\n".join(differ)
    assert js[0] == f"ok: {spec_example()[1]}"
    assert [j.startswith("ok: ") for j in js] == [True] * 3 + [False] * 16 + [True, False]
    assert set(js[3:19]) == {"ParameterError"}
