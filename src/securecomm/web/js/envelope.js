// The envelope (spec/format-v1.md §7): decode with every check of §7.6 in its order,
// verify (§7.7 steps 2-5), check each released share (step 6), recover the key and
// decrypt (steps 7-9); and write one: prepare() then Draft.finish() with the receipts.
// Version 2 (spec/format-v2.md §4) carries the ciphertext apart, as a payload stream:
// prepareStream() gives a StreamDraft that seals a message read piece by piece, and
// StreamDraft.finish() signs a StreamEnvelope naming the stream by its digest and length;
// documentFromBytes() reads either version. Mirrors src/securecomm/envelope.py;
// vectors/envelope.json and vectors/envelope-v2.json hold both to the same bytes.

import * as aead from "./aead.js";
import {
  b64decode,
  b64encode,
  concat,
  equal,
  fromHex,
  hmacSha256,
  labelledHash,
  randomBytes,
  toHex,
  utf8,
} from "./bytes.js";
import * as canonical from "./canonical.js";
import {
  DuplicateShareError,
  FieldError,
  FormatError,
  InconsistentSharesError,
  InsufficientSharesError,
  KeyCommitmentError,
  NotRecipientError,
  ParameterError,
  ShareDigestError,
  ShareError,
  ShareIndexError,
  SignatureError,
} from "./errors.js";
import {
  has,
  integer,
  isObject,
  list,
  match,
  object,
  optionalInteger,
  unique,
} from "./fields.js";
import { PublicIdentity, checkName } from "./identity.js";
import { checkParameters } from "./shamir.js";
import { Share, combine, splitSecret } from "./shares.js";
import * as stream from "./stream.js";

export const MAX_RECIPIENTS = 64;
// Version 2's plaintext lengths (spec/format-v2.md §4.1): canonical JSON's integers.
export const MAX_STREAM_LENGTH = 2 ** 53 - 1;
const TIME_MAX = 2 ** 40;
const HEX_ID = /^[0-9a-f]{32}$/;
const HEX_FINGERPRINT = /^[0-9a-f]{64}$/;
const REF = /^[A-Za-z0-9_-]{1,128}$/;

// §7.10: the header's optional `payload` says the plaintext is a named file.
export const PAYLOAD_NAMED = "named";
const MAX_NAME_LENGTH_BYTES = 255;
const NAME_FORBIDDEN = /[/\\\x00-\x1f\x7f]/g;

/** A policy's time as people read it, as Python's utc_text: "2026-12-02 10:59:30 UTC". */
export const utcText = (seconds) =>
  `${new Date(seconds * 1000).toISOString().slice(0, 19).replace("T", " ")} UTC`;

/** LH("securecomm/v1/share-digest", message id, custodian name, binary share) — §7.4. */
export function shareDigest(messageId, custodian, share) {
  return labelledHash("securecomm/v1/share-digest", messageId, utf8(custodian), share.toBytes());
}

/** HMAC-SHA256(K, "securecomm/v1/key-commitment" || message id) — §4.2. */
export function keyCommitment(key, messageId) {
  return hmacSha256(key, concat(utf8("securecomm/v1/key-commitment"), messageId));
}

export class Policy {
  constructor(
    { notBefore = null, expires = null, maxReleases = null, requireApproval = false } = {},
    path = "policy",
  ) {
    optionalInteger(notBefore, `${path}.not_before`, 0, TIME_MAX);
    optionalInteger(expires, `${path}.expires`, 0, TIME_MAX);
    optionalInteger(maxReleases, `${path}.max_releases`, 1, 1_000_000);
    if (typeof requireApproval !== "boolean")
      throw new FieldError(`${path}.require_approval: expected true or false`);
    if (notBefore !== null && expires !== null && expires <= notBefore) {
      throw new FieldError(`${path}: expires (${expires}) is not after not_before (${notBefore})`);
    }
    Object.assign(this, { notBefore, expires, maxReleases, requireApproval });
  }

  /** Whether a custodian's release under this policy is not given twice for the asking (it
   * is counted, or an operator approved it): the custodian keeps it for its reader a while
   * (spec §12.2). Python's Policy.gives_once. */
  get givesOnce() {
    return this.maxReleases !== null || this.requireApproval;
  }

  toJson() {
    return {
      not_before: this.notBefore,
      expires: this.expires,
      max_releases: this.maxReleases,
      require_approval: this.requireApproval,
    };
  }

  static fromJson(value, path) {
    const obj = object(value, path, ["not_before", "expires", "max_releases", "require_approval"]);
    return new Policy(
      {
        notBefore: obj.not_before,
        expires: obj.expires,
        maxReleases: obj.max_releases,
        requireApproval: obj.require_approval,
      },
      path,
    );
  }
}

export class Recipient {
  constructor(name, fingerprintHex) {
    Object.assign(this, { name, fingerprintHex });
  }

  toJson() {
    return { name: this.name, fingerprint: this.fingerprintHex };
  }

  static fromJson(value, path) {
    const obj = object(value, path, ["name", "fingerprint"]);
    const name = checkName(obj.name, { field: `${path}.name` });
    return new Recipient(
      name,
      match(obj.fingerprint, `${path}.fingerprint`, HEX_FINGERPRINT, "64 hex digits"),
    );
  }

  static of(identity) {
    return new Recipient(identity.name, identity.fingerprintHex);
  }
}

export class CustodianSlot {
  constructor(name, fingerprintHex, shareDigest) {
    Object.assign(this, { name, fingerprintHex, shareDigest });
  }

  toJson() {
    return {
      name: this.name,
      fingerprint: this.fingerprintHex,
      share_digest: b64encode(this.shareDigest),
    };
  }

  static fromJson(value, path) {
    const obj = object(value, path, ["name", "fingerprint", "share_digest"]);
    const name = checkName(obj.name, { field: `${path}.name` });
    const fp =
      obj.fingerprint === null
        ? null
        : match(obj.fingerprint, `${path}.fingerprint`, HEX_FINGERPRINT, "64 hex digits or null");
    const digest = b64decode(obj.share_digest, { field: `${path}.share_digest`, length: 32 });
    return new CustodianSlot(name, fp, digest);
  }
}

export class Header {
  constructor(fields) {
    // messageId, sender, recipients, created, threshold, custodians, policy, keyCommitment,
    // payload (null, or "named": §7.10), version (1 or 2), length (version 2: the length
    // of the plaintext the stream seals; null in version 1)
    Object.assign(this, { payload: null, version: 1, length: null, ...fields });
  }

  get n() {
    return this.custodians.length;
  }

  get id() {
    return toHex(this.messageId);
  }

  toJson() {
    return {
      v: this.version,
      id: this.id,
      sender: this.sender.toJson(),
      recipients: this.recipients.map((r) => r.toJson()),
      created: this.created,
      threshold: this.threshold,
      n: this.n,
      custodians: this.custodians.map((c) => c.toJson()),
      policy: this.policy.toJson(),
      key_commitment: b64encode(this.keyCommitment),
      ...(this.payload === null ? {} : { payload: this.payload }),
      ...(this.length === null ? {} : { length: this.length }),
    };
  }

  /** The header's canonical bytes: version 1's AES-GCM associated data, and what version 2's
   * payload key is derived with (format-v2 §3.1). */
  aad() {
    return canonical.dumps(this.toJson());
  }

  static async fromJson(value, path = "envelope.header", versions = [1, 2]) {
    const keys = [
      "v",
      "id",
      "sender",
      "recipients",
      "created",
      "threshold",
      "n",
      "custodians",
      "policy",
      "key_commitment",
    ];
    const optional = isObject(value) && has(value, "payload") ? ["payload"] : [];
    // format-v2 §4.1: required in version 2, unknown in version 1.
    if (isObject(value) && value.v === 2) keys.push("length");
    const obj = object(value, path, [...keys, ...optional], { versioned: true, versions });
    const length = keys.includes("length")
      ? integer(obj.length, `${path}.length`, 0, MAX_STREAM_LENGTH)
      : null;
    const messageId = fromHex(match(obj.id, `${path}.id`, HEX_ID, "32 hex digits"), {
      field: `${path}.id`,
      length: 16,
    });
    const sender = await PublicIdentity.fromJson(obj.sender, `${path}.sender`);
    const recipients = list(obj.recipients, `${path}.recipients`, 1, MAX_RECIPIENTS).map((r, i) =>
      Recipient.fromJson(r, `${path}.recipients[${i}]`),
    );
    unique(
      recipients.map((r) => r.name),
      `${path}.recipients`,
    );
    unique(
      recipients.map((r) => r.fingerprintHex),
      `${path}.recipients`,
      "fingerprint",
    );
    const created = integer(obj.created, `${path}.created`, 0, TIME_MAX);
    const n = integer(obj.n, `${path}.n`, 2, 255);
    const threshold = integer(obj.threshold, `${path}.threshold`, 2, 255);
    if (threshold > n) throw new FieldError(`${path}.threshold: ${threshold} is above n = ${n}`);
    const custodians = list(obj.custodians, `${path}.custodians`, n, n).map((c, i) =>
      CustodianSlot.fromJson(c, `${path}.custodians[${i}]`),
    );
    unique(
      custodians.map((c) => c.name),
      `${path}.custodians`,
    );
    // One key holding two shares would lower the threshold without anyone noticing.
    unique(
      custodians.filter((c) => c.fingerprintHex !== null).map((c) => c.fingerprintHex),
      `${path}.custodians`,
      "fingerprint",
    );
    const policy = Policy.fromJson(obj.policy, `${path}.policy`);
    const commitment = b64decode(obj.key_commitment, {
      field: `${path}.key_commitment`,
      length: 32,
    });
    if (optional.length && obj.payload !== PAYLOAD_NAMED)
      throw new FieldError(`${path}.payload: expected "${PAYLOAD_NAMED}" or no member`);
    return new Header({
      messageId,
      sender,
      recipients,
      created,
      threshold,
      custodians,
      policy,
      keyCommitment: commitment,
      payload: optional.length ? obj.payload : null,
      version: obj.v,
      length,
    });
  }

  /** The share index (1-based) of the named custodian. */
  custodianIndex(name) {
    const position = this.custodians.findIndex((slot) => slot.name === name);
    if (position < 0)
      throw new FieldError(
        `envelope: ${JSON.stringify(name)} is not a custodian of message ${this.id}`,
      );
    return position + 1;
  }

  isRecipient(identity) {
    return this.recipients.some(
      (r) => r.name === identity.name && r.fingerprintHex === identity.fingerprintHex,
    );
  }
}

export class Receipt {
  constructor({ custodian, index, messageId, ref, shareDigest, signature = new Uint8Array(0) }) {
    Object.assign(this, { custodian, index, messageId, ref, shareDigest, signature });
  }

  body() {
    return {
      v: 1,
      custodian: this.custodian,
      index: this.index,
      message_id: toHex(this.messageId),
      ref: this.ref,
      share_digest: b64encode(this.shareDigest),
    };
  }

  toJson() {
    return { ...this.body(), signature: b64encode(this.signature) };
  }

  static fromJson(value, path = "receipt") {
    const keys = ["v", "custodian", "index", "message_id", "ref", "share_digest", "signature"];
    const obj = object(value, path, keys, { versioned: true });
    return new Receipt({
      custodian: checkName(obj.custodian, { field: `${path}.custodian` }),
      index: integer(obj.index, `${path}.index`, 1, 255),
      messageId: fromHex(match(obj.message_id, `${path}.message_id`, HEX_ID, "32 hex digits"), {
        field: `${path}.message_id`,
        length: 16,
      }),
      ref: match(obj.ref, `${path}.ref`, REF, "1-128 characters of A-Z a-z 0-9 _ -"),
      shareDigest: b64decode(obj.share_digest, { field: `${path}.share_digest`, length: 32 }),
      signature: b64decode(obj.signature, { field: `${path}.signature`, length: 64 }),
    });
  }

  async verify(custodian) {
    if (custodian.name !== this.custodian) {
      throw new SignatureError(
        `receipt from ${JSON.stringify(this.custodian)} checked against ${JSON.stringify(custodian.name)}'s key`,
      );
    }
    await custodian.verify(this.signature, "receipt", this.body());
  }
}

// A document's header, which is of the document's own version (format-v2 §4.1).
function headerOf(obj, path) {
  return Header.fromJson(obj.header, `${path}.header`, [obj.v]);
}

// A document's receipts: one per custodian, in the header's order, each for the share the
// header names (§7.1).
function receiptsOf(value, header, path) {
  const rawReceipts = list(value, `${path}.receipts`, 0, 255);
  // Custodian services (with fingerprints) sign receipts; shares held out of band cannot.
  const services = header.custodians.map((slot) => slot.fingerprintHex !== null);
  if (services.some(Boolean) && !services.every(Boolean)) {
    throw new FieldError(
      `${path}.header.custodians: either every custodian has a fingerprint or none has`,
    );
  }
  const expected = services.every(Boolean) ? header.n : 0;
  if (rawReceipts.length !== expected) {
    throw new FieldError(
      `${path}.receipts: ${rawReceipts.length} receipt(s), expected ${expected}`,
    );
  }
  const receipts = rawReceipts.map((r, i) => Receipt.fromJson(r, `${path}.receipts[${i}]`));
  receipts.forEach((receipt, i) => {
    const slot = header.custodians[i];
    const where = `${path}.receipts[${i}]`;
    if (receipt.custodian !== slot.name || receipt.index !== i + 1) {
      throw new FieldError(
        `${where}: receipt of ${JSON.stringify(receipt.custodian)} (index ${receipt.index}), expected ${JSON.stringify(slot.name)} (index ${i + 1})`,
      );
    }
    if (!equal(receipt.messageId, header.messageId))
      throw new FieldError(`${where}.message_id: not this envelope's id ${header.id}`);
    if (!equal(receipt.shareDigest, slot.shareDigest))
      throw new FieldError(`${where}.share_digest: differs from the header's digest`);
  });
  return receipts;
}

/** What both versions' envelopes share: the signed header and receipts, and every step of
 * reading (§7.7) up to the message key. */
class Document {
  get id() {
    return this.header.id;
  }

  toJson() {
    return { ...this.signedBody(), signature: b64encode(this.signature) };
  }

  toBytes() {
    return canonical.dumps(this.toJson());
  }

  /**
   * §7.7 steps 2-5. `sender`: the pinned key of the sender, if known (else the signature
   * proves integrity only). `custodians`: known custodian keys by name. `recipient`: the
   * reader's public identity, which must be listed.
   */
  async verify(sender = null, custodians = {}, { recipient = null } = {}) {
    const claimed = this.header.sender;
    if (
      sender !== null &&
      (sender.name !== claimed.name || sender.fingerprintHex !== claimed.fingerprintHex)
    ) {
      throw new SignatureError(
        `envelope ${this.id}: sender ${claimed.name} (${claimed.shortFingerprint()}) is not the expected ${sender.name} (${sender.shortFingerprint()})`,
      );
    }
    await claimed.verify(this.signature, "envelope", this.signedBody());
    for (const [i] of this.receipts.entries()) {
      const slot = this.header.custodians[i];
      // Own members only: a custodian may be named "constructor" (§1.6).
      const key = has(custodians, slot.name) ? custodians[slot.name] : undefined;
      if (key) await this.verifyCustodian(slot.name, key);
    }
    // Step 5 of §7.7, after the signatures it relies on.
    if (recipient !== null && !this.header.isRecipient(recipient)) {
      throw new NotRecipientError(
        `envelope ${this.id}: ${recipient.name} (${recipient.shortFingerprint()}) is not one of its recipients`,
      );
    }
  }

  /**
   * §7.7 step 3 for one custodian, whose key `key` is known (a reader that learns a
   * custodian's key only when it asks that custodian checks it then): the header names
   * that key, and the custodian's receipt is signed by it. Call verify() first: the
   * receipts are the sender's only once its signature is checked.
   */
  async verifyCustodian(name, key) {
    const i = this.header.custodianIndex(name) - 1;
    const receipt = this.receipts[i];
    if (!receipt) return; // shares held out of band have no receipts (§7.1)
    const slot = this.header.custodians[i];
    if (slot.fingerprintHex !== null && key.fingerprintHex !== slot.fingerprintHex) {
      throw new SignatureError(
        `envelope ${this.id}: custodian ${slot.name} in the header has another key than the known ${key.shortFingerprint()}`,
      );
    }
    await receipt.verify(key);
  }

  /** §7.7 step 6: a ShareDigestError naming the custodian unless the share is the signed one. */
  async checkShare(custodian, share) {
    const index = this.header.custodianIndex(custodian);
    const slot = this.header.custodians[index - 1];
    const ok =
      share.index === index &&
      share.threshold === this.header.threshold &&
      equal(share.splitId, this.header.messageId) &&
      equal(await shareDigest(this.header.messageId, custodian, share), slot.shareDigest);
    if (!ok)
      throw new ShareDigestError(
        `custodian ${custodian}: its share does not match the digest the sender signed`,
      );
  }

  /**
   * Shares held out of band (§7.1), each [label, text]: parsed (§3.2), matched to the slot of
   * its index, checked (§7.7 step 6). One that fails is skipped, with its error naming the
   * label; a repeat of a good one is skipped and counts once. {released: {slot: Share},
   * skipped: [[label, error], ...]}.
   */
  async gather(offered) {
    const released = {};
    const first = {};
    const skipped = [];
    for (const [label, text] of offered) {
      let name;
      let share;
      try {
        share = Share.fromText(text, { name: label });
        if (share.index < 1 || share.index > this.header.n)
          throw new ShareIndexError(
            `${label}: index ${share.index} is not a slot of message ${this.id}`,
          );
        name = this.header.custodians[share.index - 1].name;
        try {
          await this.checkShare(name, share);
        } catch (error) {
          if (!(error instanceof ShareDigestError)) throw error;
          throw new ShareDigestError(`${label} does not belong to message ${this.id}`);
        }
      } catch (error) {
        if (!(error instanceof FormatError || error instanceof ShareError)) throw error;
        skipped.push([label, error]);
        continue;
      }
      if (Object.hasOwn(released, name)) {
        // It passed step 6, so it is the same share (the digest fixes every byte).
        skipped.push([
          label,
          new DuplicateShareError(`${label}: the same share as ${first[name]}`),
        ]);
        continue;
      }
      released[name] = share;
      first[name] = label;
    }
    return { released, skipped };
  }

  /**
   * Steps 6-8 of §7.7: the message key from every share in `released` ({custodian: Share}).
   * Each must be the one its slot names (ShareDigestError otherwise: pass only shares
   * accepted with checkShare). All are combined in index order, so the order given does not
   * matter: the t lowest indices make the key and every further share must agree with them
   * (InconsistentSharesError: the sender signed shares that do not belong together). Then
   * the key commitment (KeyCommitmentError).
   */
  async recoverKey(released) {
    const entries = Object.entries(released);
    for (const [custodian, share] of entries) await this.checkShare(custodian, share);
    const t = this.header.threshold;
    if (entries.length < t)
      throw new InsufficientSharesError(
        `envelope ${this.id}: ${entries.length} share(s), threshold is ${t}`,
      );
    entries.sort(([, a], [, b]) => a.index - b.index);
    let key;
    try {
      key = combine(entries.map(([, share]) => share));
    } catch (error) {
      if (!(error instanceof InconsistentSharesError)) throw error;
      const names = entries.map(([name]) => name).join(", ");
      throw new InconsistentSharesError(
        `envelope ${this.id}: the shares of ${names} do not lie on one polynomial,` +
          " though each is the one the sender signed: the sender made them wrongly",
      );
    }
    await checkCommitment(key, this.header.messageId, this.header.keyCommitment);
    return key;
  }
}

async function checkCommitment(key, messageId, expected) {
  if (!equal(await keyCommitment(key, messageId), expected)) throw new KeyCommitmentError();
}

/** A version 1 envelope: the ciphertext inside it (spec/format-v1.md §7.1). */
export class Envelope extends Document {
  constructor({ header, nonce, ciphertext, tag, receipts, signature }) {
    super();
    Object.assign(this, { header, nonce, ciphertext, tag, receipts, signature });
  }

  signedBody() {
    return {
      v: 1,
      header: this.header.toJson(),
      nonce: b64encode(this.nonce),
      ciphertext: b64encode(this.ciphertext),
      tag: b64encode(this.tag),
      receipts: this.receipts.map((r) => r.toJson()),
    };
  }

  /** Decode and check the format (§7.6); signatures are checked by verify(). */
  static async fromBytes(data) {
    return Envelope.fromJson(canonical.loads(data));
  }

  /** fromBytes of an envelope file (§7.1): its bytes, and one LF an editor may have added. */
  static async fromFile(data) {
    return Envelope.fromJson(canonical.loadsFile(data, { what: "envelope" }));
  }

  static async fromJson(value) {
    const path = "envelope";
    const obj = object(
      value,
      path,
      ["v", "header", "nonce", "ciphertext", "tag", "receipts", "signature"],
      { versioned: true },
    );
    const header = await headerOf(obj, path);
    const nonce = b64decode(obj.nonce, { field: `${path}.nonce`, length: 12 });
    const ciphertext = b64decode(obj.ciphertext, { field: `${path}.ciphertext`, allowEmpty: true });
    const tag = b64decode(obj.tag, { field: `${path}.tag`, length: 16 });
    const receipts = receiptsOf(obj.receipts, header, path);
    const signature = b64decode(obj.signature, { field: `${path}.signature`, length: 64 });
    return new Envelope({ header, nonce, ciphertext, tag, receipts, signature });
  }

  /** Step 9: the message, without a file name the sender may have put before it. Every
   * decryption failure is the same opaque DecryptionError. */
  async decrypt(key) {
    return (await this.decryptNamed(key)).content;
  }

  /** Step 9 and §7.10: {filename (null: none given), content}. */
  async decryptNamed(key) {
    const plaintext = await aead.decrypt(
      key,
      this.nonce,
      this.ciphertext,
      this.tag,
      this.header.aad(),
    );
    if (this.header.payload === null) return { filename: null, content: plaintext };
    return unframe(plaintext);
  }

  /** recoverKey then decrypt. Call verify() first. */
  async open(released) {
    return this.decrypt(await this.recoverKey(released));
  }

  /** recoverKey then decryptNamed. Call verify() first. */
  async openNamed(released) {
    return this.decryptNamed(await this.recoverKey(released));
  }
}

/** A version 2 envelope (spec/format-v2.md §4.2): the ciphertext is a stream of sealed chunks
 * carried apart, which the document names by its SHA-256 and length. */
export class StreamEnvelope extends Document {
  constructor({ header, payloadDigest, payloadLength, receipts, signature }) {
    super();
    Object.assign(this, { header, payloadDigest, payloadLength, receipts, signature });
  }

  signedBody() {
    return {
      v: 2,
      header: this.header.toJson(),
      payload: { digest: b64encode(this.payloadDigest), length: this.payloadLength },
      receipts: this.receipts.map((r) => r.toJson()),
    };
  }

  /** Decode and check the format (not the signatures: see verify()). */
  static async fromBytes(data) {
    return StreamEnvelope.fromJson(canonical.loads(data));
  }

  static async fromJson(value) {
    const path = "envelope";
    const keys = ["v", "header", "payload", "receipts", "signature"];
    const obj = object(value, path, keys, { versioned: true, versions: [2] });
    const header = await headerOf(obj, path);
    const payload = object(obj.payload, `${path}.payload`, ["digest", "length"]);
    const payloadDigest = b64decode(payload.digest, {
      field: `${path}.payload.digest`,
      length: 32,
    });
    const payloadLength = integer(payload.length, `${path}.payload.length`, 0, 2 ** 53 - 1);
    const expected = stream.sealedLength(header.length);
    if (payloadLength !== expected) {
      throw new FieldError(
        `${path}.payload.length: ${payloadLength}, but a plaintext of ${header.length} bytes is sealed in ${expected}`,
      );
    }
    const receipts = receiptsOf(obj.receipts, header, path);
    const signature = b64decode(obj.signature, { field: `${path}.signature`, length: 64 });
    return new StreamEnvelope({ header, payloadDigest, payloadLength, receipts, signature });
  }

  /** The length of the plaintext the stream seals (a file name's record included). */
  get length() {
    return this.header.length;
  }

  /** The stream's key (format-v2 §3.1), from the message key recoverKey() gave. */
  payloadKey(key) {
    return stream.payloadKey(key, this.header.messageId, this.header.aad());
  }

  /**
   * Open the stream `pieces` yields (from chunk `start` on) with a recovered key: each
   * chunk's plaintext as it checks out (stream.decrypt: nothing it yields is the message
   * until it ends without error). With payload "named", chunk 0's plaintext begins with
   * the name's record (nameRecord).
   */
  async *decrypt(key, pieces, { start = 0 } = {}) {
    yield* stream.decrypt(await this.payloadKey(key), pieces, { length: this.length, start });
  }
}

/** An envelope of either version, by its `v`: decoded and its format checked (not its
 * signatures). */
export async function documentFromBytes(data) {
  const value = canonical.loads(data);
  if (isObject(value) && value.v === 2) return StreamEnvelope.fromJson(value);
  return Envelope.fromJson(value);
}

/** `name` if a message may carry it as a file name (§7.10), else FieldError. */
export function checkFilename(name, path = "file name") {
  const size = utf8(name).length;
  if (size < 1 || size > MAX_NAME_LENGTH_BYTES)
    throw new FieldError(`${path}: ${size} bytes, expected 1 to ${MAX_NAME_LENGTH_BYTES}`);
  if (name === "." || name === ".." || name.search(NAME_FORBIDDEN) !== -1)
    throw new FieldError(`${path}: a path separator, control character, '.' or '..'`);
  return name;
}

/** The name a file is sent under (§7.10): its last path component with every forbidden
 * character replaced by "_", cut to 255 bytes; null if nothing usable is left. */
export function nameForFile(path) {
  const base = path.split(/[/\\]/).pop();
  let name = base.replace(NAME_FORBIDDEN, "_");
  while (utf8(name).length > MAX_NAME_LENGTH_BYTES) name = [...name].slice(0, -1).join("");
  return name === "" || name === "." || name === ".." ? null : name;
}

function frame(filename, content) {
  const encoded = utf8(checkFilename(filename));
  return concat(Uint8Array.of(encoded.length), encoded, content);
}

function unframe(plaintext) {
  const { filename, start } = nameRecord(plaintext);
  return { filename, content: plaintext.slice(start) };
}

/**
 * The file name a named plaintext (§7.10) begins with, and where its message starts:
 * {filename, start}. In version 2 the record lies within chunk 0 (at most 256 bytes), so
 * that chunk's plaintext is enough.
 */
export function nameRecord(plaintext) {
  if (!plaintext.length || plaintext.length < 1 + plaintext[0])
    throw new FieldError("envelope payload: the file name runs past the end of the message");
  const length = plaintext[0];
  let name;
  try {
    name = new TextDecoder("utf-8", { fatal: true }).decode(plaintext.subarray(1, 1 + length));
  } catch {
    throw new FieldError("envelope payload: the file name is not UTF-8");
  }
  return { filename: checkFilename(name, "envelope payload: file name"), start: 1 + length };
}

/** An encrypted, split message waiting for its custodians' receipts. Keep it in memory only. */
export class Draft {
  constructor({ header, nonce, ciphertext, tag, shares }) {
    Object.assign(this, { header, nonce, ciphertext, tag, shares });
  }

  /** Sign the envelope; `receipts`: one per custodian in header order (or none offline). */
  async finish(sender, receipts = []) {
    if (sender.public.fingerprintHex !== this.header.sender.fingerprintHex) {
      throw new SignatureError("draft: signing identity is not the header's sender");
    }
    const unsigned = new Envelope({ ...this, receipts, signature: new Uint8Array(64) });
    // Round-trip through the decoder so a draft can never sign what a reader would refuse.
    const checked = await Envelope.fromJson(unsigned.toJson());
    checked.signature = await sender.sign("envelope", checked.signedBody());
    return checked;
  }
}

/**
 * A version 2 message, its key split, waiting to be sealed and then signed. `shares[i]` goes
 * to `header.custodians[i]`. seal() seals the message as it is read, any number of times and
 * from any chunk (the same bytes each time); finish() signs the document once the
 * custodians' receipts and the stream's digest are known. Like a Draft, it holds the key and
 * its shares: keep it in memory only.
 */
export class StreamDraft {
  #key;

  constructor({ header, shares, filename = null, key }) {
    Object.assign(this, { header, shares, filename });
    this.#key = key;
  }

  /**
   * A draft again, from its header and all its shares (as a resumed send keeps them): each
   * checked against the header's digest, the key against its commitment.
   */
  static async restore(header, shares, filename = null) {
    if (header.version !== 2 || shares.length !== header.n)
      throw new FieldError("draft: a version 2 header and one share per custodian expected");
    if ((filename === null) !== (header.payload === null))
      throw new FieldError("draft: a file name is sent if and only if the header says so");
    for (const [i, slot] of header.custodians.entries()) {
      const share = shares[i];
      if (
        !equal(share.splitId, header.messageId) ||
        !equal(await shareDigest(header.messageId, slot.name, share), slot.shareDigest)
      )
        throw new ShareDigestError(`draft: the share of ${slot.name} is not the header's`);
    }
    const key = combine(shares.slice(0, header.threshold));
    await checkCommitment(key, header.messageId, header.keyCommitment);
    return new StreamDraft({ header, shares, filename, key });
  }

  /** The plaintext's length: the message's, and its name's record, if any. */
  get length() {
    return this.header.length;
  }

  /** The sealed stream's length in bytes. */
  get streamLength() {
    return stream.sealedLength(this.length);
  }

  // What the plaintext begins with before the message: the name's record, or nothing.
  get #record() {
    return this.filename === null ? new Uint8Array(0) : frame(this.filename, new Uint8Array(0));
  }

  /** Where in the message the plaintext of chunk `start` begins: read the message from there
   * to seal() from that chunk. */
  messageOffset(start) {
    return Math.max(0, start * stream.CHUNK_BYTES - this.#record.length);
  }

  /**
   * Seal the message `message` yields (an iterable or async iterable of Uint8Array pieces),
   * from messageOffset(start) to its end, as the stream's chunks from `start` on. A message
   * that is not as long as the header says (a file that changed while it was read) is a
   * ParameterError, thrown before any chunk past its end is sealed.
   */
  async *seal(message, { start = 0 } = {}) {
    const record = this.#record;
    const key = await stream.payloadKey(this.#key, this.header.messageId, this.header.aad());
    const checked = exactly(this.length - record.length, this.messageOffset(start), message);
    // A record lies within chunk 0.
    const pieces = start === 0 ? prefixed(record, checked) : checked;
    yield* stream.encrypt(key, pieces, { start });
  }

  /** Sign the document: `receipts` one per custodian in header order, `digest` the SHA-256
   * of the whole sealed stream. */
  async finish(sender, receipts, digest) {
    if (sender.public.fingerprintHex !== this.header.sender.fingerprintHex) {
      throw new SignatureError("draft: signing identity is not the header's sender");
    }
    const unsigned = new StreamEnvelope({
      header: this.header,
      payloadDigest: digest,
      payloadLength: this.streamLength,
      receipts,
      signature: new Uint8Array(64),
    });
    // Round-trip through the decoder so a draft can never sign what a reader would refuse.
    const checked = await StreamEnvelope.fromJson(unsigned.toJson());
    checked.signature = await sender.sign("envelope", checked.signedBody());
    return checked;
  }
}

async function* prefixed(first, rest) {
  if (first.length) yield first;
  yield* rest;
}

// `pieces`, a message of `length` bytes read from `offset`, checked to end there.
async function* exactly(length, offset, pieces) {
  let seen = offset;
  for await (const piece of pieces) {
    seen += piece.length;
    if (seen > length) {
      throw new ParameterError(
        `the message is longer than the ${length} bytes it was when the send began (did the file change?)`,
      );
    }
    yield piece;
  }
  if (seen !== length) {
    throw new ParameterError(
      `the message ended after ${seen} of the ${length} bytes it had when the send began (did the file change?)`,
    );
  }
}

/** A byte source that hands out `bytes` in order, for replaying a test vector's randomness. */
export function replay(bytes) {
  let offset = 0;
  return (count) => {
    if (offset + count > bytes.length) throw new RangeError("replayed randomness exhausted");
    offset += count;
    return bytes.slice(offset - count, offset);
  };
}

/**
 * Encrypt `plaintext` under a fresh key and split the key among `custodians` (§7.8).
 * @param opts {sender: PublicIdentity, recipients: PublicIdentity[], custodians: [{name, fingerprintHex}],
 *              threshold, policy?: Policy, created?: number, random?: (n) => Uint8Array,
 *              filename?: string (encrypted with the message, §7.10; see nameForFile)}
 * `random` draws, in order: message id (16), key (32), split coefficients, AES-GCM nonce (12).
 */
export async function prepare(plaintext, options) {
  const { filename = null, random = randomBytes } = options;
  const payload = filename === null ? null : PAYLOAD_NAMED;
  if (filename !== null) plaintext = frame(filename, plaintext);
  const { header, key, shares } = await headerAndKey(payload, options);
  const nonce = random(12);
  const { ciphertext, tag } = await aead.encrypt(key, nonce, plaintext, header.aad());
  key.fill(0);
  return new Draft({ header, nonce, ciphertext, tag, shares });
}

/**
 * prepare() for version 2 (spec/format-v2.md): a message of `length` bytes, to be sealed as
 * it is read (StreamDraft.seal), under a fresh key split among `custodians`. Nothing is read
 * or sealed yet: the header, which every chunk is bound to, needs only the length. The
 * options are prepare()'s; `random` draws message id (16), key (32), split coefficients.
 */
export async function prepareStream(length, options) {
  const { filename = null } = options;
  const record = filename === null ? 0 : frame(filename, new Uint8Array(0)).length;
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_STREAM_LENGTH - record)
    throw new ParameterError(`a message of ${length} bytes is outside what version 2 carries`);
  if (stream.chunkCount(length + record) > stream.MAX_CHUNKS)
    throw new ParameterError(`a message of ${length} bytes is more than 2**32 chunks`);
  const payload = filename === null ? null : PAYLOAD_NAMED;
  const { header, key, shares } = await headerAndKey(payload, options, {
    version: 2,
    length: length + record,
  });
  return new StreamDraft({ header, shares, filename, key });
}

// A new message's header, its fresh key, and the key's shares.
async function headerAndKey(
  payload,
  {
    sender,
    recipients,
    custodians,
    threshold,
    policy = new Policy(),
    created = null,
    random = randomBytes,
  },
  { version = 1, length = null } = {},
) {
  checkParameters(custodians.length, threshold);
  if (!recipients.length) throw new FieldError("envelope: at least one recipient is needed");
  const messageId = random(16);
  const key = random(32);
  const shares = splitSecret(key, custodians.length, threshold, messageId, random);
  const slots = [];
  for (const [i, custodian] of custodians.entries()) {
    const name = checkName(custodian.name, { field: "custodian" });
    slots.push(
      new CustodianSlot(
        name,
        custodian.fingerprintHex,
        await shareDigest(messageId, name, shares[i]),
      ),
    );
  }
  const header = new Header({
    messageId,
    sender,
    recipients: recipients.map((r) => Recipient.of(r)),
    created: created ?? Math.floor(Date.now() / 1000),
    threshold,
    custodians: slots,
    policy,
    keyCommitment: await keyCommitment(key, messageId),
    payload,
    version,
    length,
  });
  unique(
    header.recipients.map((r) => r.name),
    "envelope.header.recipients",
  );
  unique(
    header.recipients.map((r) => r.fingerprintHex),
    "envelope.header.recipients",
    "fingerprint",
  );
  unique(
    slots.map((c) => c.name),
    "envelope.header.custodians",
  );
  unique(
    slots.filter((c) => c.fingerprintHex !== null).map((c) => c.fingerprintHex),
    "envelope.header.custodians",
    "fingerprint",
  );
  return { header, key, shares };
}
