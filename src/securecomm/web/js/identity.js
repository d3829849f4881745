// Identities (spec §6): an Ed25519 key to sign and an X25519 key to receive
// sealed shares. PublicIdentity is the JSON of §6.2 with the fingerprint of
// §6.3; Identity holds the private keys as non-extractable CryptoKeys and
// signs "securecomm/v1/" || purpose || LF || canonical JSON (§6.5). Key
// files are in keyfile.js; how the page stores an identity, in keywrap.js.

import { b64decode, b64encode, concat, equal, labelledHash, toHex, utf8 } from "./bytes.js";
import * as canonical from "./canonical.js";
import {
  FieldError,
  IdentityError,
  LengthError,
  ParameterError,
  SignatureError,
  UnknownVersionError,
} from "./errors.js";
import { checkName, normalizePkcs8, rawPublicKey, readKeyFile } from "./keyfile.js";

export { checkName } from "./keyfile.js";

export const PUBLIC_KEY_LENGTH_BYTES = 32;
export const SIGNATURE_LENGTH_BYTES = 64;
const PURPOSE = /^[a-z0-9][a-z0-9/_-]{0,63}$/;
const MEMBERS = ["kem", "name", "sign", "v"];
const ED25519 = { name: "Ed25519" };
const X25519 = { name: "X25519" };

// The first 128 bits of a fingerprint in eight groups of four hex digits (§6.3).
export function formatFingerprint(fingerprint) {
  const text = toHex(fingerprint.subarray(0, 16));
  return text.match(/.{4}/g).join(" ");
}

// The bytes an Ed25519 signature covers (§6.5).
export function signingInput(purpose, obj) {
  if (typeof purpose !== "string" || !PURPOSE.test(purpose)) {
    const shown = JSON.stringify(purpose) ?? String(purpose);
    throw new FieldError(`signature purpose ${shown} is not valid`);
  }
  return concat(utf8(`securecomm/v1/${purpose}\n`), canonical.dumps(obj));
}

export function fingerprintOf(signRaw, kemRaw) {
  return labelledHash("securecomm/v1/fingerprint", signRaw, kemRaw);
}

function checkPublicKey(raw, what) {
  if (!(raw instanceof Uint8Array)) {
    throw new ParameterError(`${what} must be a Uint8Array`);
  }
  if (raw.length !== PUBLIC_KEY_LENGTH_BYTES) {
    throw new LengthError(
      `${what}: length ${raw.length} bytes, expected ${PUBLIC_KEY_LENGTH_BYTES}`,
    );
  }
}

// What a party publishes: its name and two raw public keys. Build it with
// fromJson or fromKeys (the fingerprint needs SHA-256, which is async).
export class PublicIdentity {
  constructor(name, sign, kem, fingerprint) {
    checkName(name);
    checkPublicKey(sign, "sign");
    checkPublicKey(kem, "kem");
    if (!(fingerprint instanceof Uint8Array) || fingerprint.length !== 32) {
      throw new ParameterError("PublicIdentity: use PublicIdentity.fromKeys or fromJson");
    }
    this.name = name;
    this.sign = sign.slice();
    this.kem = kem.slice();
    this.fingerprint = fingerprint.slice();
    this.fingerprintHex = toHex(fingerprint);
    Object.freeze(this);
  }

  static async fromKeys(name, sign, kem) {
    checkPublicKey(sign, "sign");
    checkPublicKey(kem, "kem");
    return new PublicIdentity(name, sign, kem, await fingerprintOf(sign, kem));
  }

  // Decode §6.2 with its checks in order: object, v, member set, name, sign, kem.
  static async fromJson(obj, field = "identity") {
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
      throw new FieldError(`${field}: expected an object`);
    }
    const version = Object.hasOwn(obj, "v") ? obj.v : undefined;
    if (version !== 1) {
      throw new UnknownVersionError(
        `${field}: version ${JSON.stringify(version) ?? "missing"}, expected 1`,
      );
    }
    const members = Object.keys(obj).sort();
    if (members.join(",") !== MEMBERS.join(",")) {
      throw new FieldError(
        `${field}: fields ${JSON.stringify(members)}, expected ${JSON.stringify(MEMBERS)}`,
      );
    }
    const name = checkName(obj.name, { field: `${field}.name` });
    const sign = b64decode(obj.sign, { field: `${field}.sign`, length: PUBLIC_KEY_LENGTH_BYTES });
    const kem = b64decode(obj.kem, { field: `${field}.kem`, length: PUBLIC_KEY_LENGTH_BYTES });
    return PublicIdentity.fromKeys(name, sign, kem);
  }

  toJson() {
    return { kem: b64encode(this.kem), name: this.name, sign: b64encode(this.sign), v: 1 };
  }

  shortFingerprint() {
    return formatFingerprint(this.fingerprint);
  }

  sameKeys(other) {
    return equal(this.fingerprint, other.fingerprint);
  }

  toString() {
    return `PublicIdentity(${this.name}, ${this.shortFingerprint()})`;
  }

  importSignKey() {
    return crypto.subtle.importKey("raw", this.sign, ED25519, true, ["verify"]);
  }

  importKemKey() {
    return crypto.subtle.importKey("raw", this.kem, X25519, true, []);
  }

  // Throw SignatureError unless `signature` signs `obj` for `purpose`.
  async verify(signature, purpose, obj) {
    this.checkSignatureLength(signature);
    await this.verifyOrThrow(signature, signingInput(purpose, obj), `${purpose} signature`);
  }

  // Low level: a raw Ed25519 signature of `data` (HTTP signatures, spec §11).
  async verifyBytes(signature, data) {
    this.checkSignatureLength(signature);
    if (!(data instanceof Uint8Array)) {
      throw new ParameterError("verifyBytes: data must be a Uint8Array");
    }
    await this.verifyOrThrow(signature, data, "signature");
  }

  checkSignatureLength(signature) {
    if (!(signature instanceof Uint8Array)) {
      throw new ParameterError("signature must be a Uint8Array");
    }
    if (signature.length !== SIGNATURE_LENGTH_BYTES) {
      throw new LengthError(
        `signature: length ${signature.length} bytes, expected ${SIGNATURE_LENGTH_BYTES}`,
      );
    }
  }

  async verifyOrThrow(signature, data, what) {
    let valid = false;
    try {
      valid = await crypto.subtle.verify(ED25519, await this.importSignKey(), signature, data);
    } catch {
      valid = false; // a public key WebCrypto cannot use verifies nothing
    }
    if (!valid) {
      throw new SignatureError(
        `${what} does not verify under ${this.name}'s key (${this.shortFingerprint()})`,
      );
    }
  }
}

async function importPrivateKeys(ed25519Pkcs8, x25519Pkcs8, extractable) {
  return Promise.all([
    crypto.subtle.importKey("pkcs8", ed25519Pkcs8, ED25519, extractable, ["sign"]),
    crypto.subtle.importKey("pkcs8", x25519Pkcs8, X25519, extractable, ["deriveBits"]),
  ]);
}

function isKey(value, algorithm, usage) {
  return (
    value instanceof CryptoKey &&
    value.type === "private" &&
    value.algorithm.name === algorithm.name &&
    value.usages.includes(usage)
  );
}

// A party's private keys, held as non-extractable CryptoKeys.
export class Identity {
  constructor(publicIdentity, signKey, kemKey) {
    if (!(publicIdentity instanceof PublicIdentity)) {
      throw new ParameterError("Identity: expected a PublicIdentity");
    }
    if (!isKey(signKey, ED25519, "sign") || !isKey(kemKey, X25519, "deriveBits")) {
      throw new IdentityError("identity: expected an Ed25519 signing key and an X25519 key");
    }
    this.name = publicIdentity.name;
    this.public = publicIdentity;
    this.signKey = signKey;
    this.kemKey = kemKey;
    Object.freeze(this);
  }

  toString() {
    return `Identity(${this.name}, ${this.public.shortFingerprint()})`;
  }

  // A new identity: {identity, ed25519Pkcs8, x25519Pkcs8}. The PKCS#8 bytes
  // are for the key file; the identity's own keys are not extractable.
  static async generate(name) {
    checkName(name);
    const [signPair, kemPair] = await Promise.all([
      crypto.subtle.generateKey(ED25519, true, ["sign", "verify"]),
      crypto.subtle.generateKey(X25519, true, ["deriveBits"]),
    ]);
    const [ed25519Pkcs8, x25519Pkcs8] = await Promise.all(
      [signPair.privateKey, kemPair.privateKey].map(
        async (key) => new Uint8Array(await crypto.subtle.exportKey("pkcs8", key)),
      ),
    );
    const identity = await Identity.fromPkcs8(name, ed25519Pkcs8, x25519Pkcs8);
    return { identity, ed25519Pkcs8, x25519Pkcs8 };
  }

  // Import both private keys (PKCS#8 DER) as non-extractable CryptoKeys.
  static async fromPkcs8(name, ed25519Pkcs8, x25519Pkcs8) {
    checkName(name);
    const signDer = normalizePkcs8(ed25519Pkcs8, "Ed25519");
    const kemDer = normalizePkcs8(x25519Pkcs8, "X25519");
    let keys;
    try {
      // Imported once extractable to read the public halves, then for good without.
      const [signOnce, kemOnce] = await importPrivateKeys(signDer, kemDer, true);
      const [sign, kem] = await Promise.all([rawPublicKey(signOnce), rawPublicKey(kemOnce)]);
      keys = { sign, kem, private: await importPrivateKeys(signDer, kemDer, false) };
    } catch {
      throw new IdentityError(`identity ${name}: the private keys cannot be imported`);
    }
    const publicIdentity = await PublicIdentity.fromKeys(name, keys.sign, keys.kem);
    return new Identity(publicIdentity, ...keys.private);
  }

  static async fromKeyFile(text, passphrase) {
    const { name, ed25519Pkcs8, x25519Pkcs8 } = await readKeyFile(text, passphrase);
    return Identity.fromPkcs8(name, ed25519Pkcs8, x25519Pkcs8);
  }

  // Whether the private keys belong to the public identity: a signature
  // that verifies, and one X25519 agreement computed from both sides.
  async keysMatch() {
    const probe = utf8("securecomm/v1/key-check");
    const signature = new Uint8Array(await crypto.subtle.sign(ED25519, this.signKey, probe));
    const signs = await crypto.subtle.verify(
      ED25519,
      await this.public.importSignKey(),
      signature,
      probe,
    );
    const other = await crypto.subtle.generateKey(X25519, false, ["deriveBits"]);
    const [ours, theirs] = await Promise.all([
      crypto.subtle.deriveBits({ name: "X25519", public: other.publicKey }, this.kemKey, 256),
      crypto.subtle.deriveBits(
        { name: "X25519", public: await this.public.importKemKey() },
        other.privateKey,
        256,
      ),
    ]);
    return signs && equal(new Uint8Array(ours), new Uint8Array(theirs));
  }

  async sign(purpose, obj) {
    return this.signBytes(signingInput(purpose, obj));
  }

  // Low level: a raw Ed25519 signature of `data`. Callers keep their inputs
  // apart from sign()'s, which all start with "securecomm/v1/".
  async signBytes(data) {
    if (!(data instanceof Uint8Array)) {
      throw new ParameterError("signBytes: data must be a Uint8Array");
    }
    return new Uint8Array(await crypto.subtle.sign(ED25519, this.signKey, data));
  }
}
