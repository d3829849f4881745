"""The crypto floor of one send+read cycle (issue 16): the CPU time of exactly the
cryptographic operations a cycle makes on every party, summed, nothing else.

A cycle is alice's send of a 1 KiB message to bob through five custodians (threshold 3)
and bob's read of it, as the end-to-end rows run them (bob's read combines every share
that arrives, all five). Each operation below is the primitive itself (pyca's Ed25519 and
HMAC, our thin AES-GCM, HPKE and Shamir wrappers) on inputs of the size the protocol uses;
no JSON, no HTTP, no SQL. The floor in cycles per second is the machine's cores divided by
this time: what a cycle rate would be if the system spent nothing but its cryptography.

Run as ``python -m bench.floor``: a fresh process, so no earlier benchmark row has warmed
what it measures; it prints the seconds of CPU per cycle.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from securecomm import aead, hpke, shamir

N, T = 5, 3
MESSAGE = os.urandom(1024)
# Sizes of what is signed, as the protocol's signing inputs come out for this message.
ENVELOPE_INPUT = os.urandom(4200)  # the envelope without its signature
SMALL_INPUT = os.urandom(400)  # a request's signature base, a receipt, an answer statement
INFO = os.urandom(180)  # an HPKE context (purpose, names, ids, fingerprints)


def _operations() -> list[tuple[str, int, Callable[[], object]]]:
    """(what, how many per cycle, one operation)."""
    signer = Ed25519PrivateKey.generate()
    public = signer.public_key()
    envelope_signature = signer.sign(ENVELOPE_INPUT)
    small_signature = signer.sign(SMALL_INPUT)
    kem = X25519PrivateKey.generate()
    share = os.urandom(45)  # a binary share of a 32-byte key
    sealed = hpke.seal(share, kem.public_key(), INFO)
    key = aead.generate_key()
    nonce, ciphertext = aead.seal(key, MESSAGE, SMALL_INPUT)
    split = shamir.split(key, N, T)

    def verify_envelope() -> None:
        public.verify(envelope_signature, ENVELOPE_INPUT)

    def verify_small() -> None:
        public.verify(small_signature, SMALL_INPUT)

    def commitment() -> bytes:
        return hmac.new(key, b"securecomm/v1/key-commitment" + os.urandom(16), "sha256").digest()

    per_cycle: list[tuple[str, int, Callable[[], object]]] = [
        # alice's send: encrypt and split, seal a share to each custodian, sign each
        # deposit request, check each receipt and the relay's two signed answers (the
        # directory entry, the posting receipt), sign the envelope.
        ("AES-GCM seal 1 KiB", 1, lambda: aead.seal(key, MESSAGE, SMALL_INPUT)),
        ("key commitment (HMAC-SHA256)", 2, commitment),  # written, checked on read
        ("Shamir split 32 B, 3 of 5", 1, lambda: shamir.split(key, N, T)),
        ("share digest (SHA-256)", 3 * N, lambda: hashlib.sha256(SMALL_INPUT).digest()),
        ("HPKE seal (deposit, release)", 2 * N, lambda: hpke.seal(share, kem.public_key(), INFO)),
        ("HPKE open (deposit, release x2)", 3 * N, lambda: hpke.open(sealed, kem, INFO)),
        ("Ed25519 sign, envelope", 1, lambda: signer.sign(ENVELOPE_INPUT)),
        ("Ed25519 verify, envelope (relay, bob)", 2, verify_envelope),
        # Small signatures. Signed: 5 deposit + 1 fetch + 5 release requests (clients);
        # 5 receipts, 5 releases, 10 audit entries (custodians); 3 answers (relay).
        ("Ed25519 sign, small", 5 + 1 + 5 + 5 + 5 + 10 + 3, lambda: signer.sign(SMALL_INPUT)),
        # Verified: 11 requests (services); 5 receipts twice (alice, bob), 5 releases, 3
        # answers (clients).
        ("Ed25519 verify, small", 11 + 10 + 5 + 3, verify_small),
        ("request body digest (SHA-256)", 2 * 11, lambda: hashlib.sha256(SMALL_INPUT).digest()),
        ("Shamir combine 32 B, 5 shares", 1, lambda: shamir.combine(split)),
        ("AES-GCM open 1 KiB", 1, lambda: aead.open(key, nonce, ciphertext, SMALL_INPUT)),
    ]  # fmt: skip
    return per_cycle


def cycle_seconds(repeat: int = 300) -> tuple[float, list[tuple[str, float]]]:
    """CPU seconds of one cycle's cryptography, and each operation's share of it."""
    parts = []
    for what, count, operation in _operations():
        for _ in range(20):  # first calls load tables and keys; the floor is the steady cost
            operation()
        started = time.process_time()
        for _ in range(repeat):
            operation()
        parts.append((what, count * (time.process_time() - started) / repeat))
    return sum(seconds for _, seconds in parts), parts


def main() -> None:
    total, parts = cycle_seconds()
    if "--detail" in sys.argv:
        for what, seconds in parts:
            print(f"{what:<40} {seconds * 1e3:8.3f} ms", file=sys.stderr)
    print(f"{total:.9f}")


if __name__ == "__main__":
    main()
