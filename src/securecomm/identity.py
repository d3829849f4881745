"""Identities: an Ed25519 key to sign and an X25519 key to receive sealed shares.

Every party (user, custodian, relay, operator) has one. A key file holds a
``securecomm-identity: NAME`` line, then the two private keys as PKCS#8 PEM
blocks (Ed25519 first). With a passphrase each block is an RFC 5958
EncryptedPrivateKeyInfo using PBES2 (RFC 8018): PBKDF2-HMAC-SHA256 with
600,000 iterations (OWASP's 2023 figure for that PRF) and AES-256-CBC, which
OpenSSL reads as it is (``openssl pkey -in FILE``). pyca's own
``BestAvailableEncryption`` uses 2,048 iterations for PKCS#8, too few for a
passphrase a person chose, so securecomm writes the wrapper itself around
pyca's primitives.

A fingerprint is SHA-256 over both public keys; people compare it out of
band in its short grouped form.

Signatures are Ed25519 over ``b"securecomm/v1/" + purpose + b"\\n"`` and
the canonical JSON of the signed object, so a signature made for one
purpose never verifies for another.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from . import canonical, hpke
from ._encoding import b64decode, b64encode, labelled_hash
from ._fields import expect_object
from ._files import write_atomic
from .errors import FieldError, IdentityError, LengthError, SecureCommError, SignatureError

__all__ = [
    "NAME_LOOKALIKES",
    "NAME_SEPARATORS",
    "PASSPHRASE_ITERATIONS",
    "PUBLIC_KEY_LENGTH_BYTES",
    "SIGNATURE_LENGTH_BYTES",
    "Identity",
    "Keys",
    "PublicIdentity",
    "check_name",
    "format_fingerprint",
    "load_or_create",
    "load_public",
    "name_skeleton",
    "new_name_refusal",
    "public_file",
    "read_public_file",
    "save_public",
]

PUBLIC_KEY_LENGTH_BYTES = 32
SIGNATURE_LENGTH_BYTES = 64
PASSPHRASE_ITERATIONS = 600_000
_SALT_LENGTH_BYTES = 16
_IV_LENGTH_BYTES = 16
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_PURPOSE = re.compile(r"[a-z0-9][a-z0-9/_-]{0,63}")
_FILE_HEADER = "securecomm-identity: "
_PEM_BLOCK = re.compile(
    rb"-----BEGIN ((?:ENCRYPTED )?PRIVATE KEY)-----\r?\n.*?-----END \1-----", re.DOTALL
)


def check_name(name: object, *, field: str = "name") -> str:
    """Return ``name`` if it is a party name: 1-64 of a-z 0-9 . _ -, from a letter or digit."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise FieldError(
            f"{field}: {name!r} is not a valid name"
            " (1-64 characters: a-z, 0-9, '.', '_', '-'; starting with a letter or digit)"
        )
    return name


#: What a name may hold besides letters and digits; a name is read without them at a glance.
NAME_SEPARATORS = "._-"
#: What a reader takes, at a glance, for what (spec §14.6; the kind of pair Unicode TR39's
#: confusables list): a digit for a letter, two letters for one. Applied in this order.
NAME_LOOKALIKES = (("0", "o"), ("1", "l"), ("rn", "m"), ("vv", "w"), ("cl", "d"))


def name_skeleton(name: str) -> str:
    """``name`` read as at a glance: without its separators, each of
    :data:`NAME_LOOKALIKES` read as the letter it looks like. Two names with the same
    skeleton look alike."""
    skeleton = name.translate({ord(ch): None for ch in NAME_SEPARATORS})
    for seen, read in NAME_LOOKALIKES:
        skeleton = skeleton.replace(seen, read)
    return skeleton


_LOOKALIKE_TEXT = ", ".join(f"{seen} for {read}" for seen, read in NAME_LOOKALIKES)


def new_name_refusal(name: str, taken: Iterable[str] = ()) -> str | None:
    """Why a person may not register ``name`` (a valid name) beside the names ``taken``
    (registered or reserved), or None. Only new registrations are held to this: names in
    envelopes and directories made before stay valid (:func:`check_name`)."""
    if name[-1] in NAME_SEPARATORS:
        return (
            f"{name!r} ends in {name[-1]!r}, which a reader misses: a name must end with a"
            " letter or digit"
        )
    skeleton = name_skeleton(name)
    for other in sorted(taken):
        if other != name and name_skeleton(other) == skeleton:
            return (
                f"{name!r} looks like {other!r}, a name taken already (they differ only in"
                f" '.', '-' or '_', or in {_LOOKALIKE_TEXT}): a sender could pick one for the"
                " other"
            )
    return None


def format_fingerprint(fingerprint: bytes) -> str:
    """The first 128 bits of a fingerprint in eight groups of four hex digits."""
    text = fingerprint[:16].hex()
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def fingerprint_matches(fingerprint: bytes, said: str) -> bool:
    """Whether ``said``, a fingerprint as a person copied it (hex, spaces or colons between
    groups, the short form of :func:`format_fingerprint` or all of it), is ``fingerprint``."""
    text = "".join(ch for ch in said.lower() if ch not in " :")
    return len(text) >= 32 and fingerprint.hex().startswith(text)


def signing_input(purpose: str, obj: Any) -> bytes:
    """The bytes an Ed25519 signature covers: the versioned purpose, then canonical JSON."""
    if not _PURPOSE.fullmatch(purpose):
        raise FieldError(f"signature purpose {purpose!r} is not valid")
    return b"securecomm/v1/" + purpose.encode("ascii") + b"\n" + canonical.dumps(obj)


@dataclass(frozen=True)
class PublicIdentity:
    """What a party publishes: its name and two public keys."""

    name: str
    signing_key: Ed25519PublicKey
    kem_key: X25519PublicKey

    def __post_init__(self) -> None:
        check_name(self.name)

    @property
    def fingerprint(self) -> bytes:
        return labelled_hash(
            "securecomm/v1/fingerprint",
            self.signing_key.public_bytes_raw(),
            self.kem_key.public_bytes_raw(),
        )

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    def short_fingerprint(self) -> str:
        return format_fingerprint(self.fingerprint)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "name": self.name,
            "sign": b64encode(self.signing_key.public_bytes_raw()),
            "kem": b64encode(self.kem_key.public_bytes_raw()),
        }

    @classmethod
    def from_json(cls, obj: object, *, field: str = "identity") -> PublicIdentity:
        obj = expect_object(obj, field, {"v", "name", "sign", "kem"}, versioned=True)
        name = check_name(obj["name"], field=f"{field}.name")
        sign = b64decode(obj["sign"], field=f"{field}.sign", length=PUBLIC_KEY_LENGTH_BYTES)
        kem = b64decode(obj["kem"], field=f"{field}.kem", length=PUBLIC_KEY_LENGTH_BYTES)
        return cls(
            name, Ed25519PublicKey.from_public_bytes(sign), X25519PublicKey.from_public_bytes(kem)
        )

    def verify(self, signature: bytes, purpose: str, obj: Any) -> None:
        """Raise :class:`SignatureError` unless ``signature`` signs ``obj`` for ``purpose``."""
        if len(signature) != SIGNATURE_LENGTH_BYTES:
            raise LengthError(
                f"signature: length {len(signature)} bytes, expected {SIGNATURE_LENGTH_BYTES}"
            )
        try:
            self.signing_key.verify(signature, signing_input(purpose, obj))
        except InvalidSignature:
            raise SignatureError(
                f"{purpose} signature does not verify under {self.name}'s key"
                f" ({self.short_fingerprint()})"
            ) from None

    def same_keys(self, other: PublicIdentity) -> bool:
        return self.fingerprint == other.fingerprint


class Keys(Protocol):
    """What signs and opens for a party: an :class:`Identity` read from its key file, or
    a person's agent holding it unlocked (:class:`securecomm.agent.AgentKeys`)."""

    name: str
    #: Whose keys these are: who signs envelopes, and whom shares are sealed to.
    public: PublicIdentity
    #: Whose key signs requests: ``public``, or a device of theirs (securecomm.devices).
    signer: PublicIdentity
    #: A device's delegation, the value of its ``Securecomm-Delegation`` header; else None.
    delegation_header: str | None

    def sign(self, purpose: str, obj: Any) -> bytes: ...

    def sign_bytes(self, data: bytes) -> bytes: ...

    def unseal(self, sealed: bytes, info: bytes) -> bytes: ...


class Identity:
    """A party's private keys. Never printed: ``repr`` shows the public half only."""

    def __init__(
        self, name: str, signing_key: Ed25519PrivateKey, kem_key: X25519PrivateKey
    ) -> None:
        self.name = check_name(name)
        self._signing_key = signing_key
        self._kem_key = kem_key
        self.public = PublicIdentity(name, signing_key.public_key(), kem_key.public_key())
        self.signer = self.public
        self.delegation_header: str | None = None

    def __repr__(self) -> str:
        return f"Identity(name={self.name!r}, fingerprint={self.public.short_fingerprint()!r})"

    @classmethod
    def generate(cls, name: str) -> Identity:
        return cls(name, Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @property
    def kem_private_key(self) -> X25519PrivateKey:
        return self._kem_key

    def sign(self, purpose: str, obj: Any) -> bytes:
        return self._signing_key.sign(signing_input(purpose, obj))

    def unseal(self, sealed: bytes, info: bytes) -> bytes:
        """Open what was HPKE-sealed to this identity under ``info`` (spec/format-v1.md
        section 5), or raise :class:`DecryptionError`."""
        return hpke.open(sealed, self._kem_key, info)

    def sign_bytes(self, data: bytes) -> bytes:
        """Low level: a raw Ed25519 signature of ``data``.

        The caller must keep its inputs apart from every other use of the key:
        :meth:`sign` inputs start with ``b"securecomm/v1/"``, HTTP signature
        bases (:mod:`securecomm.httpsig`) with ``b'"@method"'``.
        """
        return self._signing_key.sign(data)

    # Key files

    def to_pem(
        self, passphrase: bytes | None = None, *, iterations: int = PASSPHRASE_ITERATIONS
    ) -> bytes:
        blocks = [
            _private_key_pem(key, passphrase, iterations)
            for key in (self._signing_key, self._kem_key)
        ]
        return (_FILE_HEADER + self.name + "\n").encode("ascii") + b"".join(blocks)

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes | None = None) -> Identity:
        first_line, _, _ = data.partition(b"\n")
        try:
            header = first_line.decode("ascii").rstrip("\r")
        except UnicodeDecodeError:
            header = ""
        if not header.startswith(_FILE_HEADER):
            raise IdentityError(_not_a_key_file(data))
        name = check_name(header[len(_FILE_HEADER) :], field="key file name")
        pems = [m.group(0) for m in _PEM_BLOCK.finditer(data)]
        if len(pems) != 2:
            raise IdentityError(f"key file: {len(pems)} private key block(s), expected 2")
        encrypted = [pem.startswith(b"-----BEGIN ENCRYPTED") for pem in pems]
        if any(encrypted) != all(encrypted):
            raise IdentityError(f"key file for {name}: one key is encrypted and one is not")
        if all(encrypted) and passphrase is None:
            raise IdentityError(f"key file for {name}: encrypted, a passphrase is needed")
        if not any(encrypted) and passphrase is not None:
            raise IdentityError(f"key file for {name}: not encrypted, yet a passphrase was given")
        keys = []
        for pem in pems:
            try:
                keys.append(serialization.load_pem_private_key(pem, passphrase))
            except (ValueError, TypeError):
                raise IdentityError(
                    f"key file for {name}: wrong passphrase or damaged key"
                ) from None
        signing, kem = keys
        if not isinstance(signing, Ed25519PrivateKey) or not isinstance(kem, X25519PrivateKey):
            raise IdentityError(f"key file for {name}: expected an Ed25519 key, then an X25519 key")
        return cls(name, signing, kem)

    def save(
        self,
        path: str | os.PathLike[str],
        passphrase: bytes | None = None,
        *,
        iterations: int = PASSPHRASE_ITERATIONS,
    ) -> None:
        """Write the key file atomically, readable by its owner only."""
        write_atomic(path, self.to_pem(passphrase, iterations=iterations), private=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: bytes | None = None) -> Identity:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise IdentityError(f"key file {path}: {exc.strerror}") from None
        return cls.from_pem(data, passphrase)


# PKCS#8 EncryptedPrivateKeyInfo with PBES2, written from a fixed DER template.

_OID_PBES2 = bytes.fromhex("06092a864886f70d01050d")  # 1.2.840.113549.1.5.13
_OID_PBKDF2 = bytes.fromhex("06092a864886f70d01050c")  # 1.2.840.113549.1.5.12
_OID_HMAC_SHA256 = bytes.fromhex("06082a864886f70d0209")  # 1.2.840.113549.2.9
_OID_AES256_CBC = bytes.fromhex("060960864801650304012a")  # 2.16.840.1.101.3.4.1.42
_DER_NULL = b"\x05\x00"


def _der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        encoded = bytes((length,))
    else:
        octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
        encoded = bytes((0x80 | len(octets),)) + octets
    return bytes((tag,)) + encoded + content


def _der_integer(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _pem(label: str, der: bytes) -> bytes:
    body = b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    text = f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"
    return text.encode("ascii")


def _private_key_pem(
    key: Ed25519PrivateKey | X25519PrivateKey, passphrase: bytes | None, iterations: int
) -> bytes:
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if passphrase is None:
        return _pem("PRIVATE KEY", der)
    if not passphrase:
        raise IdentityError("key file: the passphrase is empty")
    salt = os.urandom(_SALT_LENGTH_BYTES)
    iv = os.urandom(_IV_LENGTH_BYTES)
    kek = PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(passphrase)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(der) + padder.finalize()
    encryptor = Cipher(algorithms.AES(kek), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padded) + encryptor.finalize()
    pbkdf2_params = _der(
        0x30,
        _der(0x04, salt) + _der_integer(iterations) + _der(0x30, _OID_HMAC_SHA256 + _DER_NULL),
    )
    pbes2_params = _der(
        0x30,
        _der(0x30, _OID_PBKDF2 + pbkdf2_params) + _der(0x30, _OID_AES256_CBC + _der(0x04, iv)),
    )
    info = _der(0x30, _der(0x30, _OID_PBES2 + pbes2_params) + _der(0x04, encrypted))
    return _pem("ENCRYPTED PRIVATE KEY", info)


# Key files on disk: a private identity (PKCS#8 PEM, above) and its public half (.pub).


def load_or_create(path: Path, name: str) -> Identity:
    """The identity at ``path``; a new one named ``name`` if there is none yet.

    Service keys are not passphrase-protected: a service starts unattended.
    Protect the data directory instead (its key folders are created 0700).
    """
    if path.exists():
        identity = Identity.load(path)
        if identity.name != name:
            raise IdentityError(f"{path} holds the identity {identity.name!r}, expected {name!r}")
        return identity
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = Identity.generate(name)
    identity.save(path)
    save_public(path.with_suffix(".pub"), identity.public)
    return identity


def _not_a_key_file(data: bytes) -> str:
    """Why ``data`` is no key file: said plainly when it is the .pub file written beside one,
    which a person picks for it by mistake (web/js/keyfile.js says the same)."""
    try:
        name = read_public_file(data).name
    except (SecureCommError, ValueError):  # not JSON, or not a public identity
        return f"key file: does not start with {_FILE_HEADER!r}"
    return (
        f"key file: this is a public key file ({name}.pub), which holds no private key: use"
        f" {name}.key instead, the file written beside it"
    )


def public_file(identity: PublicIdentity) -> bytes:
    """The bytes of a .pub file (spec 7.1): the canonical JSON of the public identity, LF."""
    return canonical.dumps(identity.to_json()) + b"\n"


def read_public_file(data: bytes, what: str = ".pub file") -> PublicIdentity:
    """A .pub file's identity: canonical JSON, optionally followed by one LF. The key file
    written beside one, picked for it by mistake, is named as such (as
    :func:`_not_a_key_file` names the reverse), from its first line only."""
    if data.startswith(_FILE_HEADER.encode()):
        first = data.split(b"\n", 1)[0][len(_FILE_HEADER) :].decode("utf-8", "replace").strip()
        name = first if _NAME.fullmatch(first) else "NAME"
        raise IdentityError(
            f"{what}: this is a private key file ({name}.key), not a public one: give"
            f" {name}.pub instead, the file written beside it"
        )
    return PublicIdentity.from_json(canonical.loads_file(data, what=what), field=what)


def save_public(path: Path, identity: PublicIdentity) -> None:
    write_atomic(path, public_file(identity))


def load_public(path: Path) -> PublicIdentity:
    """Read a .pub file (:func:`read_public_file`)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read {path}: {exc.strerror}") from None
    return read_public_file(data, str(path))
