// Identities as this page keeps them (spec/sessions.md §2): each private key wrapped with
// AES-KW (RFC 3394) under a key derived from the passphrase with PBKDF2-HMAC-SHA256, and
// unwrapped only as non-extractable CryptoKeys, which live in memory until the page locks.
// The stored record holds nothing a script can sign or open with unless it has the passphrase.

import { randomBytes, utf8 } from "./bytes.js";
import { IdentityError } from "./errors.js";
import { Identity, PublicIdentity } from "./identity.js";
import { PASSPHRASE_ITERATIONS, normalizePkcs8 } from "./keyfile.js";

// The key file's figure (§6.4): a stolen browser profile costs as much to try as a key file.
export const WRAP_ITERATIONS = PASSPHRASE_ITERATIONS;
// A record asking for more is refused rather than left to hang the page.
const MAX_WRAP_ITERATIONS = 10_000_000;
const SALT_LENGTH_BYTES = 16;
const RECORD_VERSION = 2;
const KDF = "PBKDF2-SHA256";
const WRAP = "AES-KW";
const ED25519 = { name: "Ed25519" };
const X25519 = { name: "X25519" };

/** The page holds this identity locked: its passphrase is needed first. Page-only. */
export class LockedError extends IdentityError {}

async function wrappingKey(passphrase, salt, iterations, usage) {
  if (typeof passphrase !== "string" || !passphrase)
    throw new IdentityError("the passphrase is empty");
  const material = await crypto.subtle.importKey("raw", utf8(passphrase), "PBKDF2", false, [
    "deriveKey",
  ]);
  return crypto.subtle.deriveKey(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    material,
    { name: "AES-KW", length: 256 },
    false,
    [usage],
  );
}

/** Both private keys (PKCS#8 DER) wrapped under `passphrase`: a record's `wrapped` member. */
export async function wrapKeys(
  ed25519Pkcs8,
  x25519Pkcs8,
  passphrase,
  iterations = WRAP_ITERATIONS,
) {
  const salt = randomBytes(SALT_LENGTH_BYTES);
  const kek = await wrappingKey(passphrase, salt, iterations, "wrapKey");
  // Extractable only because wrapKey needs it; these CryptoKeys go out of scope at once.
  const [sign, kem] = await Promise.all([
    crypto.subtle.importKey("pkcs8", normalizePkcs8(ed25519Pkcs8, "Ed25519"), ED25519, true, [
      "sign",
    ]),
    crypto.subtle.importKey("pkcs8", normalizePkcs8(x25519Pkcs8, "X25519"), X25519, true, [
      "deriveBits",
    ]),
  ]);
  const wrap = async (key) => new Uint8Array(await crypto.subtle.wrapKey("pkcs8", key, kek, WRAP));
  return { kdf: KDF, iterations, salt, wrap: WRAP, sign: await wrap(sign), kem: await wrap(kem) };
}

function checkWrapped(wrapped, name) {
  const bad = (what) =>
    new IdentityError(`this browser's copy of ${name}'s keys is damaged (${what})`);
  if (typeof wrapped !== "object" || wrapped === null) throw bad("no wrapped keys");
  if (wrapped.kdf !== KDF || wrapped.wrap !== WRAP) throw bad("unknown scheme");
  const { iterations, salt, sign, kem } = wrapped;
  if (!Number.isSafeInteger(iterations) || iterations < WRAP_ITERATIONS)
    throw bad(`PBKDF2 iterations ${iterations}, expected at least ${WRAP_ITERATIONS}`);
  if (iterations > MAX_WRAP_ITERATIONS)
    throw bad(`PBKDF2 iterations ${iterations}, expected at most ${MAX_WRAP_ITERATIONS}`);
  if (!(salt instanceof Uint8Array) || salt.length !== SALT_LENGTH_BYTES) throw bad("salt");
  if (!(sign instanceof Uint8Array) || !(kem instanceof Uint8Array)) throw bad("wrapped keys");
}

/**
 * Unwrap `wrapped` with `passphrase` into an Identity of non-extractable keys, checked
 * against `publicIdentity`. A wrong passphrase fails AES-KW's integrity check: nothing is
 * unlocked.
 */
export async function unwrapIdentity(publicIdentity, wrapped, passphrase) {
  const name = publicIdentity.name;
  checkWrapped(wrapped, name);
  const kek = await wrappingKey(passphrase, wrapped.salt, wrapped.iterations, "unwrapKey");
  let keys;
  try {
    keys = await Promise.all([
      crypto.subtle.unwrapKey("pkcs8", wrapped.sign, kek, WRAP, ED25519, false, ["sign"]),
      crypto.subtle.unwrapKey("pkcs8", wrapped.kem, kek, WRAP, X25519, false, ["deriveBits"]),
    ]);
  } catch {
    throw new IdentityError(`wrong passphrase for ${name}: nothing was unlocked`);
  }
  const identity = new Identity(publicIdentity, ...keys);
  if (!(await identity.keysMatch()))
    throw new IdentityError(
      `this browser's copy of ${name}'s keys does not match its public keys: nothing was unlocked`,
    );
  return identity;
}

/** What the page stores of an identity (IndexedDB "identities", keyed by its name). */
export function storedRecord(publicIdentity, keyFile, wrapped) {
  return {
    v: RECORD_VERSION,
    name: publicIdentity.name,
    public: publicIdentity.toJson(),
    keyFile,
    wrapped,
  };
}

/**
 * A stored record read back: {name, public, keyFile, wrapped, earlier}. `wrapped` is null
 * for a record whose keys are not wrapped yet: one the page's first version wrote (`earlier`
 * true: its keys were CryptoKeys any script of the page could use, so the caller rewrites
 * it without them) or one rewritten so. Such keys are unlocked from the key file instead.
 */
export async function readRecord(obj, key) {
  if (typeof obj !== "object" || obj === null)
    throw new IdentityError(`stored identity ${key}: expected an object`);
  const earlier = obj.v === undefined && typeof obj.stored === "object" && obj.stored !== null;
  if (!earlier && obj.v !== RECORD_VERSION)
    throw new IdentityError(`stored identity ${key}: version ${obj.v}, expected 2`);
  const field = `stored identity ${key}`;
  const publicIdentity = await PublicIdentity.fromJson(
    earlier ? obj.stored.publicJson : obj.public,
    field,
  );
  if (publicIdentity.name !== key || obj.name !== key)
    throw new IdentityError(`${field}: the name does not match its public identity`);
  return {
    name: key,
    public: publicIdentity,
    keyFile: typeof obj.keyFile === "string" ? obj.keyFile : null,
    wrapped: earlier ? null : (obj.wrapped ?? null),
    earlier,
  };
}
