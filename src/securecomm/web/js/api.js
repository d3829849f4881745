// The page's flows (DESIGN.md "Flows"), as src/securecomm/client/flows.py does them for the CLI:
// register, send (deposit each share straight with its custodian, then post the envelope),
// inbox, read (ask every custodian, check each share as it comes), and the operator's calls.
// Only ciphertext, receipts and public keys ever go to the relay. Every answer of the relay
// is checked to be signed by its pinned key for the request it answers (spec §11.4) before
// anything of it is used.

import { b64decode, labelledHash, sha256, toHex } from "./bytes.js";
import * as canonical from "./canonical.js";
import { Envelope, Receipt } from "./envelope.js";
import {
  AnswerSignatureError,
  FormatError,
  QuorumError,
  SecureCommError,
  ServiceError,
  SignatureError,
} from "./errors.js";
import {
  ANSWER_NONCE_HEADER,
  answerSignatures,
  newNonce,
  signRequest,
  verifyAnswer,
} from "./httpsig.js";
import { PublicIdentity } from "./identity.js";
import { depositBody, openRelease } from "./protocol.js";
import * as store from "./store.js";

const TIMEOUT_MS = 15000;
// What a proxy or load balancer answers itself when the service behind it cannot be reached.
const GATEWAY = new Set([502, 503, 504]);

/**
 * One service (the relay or a custodian) at `url`; requests are signed for `audience`.
 * `answers` is null for a custodian (its answers are signed objects of their own), or, for
 * the relay, `{key}`: every answer must carry the relay's signature, by `key`, for the
 * request it answers; with `key` null the caller checks it (the page's first call, which
 * learns the key from the answer).
 */
export class ServiceClient {
  constructor(url, audience, identity = null, timeoutMs = TIMEOUT_MS, answers = null) {
    Object.assign(this, { url: url.replace(/\/$/, ""), audience, identity, timeoutMs, answers });
  }

  /**
   * Send one request; return {status, bytes, json(), answer} for a 2xx answer, else throw
   * ServiceError. `answer` is what a signed answer is checked with: {values, binding}.
   */
  async request(method, path, { query = "", body = null, raw = null, sign = true } = {}) {
    const content = raw ?? (body === null ? new Uint8Array(0) : canonical.dumps(body));
    const headers = content.length ? { "Content-Type": "application/json" } : {};
    // Fresh for every request: the answer must be signed for this one (spec §11.4).
    const nonce = newNonce();
    const signed = Boolean(sign && this.identity);
    if (signed) {
      Object.assign(
        headers,
        await signRequest(this.identity, {
          method,
          path,
          query,
          body: content,
          audience: this.audience,
          nonce,
        }),
      );
    } else if (this.answers) {
      headers[ANSWER_NONCE_HEADER] = nonce;
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    let response;
    let bytes;
    try {
      response = await fetch(this.url + path + (query ? `?${query}` : ""), {
        method,
        headers,
        body: content.length ? content : undefined,
        cache: "no-store",
        credentials: "omit",
        redirect: "error",
        signal: controller.signal,
      });
      bytes = new Uint8Array(await response.arrayBuffer());
    } catch (error) {
      const why =
        error.name === "AbortError"
          ? `no answer within ${this.timeoutMs / 1000} s`
          : "cannot be reached (down, or it refuses this page's origin)";
      throw new ServiceError(this.audience, 0, "unreachable", `${this.audience} ${why}`);
    } finally {
      clearTimeout(timer);
    }
    const answer = {
      values: answerSignatures(response.headers),
      binding: {
        method: method.toUpperCase(),
        path,
        query,
        nonce,
        caller: signed ? this.identity.public.fingerprintHex : null,
      },
    };
    if (this.answers?.key && !answer.values.length && GATEWAY.has(response.status)) {
      // A front (nginx before the relay's replicas) answering for a replica it could not
      // reach. Unsigned, so nothing in it is believed: unreachable, as a refused connection.
      throw new ServiceError(
        this.audience,
        response.status,
        "unreachable",
        `${this.url} is unavailable: a proxy in front of it answered HTTP ${response.status}`,
      );
    }
    if (this.answers?.key) {
      await verifyAnswer(this.answers.key, answer.values, answer.binding, {
        status: response.status,
        body: bytes,
        service: this.audience,
      });
    }
    if (response.status >= 400) {
      let code = "http_error";
      let message = `HTTP ${response.status}`;
      try {
        const answer = canonical.parseJson(bytes, { what: `the answer of ${this.audience}` });
        code = String(answer.code);
        message = String(answer.message);
      } catch {
        // not one of our JSON errors: keep the status
      }
      throw new ServiceError(this.audience, response.status, code, message);
    }
    return {
      status: response.status,
      bytes,
      answer,
      json: () => canonical.parseJson(bytes, { what: `the answer of ${this.audience}` }),
    };
  }
}

// The relay's key, pinned in this browser: every answer of the relay is checked with it.
let relayKey = null;

function relay(identity = null) {
  if (!relayKey) throw new SignatureError("the relay's key is not known yet: reload the page");
  return new ServiceClient(location.origin, "relay", identity, TIMEOUT_MS, { key: relayKey });
}

/**
 * The custodians, where they are and the threshold, as the relay is configured; and the
 * relay's key (spec §13.2), which signs this very answer: pinned on first use, refused if it
 * changed, then used to check every later answer of the relay.
 */
export async function loadConfig(known) {
  const client = new ServiceClient(location.origin, "relay", null, TIMEOUT_MS, { key: null });
  const answer = await client.request("GET", "/api/v1/web-config", { sign: false });
  const config = answer.json();
  const presented = await PublicIdentity.fromJson(config.relay, "the relay's key");
  if (presented.name !== "relay")
    throw new SignatureError(`the relay presents a key named ${presented.name}`);
  await verifyAnswer(presented, answer.answer.values, answer.answer.binding, {
    status: answer.status,
    body: answer.bytes,
  });
  known.check(presented, "the page did not start");
  await known.pin(presented);
  relayKey = known.get("relay");
  return config;
}

/**
 * A custodian's key, checked: its self-signature, the fingerprint the relay's configuration
 * names (if any) and the key pinned in this browser (pinned on first use).
 */
export async function custodianKey(custodian, known) {
  const client = new ServiceClient(custodian.url, custodian.name, null, 5000);
  const answer = (await client.request("GET", "/v1/identity", { sign: false })).json();
  const presented = await PublicIdentity.fromJson(answer.identity, `${custodian.name} identity`);
  if (presented.name !== custodian.name)
    throw new SignatureError(
      `${custodian.url} says it is ${presented.name}, not ${custodian.name}`,
    );
  await presented.verify(
    b64decode(answer.signature, { field: "signature", length: 64 }),
    "identity",
    answer.identity,
  );
  if (custodian.fingerprint && custodian.fingerprint !== presented.fingerprintHex) {
    throw new SignatureError(
      `custodian ${custodian.name} presents a key (${presented.shortFingerprint()}) other than the one configured`,
    );
  }
  await known.pin(presented); // refuses a changed key; the page lists the pinned ones
  return presented;
}

/** The key the relay's directory lists under `name` (ServiceError "not_found" if none). */
async function directoryEntry(name) {
  const entry = (
    await relay().request("GET", `/api/v1/directory/${encodeURIComponent(name)}`, { sign: false })
  ).json();
  const listed = await PublicIdentity.fromJson(entry.identity, `directory entry ${name}`);
  if (listed.name !== name)
    throw new SignatureError(`the directory answered ${listed.name} for ${name}`);
  return listed;
}

/** A contact's key from the relay's directory, pinned on first use. */
export async function lookupContact(name, known, warn = () => {}) {
  let listed;
  try {
    listed = await directoryEntry(name);
  } catch (error) {
    const pinned = known.get(name);
    if (
      pinned &&
      error instanceof ServiceError &&
      ["not_found", "unreachable"].includes(error.code)
    )
      return pinned;
    if (error instanceof ServiceError && error.code === "not_found") {
      throw new ServiceError(
        "relay",
        404,
        "not_found",
        `nobody called ${name} is registered with this relay`,
      );
    }
    throw error;
  }
  known.check(listed, "nothing was sent");
  if (await known.pin(listed))
    warn(
      `pinned ${name}'s key from the relay's directory: ${listed.shortFingerprint()} (compare it with them out of band)`,
    );
  return known.get(name);
}

/**
 * Whether the relay's directory lists `identity` under its name: {state: "registered"} with
 * this key, {state: "other", listed} with another key, or {state: "absent"}.
 */
export async function registration(identity) {
  let listed;
  try {
    listed = await directoryEntry(identity.name);
  } catch (error) {
    if (error instanceof ServiceError && error.code === "not_found") return { state: "absent" };
    throw error;
  }
  return listed.fingerprintHex === identity.public.fingerprintHex
    ? { state: "registered" }
    : { state: "other", listed };
}

/** Put `identity`'s public keys in the relay's directory under its name. */
export async function register(identity) {
  const body = { v: 1, identity: identity.public.toJson() };
  return (
    await relay(identity).request("PUT", `/api/v1/directory/${identity.name}`, { body })
  ).json();
}

function listFailures(headline, failures) {
  return (
    headline +
    ": " +
    Object.entries(failures)
      .map(([name, why]) => `${name}: ${why}`)
      .join("; ")
  );
}

function reason(error) {
  if (error instanceof ServiceError) return error.reason;
  if (error instanceof SecureCommError) return error.message;
  return `unusable answer (${error?.name ?? "error"})`;
}

/** Run named async tasks at once; resolve to [results, failures] by name. */
async function parallel(tasks) {
  const names = Object.keys(tasks);
  const settled = await Promise.allSettled(names.map((name) => tasks[name]()));
  const results = {};
  const failures = {};
  settled.forEach((outcome, i) => {
    if (outcome.status === "fulfilled") results[names[i]] = outcome.value;
    else failures[names[i]] = reason(outcome.reason);
  });
  return [results, failures];
}

/** Best effort: destroy every deposit of a message (by ref where a receipt came back). */
async function withdraw(config, sender, receipts, messageId) {
  await parallel(
    Object.fromEntries(
      config.custodians.map((c) => {
        const receipt = receipts[c.name];
        const client = new ServiceClient(c.url, c.name, sender, 5000);
        return [
          c.name,
          () =>
            receipt
              ? client.request("DELETE", `/v1/deposits/${receipt.ref}`)
              : client.request("DELETE", "/v1/deposits", { query: `message_id=${messageId}` }),
        ];
      }),
    ),
  );
}

/**
 * Send `message` (bytes) from `sender` to the named recipients. Returns what the page shows:
 * the envelope sent, the relay's copy of it, the custody receipts.
 */
export async function send({
  config,
  known,
  sender,
  recipients,
  message,
  filename = null,
  policy,
  prepare,
  progress = () => {},
  warn = () => {},
}) {
  progress("checking keys");
  const [keys, failures] = await parallel(
    Object.fromEntries(config.custodians.map((c) => [c.name, () => custodianKey(c, known)])),
  );
  if (Object.keys(failures).length) {
    throw new ServiceError(
      "send",
      0,
      "custodians_unavailable",
      listFailures("nothing was sent; these custodians could not be checked", failures),
    );
  }
  const readers = [];
  for (const name of recipients) readers.push(await lookupContact(name, known, warn));
  progress("encrypting");
  const draft = await prepare(message, {
    sender: sender.public,
    recipients: readers,
    custodians: config.custodians.map((c) => ({
      name: c.name,
      fingerprintHex: keys[c.name].fingerprintHex,
    })),
    threshold: config.threshold,
    policy,
    filename,
  });
  progress("depositing shares");
  const deposit = async (position, custodian) => {
    const key = keys[custodian.name];
    const body = await depositBody(draft, position, key, sender.public);
    const client = new ServiceClient(custodian.url, custodian.name, sender);
    const receipt = Receipt.fromJson(
      (await client.request("POST", "/v1/deposits", { body })).json(),
    );
    await receipt.verify(key);
    const slot = draft.header.custodians[position];
    if (
      receipt.index !== position + 1 ||
      toHex(receipt.messageId) !== draft.header.id ||
      toHex(receipt.shareDigest) !== toHex(slot.shareDigest)
    ) {
      throw new SignatureError("its receipt is for another share");
    }
    return receipt;
  };
  const [receipts, refused] = await parallel(
    Object.fromEntries(config.custodians.map((c, i) => [c.name, () => deposit(i, c)])),
  );
  if (Object.keys(refused).length) {
    await withdraw(config, sender, receipts, draft.header.id);
    throw new ServiceError(
      "send",
      0,
      "deposit_failed",
      listFailures(
        "nothing was posted (deposits withdrawn); these custodians did not take their share",
        refused,
      ),
    );
  }
  const envelope = await draft.finish(
    sender,
    config.custodians.map((c) => receipts[c.name]),
  );
  draft.shares.length = 0; // the shares are with their custodians now; drop ours
  const data = envelope.toBytes();
  progress("uploading");
  const client = relay(sender);
  let stored;
  try {
    stored = (await client.request("POST", "/api/v1/messages", { raw: data, sign: false })).json();
  } catch (error) {
    // An answer that is not the relay's says nothing: the envelope may well be stored.
    if (error instanceof AnswerSignatureError)
      await client.request("DELETE", `/api/v1/messages/${envelope.id}`).catch(() => {});
    await withdraw(config, sender, receipts, envelope.id);
    throw error;
  }
  const localDigest = toHex(await sha256(data));
  // The relay's copy, fetched back: the page shows it beside what it sent. The message is
  // posted by now, so failing to fetch it is reported, not treated as a failed send.
  let copy = null;
  let copyError = null;
  try {
    copy = (await client.request("GET", `/api/v1/messages/${envelope.id}`)).bytes;
  } catch (error) {
    copyError = reason(error);
  }
  const copyDigest = copy === null ? localDigest : toHex(await sha256(copy));
  if (stored.digest !== localDigest || stored.id !== envelope.id || copyDigest !== localDigest) {
    await withdraw(config, sender, receipts, envelope.id);
    await client.request("DELETE", `/api/v1/messages/${envelope.id}`).catch(() => {});
    throw new ServiceError(
      "relay",
      0,
      "bad_copy",
      "the relay's stored copy differs from what was sent; the message and its deposits were withdrawn",
    );
  }
  return {
    envelope,
    data,
    copy,
    copyError,
    digest: localDigest,
    relayDigest: stored.digest,
    receipts: envelope.receipts,
  };
}

/** This identity's messages on the relay, oldest first. */
export async function inbox(reader) {
  const messages = [];
  let after = "";
  const client = relay(reader);
  for (;;) {
    const query = "limit=100" + (after ? `&after=${after}` : "");
    const page = (await client.request("GET", "/api/v1/inbox", { query })).json();
    messages.push(...page.messages);
    if (!page.next) return messages;
    after = page.next;
  }
}

const pendingKey = (reader, messageId) => `${reader.public.fingerprintHex}:${messageId}`;

/**
 * What earlier reads of a message kept: release ids waiting for approval, and whole release
 * answers from a read that came up short (sealed to the reader, as they were on the wire).
 * A record written before releases were kept, {custodian: release id}, is pending only.
 */
function keptState(record) {
  const object = (value) =>
    typeof value === "object" && value !== null && !Array.isArray(value) ? value : {};
  const value = object(record);
  const shaped = Object.keys(value).every((k) => k === "pending" || k === "released");
  const pending = shaped ? object(value.pending) : value;
  return {
    pending: Object.fromEntries(Object.entries(pending).filter(([, id]) => typeof id === "string")),
    released: shaped ? object(value.released) : {},
  };
}

/**
 * Read message `messageId`: fetch and verify the envelope, ask every custodian for its
 * share, check each against the signed digest, combine t and decrypt. `onStatus(name,
 * state, detail)` reports each custodian: asking, released, pending, refused, down, bad.
 * Throws (and decrypts nothing) unless every check passed. A read that ends with fewer
 * than t good shares keeps the releases that arrived for the next read, which uses them
 * as if they had just arrived instead of asking those custodians again (spec §12.2).
 */
export async function read({
  config,
  known,
  reader,
  messageId,
  onStatus = () => {},
  warn = () => {},
}) {
  const data = (await relay(reader).request("GET", `/api/v1/messages/${messageId}`)).bytes;
  let envelope;
  try {
    envelope = await Envelope.fromBytes(data);
  } catch (error) {
    throw new SignatureError(
      `the relay's copy of message ${messageId} is malformed (altered on the way?): ${error.message}`,
    );
  }
  if (envelope.id !== messageId)
    throw new SignatureError(`the relay answered with message ${envelope.id}, not ${messageId}`);
  const sender = envelope.header.sender;
  known.check(sender, "nothing was decrypted");
  const pinnedSender = known.get(sender.name);
  if (!pinnedSender) {
    warn(
      `${sender.name} is not among your known keys: the signature proves the message is intact, not who sent it (fingerprint ${sender.shortFingerprint()})`,
    );
  }
  const urls = Object.fromEntries(config.custodians.map((c) => [c.name, c]));
  const names = envelope.header.custodians.map((slot) => slot.name);
  const keys = {};
  for (const name of names) {
    if (!urls[name])
      throw new SignatureError(
        `message ${messageId} names custodian ${name}, which this relay does not know`,
      );
    keys[name] = known.get(name) ?? (await custodianKey(urls[name], known));
  }
  await envelope.verify(pinnedSender, keys, { recipient: reader.public });
  const key = pendingKey(reader, messageId);
  const kept = keptState(await store.get("pending", key));
  const now = { pending: {}, released: {} }; // what this read keeps if it comes up short

  const check = async (name, release) => {
    const share = await openRelease(release, reader, keys[name]);
    await envelope.checkShare(name, share);
    return share;
  };

  const collect = async (name) => {
    let dropped = "";
    if (kept.released[name]) {
      try {
        const share = await check(name, kept.released[name]);
        now.released[name] = kept.released[name];
        onStatus(
          name,
          "released",
          `(kept from an earlier read) share ${share.index}, checked against the sender's digest`,
        );
        return share;
      } catch (error) {
        dropped = ` (the release kept from an earlier read failed its check: ${reason(error)}; it was dropped and ${name} asked again)`;
      }
    }
    onStatus(name, "asking", dropped);
    const client = new ServiceClient(urls[name].url, name, reader);
    let answer;
    try {
      answer = kept.pending[name]
        ? await client.request("GET", `/v1/releases/${kept.pending[name]}`)
        : await client.request("POST", "/v1/releases", { body: { v: 1, message_id: messageId } });
    } catch (error) {
      const down = error instanceof ServiceError && error.status === 0;
      // A release id stays worth asking again while its custodian cannot be reached.
      if (down && kept.pending[name]) now.pending[name] = kept.pending[name];
      onStatus(name, down ? "down" : "refused", reason(error) + dropped);
      throw error;
    }
    if (answer.status === 202) {
      const releaseId = answer.json().release_id;
      now.pending[name] = releaseId;
      onStatus(
        name,
        "pending",
        `waiting for ${name}'s operator to approve release ${releaseId.slice(0, 8)}…${dropped}`,
      );
      throw new ServiceError(name, 202, "pending", "waiting for the operator's approval");
    }
    try {
      const release = answer.json();
      const share = await check(name, release);
      now.released[name] = release;
      onStatus(
        name,
        "released",
        `share ${share.index} released and checked against the sender's digest${dropped}`,
      );
      return share;
    } catch (error) {
      onStatus(name, "bad", `${reason(error)} — this share was not used`);
      throw error;
    }
  };

  const [good, failures] = await parallel(
    Object.fromEntries(names.map((name) => [name, () => collect(name)])),
  );
  const t = envelope.header.threshold;
  const usable = names.filter((name) => good[name]);
  if (usable.length < t) {
    const keeping = Object.keys(now.released).length;
    if (keeping || Object.keys(now.pending).length) await store.put("pending", key, now);
    else await store.remove("pending", key);
    const error = new QuorumError(
      listFailures(
        `${usable.length} good share(s) of the ${t} needed; nothing was decrypted`,
        failures,
      ),
    );
    Object.assign(error, { good: usable.length, needed: t, kept: keeping });
    throw error;
  }
  // Every good share, so a share the sender made off the polynomial is caught (§7.7 step 7).
  const chosen = Object.fromEntries(usable.map((name) => [name, good[name]]));
  // The sender's file name, if any, was checked on decryption (spec §7.10).
  const { filename, content: plaintext } = await envelope.openNamed(chosen);
  await store.remove("pending", key);
  return {
    plaintext,
    filename,
    envelope,
    sender,
    senderPinned: Boolean(pinnedSender),
    used: Object.keys(chosen),
  };
}

// The operator's calls: each custodian answers only its own operator's key.

export async function pendingReleases(custodian, operator) {
  const client = new ServiceClient(custodian.url, custodian.name, operator);
  return (await client.request("GET", "/v1/releases", { query: "status=pending" })).json().releases;
}

export async function decide(custodian, operator, releaseId, verdict) {
  const client = new ServiceClient(custodian.url, custodian.name, operator);
  return (await client.request("POST", `/v1/releases/${releaseId}/${verdict}`)).json();
}

const GENESIS = "0".repeat(64);
// The most entries a custodian puts in one page of GET /v1/audit (custodian/audit.py).
const AUDIT_PAGE_ENTRIES = 1000;
// The newest entries the operator view lists; every entry is verified.
const AUDIT_SHOWN = 200;

/**
 * Walk the audit log (§12.3), an array or an async iterable of entries (every page, in
 * order: the chain carries across pages); name the first entry whose chain, hash or
 * signature fails.
 */
export async function verifyAudit(entries, custodian) {
  let prev = GENESIS;
  let position = 0;
  for await (const entry of entries) {
    position += 1;
    const bad = (why) => ({
      ok: false,
      count: position - 1,
      firstBad: position,
      reason: `entry ${position}: ${why}`,
    });
    if (entry === null || typeof entry !== "object") return bad("malformed");
    if (entry.seq !== position)
      return bad(`has seq ${entry.seq} (an entry was removed or reordered)`);
    if (entry.prev !== prev)
      return bad(
        `does not follow entry ${position - 1} (an entry was removed, reordered or edited)`,
      );
    let digest;
    try {
      const body = {
        seq: entry.seq,
        time: entry.time,
        event: entry.event,
        data: entry.data,
        prev: entry.prev,
      };
      digest = toHex(await labelledHash("securecomm/v1/audit-entry", canonical.dumps(body)));
    } catch {
      return bad("malformed");
    }
    if (digest !== entry.hash) return bad("its contents do not match its hash (edited)");
    try {
      await custodian.verify(
        b64decode(entry.signature, { field: "signature", length: 64 }),
        "audit",
        { seq: entry.seq, hash: entry.hash },
      );
    } catch {
      return bad(`not signed by ${custodian.name} (edited and re-hashed)`);
    }
    prev = entry.hash;
  }
  return { ok: true, count: position };
}

/** Every entry of a custodian's audit log, first to last, a page at a time (§12.3). */
async function* auditEntries(client) {
  let after = 0;
  for (;;) {
    const query = `after=${after}&limit=${AUDIT_PAGE_ENTRIES}`;
    const page = (await client.request("GET", "/v1/audit", { query })).json();
    const where = `${client.audience}'s audit page after ${after}`;
    if (!Array.isArray(page.entries)) throw new FormatError(`${where}: no list of entries`);
    yield* page.entries;
    if (page.next === null) return;
    // Anything but the last seq would repeat or skip entries, or never end.
    const last = page.entries.at(-1);
    if (!Number.isInteger(page.next) || page.next !== last?.seq || page.next <= after)
      throw new FormatError(
        `${where}: next is ${JSON.stringify(page.next)}, not the seq of its last entry`,
      );
    after = page.next;
  }
}

/** Read and verify a custodian's whole log; keep its newest entries to show. */
export async function audit(custodian, operator, known) {
  const client = new ServiceClient(custodian.url, custodian.name, operator);
  const key = known.get(custodian.name) ?? (await custodianKey(custodian, known));
  const newest = [];
  let read = 0;
  async function* keeping() {
    for await (const entry of auditEntries(client)) {
      read += 1;
      newest.push(entry);
      if (newest.length > AUDIT_SHOWN) newest.shift();
      yield entry;
    }
  }
  const report = await verifyAudit(keeping(), key);
  return { entries: newest, read, report };
}
