// Byte helpers: UTF-8, hex (spec §1.3), strict base64 (spec §1.2), u32 and
// the labelled hash (spec §1.5), SHA-256 and HMAC-SHA256 through WebCrypto.
// Mirrors src/securecomm/_encoding.py: base64 that is not RFC 4648 §4 with
// padding is a FormatError, a decodable but non-canonical spelling a
// NonCanonicalError, a wrong decoded length a LengthError.

import {
  FieldError,
  FormatError,
  LengthError,
  NonCanonicalError,
  ParameterError,
} from "./errors.js";

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function requireBytes(value, what) {
  if (!(value instanceof Uint8Array)) {
    throw new ParameterError(`${what}: expected a Uint8Array`);
  }
}

// UTF-8

export function utf8(text) {
  if (typeof text !== "string") {
    throw new ParameterError("utf8: expected a string");
  }
  return encoder.encode(text);
}

export function fromUtf8(data, { field = "value" } = {}) {
  requireBytes(data, field);
  try {
    return strictDecoder.decode(data);
  } catch {
    throw new FormatError(`${field}: not UTF-8`);
  }
}

// Arrays

export function concat(...arrays) {
  let length = 0;
  for (const array of arrays) {
    requireBytes(array, "concat");
    length += array.length;
  }
  const out = new Uint8Array(length);
  let offset = 0;
  for (const array of arrays) {
    out.set(array, offset);
    offset += array.length;
  }
  return out;
}

// Equality that takes the same time wherever two equal-length arrays differ.
export function equal(a, b) {
  requireBytes(a, "equal");
  requireBytes(b, "equal");
  if (a.length !== b.length) {
    return false;
  }
  let difference = 0;
  for (let i = 0; i < a.length; i++) {
    difference |= a[i] ^ b[i];
  }
  return difference === 0;
}

export function u32(n) {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new ParameterError(`u32: ${n} is not an integer in 0..2^32-1`);
  }
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n, false);
  return out;
}

// Hex (§1.3): lowercase, two digits per byte.

export function toHex(data) {
  requireBytes(data, "toHex");
  let text = "";
  for (const byte of data) {
    text += byte.toString(16).padStart(2, "0");
  }
  return text;
}

// `length`, when given, is the only accepted length in bytes (16 for a message id).
export function fromHex(text, { field = "value", length = null } = {}) {
  if (typeof text !== "string" || !/^(?:[0-9a-f]{2})*$/.test(text)) {
    throw new FieldError(`${field}: not lowercase hex`);
  }
  if (length !== null && text.length !== 2 * length) {
    throw new FieldError(`${field}: ${text.length} hex digits, expected ${2 * length}`);
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  }
  return out;
}

// Base64 (§1.2): RFC 4648 §4, standard alphabet, padded; one spelling per value.

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const SEXTETS = new Map([...ALPHABET].map((char, i) => [char, i]));

export function b64encode(data) {
  requireBytes(data, "b64encode");
  let text = "";
  let i = 0;
  for (; i + 3 <= data.length; i += 3) {
    const group = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    text +=
      ALPHABET[group >>> 18] +
      ALPHABET[(group >>> 12) & 63] +
      ALPHABET[(group >>> 6) & 63] +
      ALPHABET[group & 63];
  }
  const rest = data.length - i;
  if (rest === 1) {
    const group = data[i] << 16;
    text += ALPHABET[group >>> 18] + ALPHABET[(group >>> 12) & 63] + "==";
  } else if (rest === 2) {
    const group = (data[i] << 16) | (data[i + 1] << 8);
    text +=
      ALPHABET[group >>> 18] + ALPHABET[(group >>> 12) & 63] + ALPHABET[(group >>> 6) & 63] + "=";
  }
  return text;
}

// The form of padded base64 (spec section 1.2), else a FormatError: only
// alphabet characters, then only "="; no leading "="; padding that completes
// the last group exactly (a group of 2 characters takes "==", of 3 takes "=")
// and none after a whole group. A string of this form whose unused bits are
// not zero is a NonCanonicalError, found after decoding. Returns the number of
// data characters.
function checkDecodable(text, field) {
  const match = /^([A-Za-z0-9+/]*)(=*)$/.exec(text);
  if (match !== null) {
    const [, data, padding] = match;
    const remainder = data.length % 4;
    const leadingPadding = data.length === 0 && padding.length > 0;
    // Padding ends the last group only: none after a whole group (spec section 1.2).
    const padded =
      (remainder === 0 && padding.length === 0) ||
      (remainder === 2 && padding.length === 2) ||
      (remainder === 3 && padding.length === 1);
    if (padded && !leadingPadding) {
      return data.length;
    }
  }
  throw new FormatError(`${field}: not valid base64 (RFC 4648 section 4, padded)`);
}

function decodeSextets(text, count) {
  const out = new Uint8Array(Math.floor((count * 6) / 8));
  let bits = 0;
  let held = 0;
  let offset = 0;
  for (let i = 0; i < count; i++) {
    bits = (bits << 6) | SEXTETS.get(text[i]);
    held += 6;
    if (held >= 8) {
      held -= 8;
      out[offset++] = (bits >>> held) & 0xff;
      bits &= (1 << held) - 1;
    }
  }
  return out;
}

export function b64decode(text, { field = "value", length = null, allowEmpty = false } = {}) {
  if (typeof text !== "string") {
    const found = text === null ? "null" : typeof text;
    throw new FormatError(`${field}: expected a base64 string, got ${found}`);
  }
  const count = checkDecodable(text, field);
  const data = decodeSextets(text, count);
  // Lenient decoders ignore the unused low bits of the last character:
  // "QQ==" and "QR==" both give "A". Only the encoder's spelling is accepted.
  if (b64encode(data) !== text) {
    throw new NonCanonicalError(`${field}: base64 is not in canonical form`);
  }
  if (length !== null && data.length !== length) {
    throw new LengthError(`${field}: length ${data.length} bytes, expected ${length}`);
  }
  if (data.length === 0 && !allowEmpty) {
    throw new LengthError(`${field}: empty`);
  }
  return data;
}

// Randomness and hashes

const RANDOM_CHUNK_BYTES = 65536; // getRandomValues' limit per call

export function randomBytes(n) {
  if (!Number.isInteger(n) || n < 0) {
    throw new ParameterError(`randomBytes: ${n} is not a byte count`);
  }
  const out = new Uint8Array(n);
  for (let offset = 0; offset < n; offset += RANDOM_CHUNK_BYTES) {
    crypto.getRandomValues(out.subarray(offset, Math.min(n, offset + RANDOM_CHUNK_BYTES)));
  }
  return out;
}

export async function sha256(data) {
  requireBytes(data, "sha256");
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

// LH(label, p1, ..., pk) = SHA-256(u32(len(label)) || label || u32(len(p1)) || p1 || ...)
export async function labelledHash(label, ...parts) {
  const pieces = [];
  for (const part of [utf8(label), ...parts]) {
    requireBytes(part, "labelledHash");
    pieces.push(u32(part.length), part);
  }
  return sha256(concat(...pieces));
}

export async function hmacSha256(key, data) {
  requireBytes(key, "hmacSha256 key");
  requireBytes(data, "hmacSha256 data");
  // WebCrypto refuses an empty HMAC key; HMAC pads keys with zeros, so a
  // block of zeros is the same key.
  const material = key.length === 0 ? new Uint8Array(64) : key;
  const cryptoKey = await crypto.subtle.importKey(
    "raw",
    material,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", cryptoKey, data));
}
