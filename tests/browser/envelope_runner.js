// Runs the cases of vectors/envelope.json (spec §7, §8) and vectors/envelope-v2.json
// (spec/format-v2.md §4) through envelope.js.
// Each run* function takes the file's text and the roles the generator gave
// its identities ({sender, recipients, custodians, threshold}: the file names
// the identities, tools/generate_vectors.py says who is who), and returns one
// result per case, in file order: {description, passed, detail};
// test_js_envelope.py asserts that every case ran and passed.

import { concat, fromHex, sha256, toHex, utf8 } from "/js/bytes.js";
import * as canonical from "/js/canonical.js";
import {
  Draft,
  Envelope,
  Policy,
  Receipt,
  StreamDraft,
  StreamEnvelope,
  documentFromBytes,
  nameRecord,
  prepare,
  prepareStream,
  replay,
} from "/js/envelope.js";
import * as errors from "/js/errors.js";
import { Identity, PublicIdentity } from "/js/identity.js";
import { privateKeyInfo } from "/js/keyfile.js";
import { Share } from "/js/shares.js";
import { sha256 as incrementalSha256 } from "/js/vendor/noble-hashes/sha2.js";
import { Mismatch, check, checkHex, eachCase } from "/tests/vectors.js";

// The file's identities, imported from their raw private keys as PKCS#8 DER;
// each must give the public identity the file records.
async function identities(data) {
  const found = {};
  for (const [name, keys] of Object.entries(data.identities)) {
    const identity = await Identity.fromPkcs8(
      name,
      privateKeyInfo("Ed25519", fromHex(keys.ed25519_seed)),
      privateKeyInfo("X25519", fromHex(keys.x25519_private)),
    );
    const got = toHex(canonical.dumps(identity.public.toJson()));
    check(got === toHex(canonical.dumps(keys.public)), `identity ${name}: another public key`);
    found[name] = identity;
  }
  return found;
}

function custodianKeys(ids, roles) {
  return Object.fromEntries(roles.custodians.map((name) => [name, ids[name].public]));
}

function released(given) {
  return Object.fromEntries(
    Object.entries(given).map(([name, text]) => [name, Share.fromText(text)]),
  );
}

// The valid envelopes (plain, and carrying a file name: §7.10): each rebuilt byte for byte
// from the recorded randomness, then read.
export async function runEnvelopeValid(text, roles) {
  const data = JSON.parse(text);
  return eachCase([data.valid, data.valid_named], async (entry) => {
    check(entry.expect === "ok", `unknown expect ${entry.expect}`);
    const ids = await identities(data);
    const sender = ids[roles.sender];

    // Writing (§7.8): prepare draws message id, key, coefficients and nonce, in order.
    const recorded = entry.random.map((hex) => fromHex(hex));
    const source = replay(concat(...recorded));
    const drawn = [];
    const random = (count) => {
      drawn.push(count);
      return source(count);
    };
    const draft = await prepare(fromHex(entry.plaintext), {
      sender: sender.public,
      recipients: roles.recipients.map((name) => ids[name].public),
      custodians: roles.custodians.map((name) => ({
        name,
        fingerprintHex: ids[name].public.fingerprintHex,
      })),
      threshold: roles.threshold,
      policy: Policy.fromJson(entry.policy, "policy"),
      created: entry.created,
      random,
      filename: entry.filename ?? null,
    });
    check(draft instanceof Draft, "prepare gave no Draft");
    const sizes = recorded.map((value) => value.length);
    check(
      drawn.join() === sizes.join(),
      `prepare drew ${drawn.join(", ")} bytes, recorded ${sizes.join(", ")}`,
    );
    const shares = draft.shares.map((share) => share.toText());
    check(shares.join("\n") === entry.shares.join("\n"), `shares: got ${shares.join(" ")}`);
    // Receipt.issue of envelope.py: each custodian signs the receipt body.
    const receipts = [];
    for (const [i, name] of roles.custodians.entries()) {
      const receipt = new Receipt({
        custodian: name,
        index: i + 1,
        messageId: draft.header.messageId,
        ref: entry.receipt_refs[i],
        shareDigest: draft.header.custodians[i].shareDigest,
      });
      receipt.signature = await ids[name].sign("receipt", receipt.body());
      receipts.push(receipt);
    }
    const written = await draft.finish(sender, receipts);
    checkHex(written.toBytes(), toHex(utf8(entry.envelope)), "envelope");

    // Reading (§7.6, §7.7): decode, verify with every key pinned, open with t shares.
    const envelope = await Envelope.fromBytes(utf8(entry.envelope));
    checkHex(envelope.toBytes(), toHex(utf8(entry.envelope)), "envelope re-encoded");
    const recipient = ids[roles.recipients[0]].public;
    await envelope.verify(sender.public, custodianKeys(ids, roles), { recipient });
    checkHex(await envelope.open(released(entry.released)), entry.plaintext, "plaintext");
    const opened = await envelope.openNamed(released(entry.released));
    check(opened.filename === (entry.filename ?? null), `file name: got ${opened.filename}`);
    checkHex(opened.content, entry.plaintext, "named plaintext");
  });
}

// §7.7 steps 6-8: every share given is combined, in index order; the outcome never depends
// on the order given, and an extra share off the polynomial is caught.
export async function runEnvelopeCombine(text, roles) {
  const data = JSON.parse(text);
  const ids = await identities(data);
  return eachCase(data.combine, async (entry) => {
    const envelope = await Envelope.fromBytes(utf8(entry.envelope));
    await envelope.verify(ids[roles.sender].public, custodianKeys(ids, roles));
    const open = async () => toHex(await envelope.open(released(entry.released)));
    if (entry.expect === "ok") {
      const plaintext = await open();
      check(plaintext === entry.plaintext, `plaintext ${plaintext}, expected ${entry.plaintext}`);
      return;
    }
    check(typeof errors[entry.expect] === "function", `no error class ${entry.expect}`);
    try {
      await open();
    } catch (error) {
      check(
        error instanceof errors[entry.expect] && error.name === entry.expect,
        `threw ${error.name} (${error.message}), expected ${entry.expect}`,
      );
      return;
    }
    throw new Mismatch(`opened, expected ${entry.expect}`);
  });
}

// The call must throw exactly the error class `expected`; its result otherwise.
async function outcome(expected, call) {
  if (expected === "ok") return call();
  check(typeof errors[expected] === "function", `no error class ${expected}`);
  try {
    await call();
  } catch (error) {
    check(
      error instanceof errors[expected] && error.name === expected,
      `threw ${error.name} (${error.message}), expected ${expected}`,
    );
    return undefined;
  }
  throw new Mismatch(`accepted, expected ${expected}`);
}

// §7.1, the single-machine mode: the envelope as written, and sets of share files.
export async function runEnvelopeOffline(text) {
  const offline = JSON.parse(text).offline;
  return eachCase(offline.cases, async (entry) => {
    const sender = await PublicIdentity.fromJson(
      canonical.loadsFile(utf8(offline.sender_pub), { what: ".pub" }),
    );
    const envelope = await Envelope.fromFile(utf8(offline.envelope));
    await envelope.verify(sender, {}, { recipient: sender });
    const header = envelope.header;
    header.custodians.forEach((slot, i) => {
      check(slot.name === `share-${i + 1}` && slot.fingerprintHex === null, `slot ${i}`);
    });
    check(envelope.receipts.length === 0, "receipts in an offline envelope");
    const gathered = await envelope.gather(entry.given.map((name) => [name, offline.files[name]]));
    const skipped = gathered.skipped.map(([, error]) => error.name);
    check(
      JSON.stringify(skipped) === JSON.stringify(entry.skipped),
      `skipped ${skipped}, expected ${entry.skipped}`,
    );
    for (const [label, error] of gathered.skipped) {
      check(error.message.includes(label), `"${error.message}" does not name ${label}`);
    }
    const opened = await outcome(entry.expect, () => envelope.openNamed(gathered.released));
    if (entry.expect === "ok") {
      checkHex(opened.content, entry.plaintext, "plaintext");
      check(opened.filename === offline.filename, `file name ${opened.filename}`);
    }
  });
}

export async function runEnvelopeOfflineFiles(text) {
  return eachCase(JSON.parse(text).offline.envelope_files, async (entry) => {
    const found = await outcome(entry.expect, async () => {
      return (await Envelope.fromFile(utf8(entry.text))).id;
    });
    if (entry.expect === "ok") check(found === entry.id, `id ${found}, expected ${entry.id}`);
  });
}

// Each failure: refused at its stage with exactly its error class, every earlier stage passed.
export async function runEnvelopeFailures(text, roles) {
  const data = JSON.parse(text);
  const ids = await identities(data);
  return eachCase(data.failures, async (entry) => {
    const expected = entry.expect;
    check(typeof errors[expected] === "function", `no error class ${expected} in errors.js`);
    let reached = "decode";
    try {
      const envelope = await Envelope.fromBytes(utf8(entry.envelope));
      reached = "verify";
      // As the generator reads: sender and custodians pinned (no recipient).
      await envelope.verify(ids[roles.sender].public, custodianKeys(ids, roles));
      reached = "open";
      await envelope.open(released(entry.released));
      reached = "nothing";
    } catch (error) {
      check(
        error instanceof errors[expected] && error.name === expected,
        `${reached}: threw ${error.name} (${error.message}), expected ${expected}`,
      );
      check(error instanceof errors.SecureCommError, `${error.name} is not a SecureCommError`);
      check(reached === entry.stage, `refused at ${reached}, expected at ${entry.stage}`);
      return;
    }
    throw new Mismatch(`accepted, expected ${expected} at ${entry.stage}`);
  });
}

// Version 2 (spec/format-v2.md §4)

// What a reader of a version 2 document does, stage by stage (`reached` is told each one as
// it begins): decode, verify with every key pinned and bob the recipient, recover the key,
// open the stream, read the name's record. {filename, content, key}.
async function readV2(ids, roles, entry, reached) {
  reached.push("decode");
  const document = await documentFromBytes(utf8(entry.document));
  check(document instanceof StreamEnvelope, "a version 2 document decoded as version 1");
  reached.push("verify");
  const recipient = ids[roles.recipients[0]].public;
  await document.verify(ids[roles.sender].public, custodianKeys(ids, roles), { recipient });
  reached.push("open");
  const key = await document.recoverKey(released(entry.released));
  const parts = [];
  for await (const plaintext of document.decrypt(key, [fromHex(entry.stream)])) {
    parts.push(plaintext);
  }
  const whole = concat(...parts);
  if (document.header.payload === null) return { filename: null, content: whole, key };
  const { filename, start } = nameRecord(whole);
  return { filename, content: whole.slice(start), key };
}

// Pieces of `data` of every size from 1 byte on, as a file is read.
function* ragged(data) {
  let size = 1;
  for (let offset = 0; offset < data.length; offset += size, size += 1) {
    yield data.subarray(offset, offset + size);
  }
}

// The valid document rebuilt byte for byte from the recorded randomness, then read.
export async function runEnvelopeV2Valid(text, roles) {
  const data = JSON.parse(text);
  return eachCase([data.valid], async (entry) => {
    check(entry.expect === "ok", `unknown expect ${entry.expect}`);
    const ids = await identities(data);
    const sender = ids[roles.sender];
    const recorded = entry.random.map((hex) => fromHex(hex));
    const source = replay(concat(...recorded));
    const drawn = [];
    const random = (count) => {
      drawn.push(count);
      return source(count);
    };
    const message = fromHex(entry.plaintext);
    const draft = await prepareStream(message.length, {
      sender: sender.public,
      recipients: roles.recipients.map((name) => ids[name].public),
      custodians: roles.custodians.map((name) => ({
        name,
        fingerprintHex: ids[name].public.fingerprintHex,
      })),
      threshold: roles.threshold,
      policy: Policy.fromJson(entry.policy, "policy"),
      created: entry.created,
      random,
      filename: entry.filename,
    });
    check(draft instanceof StreamDraft, "prepareStream gave no StreamDraft");
    const sizes = recorded.map((value) => value.length);
    check(drawn.join() === sizes.join(), `drew ${drawn.join(", ")}, recorded ${sizes.join(", ")}`);
    const shares = draft.shares.map((share) => share.toText());
    check(shares.join("\n") === entry.shares.join("\n"), `shares: got ${shares.join(" ")}`);
    const hash = incrementalSha256.create();
    const chunks = [];
    for await (const chunk of draft.seal(ragged(message))) {
      hash.update(chunk);
      chunks.push(chunk);
    }
    const sealed = concat(...chunks);
    checkHex(sealed, entry.stream, "stream");
    const digest = hash.digest();
    checkHex(digest, toHex(await sha256(sealed)), "incremental SHA-256 against WebCrypto's");
    const receipts = [];
    for (const [i, name] of roles.custodians.entries()) {
      const receipt = new Receipt({
        custodian: name,
        index: i + 1,
        messageId: draft.header.messageId,
        ref: entry.receipt_refs[i],
        shareDigest: draft.header.custodians[i].shareDigest,
      });
      receipt.signature = await ids[name].sign("receipt", receipt.body());
      receipts.push(receipt);
    }
    const written = await draft.finish(sender, receipts, digest);
    checkHex(written.toBytes(), toHex(utf8(entry.document)), "document");

    const reached = [];
    const opened = await readV2(ids, roles, entry, reached);
    checkHex(opened.key, entry.key, "message key");
    const document = await StreamEnvelope.fromBytes(utf8(entry.document));
    checkHex(await document.payloadKey(opened.key), entry.payload_key, "payload key");
    checkHex(document.toBytes(), toHex(utf8(entry.document)), "document re-encoded");
    check(opened.filename === entry.filename, `file name: got ${opened.filename}`);
    checkHex(opened.content, entry.plaintext, "plaintext");
  });
}

// Each failure: refused at its stage with exactly its error class, every earlier stage passed.
export async function runEnvelopeV2Failures(text, roles) {
  const data = JSON.parse(text);
  const ids = await identities(data);
  return eachCase(data.failures, async (entry) => {
    const expected = entry.expect;
    check(typeof errors[expected] === "function", `no error class ${expected} in errors.js`);
    const reached = [];
    try {
      await readV2(ids, roles, entry, reached);
    } catch (error) {
      const stage = reached.at(-1);
      check(
        error instanceof errors[expected] && error.name === expected,
        `${stage}: threw ${error.name} (${error.message}), expected ${expected}`,
      );
      check(error instanceof errors.SecureCommError, `${error.name} is not a SecureCommError`);
      check(stage === entry.stage, `refused at ${stage}, expected at ${entry.stage}`);
      return;
    }
    throw new Mismatch(`accepted, expected ${expected} at ${entry.stage}`);
  });
}
