"""What the JS tests share: the modules a page body sees, and bytes and keys across the
page boundary (bytes as base64, private keys as PKCS#8 DER)."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Page

from securecomm.identity import Identity

IMPORTS = """
    const bytes = await import('/js/bytes.js');
    const canonical = await import('/js/canonical.js');
    const envelope = await import('/js/envelope.js');
    const hpke = await import('/js/hpke.js');
    const httpsig = await import('/js/httpsig.js');
    const keyfile = await import('/js/keyfile.js');
    const protocol = await import('/js/protocol.js');
    const shares = await import('/js/shares.js');
    const { Share } = shares;
    const { Identity, PublicIdentity } = await import('/js/identity.js');
    const { b64encode, b64decode, fromHex, toHex, utf8 } = bytes;
    const failure = async (call) => {
        try { await call(); } catch (error) { return `${error.name}: ${error.message}`; }
        return 'accepted';
    };
    const fromKeys = (keys) =>
        Identity.fromPkcs8(keys.name, b64decode(keys.ed), b64decode(keys.x));
    const publicOf = (json) => PublicIdentity.fromJson(json);
    const byName = async (jsons) => Object.fromEntries(
        await Promise.all(jsons.map(async (json) => [json.name, await publicOf(json)])));
"""


def evaluate(page: Page, body: str, arg: Any = None) -> Any:
    """Run ``body`` (async, sees ``arg`` and the IMPORTS) in the page; return its result."""
    return page.evaluate(f"async (arg) => {{ {IMPORTS} {body} }}", arg)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def pkcs8(identity: Identity) -> dict[str, str]:
    """The private keys of a Python identity as base64 PKCS#8 DER, for the page."""
    der = serialization.Encoding.DER
    fmt = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    return {
        "name": identity.name,
        "ed": b64(identity._signing_key.private_bytes(der, fmt, none)),
        "x": b64(identity.kem_private_key.private_bytes(der, fmt, none)),
    }
