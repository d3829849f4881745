"""Generate vectors/{shamir,shares,envelope,envelope-v2,canonical,...}.json from a fixed seed.

Run with ``make vectors``. The output is deterministic: every random value
comes from a SHA-256 counter stream over SEED, recorded in each vector in the
order the code draws it, so a test can replay the encoding and get the same
bytes. tests/unit/test_vectors.py checks the files on disk equal this
script's output, and reads every case in both directions.

Known-answer vectors from standards (NIST, RFC 9180) are not generated here:
they are copied from their source into their own files.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import os
import struct
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securecomm import (
    _encoding,
    canonical,
    errors,
    httpsig,
    passphrases,
    shamir,
    shares,
    stream,
)
from securecomm.envelope import (
    PAYLOAD_NAMED,
    Envelope,
    Policy,
    Receipt,
    StreamDraft,
    StreamEnvelope,
    _header_and_key,
    _prepare,
    document_from_bytes,
    name_record,
    prepare,
    prepare_offline,
    prepare_stream,
)
from securecomm.identity import (
    NAME_SEPARATORS,
    Identity,
    PublicIdentity,
    name_skeleton,
    new_name_refusal,
    public_file,
    read_public_file,
)

SEED = b"securecomm/v1/test-vectors/2026-11-29"
VECTORS = Path(__file__).resolve().parents[1] / "vectors"


class Stream:
    """A deterministic byte source that records what it hands out."""

    def __init__(self, label: str) -> None:
        self._label = label.encode()
        self._counter = 0
        self.drawn: list[bytes] = []

    def __call__(self, size: int) -> bytes:
        out = b""
        while len(out) < size:
            block = hashlib.sha256(
                SEED + b"/" + self._label + struct.pack(">Q", self._counter)
            ).digest()
            self._counter += 1
            out += block
        self.drawn.append(out[:size])
        return out[:size]


@contextmanager
def deterministic(label: str) -> Iterator[Stream]:
    stream = Stream(label)
    original = os.urandom
    os.urandom = stream
    try:
        yield stream
    finally:
        os.urandom = original


def identity(name: str) -> tuple[Identity, dict[str, str]]:
    seed = hashlib.sha256(SEED + b"/identity/" + name.encode()).digest()
    kem_seed = hashlib.sha256(seed + b"/kem").digest()
    ident = Identity(
        name,
        Ed25519PrivateKey.from_private_bytes(seed),
        X25519PrivateKey.from_private_bytes(kem_seed),
    )
    return ident, {"ed25519_seed": seed.hex(), "x25519_private": kem_seed.hex()}


def error_name(call: Callable[[], object]) -> str:
    try:
        call()
    except errors.SecureCommError as exc:
        return type(exc).__name__
    raise AssertionError("a failure vector did not fail")


def outcome(case: dict[str, Any], key: str, call: Callable[[], object]) -> dict[str, Any]:
    """``case`` with ``key`` set to what ``call`` gives and ``expect`` "ok", or with
    ``expect`` the class of the error it raises."""
    try:
        case[key] = call()
        case["expect"] = "ok"
    except errors.SecureCommError as exc:
        case["expect"] = type(exc).__name__
    return case


def outcomes(
    pairs: Iterable[tuple[str, Any]],
    member: str,
    key: str,
    call: Callable[[Any], object],
    shown: Callable[[Any], object] = lambda value: value,
) -> list[dict[str, Any]]:
    """:func:`outcome` of ``call(value)`` for each ``(description, value)``, the value kept
    in the case as ``member`` (as ``shown`` writes it)."""
    return [
        outcome(
            {"description": description, member: shown(value)},
            key,
            functools.partial(call, value),
        )
        for description, value in pairs
    ]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# Shamir


def shamir_vectors() -> dict[str, Any]:
    splits: list[dict[str, Any]] = []
    cases = [
        ("one-byte secret, 2 of 3", b"\x2a", 3, 2),
        ("32-byte key, 3 of 5 (the default)", bytes(range(32)), 5, 3),
        ("all-zero 16-byte secret, 5 of 5", bytes(16), 5, 5),
        ("text secret, 2 of 2", b"correct horse battery staple", 2, 2),
        ("4-byte secret, 4 of 10", b"\xff\x00\x80\x01", 10, 4),
    ]
    for description, secret, n, t in cases:
        with deterministic(f"shamir/{description}") as stream:
            raw = shamir.split(secret, n, t)
        splits.append(
            {
                "description": description,
                "secret": secret.hex(),
                "n": n,
                "t": t,
                "coefficients": [c.hex() for c in stream.drawn],
                "shares": [s.hex() for s in raw],
                "expect": "ok",
            }
        )
    good = [bytes.fromhex(s) for s in splits[1]["shares"]]
    failures = [
        ("a single share", good[:1]),
        ("no shares", []),
        ("ragged lengths", [good[0], good[1][1:], good[2]]),
        ("index 0 (the secret's own x-coordinate)", [good[0], good[1][:-1] + b"\x00", good[2]]),
        ("duplicate index", [good[0], good[1], good[0]]),
        ("shares of one byte only (no y-bytes)", [b"\x01", b"\x02"]),
    ]
    combine = [
        {
            "description": description,
            "shares": [s.hex() for s in given],
            "expect": error_name(functools.partial(shamir.combine, given)),
        }
        for description, given in failures
    ]
    return {
        "description": (
            "Raw Shamir over GF(2^8), polynomial 0x11B, x = 1..n, raw share = y-bytes || x."
            " 'coefficients' are a_1..a_{t-1}, one byte string each, in the order split draws"
            " them; 'shares' is what split returns. Any t shares combine to 'secret'."
        ),
        "split": splits,
        "combine": combine,
    }


# Shares


def craft_share(
    version: int = 1,
    split_id: bytes = bytes(range(16)),
    threshold: int = 3,
    index: int = 1,
    value: bytes = b"\x11" * 8,
    length: int | None = None,
) -> bytes:
    body = (
        struct.pack(
            ">B16sBBI",
            version,
            split_id,
            threshold,
            index,
            len(value) if length is None else length,
        )
        + value
    )
    return body + zlib.crc32(body).to_bytes(4, "big")


def shares_vectors() -> dict[str, Any]:
    encode = []
    for description, split_id, t, index, value in [
        ("index 1 of a 3-of-5 split of a 32-byte key", bytes(range(16)), 3, 1, bytes(range(32))),
        ("index 255, threshold 255, 1-byte value", b"\xff" * 16, 255, 255, b"\x00"),
        ("index 2, threshold 2, 7-byte value", bytes(16), 2, 2, b"sevenby"),
    ]:
        share = shares.Share(split_id, t, index, value)
        encode.append(
            {
                "description": description,
                "split_id": split_id.hex(),
                "threshold": t,
                "index": index,
                "value": value.hex(),
                "binary": share.to_bytes().hex(),
                "text": share.to_text(),
                "expect": "ok",
            }
        )
    good = craft_share()
    good_text = shares.TEXT_PREFIX + b64(good)
    flipped = bytearray(good)
    flipped[25] ^= 0x01
    swapped = bytearray(craft_share(value=b"\x11\x12" + b"\x11" * 6))
    swapped[23], swapped[24] = swapped[24], swapped[23]
    non_canonical = good_text[:-2] + chr(ord(good_text[-2]) + 1) + "="
    decode_failures: list[tuple[str, str]] = [
        ("unknown binary version 2", shares.TEXT_PREFIX + b64(craft_share(version=2))),
        ("unknown text version v2", good_text.replace("-v1:", "-v2:")),
        ("missing prefix", b64(good)),
        ("truncated below the minimum length", shares.TEXT_PREFIX + b64(good[:20])),
        ("length field disagrees with the data", shares.TEXT_PREFIX + b64(craft_share(length=9))),
        ("one byte flipped in the value", shares.TEXT_PREFIX + b64(bytes(flipped))),
        ("two adjacent bytes swapped", shares.TEXT_PREFIX + b64(bytes(swapped))),
        ("index 0 with a valid checksum", shares.TEXT_PREFIX + b64(craft_share(index=0))),
        ("threshold 1 with a valid checksum", shares.TEXT_PREFIX + b64(craft_share(threshold=1))),
        ("not base64", good_text[:-4] + "!!!!"),
        ("base64 without padding", good_text.rstrip("=")),
        ("a no-break space before (spec 3.2: ASCII white space only)", "\u00a0" + good_text),
        ("an ideographic space after", good_text + "\u3000"),
        ("a line separator after", good_text + "\u2028"),
        ("a vertical tab before", "\v" + good_text),
    ]
    if base64.b64decode(non_canonical[len(shares.TEXT_PREFIX) :]) == good:
        decode_failures.append(("base64 with non-zero unused bits", non_canonical))
    decode = [
        {
            "description": description,
            "text": text,
            "expect": error_name(functools.partial(shares.Share.from_text, text)),
        }
        for description, text in decode_failures
    ]
    secret = b"a secret of 24 bytes....."
    with deterministic("shares/combine-a"):
        split_a = shares.split(secret, 5, 3)
    with deterministic("shares/combine-b"):
        split_b = shares.split(secret, 5, 3)
    with deterministic("shares/combine-four"):
        split_four = shares.split(secret, 5, 4, split_id=split_a[0].split_id)
    forged = shares.Share(split_a[3].split_id, 3, 4, bytes(x ^ 1 for x in split_a[3].value))
    combine_cases: list[tuple[str, list[shares.Share]]] = [
        ("shares 1, 2, 3", split_a[:3]),
        ("shares 5, 1, 3", [split_a[4], split_a[0], split_a[2]]),
        ("all five shares (extras checked)", split_a),
        ("two shares, threshold 3", split_a[:2]),
        ("mixed split ids", [split_a[0], split_a[1], split_b[2]]),
        ("mixed thresholds", [split_a[0], split_four[1], split_a[2]]),
        ("duplicate index", [split_a[0], split_a[1], split_a[0]]),
        (
            "ragged lengths",
            [split_a[0], shares.Share(split_a[0].split_id, 3, 2, b"short"), split_a[2]],
        ),
        ("a fourth share that disagrees with the first three", [*split_a[:3], forged]),
    ]
    combine = []
    for description, given in combine_cases:
        entry: dict[str, Any] = {
            "description": description,
            "shares": [s.to_text() for s in given],
        }
        try:
            entry["secret"] = shares.combine(given).hex()
            entry["expect"] = "ok"
        except errors.SecureCommError as exc:
            entry["expect"] = type(exc).__name__
        combine.append(entry)
    combine.append(
        {
            "description": "shares 1, 2, 3 with ASCII space, tab, CR and LF around (spec 3.2)",
            "shares": [f" \t{s.to_text()}\r\n" for s in split_a[:3]],
            "secret": shares.combine(split_a[:3]).hex(),
            "expect": "ok",
        }
    )
    return {
        "description": (
            "Encoded shares (spec/format-v1.md, 'Share'). 'encode': fields -> binary (hex)"
            " and text; decoding either gives the fields back. 'decode': text that MUST be"
            " rejected, with the error class. 'combine': text shares -> secret (hex) or error."
        ),
        "encode": encode,
        "decode": decode,
        "combine": combine,
    }


# Envelope


ENVELOPE_NAMES = ["alpha", "bravo", "charlie", "delta", "echo"]
ENVELOPE_POLICY = Policy(expires=1_900_000_000, max_releases=3)
ENVELOPE_CREATED = 1_795_000_000


def sealed_envelope(
    label: str, message: bytes, filename: str | None = None, payload: str | None = None
) -> tuple[Stream, Any, bytes, dict[str, str]]:
    """alice to bob, 3 of 5: the stream drawn, the draft, the envelope, t released shares.

    ``payload`` given: ``message`` is taken as an already framed plaintext (spec 7.10),
    to make what a writer must not."""
    alice, _ = identity("alice")
    bob, _ = identity("bob")
    custodians = [identity(name)[0] for name in ENVELOPE_NAMES]
    slots = [(c.name, c.public.fingerprint) for c in custodians]
    with deterministic(label) as stream:
        if payload is None:
            draft = prepare(
                message,
                sender=alice.public,
                recipients=[bob.public],
                custodians=slots,
                threshold=3,
                policy=ENVELOPE_POLICY,
                created=ENVELOPE_CREATED,
                filename=filename,
            )
        else:
            draft = _prepare(
                message, payload, alice.public, [bob.public], slots, 3, ENVELOPE_POLICY,
                ENVELOPE_CREATED,
            )  # fmt: skip
    receipts = [
        Receipt.issue(
            c,
            i + 1,
            draft.header.message_id,
            f"ref-{c.name}-0001",
            draft.header.custodians[i].share_digest,
        )
        for i, c in enumerate(custodians)
    ]
    data = draft.finish(alice, receipts).to_bytes()
    released = {ENVELOPE_NAMES[i]: draft.shares[i].to_text() for i in (0, 2, 4)}
    return stream, draft, data, released


def valid_envelope(description: str, message: bytes, stream: Stream, draft: Any, data: bytes,
                   released: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    return {
        "description": description,
        "plaintext": message.hex(),
        "created": ENVELOPE_CREATED,
        "policy": draft.header.policy.to_json(),
        "random": [r.hex() for r in stream.drawn],
        "receipt_refs": [f"ref-{name}-0001" for name in ENVELOPE_NAMES],
        "envelope": data.decode(),
        "shares": [s.to_text() for s in draft.shares],
        "released": released,
        "expect": "ok",
    }


def envelope_vectors() -> dict[str, Any]:
    names = ENVELOPE_NAMES
    alice, alice_keys = identity("alice")
    bob, bob_keys = identity("bob")
    custodians = [identity(name) for name in names]
    message = b"Meet at the north gate at 06:00."
    stream, draft, data, released = sealed_envelope("envelope/main", message)
    doc = json.loads(data)
    filename = "plan — north gate.txt"
    named = sealed_envelope("envelope/named", message, filename)

    def altered(path: list[str | int], value: Any) -> bytes:
        copy = json.loads(data)
        target = copy
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return canonical.dumps(copy)

    def without(path: list[str]) -> bytes:
        copy = json.loads(data)
        target = copy
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
        return canonical.dumps(copy)

    ct = base64.b64decode(doc["ciphertext"])
    flipped_ct = b64(bytes([ct[0] ^ 0x80]) + ct[1:])
    tag = base64.b64decode(doc["tag"])
    flipped_tag = b64(tag[:-1] + bytes([tag[-1] ^ 0x01]))
    other_shares = dict(released)
    bad_value = bytearray(draft.shares[2].value)
    bad_value[0] ^= 0x01
    other_shares["charlie"] = shares.Share(
        draft.shares[2].split_id, 3, 3, bytes(bad_value)
    ).to_text()
    failures: list[tuple[str, bytes, str, dict[str, str]]] = [
        ("version 2", altered(["v"], 2), "decode", released),
        ("spaces added (non-canonical JSON)", data.replace(b'":', b'": ', 1), "decode", released),
        (
            "12-byte nonce cut to 11",
            altered(["nonce"], b64(base64.b64decode(doc["nonce"])[:11])),
            "decode",
            released,
        ),
        ("threshold above n", altered(["header", "threshold"], 6), "decode", released),
        (
            "duplicate custodian",
            altered(["header", "custodians", 1, "name"], "alpha"),
            "decode",
            released,
        ),
        (
            "one custodian key in two slots (it would hold two shares)",
            altered(
                ["header", "custodians", 1, "fingerprint"],
                doc["header"]["custodians"][0]["fingerprint"],
            ),
            "decode",
            released,
        ),
        (
            "receipt of another message",
            altered(["receipts", 0, "message_id"], "00" * 16),
            "decode",
            released,
        ),
        ("one bit of ciphertext flipped", altered(["ciphertext"], flipped_ct), "verify", released),
        ("one bit of tag flipped", altered(["tag"], flipped_tag), "verify", released),
        (
            "recipient renamed",
            altered(["header", "recipients", 0, "name"], "eve"),
            "verify",
            released,
        ),
        (
            "policy loosened",
            altered(["header", "policy", "max_releases"], 1000),
            "verify",
            released,
        ),
        ("a released share altered (custodian charlie lies)", data, "open", other_shares),
        ("only two shares released", data, "open", {k: released[k] for k in ("alpha", "echo")}),
        ("no version (spec 7.6: as unknown)", without(["v"]), "decode", released),
        ("a version that is a string", altered(["v"], "1"), "decode", released),
        ("an array, not an object", canonical.dumps([json.loads(data)]), "decode", released),
        ("a header that is not an object", altered(["header"], [1]), "decode", released),
        ("a header without a version", without(["header", "v"]), "decode", released),
        ("a header of version 2", altered(["header", "v"], 2), "decode", released),
        (
            "two recipients with one fingerprint (spec 7.2)",
            altered(
                ["header", "recipients"],
                [
                    doc["header"]["recipients"][0],
                    doc["header"]["recipients"][0] | {"name": "bob2"},
                ],
            ),
            "decode",
            released,
        ),
        (
            'payload other than "named"',
            canonical.dumps(
                json.loads(named[2])
                | {"header": json.loads(named[2])["header"] | {"payload": "file"}}
            ),
            "decode",
            named[3],
        ),
    ]
    # Named plaintexts (spec 7.10) that a reader must refuse once decrypted.
    bad_names = [
        ("no plaintext at all", b""),
        ("a name longer than the plaintext", bytes([40]) + b"short.txt"),
        ("a name of 0 bytes", bytes([0]) + message),
        ("a name that is not UTF-8", bytes([2]) + b"\xff\xfe" + message),
        ("a name with a '/'", bytes([13]) + b"../etc/passwd" + message),
        ("a name with a '\\'", bytes([7]) + b"a\\b.txt" + message),
        ("a name with a control character", bytes([6]) + b"a\nb.tx" + message),
        ("the name '..'", bytes([2]) + b".." + message),
    ]
    for i, (what, plaintext) in enumerate(bad_names):
        _, _, blob, given = sealed_envelope(
            f"envelope/bad-name/{i}", plaintext, None, PAYLOAD_NAMED
        )
        failures.append((f"named payload: {what}", blob, "open", given))
    cases = []
    for description, blob, stage, given in failures:

        def attempt(blob: bytes = blob, stage: str = stage, given: dict[str, str] = given) -> None:
            env = Envelope.from_bytes(blob)
            env.verify(alice.public, {c.name: c.public for c, _ in custodians})
            env.open({k: shares.Share.from_text(v) for k, v in given.items()})

        cases.append(
            {
                "description": description,
                "envelope": blob.decode(),
                "released": given,
                "stage": stage,
                "expect": error_name(attempt),
            }
        )
    combine_cases = combine_vectors(data, released, draft, alice, custodians)
    return {
        "description": (
            "Envelopes (spec/format-v1.md, 'Envelope'). Identities are derived from the"
            " given private keys. 'random' lists the bytes prepare() draws, in order:"
            " message id (16), message key (32), split coefficients (t-1 x 32), AES-GCM"
            " nonce (12). Replaying them with the same inputs gives 'envelope' byte for byte."
            " 'failures': the stage (decode, verify, open) at which a reader MUST refuse."
            " 'combine' (spec 7.7 steps 6-8): envelopes that decode and verify, opened with"
            " 'released' (custodian -> share, in the order given): 'expect' is 'ok' with"
            " 'plaintext', or the class of the error. 'offline' (spec 7.1): an envelope of"
            " the single-machine mode, the sender's .pub file, its share files as written"
            " (and others), and for each case the files 'given' in that order: 'skipped' names"
            " the error of each file not used, in order; 'expect' is 'ok' with 'plaintext' or"
            " the class of the error. 'envelope_files': an envelope file a reader MUST read"
            " ('id') or refuse."
        ),
        "identities": {
            "alice": {**alice_keys, "public": alice.public.to_json()},
            "bob": {**bob_keys, "public": bob.public.to_json()},
            **{c.name: {**keys, "public": c.public.to_json()} for c, keys in custodians},
        },
        "valid": valid_envelope(
            "alice to bob, 3 of 5 custodians, expires, at most 3 releases",
            message,
            stream,
            draft,
            data,
            released,
        ),
        "valid_named": valid_envelope(
            "the same as a file named 'plan — north gate.txt' (spec 7.10): 'filename' is what"
            " open_named gives beside 'plaintext'",
            message,
            *named,
        )
        | {"filename": filename},
        "failures": cases,
        "combine": combine_cases,
        "offline": offline_vectors(alice),
    }


def offline_vectors(alice: Identity) -> dict[str, Any]:
    """Spec 7.1, the single-machine mode: an envelope alice wrote for herself, its share
    files as written, and what a reader makes of sets of files."""
    message = b"The spare key is under the third stone."
    with deterministic("envelope/offline"):
        draft = prepare_offline(
            message,
            sender=alice.public,
            n=5,
            threshold=3,
            created=ENVELOPE_CREATED,
            filename="stones.txt",
        )
        other = prepare_offline(message, sender=alice.public, n=5, threshold=3, created=1)
        beyond = shares.split(bytes(32), 7, 3, split_id=draft.header.message_id)[6]
    data = draft.finish(alice).to_bytes()
    written = dict(draft.share_files())
    files = {name: text.decode() for name, text in written.items()}
    mine = list(files)
    good = [text.decode().strip() for text in written.values()]
    altered = good[2][:-3] + ("A" if good[2][-3] != "A" else "B") + good[2][-2:]
    files |= {
        "crlf-tab.txt": "\t" + good[1] + "\r\n",
        "other-message.txt": dict(other.share_files())[f"{other.header.id}.share-1.txt"].decode(),
        "altered.txt": altered + "\n",
        "index-7.txt": beyond.to_text() + "\n",
        "not-a-share.txt": "the spare key\n",
    }
    sets = [
        ("three files, in index order", [mine[0], mine[1], mine[2]]),
        ("three files, the last index first", [mine[4], mine[2], mine[0]]),
        ("all five", mine),
        ("a share with a leading TAB and CRLF (3.2)", ["crlf-tab.txt", mine[3], mine[4]]),
        ("one file twice: it counts once", [mine[0], mine[0], mine[1]]),
        ("one file twice, and a third", [mine[0], mine[1], mine[0], mine[3]]),
        ("a share of another message among three", [mine[0], "other-message.txt", mine[1]]),
        ("a share of another message among four", ["other-message.txt", *mine[:3]]),
        ("an altered share among three", ["altered.txt", mine[0], mine[1]]),
        ("an index beyond n among four", ["index-7.txt", mine[0], mine[1], mine[3]]),
        ("a file that is not a share among four", ["not-a-share.txt", *mine[2:]]),
    ]
    envelope = Envelope.from_file(data)
    envelope.verify(read_public_file(public_file(alice.public)))
    cases = []
    for description, given in sets:
        gathered = envelope.gather([(name, files[name]) for name in given])
        case = outcome(
            {"description": description, "given": given},
            "plaintext",
            functools.partial(lambda g: envelope.open(g.released).hex(), gathered),
        )
        case["skipped"] = [type(error).__name__ for _, error in gathered.skipped]
        cases.append(case)
    envelope_files = outcomes(
        [
            ("as written", data),
            ("one LF after it", data + b"\n"),
            ("CRLF after it", data + b"\r\n"),
            ("two LFs after it", data + b"\n\n"),
        ],
        "text",
        "id",
        lambda text: Envelope.from_file(text).id,
        shown=bytes.decode,
    )
    return {
        "envelope": data.decode(),
        "sender_pub": public_file(alice.public).decode(),
        "plaintext": message.hex(),
        "filename": "stones.txt",
        "files": files,
        "cases": cases,
        "envelope_files": envelope_files,
    }


def combine_vectors(
    data: bytes, released: dict[str, str], draft: Any, alice: Identity, custodians: list[Any]
) -> list[dict[str, Any]]:
    """Spec 7.7 steps 6-8 with more shares than t, in orders that must not matter; and an
    envelope whose sender made delta's share off the polynomial (signing its digest)."""

    honest_split = shares.split

    def crooked_split(secret: bytes, n: int, t: int, *, split_id: bytes) -> list[shares.Share]:
        made = honest_split(secret, n, t, split_id=split_id)
        wrong = bytes([made[3].value[0] ^ 0x5A]) + made[3].value[1:]
        return [*made[:3], shares.Share(split_id, t, 4, wrong), *made[4:]]

    message = b"Meet at the north gate at 06:00."
    with mock.patch.object(shares, "split", crooked_split):
        _, crooked, crooked_data, _ = sealed_envelope("envelope/crooked", message)
    honest = {ENVELOPE_NAMES[i]: draft.shares[i].to_text() for i in range(5)}
    bent = {ENVELOPE_NAMES[i]: crooked.shares[i].to_text() for i in range(5)}
    altered = dict(honest)
    value = bytearray(draft.shares[1].value)
    value[0] ^= 0x01
    altered["bravo"] = shares.Share(draft.shares[1].split_id, 3, 2, bytes(value)).to_text()

    def pick(source: dict[str, str], names: str) -> dict[str, str]:
        return {name: source[name] for name in names.split()}

    cases = [
        ("all five, last index first", data, pick(honest, "echo delta charlie bravo alpha")),
        ("four, in no order", data, pick(honest, "delta alpha echo charlie")),
        ("three, the highest index first", data, pick(honest, "echo alpha charlie")),
        ("the same three as 'released', in another order", data, dict(reversed(released.items()))),
        (
            "one of four altered: a reader skips it (ShareDigestError if handed over)",
            data,
            pick(altered, "alpha bravo charlie delta"),
        ),
        *(
            (f"sender made delta off the polynomial: {what}", crooked_data, pick(bent, names))
            for what, names in (
                ("three without it", "alpha bravo charlie"),
                ("the same three, reversed", "charlie bravo alpha"),
                ("four with it, delta last", "alpha bravo charlie delta"),
                ("the same four, delta first", "delta alpha bravo charlie"),
                ("all five", "echo delta charlie bravo alpha"),
                ("three with it", "bravo charlie delta"),
            )
        ),
    ]
    keys = {c.name: c.public for c, _ in custodians}
    result = []
    for description, blob, given in cases:

        def attempt(blob: bytes = blob, given: dict[str, str] = given) -> str:
            env = Envelope.from_bytes(blob)
            env.verify(alice.public, keys)
            return env.open({k: shares.Share.from_text(v) for k, v in given.items()}).hex()

        result.append(
            outcome(
                {"description": description, "envelope": blob.decode(), "released": given},
                "plaintext",
                attempt,
            )
        )
    return result


# Canonical JSON


def canonical_vectors() -> dict[str, Any]:
    valid_values: list[tuple[str, Any]] = [
        ("keys sorted", {"b": 1, "a": 2, "c": {"z": None, "y": [True, False]}}),
        (
            "RFC 8785 3.2.3: keys sort by UTF-16 code units",
            {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7},
        ),
        ("control characters escaped, others literal", "\u0000\b\t\n\f\r\u001f \u007f\u2028é€"),
        ("quote and backslash escaped, slash literal", 'a"b\\c/d'),
        ("largest safe integers", [9007199254740991, -9007199254740991, 0]),
        ("empty containers", {"a": [], "b": {}}),
    ]
    valid = [
        {
            "description": description,
            "value": value,
            "canonical_hex": canonical.dumps(value).hex(),
            "expect": "ok",
        }
        for description, value in valid_values
    ]
    invalid_texts = [
        ("whitespace after a colon", b'{"a": 1}'),
        ("keys out of order", b'{"b":1,"a":2}'),
        ("a float", b'{"a":1.5}'),
        ("an exponent", b"[1e3]"),
        ("a duplicate key", b'{"a":1,"a":1}'),
        ("an escaped plain letter", b'"\\u0041"'),
        ("an escaped slash", b'"\\/"'),
        ("an upper-case hex escape", b'"\\u001F"'),
        ("a trailing newline", b"{}\n"),
        ("invalid UTF-8", b'"\xff"'),
        ("an integer beyond 2^53 - 1", b"9007199254740992"),
        ("a lone surrogate", b'"\\ud800"'),
        ("NaN", b"NaN"),
    ]
    invalid = [
        {
            "description": description,
            "text_hex": text.hex(),
            "expect": error_name(functools.partial(canonical.loads, text)),
        }
        for description, text in invalid_texts
    ]
    body_texts = [
        ("a space after a colon and a comma", b'{"a": 1, "b": [true, null]}'),
        ("members out of order", b'{"b":1,"a":2}'),
        ("a final LF, as the services write", b'{"a":1}\n'),
        ("every whitespace JSON allows", b'\r\n\t {\n  "a" :\t"x"\r\n}\n'),
        ("escapes canonical JSON would not write", b'{"a":"\\u0041\\/\\u001F"}'),
        ("a non-ASCII character escaped", b'{"name":"\\u00e9"}'),
        ("the largest safe integer, negative", b'{"n": -9007199254740991}'),
        ("empty object", b"{}"),
        ("empty", b""),
        ("only whitespace", b" \n"),
        ("a fraction, even of an integer", b'{"a": 1.0}'),
        ("an exponent", b'{"a": 1e3}'),
        ("an integer beyond 2^53 - 1", b'{"a": 9007199254740992}'),
        ("NaN", b'{"a": NaN}'),
        ("a duplicate key, spelled differently", b'{"a": 1, "\\u0061": 2}'),
        ("a lone surrogate", b'{"a": "\\udc00"}'),
        ("a byte order mark", b'\xef\xbb\xbf{"a":1}'),
        ("invalid UTF-8", b'{"a": "\xc3"}'),
        ("a no-break space between tokens", b'{"a":\xc2\xa01}'),
        ("a form feed between tokens", b'{"a":\x0c1}'),
        ("an array, not an object", b"[1, 2]"),
        ("a string, not an object", b'"a"'),
        ("null, not an object", b"null"),
        ("two objects", b"{} {}"),
        ("a trailing comma", b'{"a":1,}'),
    ]
    bodies = []
    for description, text in body_texts:
        case = outcome(
            {"description": description, "text_hex": text.hex()},
            "value",
            functools.partial(canonical.parse_json, text),
        )
        case["as_document"] = outcome({}, "value", functools.partial(canonical.loads, text))[
            "expect"
        ]
        bodies.append(case)
    return {
        "description": (
            "Canonical JSON, RFC 8785 without floats. 'valid': value -> canonical UTF-8 bytes"
            " (hex); parsing those bytes gives the value back. 'invalid': bytes (hex) that"
            " MUST be rejected. 'bodies' (spec 1.4.1): bytes (hex) of an HTTP body; 'expect'"
            " is 'ok' with its 'value', or the error class a reader of a JSON body raises;"
            " 'as_document' is what a reader of a canonical document (1.4) makes of the same"
            " bytes."
        ),
        "valid": valid,
        "invalid": invalid,
        "bodies": bodies,
    }


# Base64 (spec section 1.2)


def encoding_vectors() -> dict[str, Any]:
    texts: list[tuple[str, str, int | None]] = [
        ("one byte, two padding characters", "QQ==", None),
        ("two bytes, one padding character", "QUI=", None),
        ("three bytes, no padding", "QUFB", None),
        ("the length a field fixes", "QUFB", 3),
        ("a length other than the field's", "QUFB", 2),
        ("non-zero unused bits, one byte", "QR==", None),
        ("non-zero unused bits, two bytes", "QUJ=", None),
        ("superfluous padding after a whole group", "QUFB=", None),
        ("three padding characters", "QQ===", None),
        ("two padding characters after three", "QUE==", None),
        ("missing padding", "QQ", None),
        ("padding at the start", "=QQ=", None),
        ("URL-safe alphabet", "Q-==", None),
        ("a space inside", "QQ ==", None),
        ("a line break at the end", "QQ==\n", None),
    ]
    cases = [
        outcome(
            {"description": description, "text": text}
            | ({} if length is None else {"length": length}),
            "bytes_hex",
            functools.partial(_b64_hex, text, length),
        )
        for description, text, length in texts
    ]
    return {
        "description": (
            "Base64 as spec section 1.2 decodes it: 'text', with the 'length' a field fixes if"
            " any, gives 'bytes_hex' or the error class 'expect' names (FormatError: not the"
            " form of padded base64; NonCanonicalError: that form, with unused bits not zero;"
            " LengthError: another length than the field's)."
        ),
        "base64": cases,
    }


def _b64_hex(text: str, length: int | None) -> str:
    return _encoding.b64decode(text, field="value", length=length).hex()


# Public identities (spec section 6.2)


def identity_vectors() -> dict[str, Any]:
    good = identity("alice")[0].public.to_json()
    b64_31, b64_33 = b64(bytes(31)), b64(bytes(33))
    values: list[tuple[str, Any]] = [
        ("a public identity", good),
        ("not an object", [good]),
        ("no version", {k: v for k, v in good.items() if k != "v"}),
        ("version 2", good | {"v": 2}),
        ("a member too many", good | {"x": 1}),
        ("a name with a space", good | {"name": "al ice"}),
        ("sign: not a string", good | {"sign": 5}),
        ("sign: not base64", good | {"sign": good["sign"][:-1] + "!"}),
        ("sign: superfluous padding", good | {"sign": good["sign"] + "="}),
        ("sign: non-zero unused bits", good | {"sign": _unused_bits_set(good["sign"])}),
        ("sign: 31 bytes", good | {"sign": b64_31}),
        ("kem: 33 bytes", good | {"kem": b64_33}),
        ("kem: URL-safe alphabet", good | {"kem": good["kem"].replace("+", "-").replace("/", "_")}),
    ]
    cases = outcomes(values, "identity", "fingerprint", _fingerprint)
    alice = identity("alice")[0]
    plain = alice.to_pem(None).decode()
    blocks = plain.split("\n", 1)[1]
    first_end = blocks.index("-----END PRIVATE KEY-----\n") + len("-----END PRIVATE KEY-----\n")
    files: list[tuple[str, str]] = [
        ("as written: LF line ends, nothing outside the blocks", plain),
        ("CRLF line ends throughout (spec 6.4: accepted)", plain.replace("\n", "\r\n")),
        (
            "text before, between and after the blocks (RFC 7468 explanatory text: ignored)",
            plain.split("\n", 1)[0] + "\nmade for the vectors\n" + blocks[:first_end]
            + "between\n" + blocks[first_end:] + "after\n",
        ),
        ("no line break at the end", plain.rstrip("\n")),
        ("a first line without the header", "identity: alice\n" + blocks),
        ("one block only", plain[: plain.index("-----BEGIN", len("securecomm-identity: "))
                                 + len(blocks[:first_end])]),
        (
            "an END label that differs from its BEGIN (not a block)",
            plain.replace("-----END PRIVATE KEY-----", "-----END PUBLIC KEY-----", 1),
        ),
    ]  # fmt: skip
    key_files = outcomes(files, "text", "fingerprint", _key_file_fingerprint)
    return {
        "description": (
            "Public identities as spec section 6.2 decodes them: 'identity' gives the"
            " 'fingerprint' (hex) or the error class 'expect' names. 'key_files': unencrypted"
            " key files (spec 6.4) of the vectors' seeded test identity alice, read without a"
            " passphrase: the identity's fingerprint, or the error class. 'new_names': a name"
            " registered beside the names 'taken' (spec 14.6): 'ok', 'separator_end' or"
            " 'lookalike', and the name's 'skeleton'."
        ),
        "cases": cases,
        "key_files": key_files,
        "new_names": new_name_cases(),
    }


def new_name_cases() -> list[dict[str, Any]]:
    """Spec 14.6, from identity.new_name_refusal."""
    names: list[tuple[str, str, list[str]]] = [
        ("a name beside others", "carol", ["alice", "bob"]),
        ("a digit that looks like no letter", "bob2", ["bob"]),
        ("i is not l", "eli", ["ell"]),
        ("the same name (its own entry)", "bob", ["bob"]),
        ("ends in a dot", "bob.", []),
        ("ends in a hyphen", "bob-", []),
        ("ends in an underscore", "bob_", []),
        ("a dot inside", "b.ob", ["bob"]),
        ("a hyphen and an underscore inside", "a_l-p.ha", ["alpha"]),
        ("zero for o", "b0b", ["bob"]),
        ("o for zero", "bob", ["b0b"]),
        ("one for l", "a1pha", ["alpha"]),
        ("l for one", "agent1", ["agentl"]),
        ("rn for m", "rnary", ["mary"]),
        ("m for rn", "kim", ["kirn"]),
        ("vv for w", "vvendy", ["wendy"]),
        ("cl for d", "clave", ["dave"]),
        ("a separator between r and n", "r-nary", ["mary"]),
        ("look-alikes on both sides", "0-1ga", ["o.lga"]),
    ]
    cases = []
    for description, name, taken in names:
        refusal = new_name_refusal(name, taken)
        expect = (
            "ok"
            if refusal is None
            else ("separator_end" if name[-1] in NAME_SEPARATORS else "lookalike")
        )
        cases.append(
            {
                "description": description,
                "name": name,
                "taken": taken,
                "expect": expect,
                "skeleton": name_skeleton(name),
            }
        )
    return cases


def _key_file_fingerprint(text: str) -> str:
    return Identity.from_pem(text.encode(), None).public.fingerprint_hex


def _fingerprint(value: Any) -> str:
    return PublicIdentity.from_json(value).fingerprint_hex


def _unused_bits_set(text: str) -> str:
    """``text`` (base64 of 32 bytes, one '=') with its last character's unused bits set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    assert text.endswith("=") and not text.endswith("==")
    last = alphabet.index(text[-2])
    return text[:-2] + alphabet[last | 0b11] + "="


# Signed answers of the relay (spec section 11.4)

#: The step of spec section 11.4 at which each refusal is made, and what its message says.
ANSWER_STEPS = {
    1: "carries",
    2: "is malformed",
    3: "signed by another key",
    4: "does not verify",
    5: "for another request",
    6: "signed as HTTP",
    7: "not the one it signed",
}


def answer_vectors() -> dict[str, Any]:
    relay, relay_keys = identity("relay")
    impostor, _ = identity("impostor")
    reader, _ = identity("bob")
    now = 1_700_000_000
    inbox = httpsig.AnswerBinding(
        "GET",
        "/api/v1/inbox",
        "limit=100",
        "00112233445566778899aabbccddeeff",
        reader.public.fingerprint_hex,
    )
    entry = httpsig.AnswerBinding(
        "GET", "/api/v1/directory/dave", "", "ffeeddccbbaa99887766554433221100", None
    )
    page = b'{"messages":[],"next":null}\n'

    def signed(
        binding: httpsig.AnswerBinding = inbox,
        status: int = 200,
        body: bytes = page,
        by: Identity = relay,
    ) -> str:
        return httpsig.sign_answer(by, binding, status=status, body=body, now=now)

    def statement(value: str) -> dict[str, Any]:
        decoded: dict[str, Any] = canonical.loads(base64.b64decode(value))
        return decoded

    def encoded(obj: object) -> str:
        return b64(canonical.dumps(obj))

    def resigned(obj: dict[str, Any], by: Identity) -> str:
        unsigned = {k: v for k, v in obj.items() if k != "signature"}
        return encoded(unsigned | {"signature": b64(by.sign("answer", unsigned))})

    good = signed()
    cases: list[tuple[str, list[str], httpsig.AnswerBinding, int, bytes, int | None]] = [
        ("an empty inbox page, to a signed request", [good], inbox, 200, page, None),
        (
            "a 404 'no message for you', to a signed request",
            [signed(status=404, body=b'{"code":"not_found"}\n')],
            inbox,
            404,
            b'{"code":"not_found"}\n',
            None,
        ),
        (
            "a directory entry, to an unsigned request with a challenge (caller null)",
            [signed(entry, body=b"{}\n")],
            entry,
            200,
            b"{}\n",
            None,
        ),
        ("an empty body (204)", [signed(status=204, body=b"")], inbox, 204, b"", None),
        ("no header", [], inbox, 200, page, 1),
        ("the header twice", [good, good], inbox, 200, page, 1),
        ("not base64", ["not base64!"], inbox, 200, page, 2),
        ("not canonical JSON", [b64(b'{ "v": 1}')], inbox, 200, page, 2),
        ("version 2", [encoded(statement(good) | {"v": 2})], inbox, 200, page, 2),
        ("a member too many", [encoded(statement(good) | {"x": 1})], inbox, 200, page, 2),
        (
            "a status that is a string",
            [encoded(statement(good) | {"status": "200"})],
            inbox,
            200,
            page,
            2,
        ),
        ("a short caller", [encoded(statement(good) | {"caller": "00" * 31})], inbox, 200, page, 2),
        ("signed by another key", [signed(by=impostor)], inbox, 200, page, 3),
        (
            "another key's signature under the relay's fingerprint",
            [resigned(statement(good), impostor)],
            inbox,
            200,
            page,
            4,
        ),
        (
            "the time changed after signing",
            [encoded(statement(good) | {"time": now + 1})],
            inbox,
            200,
            page,
            4,
        ),
        (
            "another request's nonce (a replayed answer)",
            [signed(dataclasses.replace(inbox, nonce="ff" * 16))],
            inbox,
            200,
            page,
            5,
        ),
        (
            "another path (the same challenge sent for another name)",
            [signed(dataclasses.replace(entry, path="/api/v1/directory/mallory"), body=b"{}\n")],
            entry,
            200,
            b"{}\n",
            5,
        ),
        (
            "another query (another page)",
            [signed(dataclasses.replace(inbox, query="limit=100&after=1:" + "0" * 32))],
            inbox,
            200,
            page,
            5,
        ),
        (
            "another caller (another reader's answer)",
            [signed(dataclasses.replace(inbox, caller=impostor.public.fingerprint_hex))],
            inbox,
            200,
            page,
            5,
        ),
        (
            "another method",
            [signed(dataclasses.replace(inbox, method="DELETE"))],
            inbox,
            200,
            page,
            5,
        ),
        ("a 200 received as a 404", [good], inbox, 404, page, 6),
        ("one byte of the body changed", [good], inbox, 200, page.replace(b"null", b"nulL"), 7),
        ("the body left out", [good], inbox, 200, b"", 7),
    ]
    return {
        "description": (
            "Signed answers of the relay (spec section 11.4). Each case: the values of the"
            " Securecomm-Answer-Signature header an answer carried, the request it answers"
            " (method, path, query, nonce, caller), the status and body received; 'expect' is"
            " 'ok', or the error, with 'step' the step of section 11.4 that refuses it. Checked"
            " under 'relay', whose private keys are given."
        ),
        "relay": {"identity": relay.public.to_json(), **relay_keys},
        "cases": [
            {
                "description": description,
                "header": values,
                "request": dataclasses.asdict(binding),
                "status": status,
                "body_hex": body.hex(),
                "expect": "ok" if step is None else "AnswerSignatureError",
                **({} if step is None else {"step": step}),
            }
            for description, values, binding, status, body, step in cases
        ],
    }


# Payload streams (spec/format-v2.md section 3)

STREAM_K = hashlib.sha256(SEED + b"/stream/key").digest()
STREAM_ID = hashlib.sha256(SEED + b"/stream/id").digest()[:16]
STREAM_HEADER = b'{"v":2}'  # any bytes do: the header enters PK through its SHA-256


def stream_plaintext(length: int) -> bytes:
    """The plaintext of ``length`` bytes every stream vector seals: byte i is i mod 251."""
    return bytes(i % 251 for i in range(length))


def stream_input(case: dict[str, Any], key: bytes) -> bytes:
    """The bytes a refusal vector gives the reader, built from the sealed chunks of
    :func:`stream_plaintext` (``length``) by its ``stream`` items: ``{"chunk": i}`` chunk i
    as sealed, with ``"cut": n`` its first n bytes only, with ``"flip": k`` bit 0 of its
    byte k flipped; ``{"bytes": hex}`` those bytes; ``{"seal": i, "final": f, "from": a,
    "to": b}`` plaintext bytes a..b sealed as chunk i with the flag f (as only the key's
    holder can)."""
    chunks = list(stream.encrypt(key, [stream_plaintext(case["length"])]))
    plaintext = stream_plaintext(case["length"])
    out = bytearray()
    for item in case["stream"]:
        if "chunk" in item:
            chunk = bytearray(chunks[item["chunk"]][: item.get("cut")])
            if "flip" in item:
                chunk[item["flip"]] ^= 1
            out += chunk
        elif "bytes" in item:
            out += bytes.fromhex(item["bytes"])
        else:
            nonce = item["seal"].to_bytes(11, "big") + bytes([item["final"]])
            block = plaintext[item["from"] : item["to"]]
            out += AESGCM(key).encrypt(nonce, block, None)
    return bytes(out)


def stream_vectors() -> dict[str, Any]:
    key = stream.payload_key(STREAM_K, STREAM_ID, STREAM_HEADER)
    chunk = stream.CHUNK_BYTES
    sealed_cases = []
    for description, length in (
        ("the empty message: one empty final chunk, its tag alone", 0),
        ("one byte", 1),
        ("one chunk exactly, final and full", chunk),
        ("one chunk and one byte: a full chunk, then a final chunk of one byte", chunk + 1),
        ("three chunks and five bytes", 3 * chunk + 5),
    ):
        sealed = b"".join(stream.encrypt(key, [stream_plaintext(length)]))
        case: dict[str, Any] = {
            "description": description,
            "length": length,
            "sealed_length": len(sealed),
            "sealed_sha256": hashlib.sha256(sealed).hexdigest(),
            "final_chunk": sealed[(stream.chunk_count(length) - 1) * stream.SEALED_CHUNK_BYTES :][
                :64
            ].hex(),
            "expect": "ok",
        }
        if len(sealed) <= 64:
            case["sealed"] = sealed.hex()
        sealed_cases.append(case)
    three, four = 2 * chunk + 100, 3 * chunk + 1
    refusals: list[tuple[str, int, list[Any]]] = [
        ("cut at a chunk boundary: the final chunk missing", three, [{"chunk": 0}, {"chunk": 1}]),
        ("cut after the first chunk", three, [{"chunk": 0}]),
        (
            "cut inside the final chunk",
            three,
            [{"chunk": 0}, {"chunk": 1}, {"chunk": 2, "cut": 50}],
        ),
        ("cut inside a chunk's tag", three, [{"chunk": 0}, {"chunk": 1, "cut": chunk + 8}]),
        ("no bytes at all", three, []),
        ("no bytes at all for the empty message (it has one chunk)", 0, []),
        ("a chunk appended after the final one", three, [{"chunk": i} for i in (0, 1, 2, 0)]),
        (
            "one byte after the final chunk",
            three,
            [{"chunk": i} for i in range(3)] + [{"bytes": "00"}],
        ),
        ("a chunk dropped from the middle", four, [{"chunk": i} for i in (0, 2, 3)]),
        ("the first two chunks swapped", three, [{"chunk": i} for i in (1, 0, 2)]),
        ("the first chunk twice", three, [{"chunk": i} for i in (0, 0, 1, 2)]),
        (
            "one bit of a chunk flipped",
            three,
            [{"chunk": 0}, {"chunk": 1, "flip": 7}, {"chunk": 2}],
        ),
        (
            "one bit of a tag flipped",
            three,
            [{"chunk": 0}, {"chunk": 1}, {"chunk": 2, "flip": 110}],
        ),
        (
            "the final chunk sealed as not final (only the key's holder can)",
            2 * chunk,
            [{"chunk": 0}, {"seal": 1, "final": 0, "from": chunk, "to": 2 * chunk}],
        ),
        (
            "a final chunk sealed before its place, then the rest",
            2 * chunk,
            [{"seal": 0, "final": 1, "from": 0, "to": chunk}, {"chunk": 1}],
        ),
    ]
    other_header = stream.payload_key(STREAM_K, STREAM_ID, STREAM_HEADER + b" ")
    keys = {"payload_key": key, "other_header_payload_key": other_header}
    return {
        "description": (
            "Payload streams (spec/format-v2.md section 3). The plaintext of a vector of"
            " length L is the bytes i mod 251 for i in 0 .. L-1; every stream is sealed under"
            " payload_key, derived from key, message_id and header as section 3.1 says."
            " 'sealed': the stream's SHA-256 and its final chunk's first 64 bytes (the whole"
            " stream when it is short). 'refusals': the bytes a reader is given, built from"
            " the sealed chunks as each item of 'stream' says (tools/generate_vectors.py"
            " stream_input), and the error it must refuse them with, given 'length'."
        ),
        "key": STREAM_K.hex(),
        "message_id": STREAM_ID.hex(),
        "header": STREAM_HEADER.decode(),
        "payload_key": key.hex(),
        "other_header_payload_key": other_header.hex(),
        "sealed": sealed_cases,
        "refusals": [
            stream_refusal(description, length, items, keys, under)
            for description, length, items, under in [
                *((d, n, items, "payload_key") for d, n, items in refusals),
                (
                    "the stream sealed for a header one byte longer",
                    three,
                    [{"chunk": i} for i in range(3)],
                    "other_header_payload_key",
                ),
            ]
        ],
    }


def stream_refusal(
    description: str, length: int, items: list[Any], keys: dict[str, bytes], under: str
) -> dict[str, Any]:
    """A refusal vector: the stream ``items`` build from the chunks sealed under the key
    named ``under``, read with ``payload_key``."""
    case: dict[str, Any] = {"description": description, "length": length, "stream": items}
    if under != "payload_key":
        case["sealed_under"] = under
    given = stream_input(case, keys[under])
    case["expect"] = error_name(
        lambda: b"".join(stream.decrypt(keys["payload_key"], [given], length=length))
    )
    return case


# Version 2 documents (spec/format-v2.md section 4)


def stream_document(
    label: str, message: bytes, filename: str | None = None, payload: str | None = None
) -> tuple[Stream, StreamDraft, bytes, bytes, dict[str, str]]:
    """alice to bob, 3 of 5, as version 2: the randomness drawn, the draft, the document, its
    stream, and t released shares.

    ``payload`` given: ``message`` is taken as an already framed plaintext (spec 7.10) and
    sealed as it is, to make what a writer must not."""
    alice, _ = identity("alice")
    bob, _ = identity("bob")
    custodians = [identity(name)[0] for name in ENVELOPE_NAMES]
    slots = [(c.name, c.public.fingerprint) for c in custodians]
    with deterministic(label) as drawn:
        if payload is None:
            draft = prepare_stream(
                len(message),
                sender=alice.public,
                recipients=[bob.public],
                custodians=slots,
                threshold=3,
                policy=ENVELOPE_POLICY,
                created=ENVELOPE_CREATED,
                filename=filename,
            )
        else:
            header, key, split = _header_and_key(
                payload, alice.public, [bob.public], slots, 3, ENVELOPE_POLICY, ENVELOPE_CREATED,
                version=2, length=len(message),
            )  # fmt: skip
            draft = StreamDraft(header, tuple(split), None, key)
    sealed = b"".join(draft.seal([message]))
    receipts = [
        Receipt.issue(
            c,
            i + 1,
            draft.header.message_id,
            f"ref-{c.name}-0001",
            draft.header.custodians[i].share_digest,
        )
        for i, c in enumerate(custodians)
    ]
    document = draft.finish(alice, receipts, hashlib.sha256(sealed).digest()).to_bytes()
    released = {ENVELOPE_NAMES[i]: draft.shares[i].to_text() for i in (0, 2, 4)}
    return drawn, draft, document, sealed, released


def open_document(
    document: bytes, sealed: bytes, released: dict[str, str], *, reached: list[str] | None = None
) -> tuple[str | None, bytes]:
    """What a reader does with a version 2 document (format-v2 4.2): decode, verify with every
    key pinned, recover the key from ``released``, open ``sealed``; the sender's file name
    and the message. ``reached`` is told each stage as it begins."""
    stages = reached if reached is not None else []
    custodians = {name: identity(name)[0].public for name in ENVELOPE_NAMES}
    stages.append("decode")
    doc = document_from_bytes(document)
    assert isinstance(doc, StreamEnvelope), "a version 2 vector decoded as version 1"
    stages.append("verify")
    doc.verify(identity("alice")[0].public, custodians, recipient=identity("bob")[0].public)
    stages.append("open")
    key = doc.recover_key({k: shares.Share.from_text(v) for k, v in released.items()})
    plaintext = b"".join(doc.decrypt(key, [sealed]))
    if doc.header.payload is None:
        return None, plaintext
    name, start = name_record(plaintext)
    return name, plaintext[start:]


def envelope_v2_vectors() -> dict[str, Any]:
    alice, alice_keys = identity("alice")
    bob, bob_keys = identity("bob")
    custodians = [identity(name) for name in ENVELOPE_NAMES]
    message = b"Meet at the north gate at 06:00."
    filename = "plan — north gate.txt"
    drawn, draft, data, sealed, released = stream_document("envelope-v2/main", message, filename)
    doc = json.loads(data)
    v1_data = sealed_envelope("envelope/main", message)[2]

    def altered(changes: dict[tuple[str | int, ...], Any], base: bytes = data) -> bytes:
        """The document with each path set to its value (None: the member removed)."""
        copy = json.loads(base)
        for path, value in changes.items():
            target = copy
            for key in path[:-1]:
                target = target[key]
            if value is None:
                del target[path[-1]]
            else:
                target[path[-1]] = value
        return canonical.dumps(copy)

    digest = base64.b64decode(doc["payload"]["digest"])
    length = doc["header"]["length"]
    flipped = bytearray(sealed)
    flipped[3] ^= 0x01
    other_shares = dict(released)
    bad_value = bytearray(draft.shares[2].value)
    bad_value[0] ^= 0x01
    other_shares["charlie"] = shares.Share(
        draft.shares[2].split_id, 3, 3, bytes(bad_value)
    ).to_text()
    cases: list[tuple[str, bytes, bytes, dict[str, str]]] = [
        ("a version 2 header without length", altered({("header", "length"): None}), sealed,
         released),
        ("a length of -1", altered({("header", "length"): -1}), sealed, released),
        ("a length that is a string", altered({("header", "length"): str(length)}), sealed,
         released),
        ("a length that is true", altered({("header", "length"): True}), sealed, released),
        (
            "a header of version 1, with its length, in a version 2 document",
            altered({("header", "v"): 1}),
            sealed,
            released,
        ),
        (
            "a header of version 1 without a length in a version 2 document",
            altered({("header", "v"): 1, ("header", "length"): None}),
            sealed,
            released,
        ),
        (
            "a version 1 envelope whose header is of version 2, with a length",
            altered({("header", "v"): 2, ("header", "length"): len(message)}, v1_data),
            sealed,
            released,
        ),
        ("version 3", altered({("v",): 3}), sealed, released),
        ("no version", altered({("v",): None}), sealed, released),
        (
            "payload.length one more than the sealed length",
            altered({("payload", "length"): doc["payload"]["length"] + 1}),
            sealed,
            released,
        ),
        (
            "payload.length the plaintext's length, not the sealed one",
            altered({("payload", "length"): length}),
            sealed,
            released,
        ),
        (
            "a digest of 31 bytes",
            altered({("payload", "digest"): b64(digest[:31])}),
            sealed,
            released,
        ),
        ("no payload", altered({("payload",): None}), sealed, released),
        (
            "a payload with a member more",
            altered({("payload", "chunk_bytes"): 65536}),
            sealed,
            released,
        ),
        ("a member more", altered({("note",): "hello"}), sealed, released),
        (
            "a version 1 member (ciphertext) in a version 2 document",
            altered({("ciphertext",): b64(sealed)}),
            sealed,
            released,
        ),
        (
            "one bit of the digest flipped (a member under the signature)",
            altered({("payload", "digest"): b64(bytes([digest[0] ^ 1]) + digest[1:])}),
            sealed,
            released,
        ),
        (
            "the header's length and payload.length raised together (under the signature)",
            altered(
                {
                    ("header", "length"): length + 1,
                    ("payload", "length"): doc["payload"]["length"] + 1,
                }
            ),
            sealed,
            released,
        ),
        (
            "a receipt's ref changed (under the signature)",
            altered({("receipts", 1, "ref"): "ref-bravo-0002"}),
            sealed,
            released,
        ),
        ("one bit of the stream flipped", data, bytes(flipped), released),
        ("the stream one byte short", data, sealed[:-1], released),
        ("the stream one byte long", data, sealed + b"\x00", released),
        ("only two shares released", data, sealed, {k: released[k] for k in ("alpha", "echo")}),
        ("a released share altered (custodian charlie lies)", data, sealed, other_shares),
    ]  # fmt: skip
    for i, (what, plaintext) in enumerate(
        [
            ("the file name runs past the plaintext", bytes([40]) + b"short.txt"),
            ("a file name with a '/'", bytes([13]) + b"../etc/passwd" + message),
        ]
    ):
        _, _, blob, stream_bytes, given = stream_document(
            f"envelope-v2/bad-name/{i}", plaintext, None, PAYLOAD_NAMED
        )
        cases.append((f"named payload: {what}", blob, stream_bytes, given))
    failures = []
    for description, blob, stream_bytes, given in cases:
        reached: list[str] = []
        expect = error_name(
            functools.partial(open_document, blob, stream_bytes, given, reached=reached)
        )
        failures.append(
            {
                "description": description,
                "document": blob.decode(),
                "stream": stream_bytes.hex(),
                "released": given,
                "stage": reached[-1],
                "expect": expect,
            }
        )
    assert open_document(data, sealed, released) == (filename, message)
    return {
        "description": (
            "Version 2 envelope documents (spec/format-v2.md section 4) and their payload"
            " streams (section 3). Identities are derived from the given private keys, as in"
            " envelope.json: alice sends to bob, custodians alpha .. echo, 3 of 5. 'valid':"
            " 'random' lists the bytes prepare_stream draws, in order: message id (16), message"
            " key (32), split coefficients (t-1 x 32); replaying them with the same inputs and"
            " sealing 'plaintext' (after its file name's record, spec 7.10) gives 'stream' and"
            " then, with the receipts (refs 'receipt_refs') and the stream's SHA-256,"
            " 'document' byte for byte. 'key' is the message key K and 'payload_key' the"
            " stream's key (section 3.1). A reader decodes, verifies with every key pinned"
            " (bob the recipient), recovers K from 'released', opens 'stream' and reads the"
            " name's record. 'failures': a document and its stream, and the stage (decode,"
            " verify, open) at which a reader MUST refuse them, with the error's class."
        ),
        "identities": {
            "alice": {**alice_keys, "public": alice.public.to_json()},
            "bob": {**bob_keys, "public": bob.public.to_json()},
            **{c.name: {**keys, "public": c.public.to_json()} for c, keys in custodians},
        },
        "valid": {
            "description": (
                "alice to bob, 3 of 5 custodians, expires, at most 3 releases, a file named"
                " 'plan — north gate.txt'"
            ),
            "plaintext": message.hex(),
            "filename": filename,
            "created": ENVELOPE_CREATED,
            "policy": draft.header.policy.to_json(),
            "random": [r.hex() for r in drawn.drawn],
            "receipt_refs": [f"ref-{name}-0001" for name in ENVELOPE_NAMES],
            "key": drawn.drawn[1].hex(),
            "payload_key": stream.payload_key(
                drawn.drawn[1], draft.header.message_id, draft.header.aad()
            ).hex(),
            "stream": sealed.hex(),
            "document": data.decode(),
            "shares": [s.to_text() for s in draft.shares],
            "released": released,
            "expect": "ok",
        },
        "failures": failures,
    }


# New passphrases (securecomm/passphrases.py, web/js/passphrases.js)


def passphrase_vectors() -> dict[str, Any]:
    texts: list[tuple[str, str]] = [
        ("four words", "correct horse battery staple"),
        ("words and punctuation, non-ASCII", "grüße aus köln, 1999!"),
        ("eight characters, none alike", "tz7#Qm2v"),
        ("digits with a letter", "8675309x"),
        ("seven characters", "tz7#Qm2"),
        ("empty", ""),
        ("one character eight times", "aaaaaaaa"),
        ("four characters, long", "abababababcdcdcdcd"),
        ("eight digits in a row", "12345678"),
        ("digits, not in a row", "90210583"),
        ("digits, many", "31415926535897932384"),
        ("the alphabet from a", "abcdefghij"),
        ("the alphabet backwards", "ZYXWVUTSRQ"),
        ("a keyboard row", "qwertyuiop"),
        ("a keyboard row, upper case", "ASDFGHJKL"),
        ("a German keyboard row", "qwertzui"),
        ("a French keyboard row", "azertyuiop"),
        ("keyboard columns", "1qaz2wsx3edc"),
        ("digits and letters in turn", "1q2w3e4r"),
        ("shifted digits", "!@#$%^&*"),
        ("a common password", "password1"),
        ("a common password, capitals", "Password123"),
        ("a common password with a digit for a letter", "p@ssw0rd"),
        ("another common one", "iloveyou"),
        ("this program's own name", "SecureComm"),
    ]
    cases = [
        {
            "description": description,
            "passphrase": text,
            "expect": (found[0] if (found := passphrases.weakness(text)) else "ok"),
        }
        for description, text in texts
    ]
    return {
        "description": (
            "New passphrases, as a client checks one before it locks a new key with it"
            " (securecomm/passphrases.py; the page's web/js/passphrases.js): 'expect' is 'ok',"
            " or the rule that refuses it: 'short' (under 8 characters), 'few_characters'"
            " (under 5 different ones), 'digits' (digits only), 'run' (a stretch of the"
            " alphabet, the digits or a keyboard row, either way), 'common' (a password"
            " guessers try first). A passphrase that opens an existing key is not checked."
        ),
        "cases": cases,
    }


def build() -> dict[str, str]:
    """Every generated file's name and exact text."""
    files = {
        "shamir.json": shamir_vectors(),
        "shares.json": shares_vectors(),
        "envelope.json": envelope_vectors(),
        "envelope-v2.json": envelope_v2_vectors(),
        "canonical.json": canonical_vectors(),
        "answers.json": answer_vectors(),
        "encoding.json": encoding_vectors(),
        "identity.json": identity_vectors(),
        "passphrases.json": passphrase_vectors(),
        "stream.json": stream_vectors(),
    }
    return {
        name: json.dumps({"generator": "tools/generate_vectors.py", **content}, indent=2) + "\n"
        for name, content in files.items()
    }


def main() -> None:
    for name, text in build().items():
        (VECTORS / name).write_text(text, "utf-8")
        print(f"wrote vectors/{name}", file=sys.stderr)


if __name__ == "__main__":
    main()
