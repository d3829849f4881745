// Shares people and networks carry (spec §3): the binary form with its
// CRC-32 (§3.1), the text form "securecomm-share-v1:<base64>" (§3.2), and
// combine with every check of §3.3 in order, as src/securecomm/shares.py.
// The CRC catches copying mistakes, not attacks (§3.4); the signed share
// digest of the envelope does that.

import { b64decode, b64encode, concat, equal, randomBytes, toHex, u32 } from "./bytes.js";
import {
  ChecksumError,
  DuplicateShareError,
  FieldError,
  FormatError,
  InconsistentSharesError,
  InsufficientSharesError,
  LengthError,
  MixedSplitError,
  ParameterError,
  RaggedSharesError,
  ShareIndexError,
  UnknownVersionError,
} from "./errors.js";
import * as shamir from "./shamir.js";

export const VERSION = 1;
export const SPLIT_ID_LENGTH_BYTES = 16;
// version (1) | split id (16) | threshold (1) | index (1) | secret length (4, big-endian)
export const HEADER_LENGTH_BYTES = 23;
export const CHECKSUM_LENGTH_BYTES = 4;
export const MIN_LENGTH_BYTES = HEADER_LENGTH_BYTES + 1 + CHECKSUM_LENGTH_BYTES;
export const TEXT_PREFIX = "securecomm-share-v1:";
const TEXT_PREFIX_STEM = "securecomm-share-";

// CRC-32 of IEEE 802.3 (reflected polynomial 0xEDB88320, init and final XOR
// 0xFFFFFFFF): zlib's crc32. crc32(utf8("123456789")) is 0xcbf43926.
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) {
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    }
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(data) {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function readU32(data, offset) {
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(offset, false);
}

// One share of a split secret. The value is a piece of a secret: toString
// and toJSON leave it out.
export class Share {
  constructor(splitId, threshold, index, value) {
    if (!(splitId instanceof Uint8Array) || !(value instanceof Uint8Array)) {
      throw new ParameterError("share: split id and value must be Uint8Arrays");
    }
    if (splitId.length !== SPLIT_ID_LENGTH_BYTES) {
      throw new LengthError(
        `share: split id length ${splitId.length} bytes, expected ${SPLIT_ID_LENGTH_BYTES}`,
      );
    }
    const { MIN_THRESHOLD, MAX_SHARES } = shamir;
    if (!Number.isInteger(threshold) || threshold < MIN_THRESHOLD || threshold > MAX_SHARES) {
      throw new FieldError(
        `share ${index}: threshold ${threshold} is outside ${MIN_THRESHOLD}..${MAX_SHARES}`,
      );
    }
    if (!Number.isInteger(index) || index < 1 || index > shamir.MAX_SHARES) {
      throw new ShareIndexError(
        `share: index ${index} is outside 1..${shamir.MAX_SHARES}` +
          (index === 0 ? " (0 is the secret's own)" : ""),
      );
    }
    if (value.length === 0) {
      throw new LengthError(`share ${index}: empty value`);
    }
    this.splitId = splitId.slice();
    this.threshold = threshold;
    this.index = index;
    this.value = value.slice();
    Object.freeze(this);
  }

  toString() {
    return (
      `Share(splitId=${toHex(this.splitId)}, threshold=${this.threshold},` +
      ` index=${this.index}, value=<${this.value.length} bytes>)`
    );
  }

  toJSON() {
    return this.toString();
  }

  // The Vault-style raw share of §2: y-bytes, then the index.
  toRaw() {
    return concat(this.value, Uint8Array.of(this.index));
  }

  toBytes() {
    const body = concat(
      Uint8Array.of(VERSION),
      this.splitId,
      Uint8Array.of(this.threshold, this.index),
      u32(this.value.length),
      this.value,
    );
    return concat(body, u32(crc32(body)));
  }

  // Decode a binary share with the checks of §3.1, in order; `name` is how errors refer to it.
  static fromBytes(data, { name = "share" } = {}) {
    if (!(data instanceof Uint8Array)) {
      throw new ParameterError(`${name}: expected a Uint8Array`);
    }
    if (data.length < 1) {
      throw new LengthError(`${name}: empty`);
    }
    if (data[0] !== VERSION) {
      throw new UnknownVersionError(`${name}: version ${data[0]}, expected ${VERSION}`);
    }
    if (data.length < MIN_LENGTH_BYTES) {
      throw new LengthError(
        `${name}: length ${data.length} bytes, expected at least ${MIN_LENGTH_BYTES}`,
      );
    }
    const length = readU32(data, 19);
    const expected = HEADER_LENGTH_BYTES + length + CHECKSUM_LENGTH_BYTES;
    if (data.length !== expected) {
      throw new LengthError(
        `${name}: length ${data.length} bytes, expected ${expected} for a ${length}-byte secret`,
      );
    }
    const body = data.subarray(0, data.length - CHECKSUM_LENGTH_BYTES);
    if (crc32(body) !== readU32(data, data.length - CHECKSUM_LENGTH_BYTES)) {
      throw new ChecksumError(`${name}: checksum mismatch (the share was altered or mistyped)`);
    }
    const threshold = data[17];
    const index = data[18];
    if (index === 0) {
      throw new ShareIndexError(`${name}: index 0 is the secret's own`);
    }
    if (threshold < shamir.MIN_THRESHOLD) {
      throw new FieldError(
        `${name}: threshold ${threshold}, expected at least ${shamir.MIN_THRESHOLD}`,
      );
    }
    return new Share(data.subarray(1, 17), threshold, index, body.subarray(HEADER_LENGTH_BYTES));
  }

  // One line a person can copy: TEXT_PREFIX, then padded base64 (§3.2).
  toText() {
    return TEXT_PREFIX + b64encode(this.toBytes());
  }

  static fromText(text, { name = "share" } = {}) {
    if (typeof text !== "string") {
      throw new FormatError(`${name}: expected text`);
    }
    const trimmed = stripWhitespace(text);
    if (!trimmed.startsWith(TEXT_PREFIX)) {
      if (trimmed.startsWith(TEXT_PREFIX_STEM) && trimmed.includes(":")) {
        const version = trimmed.slice(TEXT_PREFIX_STEM.length, trimmed.indexOf(":"));
        throw new UnknownVersionError(`${name}: text version '${version}', expected 'v1'`);
      }
      throw new FormatError(`${name}: does not start with '${TEXT_PREFIX}'`);
    }
    const data = b64decode(trimmed.slice(TEXT_PREFIX.length), { field: name, allowEmpty: true });
    return Share.fromBytes(data, { name });
  }
}

// What a reader ignores before and after a text share (spec section 3.2): ASCII space,
// tab, line feed, carriage return. Other white space (U+00A0, U+3000, ...) is refused.
const SPACE = /[ \t\n\r]/;

function stripWhitespace(text) {
  let start = 0;
  let end = text.length;
  while (start < end && SPACE.test(text[start])) {
    start++;
  }
  while (end > start && SPACE.test(text[end - 1])) {
    end--;
  }
  return text.slice(start, end);
}

// Split `secret` into n shares with indices 1..n, any t of which rebuild it.
// Without a split id, a fresh one is drawn (before the coefficients, as in Python).
export function splitSecret(secret, n, t, splitId = null, random = randomBytes) {
  shamir.checkParameters(n, t);
  const id = splitId ?? random(SPLIT_ID_LENGTH_BYTES);
  const raw = shamir.split(secret, n, t, random);
  return raw.map(
    (share) => new Share(id, t, share[share.length - 1], share.subarray(0, share.length - 1)),
  );
}

function describe(share, position) {
  return `share ${position} (index ${share.index})`;
}

// Rebuild the secret, refusing shares that do not belong together (§3.3).
// Each refusal names the share by its position in `shares` and its index.
// The first t shares rebuild the secret; any further ones must lie on the
// same polynomials.
export function combine(shares) {
  if (!Array.isArray(shares) || !shares.every((share) => share instanceof Share)) {
    throw new ParameterError("combine: expected an array of Share");
  }
  if (shares.length === 0) {
    throw new InsufficientSharesError("combine: no shares given");
  }
  const first = shares[0];
  const seen = new Map();
  shares.forEach((share, i) => {
    const position = i + 1;
    if (!equal(share.splitId, first.splitId)) {
      throw new MixedSplitError(
        `combine: ${describe(share, position)} is from split ${toHex(share.splitId)},` +
          ` share 1 from split ${toHex(first.splitId)}`,
      );
    }
    if (share.threshold !== first.threshold) {
      throw new MixedSplitError(
        `combine: ${describe(share, position)} has threshold ${share.threshold},` +
          ` share 1 has ${first.threshold}`,
      );
    }
    if (share.value.length !== first.value.length) {
      throw new RaggedSharesError(
        `combine: ${describe(share, position)}: length ${share.value.length} bytes,` +
          ` expected ${first.value.length} like share 1`,
      );
    }
    if (seen.has(share.index)) {
      throw new DuplicateShareError(
        `combine: ${describe(share, position)} repeats the index of share ${seen.get(share.index)}`,
      );
    }
    seen.set(share.index, position);
  });
  const t = first.threshold;
  if (shares.length < t) {
    throw new InsufficientSharesError(
      `combine: ${shares.length} share(s) given, threshold is ${t}`,
    );
  }
  const basis = shares.slice(0, t).map((share) => share.toRaw());
  shares.slice(t).forEach((extra, i) => {
    if (!equal(shamir.interpolate(basis, extra.index), extra.value)) {
      throw new InconsistentSharesError(
        `combine: ${describe(extra, t + 1 + i)} does not agree with shares 1..${t}` +
          " (one of them is wrong)",
      );
    }
  });
  return shamir.combine(basis);
}
