// The payload stream of format v2 (spec/format-v2.md section 3), mirroring
// src/securecomm/stream.py: a message of any size sealed in 64 KiB chunks with
// AES-256-GCM under a payload key derived from K, the message id and the header,
// each chunk's nonce its position and a flag set on the final chunk only (STREAM, as
// age uses it). Both directions take an iterable (or async iterable) of byte pieces
// of any size and yield chunk by chunk, so only a chunk or two is held at a time.

import { concat, sha256, utf8 } from "./bytes.js";
import {
  LengthError,
  ParameterError,
  StreamChunkError,
  StreamDuplicateError,
  StreamExtendedError,
  StreamReorderedError,
  StreamTruncatedError,
} from "./errors.js";

export const CHUNK_BYTES = 64 * 1024;
export const TAG_BYTES = 16;
export const SEALED_CHUNK_BYTES = CHUNK_BYTES + TAG_BYTES;
export const MAX_CHUNKS = 2 ** 32;

const LABEL = utf8("securecomm/v2/payload");
const LOOK_BACK = 65536;
const LOOK_AHEAD = 64;

// PK = HKDF-SHA256(IKM = K, salt = message id, info = label || SHA-256(header)), 32 bytes.
export async function payloadKey(key, messageId, header) {
  if (key.length !== 32) {
    throw new LengthError(`stream: key length ${key.length} bytes, expected 32`);
  }
  if (messageId.length !== 16) {
    throw new LengthError(`stream: message id length ${messageId.length} bytes, expected 16`);
  }
  const material = await crypto.subtle.importKey("raw", key, "HKDF", false, ["deriveBits"]);
  const info = concat(LABEL, await sha256(header));
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: messageId, info },
    material,
    256,
  );
  return new Uint8Array(bits);
}

export function chunkCount(plaintextLength) {
  if (!Number.isSafeInteger(plaintextLength) || plaintextLength < 0) {
    throw new ParameterError("stream: a length is a whole number of bytes");
  }
  return Math.max(1, Math.ceil(plaintextLength / CHUNK_BYTES));
}

export function sealedLength(plaintextLength) {
  return plaintextLength + chunkCount(plaintextLength) * TAG_BYTES;
}

function nonce(position, final) {
  const out = new Uint8Array(12);
  let rest = position;
  for (let i = 10; i >= 0 && rest > 0; i -= 1) {
    out[i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  out[11] = final ? 1 : 0;
  return out;
}

function aesKey(payloadKeyBytes) {
  return crypto.subtle.importKey("raw", payloadKeyBytes, { name: "AES-GCM" }, false, [
    "encrypt",
    "decrypt",
  ]);
}

async function sealChunk(key, position, final, block) {
  const params = { name: "AES-GCM", iv: nonce(position, final), tagLength: 128 };
  return new Uint8Array(await crypto.subtle.encrypt(params, key, block));
}

async function openChunk(key, position, final, block) {
  const params = { name: "AES-GCM", iv: nonce(position, final), tagLength: 128 };
  try {
    return new Uint8Array(await crypto.subtle.decrypt(params, key, block));
  } catch {
    return null;
  }
}

// Pieces gathered into blocks of `size`: yields exactly `size` bytes at a time while
// more follows, and at the end what remains (possibly nothing), marked last. A large piece
// is cut into blocks in place (views, not copies), and only what is left of it (less than a
// block) is copied to wait for the next piece.
async function* blocks(pieces, size) {
  let buffer = new Uint8Array(0);
  for await (const piece of pieces) {
    buffer = buffer.length ? concat(buffer, piece) : piece;
    let offset = 0;
    while (buffer.length - offset > size) {
      yield { block: buffer.subarray(offset, offset + size), last: false };
      offset += size;
    }
    buffer = buffer.slice(offset);
  }
  yield { block: buffer, last: true };
}

function checkStart(start) {
  if (!Number.isSafeInteger(start) || start < 0 || start >= MAX_CHUNKS) {
    throw new ParameterError(`stream: start chunk ${start} is not in 0 .. ${MAX_CHUNKS - 1}`);
  }
}

// Seal the plaintext `pieces` yield; yield each sealed chunk in order, from chunk
// `start` on (then `pieces` is the plaintext from byte start * CHUNK_BYTES on).
export async function* encrypt(payloadKeyBytes, pieces, { start = 0 } = {}) {
  checkStart(start);
  const key = await aesKey(payloadKeyBytes);
  let position = start;
  for await (const { block, last } of blocks(pieces, CHUNK_BYTES)) {
    if (block.length === 0 && start > 0) {
      throw new ParameterError(`stream: no plaintext from chunk ${start} on to seal`);
    }
    yield await sealChunk(key, position, last, block);
    position += 1;
  }
}

// Check and open a stream of a plaintext of `length` bytes; yield each chunk's
// plaintext as it checks out. A refusal (a StreamError) can come at the last chunk:
// what was yielded before it is not the message until the generator ends.
export async function* decrypt(payloadKeyBytes, pieces, { length, start = 0 }) {
  checkStart(start);
  const final = chunkCount(length) - 1;
  if (start > final) {
    throw new ParameterError(`stream: chunk ${start} is past the final chunk (${final})`);
  }
  const finalSize = sealedLength(length) - final * SEALED_CHUNK_BYTES;
  const key = await aesKey(payloadKeyBytes);
  const source = pieces[Symbol.asyncIterator]
    ? pieces[Symbol.asyncIterator]()
    : pieces[Symbol.iterator]();
  // What has come and is not opened yet: a view of the last piece (or of the join of the
  // rest of one and the next), so a piece is cut into chunks without copying it.
  let buffer = new Uint8Array(0);
  for (let position = start; position <= final; position += 1) {
    const size = position < final ? SEALED_CHUNK_BYTES : finalSize;
    while (buffer.length < size) {
      const rest = buffer.slice(); // the source may reuse the piece it gave last
      const next = await source.next();
      if (next.done) {
        throw new StreamTruncatedError(
          buffer.length
            ? `the stream ends inside chunk ${position}, before its final chunk (${final})`
            : `the stream ends before chunk ${position}; its final chunk is ${final}`,
        );
      }
      buffer = rest.length ? concat(rest, next.value) : next.value;
    }
    const block = buffer.subarray(0, size);
    buffer = buffer.subarray(size);
    const plaintext = await openChunk(key, position, position === final, block);
    if (plaintext === null) {
      throw await diagnose(key, block, position);
    }
    yield plaintext;
  }
  let more = buffer.length > 0;
  while (!more) {
    const next = await source.next();
    if (next.done) {
      break;
    }
    more = next.value.length > 0;
  }
  if (more) {
    throw new StreamExtendedError(`bytes follow the final chunk (chunk ${final})`);
  }
}

// What a chunk that does not open at `position` is: another position's chunk, or none
// of this stream's (tried around its own position, only ever on a refusal).
async function diagnose(key, block, position) {
  const end = Math.min(MAX_CHUNKS, position + LOOK_AHEAD);
  for (let other = Math.max(0, position - LOOK_BACK); other < end; other += 1) {
    if (other === position) {
      continue;
    }
    if (
      (await openChunk(key, other, false, block)) !== null ||
      (await openChunk(key, other, true, block)) !== null
    ) {
      if (other < position) {
        return new StreamDuplicateError(`chunk ${position} is chunk ${other} again`);
      }
      return new StreamReorderedError(
        `chunk ${other} came at position ${position}: a chunk before it is missing or was moved`,
      );
    }
  }
  return new StreamChunkError(
    `chunk ${position} does not authenticate: altered, or not this message's`,
  );
}
