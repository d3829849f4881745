// Runs the cases of vectors/*.json (spec §8) through the browser's crypto
// core. Each run* function takes the file's text and returns one result per
// case, in file order: {description, passed, detail}; test_js_vectors.py
// asserts that every case ran and passed.

import * as aead from "/js/aead.js";
import { b64decode, concat, equal, fromHex, sha256, toHex, utf8 } from "/js/bytes.js";
import * as canonical from "/js/canonical.js";
import * as errors from "/js/errors.js";
import * as hpke from "/js/hpke.js";
import { verifyAnswer } from "/js/httpsig.js";
import { Identity, PublicIdentity } from "/js/identity.js";
import { nameSkeleton, newNameRefusal } from "/js/keyfile.js";
import { weakness } from "/js/passphrases.js";
import * as shamir from "/js/shamir.js";
import { Share, combine } from "/js/shares.js";
import * as stream from "/js/stream.js";

export class Mismatch extends Error {}

export function check(condition, detail) {
  if (!condition) {
    throw new Mismatch(detail);
  }
}

export function checkHex(actual, expected, what) {
  check(toHex(actual) === expected, `${what}: got ${toHex(actual)}, expected ${expected}`);
}

// Run `body` for every case; a thrown Mismatch or error fails that case only.
export async function eachCase(cases, body) {
  const results = [];
  for (const entry of cases) {
    try {
      await body(entry);
      results.push({ description: entry.description, passed: true, detail: "" });
    } catch (error) {
      const detail = error instanceof Mismatch ? error.message : `${error.name}: ${error.message}`;
      results.push({ description: entry.description, passed: false, detail });
    }
  }
  return results;
}

// The call must throw the securecomm error class named `expected`, exactly.
async function expectError(expected, call) {
  check(typeof errors[expected] === "function", `no error class ${expected} in errors.js`);
  let result;
  try {
    result = await call();
  } catch (error) {
    check(
      error instanceof errors[expected] && error.name === expected,
      `threw ${error.name} (${error.message}), expected ${expected}`,
    );
    check(error instanceof errors.SecureCommError, `${error.name} is not a SecureCommError`);
    return;
  }
  throw new Mismatch(`accepted (returned ${String(result)}), expected ${expected}`);
}

function sameValue(a, b) {
  return toHex(canonical.dumps(a)) === toHex(canonical.dumps(b)) && deepEqual(a, b);
}

function deepEqual(a, b) {
  if (typeof a !== "object" || a === null || typeof b !== "object" || b === null) {
    return a === b;
  }
  if (Array.isArray(a) !== Array.isArray(b)) {
    return false;
  }
  const keys = Object.keys(a);
  return (
    keys.length === Object.keys(b).length &&
    keys.every((key) => Object.hasOwn(b, key) && deepEqual(a[key], b[key]))
  );
}

// AES-256-GCM (NIST CAVP)

export async function runGcm(text) {
  return eachCase(JSON.parse(text).vectors, async (entry) => {
    const key = fromHex(entry.key);
    const iv = fromHex(entry.iv);
    const aad = fromHex(entry.aad);
    const ciphertext = fromHex(entry.ciphertext);
    const tag = fromHex(entry.tag);
    if (entry.expect === "ok") {
      const sealed = await aead.encrypt(key, iv, fromHex(entry.plaintext), aad);
      checkHex(sealed.ciphertext, entry.ciphertext, "ciphertext");
      checkHex(sealed.tag, entry.tag, "tag");
      checkHex(await aead.decrypt(key, iv, ciphertext, tag, aad), entry.plaintext, "plaintext");
    } else {
      check(entry.expect === "fail", `unknown expect ${entry.expect}`);
      await expectError("DecryptionError", () => aead.decrypt(key, iv, ciphertext, tag, aad));
    }
  });
}

// HPKE (RFC 9180)

export function isOurSuite(entry) {
  return entry.mode === 0 && entry.kem_id === 0x20 && entry.kdf_id === 1 && entry.aead_id === 2;
}

export async function runHpke(text) {
  const cases = JSON.parse(text).vectors.filter(isOurSuite);
  return eachCase(cases, async (entry) => {
    const ephemeral = await hpke.deriveKeyPair(fromHex(entry.ikmE));
    checkHex(ephemeral.privateRaw, entry.skEm, "DeriveKeyPair(ikmE) private");
    checkHex(ephemeral.publicRaw, entry.pkEm, "DeriveKeyPair(ikmE) public");
    const recipient = await hpke.deriveKeyPair(fromHex(entry.ikmR));
    checkHex(recipient.privateRaw, entry.skRm, "DeriveKeyPair(ikmR) private");
    checkHex(recipient.publicRaw, entry.pkRm, "DeriveKeyPair(ikmR) public");

    const info = fromHex(entry.info);
    const pkR = fromHex(entry.pkRm);
    const fixedEphemeral = { ephemeralPrivateRaw: fromHex(entry.skEm) };
    const sender = await hpke.setupBaseSender(pkR, info, fixedEphemeral);
    checkHex(sender.enc, entry.enc, "enc");
    checkHex(sender.sharedSecret, entry.shared_secret, "shared_secret");
    checkHex(sender.context.key, entry.key, "key");
    checkHex(sender.context.baseNonce, entry.base_nonce, "base_nonce");
    checkHex(sender.context.exporterSecret, entry.exporter_secret, "exporter_secret");

    const skR = await hpke.importPrivate(fromHex(entry.skRm));
    const receiver = await hpke.setupBaseRecipient(fromHex(entry.enc), skR, pkR, info);
    checkHex(receiver.sharedSecret, entry.shared_secret, "recipient shared_secret");
    check(entry.encryptions.length > 0, "no encryptions");
    for (const [seq, encryption] of entry.encryptions.entries()) {
      checkHex(sender.context.nonce(), encryption.nonce, `nonce ${seq}`);
      const aad = fromHex(encryption.aad);
      const sealed = await sender.context.seal(aad, fromHex(encryption.plaintext));
      checkHex(sealed, encryption.ciphertext, `ciphertext ${seq}`);
      const opened = await receiver.context.open(aad, fromHex(encryption.ciphertext));
      checkHex(opened, encryption.plaintext, `plaintext ${seq}`);
    }
    for (const exported of entry.exports) {
      const value = await sender.context.export(fromHex(exported.exporter_context), exported.L);
      checkHex(value, exported.exported_value, `export ${exported.exporter_context}`);
    }

    // The single-shot API of §5 with the vector's keys: sequence 0, empty AAD.
    const plaintext = fromHex(entry.encryptions[0].plaintext);
    const fixed = await hpke.sealWithEphemeral(fromHex(entry.skEm), pkR, info, plaintext);
    checkHex(fixed.subarray(0, 32), entry.enc, "single-shot enc");
    const again = await hpke.setupBaseSender(pkR, info, fixedEphemeral);
    const viaContext = await again.context.seal(new Uint8Array(0), plaintext);
    checkHex(fixed.subarray(32), toHex(viaContext), "single-shot ciphertext");
    checkHex(await hpke.open(skR, pkR, info, fixed), entry.encryptions[0].plaintext, "open");
    const other = utf8("another info");
    await expectError("DecryptionError", () => hpke.open(skR, pkR, other, fixed));
  });
}

// Raw Shamir (§2)

function subsets(items, size, limit) {
  const found = [];
  const walk = (start, chosen) => {
    if (found.length >= limit) {
      return;
    }
    if (chosen.length === size) {
      found.push(chosen);
      return;
    }
    for (let i = start; i < items.length; i++) {
      walk(i + 1, [...chosen, items[i]]);
    }
  };
  walk(0, []);
  return found;
}

export async function runShamirSplit(text) {
  return eachCase(JSON.parse(text).split, (entry) => {
    const secret = fromHex(entry.secret);
    const drawn = entry.coefficients.map((hex) => fromHex(hex));
    const random = (size) => {
      check(drawn.length > 0, "split drew more coefficients than recorded");
      const next = drawn.shift();
      check(next.length === size, `split asked for ${size} bytes, recorded ${next.length}`);
      return next;
    };
    const raw = shamir.split(secret, entry.n, entry.t, random);
    check(drawn.length === 0, "split drew fewer coefficients than recorded");
    check(raw.length === entry.shares.length, `${raw.length} shares, not ${entry.shares.length}`);
    raw.forEach((share, i) => checkHex(share, entry.shares[i], `share ${i + 1}`));
    const given = entry.shares.map((hex) => fromHex(hex));
    for (const subset of subsets(given, entry.t, 20)) {
      checkHex(shamir.combine(subset), entry.secret, "combine of t shares");
    }
    checkHex(shamir.combine(given), entry.secret, "combine of all n shares");
  });
}

export async function runShamirCombine(text) {
  return eachCase(JSON.parse(text).combine, (entry) =>
    expectError(entry.expect, () => shamir.combine(entry.shares.map((hex) => fromHex(hex)))),
  );
}

// Shares (§3)

export async function runSharesEncode(text) {
  return eachCase(JSON.parse(text).encode, (entry) => {
    const splitId = fromHex(entry.split_id);
    const share = new Share(splitId, entry.threshold, entry.index, fromHex(entry.value));
    checkHex(share.toBytes(), entry.binary, "binary");
    check(share.toText() === entry.text, `text: got ${share.toText()}`);
    for (const decoded of [Share.fromBytes(fromHex(entry.binary)), Share.fromText(entry.text)]) {
      checkHex(decoded.splitId, entry.split_id, "split id");
      check(decoded.threshold === entry.threshold, `threshold ${decoded.threshold}`);
      check(decoded.index === entry.index, `index ${decoded.index}`);
      checkHex(decoded.value, entry.value, "value");
    }
  });
}

export async function runSharesDecode(text) {
  return eachCase(JSON.parse(text).decode, (entry) =>
    expectError(entry.expect, () => Share.fromText(entry.text)),
  );
}

export async function runSharesCombine(text) {
  return eachCase(JSON.parse(text).combine, async (entry) => {
    const given = entry.shares.map((line) => Share.fromText(line));
    if (entry.expect === "ok") {
      checkHex(combine(given), entry.secret, "secret");
    } else {
      await expectError(entry.expect, () => combine(given));
    }
  });
}

// Base64 (§1.2)

export async function runBase64(text) {
  return eachCase(JSON.parse(text).base64, (entry) => {
    const decode = () =>
      b64decode(entry.text, { field: "value", length: entry.length ?? null, allowEmpty: true });
    if (entry.expect === "ok") {
      checkHex(decode(), entry.bytes_hex, "bytes");
    } else {
      return expectError(entry.expect, decode);
    }
  });
}

// Public identities (§6.2)

export async function runPublicIdentity(text) {
  return eachCase(JSON.parse(text).cases, async (entry) => {
    if (entry.expect === "ok") {
      const found = await PublicIdentity.fromJson(entry.identity);
      check(
        found.fingerprintHex === entry.fingerprint,
        `fingerprint ${found.fingerprintHex}, expected ${entry.fingerprint}`,
      );
    } else {
      await expectError(entry.expect, () => PublicIdentity.fromJson(entry.identity));
    }
  });
}

// New passphrases (securecomm/passphrases.py)

export async function runPassphrases(text) {
  return eachCase(JSON.parse(text).cases, async (entry) => {
    const found = weakness(entry.passphrase)?.code ?? "ok";
    check(found === entry.expect, `${found}, expected ${entry.expect}`);
  });
}

// New names (§14.6)

export async function runNewNames(text) {
  return eachCase(JSON.parse(text).new_names, async (entry) => {
    const refusal = newNameRefusal(entry.name, entry.taken);
    const found =
      refusal === null ? "ok" : "._-".includes(entry.name.at(-1)) ? "separator_end" : "lookalike";
    check(found === entry.expect, `${found} (${refusal}), expected ${entry.expect}`);
    const skeleton = nameSkeleton(entry.name);
    check(skeleton === entry.skeleton, `skeleton ${skeleton}, expected ${entry.skeleton}`);
  });
}

// Key files (§6.4), unencrypted

export async function runKeyFiles(text) {
  return eachCase(JSON.parse(text).key_files, async (entry) => {
    const read = () => Identity.fromKeyFile(entry.text, null);
    if (entry.expect === "ok") {
      const found = await read();
      check(
        found.public.fingerprintHex === entry.fingerprint,
        `fingerprint ${found.public.fingerprintHex}, expected ${entry.fingerprint}`,
      );
    } else {
      await expectError(entry.expect, read);
    }
  });
}

// Canonical JSON (§1.4)

export async function runCanonicalValid(text) {
  return eachCase(JSON.parse(text).valid, (entry) => {
    check(entry.expect === "ok", `unknown expect ${entry.expect}`);
    checkHex(canonical.dumps(entry.value), entry.canonical_hex, "dumps");
    const parsed = canonical.loads(fromHex(entry.canonical_hex));
    check(sameValue(parsed, entry.value), "loads does not give the value back");
  });
}

export async function runCanonicalInvalid(text) {
  return eachCase(JSON.parse(text).invalid, (entry) =>
    expectError(entry.expect, () => canonical.loads(fromHex(entry.text_hex))),
  );
}

// What `call` gives when `expect` is "ok"; else it must throw exactly that class.
async function expectOutcome(expect, call) {
  if (expect === "ok") {
    return call();
  }
  await expectError(expect, call);
  return undefined;
}

// A JSON body (§1.4.1) is read for its values in any spelling; the same bytes as a
// document (§1.4) must be canonical.
export async function runCanonicalBodies(text) {
  return eachCase(JSON.parse(text).bodies, async (entry) => {
    const data = fromHex(entry.text_hex);
    const value = await expectOutcome(entry.expect, () => canonical.parseJson(data));
    if (entry.expect === "ok") {
      check(sameValue(value, entry.value), "parseJson does not give the value");
    }
    await expectOutcome(entry.as_document, () => canonical.loads(data));
  });
}

// The step of spec section 11.4 at which each refusal is made, and what its message says
// (tools/generate_vectors.py ANSWER_STEPS).
const ANSWER_STEPS = {
  1: "carries",
  2: "is malformed",
  3: "signed by another key",
  4: "does not verify",
  5: "for another request",
  6: "signed as HTTP",
  7: "not the one it signed",
};

export async function runAnswers(text) {
  const data = JSON.parse(text);
  const relay = await PublicIdentity.fromJson(data.relay.identity, "relay");
  return eachCase(data.cases, async (entry) => {
    const verify = () =>
      verifyAnswer(relay, entry.header, entry.request, {
        status: entry.status,
        body: fromHex(entry.body_hex),
      });
    if (entry.expect === "ok") {
      await verify();
      return;
    }
    let message = "";
    await expectError(entry.expect, async () => {
      try {
        return await verify();
      } catch (error) {
        message = error.message;
        throw error;
      }
    });
    const fragment = ANSWER_STEPS[entry.step];
    check(message.includes(fragment), `refused with "${message}", not at step ${entry.step}`);
  });
}

// Payload streams (spec/format-v2.md section 3): vectors/stream.json.

function streamPlaintext(length) {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += 1) {
    out[i] = i % 251;
  }
  return out;
}

async function collect(generator) {
  const parts = [];
  for await (const part of generator) {
    parts.push(part);
  }
  return concat(...parts);
}

async function keysOf(data) {
  const key = await stream.payloadKey(
    fromHex(data.key),
    fromHex(data.message_id),
    utf8(data.header),
  );
  checkHex(key, data.payload_key, "payload_key");
  const other = await stream.payloadKey(
    fromHex(data.key),
    fromHex(data.message_id),
    utf8(data.header + " "),
  );
  checkHex(other, data.other_header_payload_key, "other_header_payload_key");
  return { payload_key: key, other_header_payload_key: other };
}

export async function runStreamSealed(text) {
  const data = JSON.parse(text);
  return eachCase(data.sealed, async (entry) => {
    const { payload_key: key } = await keysOf(data);
    const plaintext = streamPlaintext(entry.length);
    const sealed = await collect(stream.encrypt(key, [plaintext]));
    check(sealed.length === entry.sealed_length, `sealed length ${sealed.length}`);
    checkHex(await sha256(sealed), entry.sealed_sha256, "sealed_sha256");
    const final = (stream.chunkCount(entry.length) - 1) * stream.SEALED_CHUNK_BYTES;
    checkHex(sealed.subarray(final, final + 64), entry.final_chunk, "final_chunk");
    if (entry.sealed !== undefined) {
      checkHex(sealed, entry.sealed, "sealed");
    }
    const opened = await collect(stream.decrypt(key, [sealed], { length: entry.length }));
    check(equal(opened, plaintext), "opened: not the plaintext");
  });
}

// The bytes a refusal gives the reader, as tools/generate_vectors.py stream_input
// builds them from the sealed chunks.
async function streamInput(entry, key) {
  const plaintext = streamPlaintext(entry.length);
  const sealed = await collect(stream.encrypt(key, [plaintext]));
  const chunk = (i) =>
    sealed.slice(i * stream.SEALED_CHUNK_BYTES, (i + 1) * stream.SEALED_CHUNK_BYTES);
  const aesKey = await crypto.subtle.importKey("raw", key, { name: "AES-GCM" }, false, ["encrypt"]);
  const parts = [];
  for (const item of entry.stream) {
    if (item.chunk !== undefined) {
      let bytes = chunk(item.chunk);
      if (item.cut !== undefined) {
        bytes = bytes.slice(0, item.cut);
      }
      if (item.flip !== undefined) {
        bytes[item.flip] ^= 1;
      }
      parts.push(bytes);
    } else if (item.bytes !== undefined) {
      parts.push(fromHex(item.bytes));
    } else {
      const iv = new Uint8Array(12);
      new DataView(iv.buffer).setUint32(7, item.seal);
      iv[11] = item.final;
      const block = plaintext.slice(item.from, item.to);
      parts.push(
        new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv }, aesKey, block)),
      );
    }
  }
  return concat(...parts);
}

export async function runStreamRefusals(text) {
  const data = JSON.parse(text);
  return eachCase(data.refusals, async (entry) => {
    const keys = await keysOf(data);
    const given = await streamInput(entry, keys[entry.sealed_under ?? "payload_key"]);
    await expectError(entry.expect, () =>
      collect(stream.decrypt(keys.payload_key, [given], { length: entry.length })),
    );
  });
}
