// HPKE (RFC 9180) base mode for sealing shares (spec §5): DHKEM(X25519,
// HKDF-SHA256), HKDF-SHA256, AES-256-GCM (0x0020, 0x0001, 0x0002), single
// shot with empty AAD; a sealed value is enc (32) || ciphertext || tag (16).
// Built on WebCrypto: X25519 deriveBits, HMAC-SHA256 for LabeledExtract and
// LabeledExpand, AES-GCM. The contexts are exported for the RFC's vectors.

import { concat, hmacSha256, u32, utf8 } from "./bytes.js";
import * as canonical from "./canonical.js";
import {
  DecryptionError,
  FieldError,
  IdentityError,
  LengthError,
  ParameterError,
} from "./errors.js";
import { privateKeyInfo, rawPublicKey } from "./keyfile.js";

export const KEM_ID = 0x0020;
export const KDF_ID = 0x0001;
export const AEAD_ID = 0x0002;
export const MODE_BASE = 0x00;
export const ENC_LENGTH_BYTES = 32; // Nenc, Npk
export const OVERHEAD_BYTES = ENC_LENGTH_BYTES + 16;
const NSECRET = 32; // DHKEM(X25519) shared secret
const NSK = 32; // X25519 private key
const NK = 32; // AES-256-GCM key
const NN = 12; // AES-GCM nonce
const NH = 32; // SHA-256
// As src/securecomm/hpke.py's _PURPOSES: "keep" is what a client seals to its own user (the
// CLI's shares kept to go on later); "device-key", a person's X25519 key sealed to a device of
// theirs (spec/sessions.md §3.4).
const PURPOSES = new Set(["deposit", "release", "keep", "device-key"]);

// The HPKE info of one use (§5): "securecomm/v1/hpke/" || purpose || LF || canonical JSON.
export function info(purpose, context) {
  if (!PURPOSES.has(purpose)) {
    throw new FieldError(`hpke: unknown purpose ${JSON.stringify(purpose) ?? String(purpose)}`);
  }
  if (typeof context !== "object" || context === null || Array.isArray(context)) {
    throw new FieldError("hpke: the context must be a JSON object");
  }
  return concat(utf8(`securecomm/v1/hpke/${purpose}\n`), canonical.dumps(context));
}

// RFC 9180 §4: labelled HKDF

function i2osp2(n) {
  return u32(n).subarray(2);
}

const KEM_SUITE = concat(utf8("KEM"), i2osp2(KEM_ID));
const HPKE_SUITE = concat(utf8("HPKE"), i2osp2(KEM_ID), i2osp2(KDF_ID), i2osp2(AEAD_ID));
const VERSION_LABEL = utf8("HPKE-v1");
const EMPTY = new Uint8Array(0);

// HKDF-Extract (RFC 5869): HMAC(salt, ikm); an empty salt is HashLen zeros,
// which hmacSha256 treats as the same key.
function labeledExtract(suite, salt, label, ikm) {
  return hmacSha256(salt, concat(VERSION_LABEL, suite, utf8(label), ikm));
}

async function labeledExpand(suite, prk, label, infoBytes, length) {
  if (length > 255 * NH) {
    throw new ParameterError("hpke: expand length too large");
  }
  const labeledInfo = concat(i2osp2(length), VERSION_LABEL, suite, utf8(label), infoBytes);
  // HKDF-Expand: T(i) = HMAC(prk, T(i-1) || info || i)
  const blocks = [];
  let previous = EMPTY;
  for (let i = 1; blocks.length * NH < length; i++) {
    previous = await hmacSha256(prk, concat(previous, labeledInfo, Uint8Array.of(i)));
    blocks.push(previous);
  }
  return concat(...blocks).slice(0, length);
}

// X25519 keys in WebCrypto

function checkRaw(value, what) {
  if (!(value instanceof Uint8Array)) {
    throw new ParameterError(`hpke: ${what} must be a Uint8Array`);
  }
  if (value.length !== ENC_LENGTH_BYTES) {
    throw new LengthError(
      `hpke: ${what} length ${value.length} bytes, expected ${ENC_LENGTH_BYTES}`,
    );
  }
}

function importPublic(raw) {
  return crypto.subtle.importKey("raw", raw, { name: "X25519" }, true, []);
}

export function importPrivate(raw, extractable = false) {
  checkRaw(raw, "X25519 private key");
  const der = privateKeyInfo("X25519", raw);
  return crypto.subtle.importKey("pkcs8", der, { name: "X25519" }, extractable, ["deriveBits"]);
}

// DH with the all-zero check of RFC 7748 §6.1 (WebCrypto makes it too).
async function dh(privateKey, publicRaw) {
  const publicKey = await importPublic(publicRaw);
  const shared = new Uint8Array(
    await crypto.subtle.deriveBits({ name: "X25519", public: publicKey }, privateKey, 256),
  );
  if (shared.every((byte) => byte === 0)) {
    throw new IdentityError("hpke: X25519 gave the all-zero shared secret");
  }
  return shared;
}

// RFC 9180 §7.1.3: DeriveKeyPair for X25519. {privateRaw, publicRaw}
export async function deriveKeyPair(ikm) {
  const prk = await labeledExtract(KEM_SUITE, EMPTY, "dkp_prk", ikm);
  const privateRaw = await labeledExpand(KEM_SUITE, prk, "sk", EMPTY, NSK);
  const publicRaw = await rawPublicKey(await importPrivate(privateRaw, true));
  return { privateRaw, publicRaw };
}

// RFC 9180 §4.1: ExtractAndExpand over dh and kem_context = enc || pkR.
async function kemSharedSecret(dhValue, enc, recipientPublicRaw) {
  const prk = await labeledExtract(KEM_SUITE, EMPTY, "eae_prk", dhValue);
  return labeledExpand(KEM_SUITE, prk, "shared_secret", concat(enc, recipientPublicRaw), NSECRET);
}

// RFC 9180 §5.1: KeySchedule in mode_base (empty psk and psk_id).
async function keySchedule(sharedSecret, infoBytes) {
  const pskIdHash = await labeledExtract(HPKE_SUITE, EMPTY, "psk_id_hash", EMPTY);
  const infoHash = await labeledExtract(HPKE_SUITE, EMPTY, "info_hash", infoBytes);
  const context = concat(Uint8Array.of(MODE_BASE), pskIdHash, infoHash);
  const secret = await labeledExtract(HPKE_SUITE, sharedSecret, "secret", EMPTY);
  return new Context({
    key: await labeledExpand(HPKE_SUITE, secret, "key", context, NK),
    baseNonce: await labeledExpand(HPKE_SUITE, secret, "base_nonce", context, NN),
    exporterSecret: await labeledExpand(HPKE_SUITE, secret, "exp", context, NH),
  });
}

// An encryption context (RFC 9180 §5.2): nonce = base_nonce XOR I2OSP(seq, 12).
export class Context {
  constructor({ key, baseNonce, exporterSecret }) {
    this.key = key;
    this.baseNonce = baseNonce;
    this.exporterSecret = exporterSecret;
    this.seq = 0;
  }

  nonce() {
    if (this.seq >= 0xffffffff) {
      throw new ParameterError("hpke: message limit reached");
    }
    const nonce = this.baseNonce.slice();
    const counter = u32(this.seq);
    for (let i = 0; i < 4; i++) {
      nonce[NN - 4 + i] ^= counter[i];
    }
    return nonce;
  }

  async aesKey(usage) {
    return crypto.subtle.importKey("raw", this.key, { name: "AES-GCM" }, false, [usage]);
  }

  async seal(aad, plaintext) {
    const algorithm = { name: "AES-GCM", iv: this.nonce(), additionalData: aad, tagLength: 128 };
    const sealed = await crypto.subtle.encrypt(algorithm, await this.aesKey("encrypt"), plaintext);
    this.seq += 1;
    return new Uint8Array(sealed);
  }

  async open(aad, ciphertext) {
    const algorithm = { name: "AES-GCM", iv: this.nonce(), additionalData: aad, tagLength: 128 };
    const key = await this.aesKey("decrypt");
    const plaintext = new Uint8Array(await crypto.subtle.decrypt(algorithm, key, ciphertext));
    this.seq += 1;
    return plaintext;
  }

  // RFC 9180 §5.3: secret export.
  export(exporterContext, length) {
    return labeledExpand(HPKE_SUITE, this.exporterSecret, "sec", exporterContext, length);
  }
}

// The sender's ephemeral key: {privateKey, enc}, fresh unless given.
async function ephemeralKey(privateRaw) {
  if (privateRaw === null) {
    const pair = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
    const enc = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    return { privateKey: pair.privateKey, enc };
  }
  const privateKey = await importPrivate(privateRaw, true);
  return { privateKey, enc: await rawPublicKey(privateKey) };
}

// SetupBaseS: {enc, sharedSecret, context}. With `ephemeralPrivateRaw` the
// ephemeral key is given (known-answer tests only); otherwise it is fresh.
export async function setupBaseSender(recipientPublicRaw, infoBytes, options = {}) {
  const { ephemeralPrivateRaw = null } = options;
  checkRaw(recipientPublicRaw, "recipient key");
  const { privateKey, enc } = await ephemeralKey(ephemeralPrivateRaw);
  let dhValue;
  try {
    dhValue = await dh(privateKey, recipientPublicRaw);
  } catch {
    // An all-zero or low-order X25519 key gives an all-zero shared secret.
    throw new IdentityError("hpke: the recipient's X25519 key is not usable");
  }
  const sharedSecret = await kemSharedSecret(dhValue, enc, recipientPublicRaw);
  return { enc, sharedSecret, context: await keySchedule(sharedSecret, infoBytes) };
}

// SetupBaseR: {sharedSecret, context}. `recipientPrivateKey` is an X25519
// CryptoKey (usable for deriveBits); its raw public key is needed for the KEM context.
export async function setupBaseRecipient(enc, recipientPrivateKey, recipientPublicRaw, infoBytes) {
  checkRaw(enc, "enc");
  checkRaw(recipientPublicRaw, "recipient key");
  const dhValue = await dh(recipientPrivateKey, enc);
  const sharedSecret = await kemSharedSecret(dhValue, enc, recipientPublicRaw);
  return { sharedSecret, context: await keySchedule(sharedSecret, infoBytes) };
}

function checkInfo(infoBytes, plaintext) {
  if (!(infoBytes instanceof Uint8Array) || !(plaintext instanceof Uint8Array)) {
    throw new ParameterError("hpke: info and plaintext must be Uint8Arrays");
  }
}

// Single-shot seal with a fixed ephemeral key, for known-answer tests; never
// use it for real data, where a fresh ephemeral key is a MUST (§5).
export async function sealWithEphemeral(
  ephemeralPrivateRaw,
  recipientPublicRaw,
  infoBytes,
  plaintext,
  aad = EMPTY,
) {
  checkInfo(infoBytes, plaintext);
  const options = { ephemeralPrivateRaw };
  const { enc, context } = await setupBaseSender(recipientPublicRaw, infoBytes, options);
  return concat(enc, await context.seal(aad, plaintext));
}

// Seal `plaintext` so that only the holder of the X25519 key can open it, under `infoBytes`.
export async function seal(recipientKemPublicRaw, infoBytes, plaintext) {
  checkInfo(infoBytes, plaintext);
  const { enc, context } = await setupBaseSender(recipientKemPublicRaw, infoBytes);
  return concat(enc, await context.seal(EMPTY, plaintext));
}

// Open what seal made, or throw one opaque DecryptionError.
export async function open(recipientKemPrivateKey, recipientKemPublicRaw, infoBytes, sealed) {
  if (!(sealed instanceof Uint8Array) || sealed.length < OVERHEAD_BYTES) {
    throw new DecryptionError();
  }
  try {
    const enc = sealed.subarray(0, ENC_LENGTH_BYTES);
    const { context } = await setupBaseRecipient(
      enc,
      recipientKemPrivateKey,
      recipientKemPublicRaw,
      infoBytes,
    );
    return await context.open(EMPTY, sealed.subarray(ENC_LENGTH_BYTES));
  } catch {
    throw new DecryptionError();
  }
}
