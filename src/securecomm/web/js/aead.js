// AES-256-GCM, the message cipher (spec §4.1), through WebCrypto: 32-byte
// key, 12-byte nonce, full 16-byte tag kept apart from the ciphertext as
// the envelope carries them. Every failure to decrypt throws the same
// DecryptionError, so a wrong key and altered data look alike.

import { concat, randomBytes } from "./bytes.js";
import { DecryptionError, LengthError, ParameterError } from "./errors.js";

export const KEY_LENGTH_BYTES = 32;
export const NONCE_LENGTH_BYTES = 12;
export const TAG_LENGTH_BYTES = 16;

function requireBytes(value, what) {
  if (!(value instanceof Uint8Array)) {
    throw new ParameterError(`aead: ${what} must be a Uint8Array`);
  }
}

function checkKey(key) {
  requireBytes(key, "the key");
  if (key.length !== KEY_LENGTH_BYTES) {
    throw new LengthError(`aead: key length ${key.length} bytes, expected ${KEY_LENGTH_BYTES}`);
  }
}

function importKey(key, usage) {
  return crypto.subtle.importKey("raw", key, { name: "AES-GCM" }, false, [usage]);
}

function parameters(nonce, aad) {
  return { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: TAG_LENGTH_BYTES * 8 };
}

// A fresh random 256-bit key.
export function generateKey() {
  return randomBytes(KEY_LENGTH_BYTES);
}

export async function encrypt(key, nonce, plaintext, aad = new Uint8Array(0)) {
  checkKey(key);
  requireBytes(nonce, "the nonce");
  requireBytes(plaintext, "the plaintext");
  requireBytes(aad, "the AAD");
  if (nonce.length !== NONCE_LENGTH_BYTES) {
    throw new LengthError(
      `aead: nonce length ${nonce.length} bytes, expected ${NONCE_LENGTH_BYTES}`,
    );
  }
  const cryptoKey = await importKey(key, "encrypt");
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt(parameters(nonce, aad), cryptoKey, plaintext),
  );
  const split = sealed.length - TAG_LENGTH_BYTES;
  return { ciphertext: sealed.slice(0, split), tag: sealed.slice(split) };
}

// Encrypt under a fresh random nonce: {nonce, ciphertext, tag}.
export async function seal(key, plaintext, aad = new Uint8Array(0)) {
  const nonce = randomBytes(NONCE_LENGTH_BYTES);
  return { nonce, ...(await encrypt(key, nonce, plaintext, aad)) };
}

// Check the tag, then decrypt; nothing is returned unless the tag verifies.
export async function decrypt(key, nonce, ciphertext, tag, aad = new Uint8Array(0)) {
  checkKey(key);
  for (const value of [nonce, ciphertext, tag, aad]) {
    if (!(value instanceof Uint8Array)) {
      throw new DecryptionError();
    }
  }
  if (nonce.length !== NONCE_LENGTH_BYTES || tag.length !== TAG_LENGTH_BYTES) {
    throw new DecryptionError();
  }
  try {
    const cryptoKey = await importKey(key, "decrypt");
    const plaintext = await crypto.subtle.decrypt(
      parameters(nonce, aad),
      cryptoKey,
      concat(ciphertext, tag),
    );
    return new Uint8Array(plaintext);
  } catch {
    throw new DecryptionError();
  }
}
