"""The custody protocol's messages, shared by the client and the custodian service.

Deposit: the sender seals share i to custodian C with HPKE, ``info`` binding
(custodian, index, message id, sender fingerprint), and posts it with the
share's digest, the policy and the recipients. Release: C opens its share
and seals it again to the recipient, ``info`` binding (custodian, index,
message id, recipient fingerprint), and signs the answer. A release
answered by one custodian and replayed as another's opens under neither
``info`` but its own, so it is refused before the digest check even runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import hpke
from ._encoding import b64decode, b64encode
from ._fields import expect_object, fingerprint_hex, integer, message_id_hex
from .envelope import DIGEST_LENGTH_BYTES, Draft, Policy, Recipient, StreamDraft
from .errors import FieldError
from .identity import SIGNATURE_LENGTH_BYTES, Identity, Keys, PublicIdentity, check_name
from .shares import Share

__all__ = [
    "DepositRequest",
    "Release",
    "deposit_info",
    "release_info",
]


def _index(value: object, path: str) -> int:
    return integer(value, path, 1, 255)


def _info(
    purpose: str, custodian: str, index: int, message_id: str, party: str, fingerprint: str
) -> bytes:
    context = {"custodian": custodian, "index": index, "message_id": message_id, party: fingerprint}
    return hpke.info(purpose, context)


def deposit_info(custodian: str, index: int, message_id: str, sender_fingerprint: str) -> bytes:
    """HPKE info for a share sealed by the sender to a custodian."""
    return _info("deposit", custodian, index, message_id, "sender", sender_fingerprint)


def release_info(custodian: str, index: int, message_id: str, recipient_fingerprint: str) -> bytes:
    """HPKE info for a share sealed by a custodian to a recipient."""
    return _info("release", custodian, index, message_id, "recipient", recipient_fingerprint)


@dataclass(frozen=True)
class DepositRequest:
    """The body of ``POST /v1/deposits``; the sender is whoever signed the request."""

    message_id: str
    index: int
    share_digest: bytes
    sealed_share: bytes
    policy: Policy
    recipients: tuple[Recipient, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "message_id": self.message_id,
            "index": self.index,
            "share_digest": b64encode(self.share_digest),
            "sealed_share": b64encode(self.sealed_share),
            "policy": self.policy.to_json(),
            "recipients": [r.to_json() for r in self.recipients],
        }

    @classmethod
    def from_json(cls, value: object) -> DepositRequest:
        keys = {"v", "message_id", "index", "share_digest", "sealed_share", "policy", "recipients"}
        obj = expect_object(value, "deposit", keys, versioned=True)
        recipients = obj["recipients"]
        if not isinstance(recipients, list) or not 1 <= len(recipients) <= 64:
            raise FieldError("deposit.recipients: expected 1..64 recipients")
        parsed = tuple(
            Recipient.from_json(r, f"deposit.recipients[{i}]") for i, r in enumerate(recipients)
        )
        return cls(
            message_id_hex(obj["message_id"], "deposit.message_id"),
            _index(obj["index"], "deposit.index"),
            b64decode(
                obj["share_digest"], field="deposit.share_digest", length=DIGEST_LENGTH_BYTES
            ),
            b64decode(obj["sealed_share"], field="deposit.sealed_share"),
            Policy.from_json(obj["policy"], "deposit.policy"),
            parsed,
        )

    @classmethod
    def seal(
        cls,
        share: Share,
        *,
        custodian: PublicIdentity,
        sender: PublicIdentity,
        message_id: str,
        share_digest: bytes,
        policy: Policy,
        recipients: tuple[Recipient, ...],
    ) -> DepositRequest:
        info = deposit_info(custodian.name, share.index, message_id, sender.fingerprint_hex)
        sealed = hpke.seal(share.to_bytes(), custodian.kem_key, info)
        return cls(message_id, share.index, share_digest, sealed, policy, recipients)

    @classmethod
    def for_draft(
        cls,
        draft: Draft | StreamDraft,
        position: int,
        custodian: PublicIdentity,
        sender: PublicIdentity,
    ) -> DepositRequest:
        """The deposit of ``draft``'s share at slot ``position`` (0-based) for ``custodian``,
        with the digest, policy and recipients of the draft's header."""
        header = draft.header
        return cls.seal(
            draft.shares[position],
            custodian=custodian,
            sender=sender,
            message_id=header.id,
            share_digest=header.custodians[position].share_digest,
            policy=header.policy,
            recipients=header.recipients,
        )


@dataclass(frozen=True)
class Release:
    """A custodian's answer to a release: the share sealed to the recipient, signed."""

    custodian: str
    index: int
    message_id: str
    recipient: str  # fingerprint hex
    sealed_share: bytes
    signature: bytes = b""

    def body(self) -> dict[str, Any]:
        return {
            "v": 1,
            "status": "released",
            "custodian": self.custodian,
            "index": self.index,
            "message_id": self.message_id,
            "recipient": self.recipient,
            "sealed_share": b64encode(self.sealed_share),
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "signature": b64encode(self.signature)}

    @classmethod
    def issue(
        cls, custodian: Identity, share: Share, message_id: str, recipient: PublicIdentity
    ) -> Release:
        info = release_info(custodian.name, share.index, message_id, recipient.fingerprint_hex)
        sealed = hpke.seal(share.to_bytes(), recipient.kem_key, info)
        unsigned = cls(custodian.name, share.index, message_id, recipient.fingerprint_hex, sealed)
        return cls(**{**unsigned.__dict__, "signature": custodian.sign("release", unsigned.body())})

    @classmethod
    def from_json(cls, value: object) -> Release:
        keys = {
            "v",
            "status",
            "custodian",
            "index",
            "message_id",
            "recipient",
            "sealed_share",
            "signature",
        }
        obj = expect_object(value, "release", keys, versioned=True)
        if obj["status"] != "released":
            raise FieldError("release.status: expected 'released'")
        recipient = fingerprint_hex(obj["recipient"], "release.recipient")
        return cls(
            check_name(obj["custodian"], field="release.custodian"),
            _index(obj["index"], "release.index"),
            message_id_hex(obj["message_id"], "release.message_id"),
            recipient,
            b64decode(obj["sealed_share"], field="release.sealed_share"),
            b64decode(obj["signature"], field="release.signature", length=SIGNATURE_LENGTH_BYTES),
        )

    def open(self, recipient: Keys, custodian: PublicIdentity) -> Share:
        """Check the custodian's signature, then open the share sealed to ``recipient``."""
        if custodian.name != self.custodian:
            raise FieldError(
                f"release: answered as {self.custodian!r}, expected {custodian.name!r}"
            )
        if self.recipient != recipient.public.fingerprint_hex:
            raise FieldError("release: sealed to another recipient")
        custodian.verify(self.signature, "release", self.body())
        info = release_info(custodian.name, self.index, self.message_id, self.recipient)
        plain = recipient.unseal(self.sealed_share, info)
        return Share.from_bytes(plain, name=f"share from {custodian.name}")
