"""The envelope: what the relay stores, and all a recipient needs besides t shares.

An envelope is canonical JSON (spec/format-v1.md, section "Envelope"):

- ``header``: version, message id, sender (public identity), recipients,
  created, threshold, n, custodians (each with the digest of its share),
  release policy, and a commitment to the message key. Its canonical bytes
  are the AES-GCM AAD, so no header field can change without the tag failing.
- ``nonce``, ``ciphertext``, ``tag``: AES-256-GCM of the message; with the header's
  optional ``payload`` = ``"named"``, of the file's name and then the message, so that
  the name is as secret as the contents.
- ``receipts``: one per custodian, each signed by that custodian.
- ``signature``: the sender's Ed25519 signature over all of the above.

The recipe is two steps, because custodians must answer in between:
:func:`prepare` encrypts and splits, giving a :class:`Draft` whose shares go
to the custodians; :meth:`Draft.finish` takes their receipts and signs. To
read: :meth:`Envelope.from_bytes`, :meth:`Envelope.verify`, then
:meth:`Envelope.open` with the released shares.

Version 2 (spec/format-v2.md) carries the ciphertext apart, as a stream of sealed
chunks: :func:`prepare_stream` gives a :class:`StreamDraft` that seals a message read
piece by piece, and :meth:`StreamDraft.finish` signs a :class:`StreamEnvelope` naming the
stream by its digest and length. :func:`document_from_bytes` reads either version.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from . import aead, canonical, stream
from . import shares as shares_mod
from ._encoding import b64decode, b64encode, labelled_hash
from ._fields import (
    ENVELOPE_VERSIONS,
    HEX_FINGERPRINT,
    TIME_MAX_SECONDS,
    VERSION,
    array,
    expect_object,
    fingerprint_hex,
    integer,
    matching,
    message_id_hex,
    optional_integer,
    unique,
)
from .errors import (
    DuplicateShareError,
    FieldError,
    FormatError,
    InconsistentSharesError,
    InsufficientSharesError,
    KeyCommitmentError,
    NotRecipientError,
    ParameterError,
    SecureCommError,
    ShareDigestError,
    ShareError,
    ShareIndexError,
    SignatureError,
)
from .identity import SIGNATURE_LENGTH_BYTES, Keys, PublicIdentity, check_name
from .shamir import check_parameters
from .shares import Share

__all__ = [
    "DIGEST_LENGTH_BYTES",
    "MESSAGE_ID_LENGTH_BYTES",
    "VERSION",
    "CustodianSlot",
    "Draft",
    "Envelope",
    "Gathered",
    "Header",
    "Opened",
    "Policy",
    "Receipt",
    "Recipient",
    "StreamDraft",
    "StreamEnvelope",
    "check_filename",
    "document_from_bytes",
    "key_commitment",
    "name_for_file",
    "prepare",
    "prepare_offline",
    "prepare_stream",
    "share_digest",
    "utc_text",
]

MESSAGE_ID_LENGTH_BYTES = 16
DIGEST_LENGTH_BYTES = 32
MAX_RECIPIENTS = 64
#: Version 2's plaintext lengths (spec/format-v2.md 4.1): canonical JSON's integers.
MAX_STREAM_LENGTH = 2**53 - 1
_REF = re.compile(r"[A-Za-z0-9_-]{1,128}")

#: The one value of the header's optional ``payload``: the plaintext is a named file.
PAYLOAD_NAMED = "named"
MAX_NAME_LENGTH_BYTES = 255
# What a file name carried in a message may not hold: a path separator, a control
# character, or a name that means a directory (spec 7.10).
_NAME_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")


def share_digest(message_id: bytes, custodian: str, share: Share) -> bytes:
    """SHA-256 that binds a share to its message and custodian (spec: "Share digest")."""
    return labelled_hash(
        "securecomm/v1/share-digest", message_id, custodian.encode("ascii"), share.to_bytes()
    )


def _commitment_mac(key: bytes, message_id: bytes) -> hmac.HMAC:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(b"securecomm/v1/key-commitment" + message_id)
    return mac


def key_commitment(key: bytes, message_id: bytes) -> bytes:
    """HMAC-SHA256 under the message key: AES-GCM alone does not commit to its key."""
    return _commitment_mac(key, message_id).finalize()


def _check_commitment(key: bytes, message_id: bytes, expected: bytes) -> None:
    try:
        _commitment_mac(key, message_id).verify(expected)
    except InvalidSignature:
        raise KeyCommitmentError() from None


@dataclass(frozen=True)
class Recipient:
    name: str
    fingerprint: bytes

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "fingerprint": self.fingerprint.hex()}

    @classmethod
    def from_json(cls, value: object, path: str) -> Recipient:
        obj = expect_object(value, path, {"name", "fingerprint"})
        name = check_name(obj["name"], field=f"{path}.name")
        fp = fingerprint_hex(obj["fingerprint"], f"{path}.fingerprint")
        return cls(name, bytes.fromhex(fp))

    @classmethod
    def of(cls, identity: PublicIdentity) -> Recipient:
        return cls(identity.name, identity.fingerprint)


@dataclass(frozen=True)
class CustodianSlot:
    """A custodian named in the header; its share has index ``position + 1``.

    ``fingerprint`` is None for a share held outside any custodian service
    (the single-machine mode writes shares to files).
    """

    name: str
    fingerprint: bytes | None
    share_digest: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fingerprint": None if self.fingerprint is None else self.fingerprint.hex(),
            "share_digest": b64encode(self.share_digest),
        }

    @classmethod
    def from_json(cls, value: object, path: str) -> CustodianSlot:
        obj = expect_object(value, path, {"name", "fingerprint", "share_digest"})
        name = check_name(obj["name"], field=f"{path}.name")
        fp = obj["fingerprint"]
        fingerprint = (
            None
            if fp is None
            else bytes.fromhex(
                matching(fp, f"{path}.fingerprint", HEX_FINGERPRINT, "64 hex digits or null")
            )
        )
        digest = b64decode(
            obj["share_digest"], field=f"{path}.share_digest", length=DIGEST_LENGTH_BYTES
        )
        return cls(name, fingerprint, digest)


def utc_text(seconds: int) -> str:
    """A policy's time as people read it: ``2026-12-02 10:59:30 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


@dataclass(frozen=True)
class Policy:
    """What each custodian checks before it releases a share."""

    not_before: int | None = None
    expires: int | None = None
    max_releases: int | None = None
    require_approval: bool = False

    #: Where errors say the policy is; from_json sets the full path of the field.
    path: str = field(default="policy", compare=False, repr=False)

    def __post_init__(self) -> None:
        path = self.path
        optional_integer(self.not_before, f"{path}.not_before", 0, TIME_MAX_SECONDS)
        optional_integer(self.expires, f"{path}.expires", 0, TIME_MAX_SECONDS)
        optional_integer(self.max_releases, f"{path}.max_releases", 1, 1_000_000)
        if not isinstance(self.require_approval, bool):
            raise FieldError(f"{path}.require_approval: expected true or false")
        if (
            self.not_before is not None
            and self.expires is not None
            and self.expires <= self.not_before
        ):
            raise FieldError(
                f"{path}: expires ({self.expires}) is not after not_before ({self.not_before})"
            )

    @property
    def gives_once(self) -> bool:
        """Whether a custodian's release under this policy is not given twice for the asking
        (it is counted, or an operator approved it): the reader keeps it as it arrives, and
        the custodian keeps it for its reader a while (spec section 12.2)."""
        return self.max_releases is not None or self.require_approval

    def allows_release_at(self, now: int) -> bool:
        """Whether ``now`` is inside the window: not_before inclusive, expires exclusive."""
        if self.not_before is not None and now < self.not_before:
            return False
        return self.expires is None or now < self.expires

    def to_json(self) -> dict[str, Any]:
        return {
            "not_before": self.not_before,
            "expires": self.expires,
            "max_releases": self.max_releases,
            "require_approval": self.require_approval,
        }

    @classmethod
    def from_json(cls, value: object, path: str) -> Policy:
        keys = {"not_before", "expires", "max_releases", "require_approval"}
        obj = expect_object(value, path, keys)
        return cls(
            obj["not_before"], obj["expires"], obj["max_releases"], obj["require_approval"], path
        )


@dataclass(frozen=True)
class Header:
    message_id: bytes
    sender: PublicIdentity
    recipients: tuple[Recipient, ...]
    created: int
    threshold: int
    custodians: tuple[CustodianSlot, ...]
    policy: Policy
    key_commitment: bytes
    payload: str | None = None  # None: the plaintext is the message; "named": 7.10
    version: int = VERSION
    #: Version 2: the length of the plaintext the stream seals (None in version 1).
    length: int | None = None

    @property
    def n(self) -> int:
        return len(self.custodians)

    @property
    def id(self) -> str:
        return self.message_id.hex()

    def to_json(self) -> dict[str, Any]:
        return (
            {
                "v": self.version,
                "id": self.message_id.hex(),
                "sender": self.sender.to_json(),
                "recipients": [r.to_json() for r in self.recipients],
                "created": self.created,
                "threshold": self.threshold,
                "n": self.n,
                "custodians": [c.to_json() for c in self.custodians],
                "policy": self.policy.to_json(),
                "key_commitment": b64encode(self.key_commitment),
            }
            | ({"payload": self.payload} if self.payload is not None else {})
            | ({"length": self.length} if self.length is not None else {})
        )

    def aad(self) -> bytes:
        """The header's canonical bytes: version 1's AES-GCM associated data, and what
        version 2's payload key is derived with (format-v2 3.1)."""
        return canonical.dumps(self.to_json())

    @classmethod
    def from_json(
        cls,
        value: object,
        path: str = "envelope.header",
        versions: Sequence[int] = ENVELOPE_VERSIONS,
    ) -> Header:
        keys = {"v", "id", "sender", "recipients", "created", "threshold", "n", "custodians"}
        keys |= {"policy", "key_commitment"}
        optional = {"payload"} if isinstance(value, Mapping) and "payload" in value else set()
        if isinstance(value, Mapping) and value.get("v") == 2:
            keys.add("length")  # format-v2 4.1: required there, unknown in version 1
        obj = expect_object(value, path, keys | optional, versioned=True, versions=versions)
        length = None
        if "length" in keys:
            length = integer(obj["length"], f"{path}.length", 0, MAX_STREAM_LENGTH)
        message_id = bytes.fromhex(message_id_hex(obj["id"], f"{path}.id"))
        sender = PublicIdentity.from_json(obj["sender"], field=f"{path}.sender")
        recipients = tuple(
            Recipient.from_json(r, f"{path}.recipients[{i}]")
            for i, r in enumerate(array(obj["recipients"], f"{path}.recipients", 1, MAX_RECIPIENTS))
        )
        unique([r.name for r in recipients], f"{path}.recipients")
        unique([r.fingerprint.hex() for r in recipients], f"{path}.recipients", "fingerprint")
        created = integer(obj["created"], f"{path}.created", 0, TIME_MAX_SECONDS)
        n = integer(obj["n"], f"{path}.n", 2, 255)
        threshold = integer(obj["threshold"], f"{path}.threshold", 2, 255)
        if threshold > n:
            raise FieldError(f"{path}.threshold: {threshold} is above n = {n}")
        custodians = tuple(
            CustodianSlot.from_json(c, f"{path}.custodians[{i}]")
            for i, c in enumerate(array(obj["custodians"], f"{path}.custodians", n, n))
        )
        unique([c.name for c in custodians], f"{path}.custodians")
        # One key holding two shares would lower the threshold without anyone noticing.
        unique(
            [c.fingerprint.hex() for c in custodians if c.fingerprint is not None],
            f"{path}.custodians",
            "fingerprint",
        )
        policy = Policy.from_json(obj["policy"], f"{path}.policy")
        commitment = b64decode(
            obj["key_commitment"], field=f"{path}.key_commitment", length=DIGEST_LENGTH_BYTES
        )
        payload = obj.get("payload")
        if optional and payload != PAYLOAD_NAMED:
            raise FieldError(f'{path}.payload: expected "{PAYLOAD_NAMED}" or no member')
        return cls(
            message_id,
            sender,
            recipients,
            created,
            threshold,
            custodians,
            policy,
            commitment,
            payload,
            obj["v"],
            length,
        )

    def custodian_index(self, name: str) -> int:
        """The share index (1-based) of the named custodian."""
        for position, slot in enumerate(self.custodians, start=1):
            if slot.name == name:
                return position
        raise FieldError(f"envelope: {name!r} is not a custodian of message {self.id}")

    def is_recipient(self, identity: PublicIdentity) -> bool:
        return any(
            r.name == identity.name and r.fingerprint == identity.fingerprint
            for r in self.recipients
        )


@dataclass(frozen=True)
class Receipt:
    """A custodian's signed word that it holds the share with this digest."""

    custodian: str
    index: int
    message_id: bytes
    ref: str
    share_digest: bytes
    signature: bytes = field(default=b"", compare=True)

    def body(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "custodian": self.custodian,
            "index": self.index,
            "message_id": self.message_id.hex(),
            "ref": self.ref,
            "share_digest": b64encode(self.share_digest),
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "signature": b64encode(self.signature)}

    @classmethod
    def issue(
        cls, custodian: Keys, index: int, message_id: bytes, ref: str, digest: bytes
    ) -> Receipt:
        unsigned = cls(custodian.name, index, message_id, ref, digest)
        return cls(
            custodian.name,
            index,
            message_id,
            ref,
            digest,
            custodian.sign("receipt", unsigned.body()),
        )

    @classmethod
    def from_json(cls, value: object, path: str = "receipt") -> Receipt:
        keys = {"v", "custodian", "index", "message_id", "ref", "share_digest", "signature"}
        obj = expect_object(value, path, keys, versioned=True)
        return cls(
            check_name(obj["custodian"], field=f"{path}.custodian"),
            integer(obj["index"], f"{path}.index", 1, 255),
            bytes.fromhex(message_id_hex(obj["message_id"], f"{path}.message_id")),
            matching(obj["ref"], f"{path}.ref", _REF, "1-128 characters of A-Z a-z 0-9 _ -"),
            b64decode(
                obj["share_digest"], field=f"{path}.share_digest", length=DIGEST_LENGTH_BYTES
            ),
            b64decode(obj["signature"], field=f"{path}.signature", length=SIGNATURE_LENGTH_BYTES),
        )

    def verify(self, custodian: PublicIdentity) -> None:
        if custodian.name != self.custodian:
            raise SignatureError(
                f"receipt from {self.custodian!r} checked against {custodian.name!r}'s key"
            )
        custodian.verify(self.signature, "receipt", self.body())


def _header_of(obj: Mapping[str, Any], path: str) -> Header:
    """The header of a document, which is of the document's own version (format-v2 4.1)."""
    return Header.from_json(obj["header"], f"{path}.header", versions=(obj["v"],))


def _receipts(value: object, header: Header, path: str) -> tuple[Receipt, ...]:
    """A document's receipts: one per custodian, in the header's order, each for the share
    the header names (spec 7.1)."""
    raw_receipts = array(value, f"{path}.receipts", 0, 255)
    # Custodian services (with fingerprints) sign receipts; shares held out of band cannot.
    services = [slot.fingerprint is not None for slot in header.custodians]
    if any(services) and not all(services):
        raise FieldError(
            f"{path}.header.custodians: either every custodian has a fingerprint or none has"
        )
    expected = header.n if all(services) else 0
    if len(raw_receipts) != expected:
        raise FieldError(
            f"{path}.receipts: {len(raw_receipts)} receipt(s), expected {expected}"
            + (" (one per custodian)" if expected else " (custodians without fingerprints)")
        )
    receipts = tuple(
        Receipt.from_json(r, f"{path}.receipts[{i}]") for i, r in enumerate(raw_receipts)
    )
    for i, (receipt, slot) in enumerate(zip(receipts, header.custodians, strict=False)):
        where = f"{path}.receipts[{i}]"
        if receipt.custodian != slot.name or receipt.index != i + 1:
            raise FieldError(
                f"{where}: receipt of {receipt.custodian!r} (index {receipt.index}),"
                f" expected {slot.name!r} (index {i + 1})"
            )
        if receipt.message_id != header.message_id:
            raise FieldError(f"{where}.message_id: not this envelope's id {header.id}")
        if receipt.share_digest != slot.share_digest:
            raise FieldError(f"{where}.share_digest: differs from the header's digest")
    return receipts


class _Document:
    """What both versions' envelopes share: the signed header and receipts, and every
    step of reading (spec 7.7) up to the message key."""

    header: Header
    receipts: tuple[Receipt, ...]
    signature: bytes

    def _signed_body(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {**self._signed_body(), "signature": b64encode(self.signature)}

    def to_bytes(self) -> bytes:
        return canonical.dumps(self.to_json())

    @classmethod
    def from_json(cls, value: object) -> Self:
        raise NotImplementedError

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode and check the format (not the signatures: see :meth:`verify`)."""
        return cls.from_json(canonical.loads(data, what="envelope"))

    @property
    def id(self) -> str:
        return self.header.id

    def verify(
        self,
        sender: PublicIdentity | None = None,
        custodians: Mapping[str, PublicIdentity] | None = None,
        *,
        recipient: PublicIdentity | None = None,
    ) -> None:
        """Check the sender's signature, and each receipt whose custodian key is known.

        ``sender`` is the pinned key of the sender, if the caller knows it:
        an envelope that names another key is refused. Without it, the
        signature is checked against the key in the header, which proves
        integrity but not who sent it. ``recipient``, if given, must be
        listed in the header by name and fingerprint.
        """
        claimed = self.header.sender
        if sender is not None and (
            sender.name != claimed.name or sender.fingerprint != claimed.fingerprint
        ):
            raise SignatureError(
                f"envelope {self.id}: sender {claimed.name!r} ({claimed.short_fingerprint()})"
                f" is not the expected {sender.name!r} ({sender.short_fingerprint()})"
            )
        claimed.verify(self.signature, "envelope", self._signed_body())
        for receipt, slot in zip(self.receipts, self.header.custodians, strict=False):
            key = (custodians or {}).get(slot.name)
            if key is None:
                continue
            if slot.fingerprint is not None and key.fingerprint != slot.fingerprint:
                raise SignatureError(
                    f"envelope {self.id}: custodian {slot.name!r} in the header has another key"
                    f" than the known {key.short_fingerprint()}"
                )
            receipt.verify(key)
        # Step 5 of spec section 7.7, after the signatures it relies on.
        if recipient is not None and not self.header.is_recipient(recipient):
            raise NotRecipientError(
                f"envelope {self.id}: {recipient.name} ({recipient.short_fingerprint()})"
                " is not one of its recipients"
            )

    def check_share(self, custodian: str, share: Share) -> None:
        """Raise :class:`ShareDigestError`, naming the custodian, for a share not the signed one."""
        index = self.header.custodian_index(custodian)
        slot = self.header.custodians[index - 1]
        if (
            share.index != index
            or share.threshold != self.header.threshold
            or share.split_id != self.header.message_id
            or share_digest(self.header.message_id, custodian, share) != slot.share_digest
        ):
            raise ShareDigestError(
                f"custodian {custodian!r}: its share does not match the digest the sender signed"
            )

    def gather(self, offered: Iterable[tuple[str, str]]) -> Gathered:
        """Shares held out of band (spec 7.1), each ``(label, text)``: parsed (3.2), matched
        to the slot of its index, checked (7.7 step 6). One that fails is skipped, with its
        error naming ``label``; a repeat of a good one is skipped and counts once."""
        released: dict[str, Share] = {}
        first: dict[str, str] = {}
        skipped: list[tuple[str, SecureCommError]] = []
        for label, text in offered:
            try:
                share = Share.from_text(text, name=label)
                if not 1 <= share.index <= self.header.n:
                    raise ShareIndexError(
                        f"{label}: index {share.index} is not a slot of message {self.id}"
                    )
                name = self.header.custodians[share.index - 1].name
                try:
                    self.check_share(name, share)
                except ShareDigestError:
                    raise ShareDigestError(
                        f"{label} does not belong to message {self.id}"
                    ) from None
            except (FormatError, ShareError) as exc:
                skipped.append((label, exc))
                continue
            if name in released:
                # It passed step 6, so it is the same share (the digest fixes every byte).
                skipped.append(
                    (label, DuplicateShareError(f"{label}: the same share as {first[name]}"))
                )
                continue
            released[name], first[name] = share, label
        return Gathered(released, tuple(skipped))

    def recover_key(self, released: Mapping[str, Share]) -> bytes:
        """Steps 6-8 of spec 7.7: the message key from every share in ``released``.

        Each share must be the one its custodian's slot names (:class:`ShareDigestError`
        otherwise: pass only shares you accepted with :meth:`check_share`). All of them are
        combined in index order, so the order given does not matter: the t lowest indices
        make the key and every further share must agree with them
        (:class:`InconsistentSharesError`: the sender signed shares that do not belong
        together). Then the key commitment (:class:`KeyCommitmentError`).
        """
        for custodian, share in released.items():
            self.check_share(custodian, share)
        t = self.header.threshold
        if len(released) < t:
            raise InsufficientSharesError(
                f"envelope {self.id}: {len(released)} share(s), threshold is {t}"
            )
        ordered = sorted(released.items(), key=lambda item: item[1].index)
        try:
            key = shares_mod.combine([share for _, share in ordered])
        except InconsistentSharesError:
            names = ", ".join(name for name, _ in ordered)
            raise InconsistentSharesError(
                f"envelope {self.id}: the shares of {names} do not lie on one polynomial,"
                " though each is the one the sender signed: the sender made them wrongly"
            ) from None
        _check_commitment(key, self.header.message_id, self.header.key_commitment)
        return key


@dataclass(frozen=True)
class Envelope(_Document):
    """A version 1 envelope: the ciphertext inside it (spec/format-v1.md 7.1)."""

    header: Header
    nonce: bytes
    ciphertext: bytes
    tag: bytes
    receipts: tuple[Receipt, ...]
    signature: bytes

    def _signed_body(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "header": self.header.to_json(),
            "nonce": b64encode(self.nonce),
            "ciphertext": b64encode(self.ciphertext),
            "tag": b64encode(self.tag),
            "receipts": [r.to_json() for r in self.receipts],
        }

    @classmethod
    def from_file(cls, data: bytes) -> Envelope:
        """:meth:`from_bytes` of an envelope file (spec 7.1): its bytes, and one LF a
        mail client or an editor may have added."""
        return cls.from_json(canonical.loads_file(data, what="envelope"))

    @classmethod
    def from_json(cls, value: object) -> Envelope:
        path = "envelope"
        keys = {"v", "header", "nonce", "ciphertext", "tag", "receipts", "signature"}
        obj = expect_object(value, path, keys, versioned=True)
        header = _header_of(obj, path)
        nonce = b64decode(obj["nonce"], field=f"{path}.nonce", length=aead.NONCE_LENGTH_BYTES)
        ciphertext = b64decode(obj["ciphertext"], field=f"{path}.ciphertext")
        tag = b64decode(obj["tag"], field=f"{path}.tag", length=aead.TAG_LENGTH_BYTES)
        receipts = _receipts(obj["receipts"], header, path)
        signature = b64decode(
            obj["signature"], field=f"{path}.signature", length=SIGNATURE_LENGTH_BYTES
        )
        return cls(header, nonce, ciphertext, tag, receipts, signature)

    def decrypt(self, key: bytes) -> bytes:
        """Decrypt with a recovered key: the message, without a file name the sender may
        have put before it. Raises the opaque :class:`DecryptionError`."""
        return self.decrypt_named(key).content

    def decrypt_named(self, key: bytes) -> Opened:
        """Decrypt with a recovered key: the message and the file name it carries, if any."""
        plaintext = aead.open(key, self.nonce, self.ciphertext + self.tag, self.header.aad())
        if self.header.payload is None:
            return Opened(None, plaintext)
        return _unframe(plaintext)

    def open(self, released: Mapping[str, Share]) -> bytes:
        """:meth:`recover_key` then :meth:`decrypt`. Call :meth:`verify` first."""
        return self.decrypt(self.recover_key(released))

    def open_named(self, released: Mapping[str, Share]) -> Opened:
        """:meth:`recover_key` then :meth:`decrypt_named`. Call :meth:`verify` first."""
        return self.decrypt_named(self.recover_key(released))


@dataclass(frozen=True)
class StreamEnvelope(_Document):
    """A version 2 envelope (spec/format-v2.md 4.2): the ciphertext is a stream of sealed
    chunks carried apart, which the document names by its SHA-256 and length."""

    header: Header
    payload_digest: bytes
    payload_length: int
    receipts: tuple[Receipt, ...]
    signature: bytes

    def _signed_body(self) -> dict[str, Any]:
        return {
            "v": 2,
            "header": self.header.to_json(),
            "payload": {"digest": b64encode(self.payload_digest), "length": self.payload_length},
            "receipts": [r.to_json() for r in self.receipts],
        }

    @classmethod
    def from_json(cls, value: object) -> StreamEnvelope:
        path = "envelope"
        keys = {"v", "header", "payload", "receipts", "signature"}
        obj = expect_object(value, path, keys, versioned=True, versions=(2,))
        header = _header_of(obj, path)
        assert header.length is not None  # a version 2 header has one
        payload = expect_object(obj["payload"], f"{path}.payload", {"digest", "length"})
        digest = b64decode(
            payload["digest"], field=f"{path}.payload.digest", length=DIGEST_LENGTH_BYTES
        )
        length = integer(payload["length"], f"{path}.payload.length", 0, 2**53 - 1)
        expected = stream.sealed_length(header.length)
        if length != expected:
            raise FieldError(
                f"{path}.payload.length: {length}, but a plaintext of {header.length} bytes"
                f" is sealed in {expected}"
            )
        receipts = _receipts(obj["receipts"], header, path)
        signature = b64decode(
            obj["signature"], field=f"{path}.signature", length=SIGNATURE_LENGTH_BYTES
        )
        return cls(header, digest, length, receipts, signature)

    @property
    def length(self) -> int:
        """The length of the plaintext the stream seals (a file name's record included)."""
        assert self.header.length is not None
        return self.header.length

    def payload_key(self, key: bytes) -> bytes:
        """The stream's key (format-v2 3.1), from the message key :meth:`recover_key` gave."""
        return stream.payload_key(key, self.header.message_id, self.header.aad())

    def decrypt(self, key: bytes, pieces: Iterable[bytes], *, start: int = 0) -> Iterator[bytes]:
        """Open the stream ``pieces`` yields (from chunk ``start`` on) with a recovered key:
        each chunk's plaintext as it checks out (:func:`stream.decrypt`: nothing it yields
        is the message until it ends without error). With ``payload`` = ``"named"``,
        chunk 0's plaintext begins with the name's record (:func:`name_record`)."""
        return stream.decrypt(self.payload_key(key), pieces, length=self.length, start=start)


def document_from_bytes(data: bytes) -> Envelope | StreamEnvelope:
    """An envelope of either version, by its ``v``: decoded and its format checked (not its
    signatures)."""
    value = canonical.loads(data, what="envelope")
    if isinstance(value, Mapping) and value.get("v") == 2:
        return StreamEnvelope.from_json(value)
    return Envelope.from_json(value)


@dataclass(frozen=True)
class Gathered:
    """What :meth:`Envelope.gather` made of shares held out of band."""

    #: Slot name -> share, each checked against the sender's digest.
    released: dict[str, Share]
    #: Each share not used, with the error that says why (it names the share).
    skipped: tuple[tuple[str, SecureCommError], ...]


@dataclass(frozen=True)
class Opened:
    """A decrypted message and the sender's name for it as a file (None: none given)."""

    filename: str | None
    content: bytes = field(repr=False)


def check_filename(name: str, path: str = "file name") -> str:
    """``name`` if it may be carried in a message (spec 7.10), else :class:`FieldError`."""
    size = len(name.encode("utf-8"))
    if not 1 <= size <= MAX_NAME_LENGTH_BYTES:
        raise FieldError(f"{path}: {size} bytes, expected 1 to {MAX_NAME_LENGTH_BYTES}")
    if name in {".", ".."} or _NAME_FORBIDDEN.search(name):
        raise FieldError(f"{path}: a path separator, control character, '.' or '..'")
    return name


def name_for_file(path: str) -> str | None:
    """The name a file at ``path`` is sent under: its last component with every character
    7.10 forbids replaced by '_', cut to 255 bytes; None if nothing usable is left."""
    base = re.split(r"[/\\]", path)[-1]
    name = _NAME_FORBIDDEN.sub("_", base)
    encoded = name.encode("utf-8")[:MAX_NAME_LENGTH_BYTES]
    name = encoded.decode("utf-8", "ignore")
    if name in {"", ".", ".."}:
        return None
    return name


def _frame(filename: str, content: bytes) -> bytes:
    encoded = check_filename(filename).encode("utf-8")
    return bytes([len(encoded)]) + encoded + content


def _unframe(plaintext: bytes) -> Opened:
    """A named plaintext (7.10): one byte of length, the name in UTF-8, the message."""
    name, start = name_record(plaintext)
    return Opened(name, plaintext[start:])


def name_record(plaintext: bytes) -> tuple[str, int]:
    """The file name a named plaintext (7.10) begins with, and where its message starts.
    In version 2 the record lies within chunk 0 (at most 256 bytes), so that chunk's
    plaintext is enough."""
    if not plaintext or len(plaintext) < 1 + plaintext[0]:
        raise FieldError("envelope payload: the file name runs past the end of the message")
    length = plaintext[0]
    try:
        name = plaintext[1 : 1 + length].decode("utf-8")
    except UnicodeDecodeError:
        raise FieldError("envelope payload: the file name is not UTF-8") from None
    return check_filename(name, "envelope payload: file name"), 1 + length


@dataclass(frozen=True)
class Draft:
    """An encrypted, split message waiting for its custodians' receipts.

    ``shares[i]`` goes to ``header.custodians[i]``. The draft holds the
    message key's shares: keep it in memory only, and drop it once sent.
    """

    header: Header
    nonce: bytes
    ciphertext_and_tag: bytes
    shares: tuple[Share, ...]

    def __repr__(self) -> str:
        return f"Draft(id={self.header.id}, n={self.header.n}, shares=<hidden>)"

    def share_files(self) -> list[tuple[str, bytes]]:
        """Each share as the single-machine mode writes it (spec 7.1): the file name
        ``<message id>.share-<index>.txt`` and the text form (3.2) followed by one LF."""
        return [
            (f"{self.header.id}.share-{share.index}.txt", f"{share.to_text()}\n".encode("ascii"))
            for share in self.shares
        ]

    def envelope_size(self, ref_length: int = 32) -> int:
        """The length in bytes of the envelope once signed with n receipts whose refs are
        ``ref_length`` characters long (a custodian of this package issues 32)."""
        receipts = tuple(
            Receipt(slot.name, i, self.header.message_id, "r" * ref_length, slot.share_digest)
            for i, slot in enumerate(self.header.custodians, start=1)
            if slot.fingerprint is not None
        )
        return len(self._envelope(receipts, bytes(SIGNATURE_LENGTH_BYTES)).to_bytes())

    def _envelope(self, receipts: Sequence[Receipt], signature: bytes) -> Envelope:
        tag_start = len(self.ciphertext_and_tag) - aead.TAG_LENGTH_BYTES
        return Envelope(
            self.header,
            self.nonce,
            self.ciphertext_and_tag[:tag_start],
            self.ciphertext_and_tag[tag_start:],
            tuple(receipts),
            signature,
        )

    def finish(self, sender: Keys, receipts: Sequence[Receipt] = ()) -> Envelope:
        """Sign the envelope. ``receipts``: none, or one per custodian in header order."""
        if sender.public.fingerprint != self.header.sender.fingerprint:
            raise SignatureError("draft: signing identity is not the header's sender")
        unsigned = self._envelope(receipts, b"")
        # Round-trip through the decoder so a draft can never sign what a reader would refuse.
        checked = Envelope.from_json({**unsigned.to_json(), "signature": b64encode(bytes(64))})
        signature = sender.sign("envelope", checked._signed_body())
        return Envelope(
            checked.header,
            checked.nonce,
            checked.ciphertext,
            checked.tag,
            checked.receipts,
            signature,
        )


@dataclass(frozen=True)
class StreamDraft:
    """A version 2 message, its key split, waiting to be sealed and then signed.

    ``shares[i]`` goes to ``header.custodians[i]``. :meth:`seal` seals the message as it is
    read, any number of times and from any chunk (the same bytes each time), so an upload
    can go on where it stopped; :meth:`finish` signs the document once the custodians'
    receipts and the stream's digest are known. Like a :class:`Draft`, it holds the key's
    shares: keep it in memory, or sealed to its sender (:meth:`restore`).
    """

    header: Header
    shares: tuple[Share, ...]
    #: The name the message is sent under (7.10), sealed with it; None: no name.
    filename: str | None
    _key: bytes = field(repr=False, compare=False)

    def __repr__(self) -> str:
        return f"StreamDraft(id={self.header.id}, length={self.header.length}, shares=<hidden>)"

    @classmethod
    def restore(
        cls, header: Header, shares: Sequence[Share], filename: str | None = None
    ) -> StreamDraft:
        """A draft again, from its header and all its shares (as a resumed send keeps them):
        each checked against the header's digest, the key against its commitment."""
        if header.version != 2 or len(shares) != header.n:
            raise FieldError("draft: a version 2 header and one share per custodian expected")
        if (filename is None) != (header.payload is None):
            raise FieldError("draft: a file name is sent if and only if the header says so")
        for slot, share in zip(header.custodians, shares, strict=True):
            if share.split_id != header.message_id or (
                share_digest(header.message_id, slot.name, share) != slot.share_digest
            ):
                raise ShareDigestError(f"draft: the share of {slot.name!r} is not the header's")
        key = shares_mod.combine(list(shares)[: header.threshold])
        _check_commitment(key, header.message_id, header.key_commitment)
        return cls(header, tuple(shares), filename, key)

    @property
    def length(self) -> int:
        """The plaintext's length: the message's, and its name's record, if any."""
        assert self.header.length is not None
        return self.header.length

    @property
    def stream_length(self) -> int:
        """The sealed stream's length in bytes."""
        return stream.sealed_length(self.length)

    @property
    def _record(self) -> bytes:
        """What the plaintext begins with before the message: the name's record, or nothing."""
        return b"" if self.filename is None else _frame(self.filename, b"")

    def message_offset(self, start: int) -> int:
        """Where in the message the plaintext of chunk ``start`` begins: read the message from
        there to :meth:`seal` from that chunk."""
        return max(0, start * stream.CHUNK_BYTES - len(self._record))

    def seal(self, message: Iterable[bytes], *, start: int = 0) -> Iterator[bytes]:
        """Seal the message ``message`` yields, from :meth:`message_offset` of ``start`` to its
        end, as the stream's chunks from ``start`` on. A message that is not as long as the
        header says (a file that changed while it was read) is a :class:`ParameterError`,
        raised before any chunk past its end is sealed."""
        record = self._record
        first = (record,) if start == 0 else ()  # a record lies within chunk 0
        checked = _exactly(self.length - len(record), self.message_offset(start), message)
        key = stream.payload_key(self._key, self.header.message_id, self.header.aad())
        return stream.encrypt(key, itertools.chain(first, checked), start=start)

    def finish(self, sender: Keys, receipts: Sequence[Receipt], digest: bytes) -> StreamEnvelope:
        """Sign the document: ``receipts`` one per custodian in header order, ``digest`` the
        SHA-256 of the whole sealed stream."""
        if sender.public.fingerprint != self.header.sender.fingerprint:
            raise SignatureError("draft: signing identity is not the header's sender")
        unsigned = StreamEnvelope(
            self.header, digest, self.stream_length, tuple(receipts), bytes(SIGNATURE_LENGTH_BYTES)
        )
        # Round-trip through the decoder so a draft can never sign what a reader would refuse.
        checked = StreamEnvelope.from_json(unsigned.to_json())
        signature = sender.sign("envelope", checked._signed_body())
        return StreamEnvelope(
            checked.header,
            checked.payload_digest,
            checked.payload_length,
            checked.receipts,
            signature,
        )


def _exactly(length: int, offset: int, pieces: Iterable[bytes]) -> Iterator[bytes]:
    """``pieces``, a message of ``length`` bytes read from ``offset``, checked to end there."""
    seen = offset
    for piece in pieces:
        seen += len(piece)
        if seen > length:
            raise ParameterError(
                f"the message is longer than the {length:,} bytes it was when the send began"
                " (did the file change?)"
            )
        yield piece
    if seen != length:
        raise ParameterError(
            f"the message ended after {seen:,} of the {length:,} bytes it had when the send"
            " began (did the file change?)"
        )


def prepare(
    plaintext: bytes,
    *,
    sender: PublicIdentity,
    recipients: Sequence[PublicIdentity],
    custodians: Sequence[tuple[str, bytes | None]],
    threshold: int,
    policy: Policy | None = None,
    created: int | None = None,
    filename: str | None = None,
) -> Draft:
    """Encrypt ``plaintext`` under a fresh key and split the key among ``custodians``.

    ``custodians`` is a list of ``(name, fingerprint)``; a fingerprint of
    None marks a share held outside any custodian service. ``filename``, if given, is
    encrypted with the message (spec 7.10; see :func:`name_for_file`).
    """
    if filename is None:
        return _prepare(plaintext, None, sender, recipients, custodians, threshold, policy, created)
    framed = _frame(filename, plaintext)
    return _prepare(
        framed, PAYLOAD_NAMED, sender, recipients, custodians, threshold, policy, created
    )


def prepare_offline(
    plaintext: bytes,
    *,
    sender: PublicIdentity,
    recipients: Sequence[PublicIdentity] = (),
    n: int,
    threshold: int,
    created: int | None = None,
    filename: str | None = None,
) -> Draft:
    """:func:`prepare` for the single-machine mode (spec 7.1): the slots are named
    ``share-1`` .. ``share-n`` and have no custodian key, and with no ``recipients`` the
    sender is the one recipient. Hand each share out with :meth:`Draft.share_files`."""
    return prepare(
        plaintext,
        sender=sender,
        recipients=recipients or [sender],
        custodians=[(f"share-{index}", None) for index in range(1, n + 1)],
        threshold=threshold,
        created=created,
        filename=filename,
    )


def prepare_stream(
    length: int,
    *,
    sender: PublicIdentity,
    recipients: Sequence[PublicIdentity],
    custodians: Sequence[tuple[str, bytes | None]],
    threshold: int,
    policy: Policy | None = None,
    created: int | None = None,
    filename: str | None = None,
) -> StreamDraft:
    """:func:`prepare` for version 2 (spec/format-v2.md): a message of ``length`` bytes, to
    be sealed as it is read (:meth:`StreamDraft.seal`), under a fresh key split among
    ``custodians``. Nothing is read or sealed yet: the header, which every chunk is bound
    to, needs only the length."""
    record = 0 if filename is None else len(_frame(filename, b""))
    if not 0 <= length <= MAX_STREAM_LENGTH - record:
        raise ParameterError(f"a message of {length} bytes is outside what version 2 carries")
    if stream.chunk_count(length + record) > stream.MAX_CHUNKS:
        raise ParameterError(f"a message of {length} bytes is more than 2**32 chunks")
    header, key, split = _header_and_key(
        None if filename is None else PAYLOAD_NAMED,
        sender,
        recipients,
        custodians,
        threshold,
        policy,
        created,
        version=2,
        length=length + record,
    )
    return StreamDraft(header, tuple(split), filename, key)


def _prepare(
    plaintext: bytes,
    payload: str | None,
    sender: PublicIdentity,
    recipients: Sequence[PublicIdentity],
    custodians: Sequence[tuple[str, bytes | None]],
    threshold: int,
    policy: Policy | None,
    created: int | None,
) -> Draft:
    """:func:`prepare` of a plaintext already framed as ``payload`` says (the vector
    generator calls it to make what a writer must not)."""
    header, key, split = _header_and_key(
        payload, sender, recipients, custodians, threshold, policy, created
    )
    nonce, sealed = aead.seal(key, plaintext, header.aad())
    return Draft(header, nonce, sealed, tuple(split))


def _header_and_key(
    payload: str | None,
    sender: PublicIdentity,
    recipients: Sequence[PublicIdentity],
    custodians: Sequence[tuple[str, bytes | None]],
    threshold: int,
    policy: Policy | None,
    created: int | None,
    *,
    version: int = VERSION,
    length: int | None = None,
) -> tuple[Header, bytes, list[Share]]:
    """A new message's header, its fresh key, and the key's shares."""
    n = len(custodians)
    check_parameters(n, threshold)
    if not recipients:
        raise FieldError("envelope: at least one recipient is needed")
    message_id = os.urandom(MESSAGE_ID_LENGTH_BYTES)
    key = aead.generate_key()
    split = shares_mod.split(key, n, threshold, split_id=message_id)
    slots = tuple(
        CustodianSlot(check_name(name, field="custodian"), fp, share_digest(message_id, name, s))
        for (name, fp), s in zip(custodians, split, strict=True)
    )
    header = Header(
        message_id=message_id,
        sender=sender,
        recipients=tuple(Recipient.of(r) for r in recipients),
        created=int(time.time()) if created is None else created,
        threshold=threshold,
        custodians=slots,
        policy=policy or Policy(),
        key_commitment=key_commitment(key, message_id),
        payload=payload,
        version=version,
        length=length,
    )
    unique([r.name for r in header.recipients], "envelope.header.recipients")
    unique(
        [r.fingerprint.hex() for r in header.recipients],
        "envelope.header.recipients",
        "fingerprint",
    )
    unique([c.name for c in slots], "envelope.header.custodians")
    unique(
        [c.fingerprint.hex() for c in slots if c.fingerprint is not None],
        "envelope.header.custodians",
        "fingerprint",
    )
    return header, key, split
