"""The JS core and the Python package read each other's bytes.

Key files, signatures, fingerprints, HPKE seals, shares and canonical JSON
made on one side are checked on the other. Bytes cross the page boundary as
base64 (or hex); private keys go to the page as PKCS#8 DER.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from playwright.sync_api import Page

from securecomm import canonical, errors, hpke, shares
from securecomm.cli.people import size_text
from securecomm.identity import PASSPHRASE_ITERATIONS, Identity, PublicIdentity
from tests.browser._js import b64, evaluate, pkcs8, unb64

PASSPHRASE = "test passphrase, non-ASCII: grüße"


FROM_PKCS8 = """
    const identity = await Identity.fromPkcs8(
        arg.keys.name, b64decode(arg.keys.ed), b64decode(arg.keys.x));
"""

# Key files


def _random_from_file(text: str) -> list[bytes]:
    """The salt and IV of each encrypted block, in the order identity.py draws them."""
    drawn = []
    for block in text.split("-----BEGIN ENCRYPTED PRIVATE KEY-----\n")[1:]:
        body = block.split("-----END")[0].replace("\n", "")
        der = unb64(body)
        pbkdf2 = bytes.fromhex("06092a864886f70d01050c")
        aes = bytes.fromhex("060960864801650304012a")
        salt_at = der.index(pbkdf2) + len(pbkdf2) + 2  # then the params SEQUENCE header
        assert der[salt_at : salt_at + 2] == b"\x04\x10"
        iv_at = der.index(aes) + len(aes)
        assert der[iv_at : iv_at + 2] == b"\x04\x10"
        drawn += [der[salt_at + 2 : salt_at + 18], der[iv_at + 2 : iv_at + 18]]
    return drawn


@pytest.fixture
def replay_urandom(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """os.urandom handing out the bytes appended to the yielded list, in order."""
    queue: list[bytes] = []

    def urandom(size: int) -> bytes:
        value = queue.pop(0)
        assert len(value) == size
        return value

    monkeypatch.setattr(os, "urandom", urandom)
    yield queue
    assert not queue, "not every recorded random value was used"


def test_a_js_key_file_is_the_one_python_writes(page: Page, replay_urandom: list[bytes]) -> None:
    js = evaluate(
        page,
        """
        const { identity, ed25519Pkcs8, x25519Pkcs8 } = await Identity.generate('carol');
        const write = (passphrase) =>
            keyfile.writeKeyFile('carol', ed25519Pkcs8, x25519Pkcs8, passphrase);
        return {
            encrypted: await write(arg), plain: await write(null),
            empty: await failure(() => write('')),
            public: identity.public.toJson(), fingerprint: identity.public.fingerprintHex,
        };
        """,
        PASSPHRASE,
    )
    loaded = Identity.from_pem(js["encrypted"].encode(), PASSPHRASE.encode())
    assert loaded.public.to_json() == js["public"]
    assert loaded.public.fingerprint_hex == js["fingerprint"]
    plain = Identity.from_pem(js["plain"].encode(), None)
    assert plain.public.to_json() == js["public"]
    assert plain.to_pem(None).decode() == js["plain"]
    # With the same salts and IVs, Python writes the same file byte for byte:
    # the DER template, 600000 iterations, 64-character lines, LF.
    replay_urandom += _random_from_file(js["encrypted"])
    assert len(replay_urandom) == 4
    assert loaded.to_pem(PASSPHRASE.encode()).decode() == js["encrypted"]
    assert js["empty"].startswith("IdentityError: ")
    with pytest.raises(errors.IdentityError, match="wrong passphrase"):
        Identity.from_pem(js["encrypted"].encode(), b"wrong")


def test_a_python_key_file_is_read_by_js(page: Page) -> None:
    python = Identity.generate("dave")
    encrypted = python.to_pem(PASSPHRASE.encode()).decode()
    plain = python.to_pem(None).decode()
    js = evaluate(
        page,
        """
        const identity = await Identity.fromKeyFile(arg.encrypted, arg.passphrase);
        const file = await keyfile.readKeyFile(arg.plain, null);
        const again = await Identity.fromPkcs8(file.name, file.ed25519Pkcs8, file.x25519Pkcs8);
        return {
            public: identity.public.toJson(), fingerprint: identity.public.fingerprintHex,
            plain: again.public.toJson(),
            extractable: [identity.signKey.extractable, identity.kemKey.extractable],
            signature: b64encode(await identity.sign('envelope', { v: 1 })),
            wrong: await failure(() => keyfile.readKeyFile(arg.encrypted, 'wrong passphrase')),
            none: await failure(() => keyfile.readKeyFile(arg.encrypted, null)),
            unexpected: await failure(() => keyfile.readKeyFile(arg.plain, arg.passphrase)),
            mixed: await failure(() => keyfile.readKeyFile(
                arg.plain.split('-----BEGIN')[0] + '-----BEGIN' + arg.plain.split('-----BEGIN')[1]
                + '-----BEGIN' + arg.encrypted.split('-----BEGIN')[2], arg.passphrase)),
        };
        """,
        {"encrypted": encrypted, "plain": plain, "passphrase": PASSPHRASE},
    )
    assert js["public"] == python.public.to_json()
    assert js["plain"] == python.public.to_json()
    assert js["fingerprint"] == python.public.fingerprint_hex
    assert js["extractable"] == [False, False]
    python.public.verify(unb64(js["signature"]), "envelope", {"v": 1})
    assert js["wrong"] == "IdentityError: key file for dave: wrong passphrase or damaged key"
    assert js["none"] == "IdentityError: key file for dave: encrypted, a passphrase is needed"
    assert js["unexpected"].startswith("IdentityError: key file for dave: not encrypted")
    assert js["mixed"].startswith("IdentityError: key file for dave: one key is encrypted")
    assert PASSPHRASE not in js["wrong"]


# Signatures and fingerprints

SIGNED = {"v": 1, "text": "grüße 😀", "n": [9007199254740991, -1], "nested": {"b": None}}


def test_a_js_signature_verifies_in_python(page: Page) -> None:
    js = evaluate(
        page,
        """
        const { identity } = await Identity.generate('erin');
        return {
            public: identity.public.toJson(),
            signature: b64encode(await identity.sign('envelope', arg)),
        };
        """,
        SIGNED,
    )
    public = PublicIdentity.from_json(js["public"])
    signature = unb64(js["signature"])
    public.verify(signature, "envelope", SIGNED)
    with pytest.raises(errors.SignatureError):
        public.verify(signature, "receipt", SIGNED)
    with pytest.raises(errors.SignatureError):
        public.verify(signature, "envelope", {**SIGNED, "v": 2})


def test_a_python_signature_verifies_in_js(page: Page) -> None:
    python = Identity.generate("frank")
    js = evaluate(
        page,
        """
        const signer = await PublicIdentity.fromJson(arg.public);
        const signature = b64decode(arg.signature);
        await signer.verify(signature, 'envelope', arg.obj);
        return {
            other_purpose: await failure(() => signer.verify(signature, 'receipt', arg.obj)),
            other_object: await failure(() => signer.verify(signature, 'envelope', { v: 1 })),
            short: await failure(() => signer.verify(signature.subarray(1), 'envelope', arg.obj)),
        };
        """,
        {
            "public": python.public.to_json(),
            "signature": b64(python.sign("envelope", SIGNED)),
            "obj": SIGNED,
        },
    )
    assert js["other_purpose"].startswith("SignatureError: receipt signature does not verify")
    assert js["other_object"].startswith("SignatureError: ")
    assert js["short"] == "LengthError: signature: length 63 bytes, expected 64"


def test_the_same_identity_has_the_same_fingerprint(page: Page) -> None:
    python = Identity.generate("grace")
    js = evaluate(
        page,
        FROM_PKCS8
        + """
        const parsed = await PublicIdentity.fromJson(arg.public);
        return {
            public: identity.public.toJson(), fingerprint: identity.public.fingerprintHex,
            short: identity.public.shortFingerprint(), parsed: parsed.fingerprintHex,
        };
        """,
        {"keys": pkcs8(python), "public": python.public.to_json()},
    )
    assert js["public"] == python.public.to_json()
    assert js["fingerprint"] == python.public.fingerprint_hex == js["parsed"]
    assert js["short"] == python.public.short_fingerprint()


# HPKE


def deposit_context(sender: Identity) -> dict[str, Any]:
    return {
        "custodian": "alpha",
        "index": 2,
        "message_id": "00112233445566778899aabbccddeeff",
        "sender": sender.public.fingerprint_hex,
    }


def test_a_js_seal_opens_in_python(page: Page) -> None:
    custodian = Identity.generate("alpha")
    context = deposit_context(Identity.generate("alice"))
    plaintext = os.urandom(60)
    js = evaluate(
        page,
        """
        const info = hpke.info('deposit', arg.context);
        const kem = b64decode(arg.kem);
        const plaintext = b64decode(arg.plaintext);
        return {
            info: b64encode(info),
            sealed: [b64encode(await hpke.seal(kem, info, plaintext)),
                     b64encode(await hpke.seal(kem, info, plaintext))],
            purpose: await failure(() => hpke.info('withdraw', arg.context)),
            zero: await failure(() => hpke.seal(new Uint8Array(32), info, plaintext)),
        };
        """,
        {"kem": custodian.public.to_json()["kem"], "context": context, "plaintext": b64(plaintext)},
    )
    info = hpke.info("deposit", context)
    assert unb64(js["info"]) == info
    first, second = (unb64(sealed) for sealed in js["sealed"])
    assert first[:32] != second[:32], "the ephemeral key must be fresh for every seal"
    for sealed in (first, second):
        assert len(sealed) == 32 + len(plaintext) + 16
        assert hpke.open(sealed, custodian.kem_private_key, info) == plaintext
    with pytest.raises(errors.DecryptionError):
        hpke.open(first, custodian.kem_private_key, hpke.info("release", context))
    assert js["purpose"].startswith("FieldError: ")
    # An all-zero X25519 key gives an all-zero shared secret: refused on both sides.
    assert js["zero"] == "IdentityError: hpke: the recipient's X25519 key is not usable"
    with pytest.raises(errors.IdentityError):
        hpke.seal(plaintext, X25519PublicKey.from_public_bytes(bytes(32)), info)


def test_a_python_seal_opens_in_js(page: Page) -> None:
    custodian = Identity.generate("alpha")
    context = deposit_context(Identity.generate("alice"))
    plaintext = os.urandom(60)
    sealed = hpke.seal(plaintext, custodian.public.kem_key, hpke.info("deposit", context))
    js = evaluate(
        page,
        FROM_PKCS8
        + """
        const open = (info, sealed) =>
            hpke.open(identity.kemKey, identity.public.kem, info, sealed);
        const sealed = b64decode(arg.sealed);
        const info = hpke.info('deposit', arg.context);
        const tampered = sealed.slice();
        tampered[40] ^= 1;
        return {
            opened: b64encode(await open(info, sealed)),
            release: await failure(() => open(hpke.info('release', arg.context), sealed)),
            tampered: await failure(() => open(info, tampered)),
            short: await failure(() => open(info, sealed.subarray(0, 47))),
        };
        """,
        {"keys": pkcs8(custodian), "context": context, "sealed": b64(sealed)},
    )
    assert unb64(js["opened"]) == plaintext
    opaque = "DecryptionError: decryption failed: wrong key or altered data"
    assert js["release"] == js["tampered"] == js["short"] == opaque


# Shares


def test_js_shares_combine_in_python(page: Page) -> None:
    secret = os.urandom(32)
    texts = evaluate(
        page,
        """
        const made = shares.splitSecret(b64decode(arg.secret), 5, 3, fromHex(arg.splitId));
        return made.map((share) => share.toText());
        """,
        {"secret": b64(secret), "splitId": "00112233445566778899aabbccddeeff"},
    )
    decoded = [shares.Share.from_text(text) for text in texts]
    assert [share.index for share in decoded] == [1, 2, 3, 4, 5]
    assert {share.split_id.hex() for share in decoded} == {"00112233445566778899aabbccddeeff"}
    assert {share.threshold for share in decoded} == {3}
    for chosen in ([4, 0, 2], [1, 2, 3], [0, 1, 2, 3, 4]):
        assert shares.combine([decoded[i] for i in chosen]) == secret
    with pytest.raises(errors.InsufficientSharesError):
        shares.combine(decoded[:2])


def test_python_shares_combine_in_js(page: Page) -> None:
    secret = os.urandom(32)
    texts = [share.to_text() for share in shares.split(secret, 5, 3)]
    js = evaluate(
        page,
        """
        const decoded = arg.map((text) => shares.Share.fromText(text));
        const pick = (indices) => indices.map((i) => decoded[i]);
        return {
            some: toHex(shares.combine(pick([4, 1, 2]))),
            all: toHex(shares.combine(decoded)),
            two: await failure(() => shares.combine(pick([0, 1]))),
        };
        """,
        texts,
    )
    assert js["some"] == js["all"] == secret.hex()
    assert js["two"].startswith("InsufficientSharesError: ")


# Canonical JSON

TRICKY: dict[str, Any] = {
    "z": [0, 1, -1, 9007199254740991, -9007199254740991, 1234567890123],
    "text": "grüße € 😀 𝄞 \u2028\u2029\u007f\ufeff",
    "controls": "".join(chr(c) for c in range(0x20)) + '"\\/',
    "\U0001f600": "astral key: its first code unit 0xd83d sorts before U+FFFF",
    "\uffff": "last BMP key",
    "\u00e9": "latin-1 key",
    "": "empty key",
    "__proto__": {"not": "a prototype"},
    "constructor": [True, False, None],
    "nested": {"a": [{"b": None, "c": []}, [], {}], "B": [[[["deep"]]]]},
    "A": 1,
    "a": 2,
    "10": 3,
    "9": 4,
}


def test_js_canonical_json_equals_python(page: Page) -> None:
    expected = canonical.dumps(TRICKY)
    js = evaluate(
        page,
        """
        // JSON.parse keeps "__proto__" as an own member, as Python's dict does.
        const value = JSON.parse(arg.json);
        const parsed = canonical.loads(fromHex(arg.python));
        return {
            dumps: toHex(canonical.dumps(value)),
            again: toHex(canonical.dumps(parsed)),
            own: Object.hasOwn(parsed, '__proto__')
                && Object.getPrototypeOf(parsed) === Object.prototype,
            lone: await failure(() => canonical.dumps('\\ud800')),
            float: await failure(() => canonical.dumps({ a: 1.5 })),
            unsafe: await failure(() => canonical.dumps(9007199254740992)),
            undefined: await failure(() => canonical.dumps({ a: undefined })),
            hole: await failure(() => canonical.dumps([1, , 3])),
            bytes: await failure(() => canonical.dumps(new Uint8Array(1))),
        };
        """,
        {"json": json.dumps(TRICKY, ensure_ascii=True), "python": expected.hex()},
    )
    assert bytes.fromhex(js["dumps"]) == expected
    assert bytes.fromhex(js["again"]) == expected
    assert canonical.loads(bytes.fromhex(js["dumps"])) == TRICKY
    assert js["own"] is True
    for key in ("lone", "float", "unsafe", "undefined", "hole", "bytes"):
        assert js[key].startswith("FieldError: canonical JSON: "), key
    with pytest.raises(errors.FieldError):
        canonical.dumps("\ud800")


# The strict decoders: the same verdict as Python's on the same input


def verdicts(page: Page, decoder: str, inputs: list[Any]) -> list[str]:
    """``"ok: …"`` or the error class name, for each input decoded in the page."""
    result: list[str] = evaluate(
        page,
        f"""
        const decode = {decoder};
        const out = [];
        for (const input of arg) {{
            try {{ out.push('ok: ' + await decode(input)); }}
            catch (error) {{ out.push(error.name); }}
        }}
        return out;
        """,
        inputs,
    )
    return result


def python_verdict(decode: Callable[[Any], str], value: Any) -> str:
    try:
        return f"ok: {decode(value)}"
    except errors.SecureCommError as exc:
        return type(exc).__name__


def assert_same_verdicts(labels: list[Any], js: list[str], python: list[str]) -> None:
    assert len(js) == len(python) == len(labels)
    differ = [
        f"{label!r}: JS {j}, Python {p}"
        for label, j, p in zip(labels, js, python, strict=True)
        if j != p
    ]
    assert not differ, "\n".join(differ)


BASE64 = [
    # canonical
    "",
    "QQ==",
    "QUI=",
    "QUFB",
    "/+/+",
    "+/8=",
    # not base64
    "=",
    "==",
    "====",
    "=QUF",
    "QQ=",
    "QQ",
    "Q",
    "Q===",
    "QQ===",
    "QUI==",
    "QUI",
    "QQ==QQ==",
    "QUFBQ===",
    "QQ=a",
    "A=AA",
    "QUFBQQ",
    "QU FB",
    "QUFB\n",
    " QUFB",
    "-_8=",
    "QUFB\u00e9",
    "QUFB\x00",
    # superfluous padding: not the form of padded base64 (FormatError, spec section 1.2)
    "QUFB=",
    "QUFB==",
    "AAAA====",
    # the form, with unused bits not zero: decodable, not canonical
    "QR==",
    "Qf==",
    "QUJ=",
]


def test_base64_verdicts_equal_python(page: Page) -> None:
    from securecomm._encoding import b64decode

    js = verdicts(page, "(t) => toHex(b64decode(t, { field: 'f', allowEmpty: true }))", BASE64)
    python = [python_verdict(lambda t: b64decode(t, field="f").hex(), t) for t in BASE64]
    assert_same_verdicts(BASE64, js, python)
    assert {"FormatError", "NonCanonicalError"} <= set(js)


CANONICAL = [
    # canonical
    b"{}",
    b"[]",
    b"0",
    b"-1",
    b'""',
    b"[true,false,null]",
    b'{"__proto__":1}',
    b'"\\u0000\\u001f\\"\\\\\x7f"',
    b'"\xf0\x9f\x98\x80"',
    b"-9007199254740991",
    b'{"\xf0\x9f\x98\x80":1,"\xef\xbf\xbf":2}',
    # not JSON, or JSON outside section 1.4
    b"",
    b"\xef\xbb\xbf{}",
    b"[01]",
    b"1.0",
    b"1e3",
    b"1E3",
    b"-",
    b"--1",
    b"+1",
    b'"\\ud83d"',
    b'"\\ude00\\ud83d"',
    b'"\x01"',
    b'{"a":1,"a":2}',
    b'{"a":1,"\\u0061":2}',
    b"[True]",
    b"nul",
    b"NaN",
    b"-Infinity",
    b"Infinity",
    b"9007199254740992",
    b"-9007199254740992",
    b"99999999999999999999999",
    b"[1,]",
    b'{"a":1,}',
    b"[",
    b'"abc',
    b'"\\x"',
    b'"\xed\xa0\x80"',
    b'"\xff"',
    b"{'a':1}",
    b'{"a"}',
    # JSON of section 1.4, spelled otherwise
    b" ",
    b"{} ",
    b"\t[]",
    b"-0",
    b"[-0]",
    b'"\\u00e9"',
    b'"\\u00E9"',
    b'"\\ud83d\\ude00"',
    b'"\\u0001"',
    b'"\\u007f"',
    b'"\\t"',
    b'"\\u0009"',
    b'{"b":1,"a":1}',
    b'{"\xef\xbf\xbf":2,"\xf0\x9f\x98\x80":1}',
    b'{"a" :1}',
    b"[1]\n",
    b'"\\/"',
]


def test_canonical_json_verdicts_equal_python(page: Page) -> None:
    inputs = [text.hex() for text in CANONICAL]
    js = verdicts(page, "(h) => toHex(canonical.dumps(canonical.loads(fromHex(h))))", inputs)
    python = [
        python_verdict(lambda t: canonical.dumps(canonical.loads(t)).hex(), t) for t in CANONICAL
    ]
    assert_same_verdicts(CANONICAL, js, python)
    assert {"FormatError", "NonCanonicalError"} <= set(js)


def test_share_text_verdicts_equal_python(page: Page) -> None:
    share = shares.split(b"a secret", 3, 2)[0].to_text()
    body = share.removeprefix(shares.TEXT_PREFIX)
    inputs = [
        share,
        f"\t\n {share} \r\n",
        f"\u3000{share}\u2028",
        f"\x1c{share}\x85\u00a0",
        f"\ufeff{share}",  # not whitespace to Python
        f"{share}\u200b",
        share.replace("-v1:", "-V1:"),
        share.upper(),
        "securecomm-share-v1:",
        f"securecomm-share-v1: {body}",
        "securecomm-share-v2",
        "",
        share[:-4] + share[-3] + share[-4] + share[-2:],
        share[:30] + share[31] + share[30] + share[32:],
    ]
    js = verdicts(page, "(t) => toHex(shares.Share.fromText(t).toBytes())", inputs)
    python = [
        python_verdict(lambda t: shares.Share.from_text(t).to_bytes().hex(), t) for t in inputs
    ]
    assert_same_verdicts(inputs, js, python)


def test_public_identity_verdicts_equal_python(page: Page) -> None:
    good = Identity.generate("heidi").public.to_json()
    inputs: list[Any] = [
        good,
        [good],
        "text",
        None,
        {},
        {**good, "v": 2},
        {**good, "v": True},
        {**good, "v": "1"},
        {**good, "extra": 1},
        {key: value for key, value in good.items() if key != "kem"},
        {**good, "name": "Heidi"},
        {**good, "name": ""},
        {**good, "name": "h" * 65},
        {**good, "name": "h" * 64},
        {**good, "name": "-h"},
        {**good, "name": 7},
        {**good, "sign": good["sign"][:-2] + "Q="},
        {**good, "sign": b64(bytes(31))},
        {**good, "sign": None},
        {**good, "kem": b64(bytes(33))},
        {**good, "kem": good["kem"].replace("=", "")},
        {**good, "kem": good["kem"] + "\n"},
    ]
    js = verdicts(page, "async (o) => (await PublicIdentity.fromJson(o)).fingerprintHex", inputs)
    python = [
        python_verdict(lambda o: PublicIdentity.from_json(o).fingerprint_hex, o) for o in inputs
    ]
    assert_same_verdicts(inputs, js, python)


def key_file_cases(python: Identity) -> list[tuple[str, str, str | None]]:
    """(what, key file text, passphrase): good files and each rejection of section 6.4."""
    plain = python.to_pem(None).decode()
    # Few iterations keep this quick; readers accept any count (spec section 10).
    encrypted = python.to_pem(b"pw", iterations=1000).decode()
    header, ed, x = plain.split("-----BEGIN")
    _, ed_encrypted, x_encrypted = encrypted.split("-----BEGIN")
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    lines = plain.split("\n")
    return [
        ("unencrypted", plain, None),
        ("encrypted", encrypted, "pw"),
        ("CRLF everywhere", plain.replace("\n", "\r\n"), None),
        ("no header", plain.removeprefix(header), None),
        ("header without its space", plain.replace("identity: ", "identity:"), None),
        ("upper-case name", plain.replace("ivan", "Ivan", 1), None),
        ("name with a trailing space", plain.replace("ivan", "ivan ", 1), None),
        ("non-ASCII header line", plain.replace("\n", " é\n", 1), None),
        ("one block", f"{header}-----BEGIN{ed}", None),
        ("three blocks", f"{plain}-----BEGIN{x}", None),
        (
            "END label differs",
            plain.replace("END PRIVATE KEY", "END ENCRYPTED PRIVATE KEY", 1),
            None,
        ),
        ("one block encrypted", f"{header}-----BEGIN{ed}-----BEGIN{x_encrypted}", "pw"),
        ("encrypted, no passphrase", encrypted, None),
        ("unencrypted, a passphrase", plain, "pw"),
        ("wrong passphrase", encrypted, "wrong"),
        ("empty passphrase", encrypted, ""),
        ("X25519 first", f"{header}-----BEGIN{x}-----BEGIN{ed}", None),
        ("a P-256 key first", header + other.decode() + f"-----BEGIN{x}", None),
        (
            "a character that is not base64",
            "\n".join([*lines[:2], "!" + lines[2][1:], *lines[3:]]),
            None,
        ),
        ("a line missing", "\n".join([*lines[:2], *lines[3:]]), None),
        ("encrypted, one block", f"{header}-----BEGIN{ed_encrypted}", "pw"),
    ]


def test_key_file_verdicts_equal_python(page: Page) -> None:
    python = Identity.generate("ivan")
    cases = key_file_cases(python)
    js = verdicts(
        page,
        "async ([t, p]) => (await Identity.fromKeyFile(t, p)).public.fingerprintHex",
        [[text, passphrase] for _, text, passphrase in cases],
    )

    def load(case: tuple[str, str, str | None]) -> str:
        _, text, passphrase = case
        secret = None if passphrase is None else passphrase.encode()
        return Identity.from_pem(text.encode(), secret).public.fingerprint_hex

    assert_same_verdicts(
        [what for what, _, _ in cases], js, [python_verdict(load, c) for c in cases]
    )
    assert js[:3] == [f"ok: {python.public.fingerprint_hex}"] * 3
    assert js.count("FieldError") == 2
    assert js.count("IdentityError") == len(cases) - 5


# Identities kept in IndexedDB


def test_an_identity_survives_indexeddb_wrapped_and_signs_for_python(page: Page) -> None:
    """The page's stored form (spec/sessions.md section 2): keys wrapped under the passphrase,
    unwrapped only with it, non-extractable, and checked against the public keys."""
    js = evaluate(
        page,
        """
        const keywrap = await import('/js/keywrap.js');
        const made = await Identity.generate('judy');
        const wrapped = await keywrap.wrapKeys(made.ed25519Pkcs8, made.x25519Pkcs8, 'judy pass');
        const db = await new Promise((resolve, reject) => {
            const request = indexedDB.open('securecomm-test-identity', 1);
            request.onupgradeneeded = () => request.result.createObjectStore('identities');
            request.onsuccess = () => resolve(request.result);
            request.onerror = () => reject(request.error);
        });
        const run = (mode, use) => new Promise((resolve, reject) => {
            const request = use(db.transaction('identities', mode).objectStore('identities'));
            request.onsuccess = () => resolve(request.result);
            request.onerror = () => reject(request.error);
        });
        const record = keywrap.storedRecord(made.identity.public, 'a key file', wrapped);
        await run('readwrite', (store) => store.put(record, 'judy'));
        const stored = await run('readonly', (store) => store.get('judy'));
        db.close();
        const keysIn = (value) =>
            value instanceof CryptoKey ? 1
            : value instanceof Uint8Array || typeof value !== 'object' || value === null ? 0
            : Object.values(value).reduce((sum, v) => sum + keysIn(v), 0);
        const read = await keywrap.readRecord(stored, 'judy');
        const restored = await keywrap.unwrapIdentity(read.public, read.wrapped, 'judy pass');
        const other = await Identity.generate('judy');
        const otherWrapped = await keywrap.wrapKeys(
            other.ed25519Pkcs8, other.x25519Pkcs8, 'judy pass');
        const unwrap = (wrapped, passphrase = 'judy pass') =>
            failure(() => keywrap.unwrapIdentity(read.public, wrapped, passphrase));
        return {
            public: restored.public.toJson(),
            keysStored: keysIn(stored),
            iterations: stored.wrapped.iterations,
            extractable: [restored.signKey.extractable, restored.kemKey.extractable],
            signature: b64encode(await restored.sign('receipt', { v: 1 })),
            wrong: await unwrap(read.wrapped, 'not judy pass'),
            swapped: await unwrap(otherWrapped),
            halfSwapped: await unwrap({ ...read.wrapped, kem: otherWrapped.kem }),
            weak: await unwrap({ ...read.wrapped, iterations: 1000 }),
            renamed: await failure(
                () => keywrap.readRecord({ ...stored, name: 'mallory' }, 'judy')),
        };
        """,
    )
    public = PublicIdentity.from_json(js["public"])
    public.verify(unb64(js["signature"]), "receipt", {"v": 1})
    assert js["keysStored"] == 0 and js["iterations"] >= PASSPHRASE_ITERATIONS
    assert js["extractable"] == [False, False]
    assert js["wrong"] == "IdentityError: wrong passphrase for judy: nothing was unlocked"
    assert js["swapped"].startswith("IdentityError: ") and "does not match" in js["swapped"]
    # The other key was wrapped under another salt: its unwrapping fails as a wrong passphrase.
    assert js["halfSwapped"].startswith("IdentityError: wrong passphrase")
    assert js["weak"].startswith("IdentityError: ") and "iterations 1000" in js["weak"]
    assert js["renamed"].startswith("IdentityError: ")


FILE_PATHS = [
    "report.pdf",
    "dir/sub/q3 plan.xlsx",
    "C:\\Users\\ana\\notes.txt",
    "..",
    ".",
    "dir/",
    "tab\there\x7f",
    "plan — north gate.txt",
    "é" * 200,
    "😀" * 70,
    "a\x00b",
]


def test_a_file_is_named_alike_in_js_and_python(page: Page) -> None:
    """The name a file is sent under (spec 7.10): the page and the CLI derive the same one,
    and refuse the same names on reading."""
    from securecomm.envelope import check_filename, name_for_file

    js = evaluate(
        page,
        """
        return arg.map((path) => {
            const name = envelope.nameForFile(path);
            let refused = null;
            try { envelope.checkFilename(path); } catch (error) { refused = error.name; }
            return { name, refused };
        });
        """,
        FILE_PATHS,
    )
    for path, got in zip(FILE_PATHS, js, strict=True):
        assert got["name"] == name_for_file(path), path
        try:
            check_filename(path)
            refused = None
        except errors.FieldError:
            refused = "FieldError"
        assert got["refused"] == refused, path


# Devices (spec/sessions.md section 3)

DEVICES = "const devices = await import('/js/devices.js');"
DELEGATION_SECONDS = 90 * 86400
ISSUED = 1_790_000_000


def test_the_page_signs_a_delegation_and_a_revocation_as_python_and_seals_the_key(
    page: Page,
) -> None:
    """The page's Delegation and Revocation are byte for byte Python's (Ed25519 is
    deterministic: the same signing input gives the same signature), and the person's X25519
    key it seals to a device opens in Python, bound to that person and that device."""
    from securecomm.devices import Delegation, Revocation, delegate, open_person_key, revoke

    bob, laptop = Identity.generate("bob"), Identity.generate("bob")
    code = b64(canonical.dumps(laptop.public.to_json()))
    js = evaluate(
        page,
        DEVICES
        + """
        const bob = await fromKeys(arg.bob);
        const laptop = await devices.deviceFromCode(arg.code, 'bob');
        const kemRaw = keyfile.parsePrivateKeyInfo(b64decode(arg.bob.x)).privateRaw;
        const delegation = await devices.delegate(bob, laptop, 'laptop', arg.seconds, arg.at);
        const revocation = await devices.revoke(bob, laptop.fingerprintHex, arg.at + 60);
        return {
            delegation: delegation.toJson(),
            revocation: revocation.toJson(),
            sealed: b64encode(await devices.sealPersonKey(kemRaw, bob.public, laptop)),
            info: b64encode(devices.keyInfo(bob.public, laptop)),
            ownKey: await failure(() => devices.delegate(bob, bob.public, 'self', 60, arg.at)),
            tooLong: await failure(() => devices.delegate(bob, laptop, 'x', 366 * 86400 + 1)),
            never: await failure(() => devices.delegate(bob, laptop, 'x', 0)),
            label: await failure(() => devices.delegate(bob, laptop, '-laptop', 60)),
            otherName: await failure(() => devices.deviceFromCode(arg.aliceCode, 'bob')),
            notACode: await failure(() => devices.deviceFromCode('not a code', 'bob')),
        };
        """,
        {
            "bob": pkcs8(bob),
            "code": code,
            "seconds": DELEGATION_SECONDS,
            "at": ISSUED,
            "aliceCode": b64(canonical.dumps(Identity.generate("alice").public.to_json())),
        },
    )
    delegation = Delegation.from_json(js["delegation"])
    delegation.verify()
    assert (
        js["delegation"]
        == delegate(bob, laptop.public, "laptop", DELEGATION_SECONDS, now=ISSUED).to_json()
    )
    revocation = Revocation.from_json(js["revocation"])
    revocation.verify()
    assert js["revocation"] == revoke(bob, laptop.public.fingerprint_hex, now=ISSUED + 60).to_json()
    # The sealed key: 80 bytes, the person's X25519 key, under purpose device-key.
    sealed = unb64(js["sealed"])
    context = {"person": bob.public.fingerprint_hex, "device": laptop.public.fingerprint_hex}
    assert unb64(js["info"]) == hpke.info("device-key", context)
    assert len(sealed) == 32 + hpke.OVERHEAD_BYTES
    opened = open_person_key(sealed, laptop, bob.public)
    assert opened.private_bytes_raw() == bob.kem_private_key.private_bytes_raw()
    # Bound to both: another device cannot open it, nor can it pass for another person's.
    with pytest.raises(errors.DecryptionError):
        open_person_key(sealed, Identity.generate("bob"), bob.public)
    with pytest.raises(errors.DecryptionError):
        open_person_key(sealed, laptop, Identity.generate("bob").public)
    with pytest.raises(errors.DecryptionError):
        hpke.open(sealed, laptop.kem_private_key, hpke.info("deposit", context))
    assert js["ownKey"] == "FieldError: delegation: the device's key is the person's own"
    assert js["tooLong"] == js["never"] == "FieldError: a delegation lasts from a second to a year"
    assert js["label"].startswith("FieldError: label: expected a device label")
    assert js["otherName"] == "IdentityError: That device's key was made for alice, not bob."
    assert js["notACode"].startswith("FieldError: That is not a device's code")


def _signed_delegation(person: Identity, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` signed by ``person`` as a delegation, whatever it says."""
    return {**body, "signature": b64(person.sign("delegation", body))}


def _python_listing(monkeypatch: pytest.MonkeyPatch, answer: Any, person: PublicIdentity) -> str:
    """What the CLI's check of a relay's list (client/devices.py devices) makes of
    ``answer``: the devices' states, or the class of its error."""
    import httpx

    from securecomm.client import devices as client_devices

    class Relay:
        def __enter__(self) -> Relay:
            return self

        def __exit__(self, *_: object) -> None:
            return None

        def request(self, *_: object, **__: object) -> httpx.Response:
            return httpx.Response(200, content=canonical.dumps(answer))

    monkeypatch.setattr(client_devices, "_relay", lambda *_, **__: Relay())
    try:
        found = client_devices.devices(None, person)  # type: ignore[arg-type]
    except errors.SecureCommError as exc:
        return type(exc).__name__
    return "accepted " + ",".join(d.state(ISSUED + 10) for d in found)


def test_the_page_checks_a_relays_list_of_devices_as_the_cli_does(
    page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry that the person did not sign, that is not well formed, or whose revocation is
    of another device, is refused by the page as by the CLI: the whole list is."""
    from securecomm.devices import delegate, revoke

    bob, mallory = Identity.generate("bob"), Identity.generate("bob")
    laptop, phone = Identity.generate("bob"), Identity.generate("bob")
    valid = delegate(bob, laptop.public, "laptop", 3600, now=ISSUED).to_json()
    revoked = delegate(bob, phone.public, "phone", 3600, now=ISSUED).to_json()
    revocation = revoke(bob, phone.public.fingerprint_hex, now=ISSUED + 5).to_json()
    unsigned = {k: v for k, v in valid.items() if k != "signature"}

    def entry(delegation: Any, revocation: Any = None) -> dict[str, Any]:
        return {"delegation": delegation, "revocation": revocation}

    cases: dict[str, Any] = {
        "good": [entry(valid), entry(revoked, revocation)],
        "none": [],
        "forged delegation": [
            entry(delegate(mallory, laptop.public, "laptop", 3600, now=ISSUED).to_json())
        ],
        "forged revocation": [
            entry(revoked, revoke(mallory, phone.public.fingerprint_hex, now=ISSUED).to_json())
        ],
        "revocation of another device": [entry(valid, revocation)],
        "label altered": [entry({**valid, "label": "phone"})],
        "expiry altered": [entry({**valid, "expires": ISSUED + 7200})],
        "device is the person": [
            entry(_signed_delegation(bob, {**unsigned, "device": bob.public.to_json()}))
        ],
        "longer than a year": [
            entry(_signed_delegation(bob, {**unsigned, "expires": ISSUED + 367 * 86400}))
        ],
        "another name": [
            entry(
                _signed_delegation(
                    bob, {**unsigned, "device": Identity.generate("eve").public.to_json()}
                )
            )
        ],
        "version 2": [entry(_signed_delegation(bob, {**unsigned, "v": 2}))],
    }
    js = evaluate(
        page,
        DEVICES
        + """
        const bob = await publicOf(arg.bob);
        const verdicts = {};
        for (const [name, entries] of Object.entries(arg.cases)) {
            try {
                const found = await devices.checkListed({ devices: entries }, bob);
                verdicts[name] = 'accepted ' +
                    found.map((entry) => devices.stateOf(entry, arg.at + 10)).join(',');
            } catch (error) {
                verdicts[name] = `${error.name}: ${error.message}`;
            }
        }
        verdicts['not a list'] = await failure(() => devices.checkListed({ devices: 'x' }, bob));
        return verdicts;
        """,
        {"bob": bob.public.to_json(), "cases": cases, "at": ISSUED},
    )
    for name, entries in cases.items():
        python = _python_listing(monkeypatch, {"devices": entries}, bob.public)
        assert js[name].split(":")[0] == python, (name, js[name], python)
    assert js["good"] == "accepted valid,revoked"
    assert js["none"] == "accepted "
    not_signed = "IdentityError: the relay listed a device of bob not signed by their key"
    assert js["forged delegation"] == js["forged revocation"] == not_signed
    assert js["revocation of another device"] == (
        "IdentityError: the relay listed a revocation of another device"
    )
    assert js["label altered"].startswith("SignatureError: delegation signature does not verify")
    assert js["device is the person"].endswith("the device's key is the person's own")
    assert js["another name"].endswith("the device's name is not the person's")
    assert js["not a list"].startswith("FieldError: ")


def test_the_page_takes_a_revocation_receipt_only_from_the_services_key(page: Page) -> None:
    """A service's receipt (purpose revoked) is taken only signed by that service's pinned
    key, for this revocation and this service, as the CLI takes it."""
    from securecomm.client.devices import _check_receipt
    from securecomm.devices import revocation_receipt, revoke

    bob, alpha, impostor = (Identity.generate(n) for n in ("bob", "alpha", "alpha"))
    revocation = revoke(bob, Identity.generate("bob").public.fingerprint_hex)
    receipt = revocation_receipt("alpha", revocation)

    def signed(signer: Identity, body: Any, purpose: str = "revoked") -> dict[str, Any]:
        return {"receipt": body, "signature": b64(signer.sign(purpose, body))}

    cases: dict[str, Any] = {
        "good": signed(alpha, receipt),
        "another key": signed(impostor, receipt),
        "another purpose": signed(alpha, receipt, "receipt"),
        "another device": signed(alpha, {**receipt, "device": "ab" * 32}),
        "another service": signed(alpha, {**receipt, "service": "bravo"}),
        "another person": signed(alpha, {**receipt, "person": "cd" * 32}),
        "no signature": {"receipt": receipt},
        "not an object": ["receipt"],
    }
    js = evaluate(
        page,
        DEVICES
        + """
        const alpha = await publicOf(arg.alpha);
        const revocation = await devices.Revocation.fromJson(arg.revocation);
        const verdicts = {};
        for (const [name, answer] of Object.entries(arg.cases))
            verdicts[name] = await failure(
                () => devices.checkReceipt(answer, alpha, 'alpha', revocation));
        return verdicts;
        """,
        {"alpha": alpha.public.to_json(), "revocation": revocation.to_json(), "cases": cases},
    )
    for name, answer in cases.items():
        try:
            _check_receipt(answer, alpha.public, "alpha", revocation)
            python = "accepted"
        except errors.SecureCommError:
            python = "refused"
        assert (js[name] == "accepted") == (python == "accepted"), (name, js[name])
    assert js["good"] == "accepted"
    assert js["another key"].startswith("SignatureError: revoked signature does not verify")
    assert js["another service"] == (
        "IdentityError: alpha did not answer with a receipt for this revocation"
    )


def test_the_inbox_says_a_size_as_the_cli_does(page: Page) -> None:
    """The page's inbox listed a streamed message as "300076281 bytes", as the CLI did."""
    sizes = [0, 2996, 1024 * 1024 - 1, 1024 * 1024, 300076281, 5 * 1024**4]
    said = page.evaluate(
        "async (sizes) => { const { sizeText } = await import('/js/views/ui.js');"
        " return sizes.map(sizeText); }",
        sizes,
    )
    assert said == [size_text(size) for size in sizes]
    assert said[4] == "286.2 MiB"
