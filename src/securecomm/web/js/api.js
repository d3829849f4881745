// The page's flows (DESIGN.md "Flows"), as src/securecomm/client/flows.py does them for the CLI:
// register, send (deposit each share straight with its custodian, then post the envelope),
// inbox, read (ask every custodian, check each share as it comes), and the operator's calls.
// A file above STREAM_ABOVE_BYTES goes as format version 2 (spec/format-v2.md), as
// client/streamed.py sends and reads it: its stream is sealed and uploaded in pieces before
// any share is deposited, and read back in ranges, chunk by chunk, into a file that is
// committed only once every chunk opened. Only ciphertext, receipts and public keys ever go
// to the relay. Every answer of the relay is checked to be signed by its pinned key for the
// request it answers (spec §11.4) before anything of it is used.

import { b64decode, b64encode, labelledHash, sha256, toHex } from "./bytes.js";
import * as canonical from "./canonical.js";
import { checkListed, checkReceipt } from "./devices.js";
import {
  Header,
  Receipt,
  StreamDraft,
  StreamEnvelope,
  documentFromBytes,
  nameRecord,
  prepareStream,
  utcText,
} from "./envelope.js";
import {
  AnswerSignatureError,
  FormatError,
  InterruptedOperationError,
  ParameterError,
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
import * as hpke from "./hpke.js";
import { PublicIdentity } from "./identity.js";
import { depositBody, openRelease } from "./protocol.js";
import { Share } from "./shares.js";
import * as store from "./store.js";
import * as stream from "./stream.js";
import { sha256 as incrementalSha256 } from "./vendor/noble-hashes/sha2.js";

const TIMEOUT_MS = 15000;
// A piece of a stream (up to 4 MiB) may take longer than a JSON call on a slow link.
const PIECE_TIMEOUT_MS = 120000;
// Once a read has t good shares, how long the custodians that have not answered yet get
// (the CLI's grace, client/flows.py read): a lying one is still named when honest ones
// were faster, and a hung one holds the read this long only.
const READ_GRACE_MS = 1000;

/** Above this many bytes a file is sent as version 2, a stream of chunks (the CLI's
 * STREAM_ABOVE_BYTES, cli/people.py); a message up to it stays version 1. */
export const STREAM_ABOVE_BYTES = 1024 * 1024;
/** The most one request carries: 64 sealed chunks (spec/format-v2.md §5). */
export const PIECE_BYTES = 64 * stream.SEALED_CHUNK_BYTES;
// How much of a file is read at a time.
const READ_BYTES = 1024 * 1024;
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
   * `raw` is sent as it is, as `contentType`; `body` as canonical JSON. `signal` (an
   * AbortSignal) stops the request: an InterruptedOperationError.
   */
  async request(
    method,
    path,
    {
      query = "",
      body = null,
      raw = null,
      sign = true,
      contentType = "application/json",
      timeoutMs = this.timeoutMs,
      signal = null,
    } = {},
  ) {
    const content = raw ?? (body === null ? new Uint8Array(0) : canonical.dumps(body));
    const headers = content.length ? { "Content-Type": contentType } : {};
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
    if (signal?.aborted) throw new InterruptedOperationError("interrupted");
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    const stop = () => controller.abort();
    signal?.addEventListener("abort", stop);
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
      if (signal?.aborted) throw new InterruptedOperationError("interrupted");
      const why =
        error.name === "AbortError"
          ? `no answer within ${timeoutMs / 1000} s`
          : "cannot be reached (down, or it refuses this page's origin)";
      // ServiceError puts the service's name before the message: not again in it.
      throw new ServiceError(this.audience, 0, "unreachable", why);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", stop);
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
  const presented = await presentedKey(custodian);
  await known.pin(presented); // refuses a changed key; the page lists the pinned ones
  return presented;
}

/** The key custodian `custodian` presents, checked as custodianKey does, but not pinned. */
async function presentedKey(custodian) {
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

/** The key the relay's directory lists under `name`, or null if none. */
export async function listedUnder(name) {
  try {
    return await directoryEntry(name);
  } catch (error) {
    if (error instanceof ServiceError && error.code === "not_found") return null;
    throw error;
  }
}

/** Why the relay would refuse to register `name` for a new key (spec §14.6), or null. */
export async function nameRefusal(name) {
  try {
    await relay().request("GET", `/api/v1/names/${encodeURIComponent(name)}`, { sign: false });
    return null;
  } catch (error) {
    if (error instanceof ServiceError && ["reserved_name", "lookalike_name"].includes(error.code))
      return error.reason;
    throw error;
  }
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
        `nobody called ${name} is registered with this relay; nothing was sent`,
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
  const listed = await listedUnder(identity.name);
  if (!listed) return { state: "absent" };
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

// A person's devices (spec/sessions.md §3), as client/devices.py adds, lists and revokes them.

/**
 * The devices of `person` (a PublicIdentity) as the relay's directory lists them, each
 * {delegation, revocation or null}, every entry checked to be signed by `person` (devices.js
 * checkListed): a list with one entry that is not is refused whole.
 */
export async function devices(person) {
  const path = `/api/v1/directory/${encodeURIComponent(person.name)}/devices`;
  const answer = (await relay().request("GET", path, { sign: false })).json();
  return checkListed(answer, person);
}

/** Hand the relay `delegation` (signed by `identity`) and the key sealed to its device. */
export async function addDevice(identity, delegation, sealedKey) {
  const body = { v: 1, delegation: delegation.toJson(), sealed_key: b64encode(sealedKey) };
  const path = `/api/v1/directory/${identity.name}/devices/${delegation.device.fingerprintHex}`;
  return (await relay(identity).request("PUT", path, { body })).json();
}

/**
 * Post `revocation` (signed by `identity`) to the relay and to every custodian at once, and
 * check each answer's receipt against the pinned key of the service that gave it. Resolves
 * to {confirmed: [names], failures: {name: why}}, the relay first, then the custodians in
 * the configuration's order. Posting it again is harmless: a service that holds it already
 * confirms it again.
 */
export async function revokeDevice({ config, known, identity, revocation }) {
  const body = { v: 1, revocation: revocation.toJson() };
  const post = async (client, path, key) => {
    const answer = (await client.request("POST", path, { body })).json();
    await checkReceipt(answer, await key(), client.audience, revocation);
  };
  const tasks = {
    relay: async () => post(relay(identity), "/api/v1/revocations", async () => relayKey),
  };
  for (const c of config.custodians) {
    const client = new ServiceClient(c.url, c.name, identity, 5000);
    const key = async () => known.get(c.name) ?? (await custodianKey(c, known));
    tasks[c.name] = () => post(client, "/v1/revocations", key);
  }
  const [results, failures] = await parallel(tasks);
  return { confirmed: Object.keys(tasks).filter((name) => name in results), failures };
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

/** Run named async tasks at once and wait for all; resolve to [results, failures] by name. */
async function parallel(tasks) {
  const { results, failures } = await gather(tasks);
  return [results, failures];
}

/**
 * Run named async tasks at once; with `enough`, stop waiting early, as the CLI's read does (client/flows.py, _Gather.wait): once `enough` tasks have succeeded, or
 * so many failed that `enough` never can, the others get at most `graceMs` more (an answer that comes meanwhile is still looked at, so a lying
 * custodian is named even when honest ones were faster); otherwise it waits until every
 * task has settled. Each task is called with an AbortSignal that is aborted when the
 * gather is over: a task still running then must do nothing more that anyone sees.
 * Resolves to {results, failures, errors, late}: by name, what each task that succeeded
 * returned, why each that failed did (`errors`: what it threw), and `late`, the names of
 * the tasks still running, each a failure "no answer within … s".
 */
export function gather(tasks, { enough = Infinity, graceMs = 0 } = {}) {
  const names = Object.keys(tasks);
  const started = performance.now();
  const over = new AbortController();
  const results = {};
  const failures = {};
  const errors = {};
  const outstanding = new Set(names);
  return new Promise((resolve) => {
    let timer = null;
    const finish = () => {
      if (over.signal.aborted) return;
      clearTimeout(timer);
      over.abort();
      const waited = ((performance.now() - started) / 1000).toFixed(1);
      for (const name of outstanding) failures[name] = `no answer within ${waited} s`;
      resolve({ results, failures, errors, late: names.filter((n) => outstanding.has(n)) });
    };
    const settled = (name) => {
      outstanding.delete(name);
      const got = Object.keys(results).length;
      // Enough in, or too few still to come for enough ever to be: the rest get the grace.
      const decided = got >= enough || (enough !== Infinity && got + outstanding.size < enough);
      if (!outstanding.size) finish();
      else if (timer === null && decided) timer = setTimeout(finish, graceMs);
    };
    if (!names.length) finish();
    for (const name of names) {
      Promise.resolve()
        .then(() => tasks[name](over.signal))
        .then(
          (value) => {
            if (over.signal.aborted) return; // too late: the gather is over
            results[name] = value;
            settled(name);
          },
          (error) => {
            if (over.signal.aborted) return;
            errors[name] = error;
            failures[name] = reason(error);
            settled(name);
          },
        );
    }
  });
}

/** Best effort: destroy every deposit of a message (by ref where a receipt came back). */
async function withdraw(config, sender, receipts, messageId) {
  const byId = { path: "/v1/deposits", query: `message_id=${messageId}` };
  await destroyDeposits(
    config,
    sender,
    Object.fromEntries(
      config.custodians.map((c) => {
        const receipt = receipts[c.name];
        return [c.name, receipt ? { path: `/v1/deposits/${receipt.ref}` } : byId];
      }),
    ),
    5000,
  );
}

/** Each custodian named in `targets` at once: DELETE at its {path, query}, as `sender`.
 * Resolves to the gathering (`gather`): by name, each that answered and why each other did
 * not. A custodian the network does not know is a failure, named. */
function destroyDeposits(config, sender, targets, timeoutMs = TIMEOUT_MS) {
  const urls = Object.fromEntries(config.custodians.map((c) => [c.name, c.url]));
  return gather(
    Object.fromEntries(
      Object.entries(targets).map(([name, { path, query }]) => [
        name,
        () => {
          if (!urls[name])
            throw new SecureCommError(`custodian ${name} is not one this relay knows`);
          const custodian = new ServiceClient(urls[name], name, sender, timeoutMs);
          return custodian.request("DELETE", path, { query });
        },
      ]),
    ),
  );
}

/** The names the network's own parties hold: the relay's and each custodian's (as
 * Settings.party_names in config.py). No person takes one, and none is a recipient. */
export function partyNames(config) {
  return ["relay", ...(config?.custodians ?? []).map((c) => c.name)];
}

/** Every custodian's key, checked, and each recipient's from the directory (pinned). */
async function parties({ config, known, recipients, progress, warn }) {
  // A party's key is pinned here (the network's), so a lookup would find it: sealed to a
  // custodian, the message would be that custodian's to read with two others' shares.
  const named = recipients.filter((name) => partyNames(config).includes(name));
  if (named.length)
    throw new SecureCommError(
      `${named.join(", ")}: the name of the relay or a custodian of this network, not a person's; nothing was sent`,
    );
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
  return { keys, readers };
}

function custodianSlots(config, keys) {
  return config.custodians.map((c) => ({
    name: c.name,
    fingerprintHex: keys[c.name].fingerprintHex,
  }));
}

/** One share with each custodian at once; all of them take theirs, or none keeps it. */
async function depositShares({ config, sender, draft, keys, progress }) {
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
  draft.shares.length = 0; // the shares are with their custodians now; drop ours
  return config.custodians.map((c) => receipts[c.name]);
}

/**
 * Post the signed envelope and check the relay stored exactly it; every deposit is withdrawn
 * (and the relay's copy, and a version 2 message's upload, deleted) if not. The relay's copy,
 * fetched back, is shown beside what was sent.
 */
async function postDocument({ config, sender, envelope, receipts, progress }) {
  const data = envelope.toBytes();
  const byName = Object.fromEntries(receipts.map((r) => [r.custodian, r]));
  const streamed = envelope instanceof StreamEnvelope;
  progress("posting");
  const client = relay(sender);
  // Whether the relay said its copy is gone (deleted, or never there: its signed 404).
  const drop = async () => {
    let gone = true;
    try {
      await client.request("DELETE", `/api/v1/messages/${envelope.id}`, { timeoutMs: 5000 });
    } catch (error) {
      gone = error instanceof ServiceError && error.status === 404;
    }
    if (streamed) await abandonUpload(client, envelope.id);
    return gone;
  };
  let stored;
  try {
    stored = (await client.request("POST", "/api/v1/messages", { raw: data, sign: false })).json();
  } catch (error) {
    // An answer that is not the relay's, or none (a link that failed, no answer in time,
    // a proxy's 5xx), says nothing: the envelope may well be stored. The relay's own
    // refusal stored nothing.
    const unknown = error instanceof AnswerSignatureError || transient(error);
    let gone = true;
    if (unknown) gone = await drop();
    else if (streamed) await abandonUpload(client, envelope.id);
    await withdraw(config, sender, byName, envelope.id);
    if (transient(error)) {
      const copy = gone
        ? "its copy, if any, was deleted"
        : `its copy, if any, could not be deleted (the relay did not answer): it lists message ${envelope.id} to its recipients, who cannot read it, its shares being withdrawn`;
      error.message = `${error.message}; the relay may have stored the envelope, so nothing was sent: ${copy}; the deposits were withdrawn`;
    }
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
    await withdraw(config, sender, byName, envelope.id);
    await drop();
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

/**
 * Send `message` (bytes) from `sender` to the named recipients as version 1. Returns what
 * the page shows: the envelope sent, the relay's copy of it, the custody receipts.
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
  const { keys, readers } = await parties({ config, known, recipients, progress, warn });
  progress("encrypting");
  const draft = await prepare(message, {
    sender: sender.public,
    recipients: readers,
    custodians: custodianSlots(config, keys),
    threshold: config.threshold,
    policy,
    filename,
  });
  const receipts = await depositShares({ config, sender, draft, keys, progress });
  const envelope = await draft.finish(sender, receipts);
  return postDocument({ config, sender, envelope, receipts, progress });
}

/**
 * Send the File `file` from `sender` to the named recipients as version 2 (spec/format-v2.md
 * §5), in the order of the CLI's send_file: open the upload (the relay's size limit and
 * quota are checked there, before any deposit), read, seal and hash the file a piece at a
 * time and upload the stream in pieces of whole chunks, then deposit the shares and post the
 * signed document. `progress(stage, {done, total})` says the bytes uploaded. All or nothing:
 * a failure, or `signal` aborted before the relay has the document, takes back what was
 * done (the upload dropped, the deposits withdrawn) and says so.
 */
export async function sendFile({
  config,
  known,
  sender,
  recipients,
  file,
  filename = null,
  policy,
  progress = () => {},
  warn = () => {},
  signal = null,
}) {
  const { keys, readers } = await parties({ config, known, recipients, progress, warn });
  stopIfCancelled(signal, "nothing was sent (no share had been deposited)");
  const custodians = custodianSlots(config, keys);
  const kept = new KeptSends(sender);
  const ticket = sendTicket(file, recipients, config.threshold, policy, filename);
  let draft = await kept.take(ticket, custodians, filename, policy);
  const resumed = draft !== null;
  if (resumed) {
    const expires = draft.header.policy.expires;
    const until =
      expires === null ? "" : `; it expires at ${utcText(expires)}, counted from its beginning`;
    warn(`went on with the upload of message ${draft.header.id} begun earlier${until}`);
  } else {
    draft = await prepareStream(file.size, {
      sender: sender.public,
      recipients: readers,
      custodians,
      threshold: config.threshold,
      policy,
      filename,
    });
    await kept.put(ticket, draft);
  }
  const client = relay(sender);
  let digest;
  try {
    progress(resumed ? "going on with the upload" : "opening the upload");
    const body = { v: 2, length: draft.streamLength };
    const path = `/api/v1/uploads/${draft.header.id}`;
    const opened = (await client.request("PUT", path, { body, signal })).json();
    const held = received(opened, draft.streamLength);
    if (held !== 0 && !resumed)
      throw new ServiceError("relay", 0, "bad_answer", "a new upload already holds bytes");
    digest = await upload(client, draft, file, { config, progress, signal, held });
  } catch (error) {
    if (transient(error)) {
      // The link or the relay failed, after the tries again: kept, to go on from there.
      error.message = `${error.message}; nothing was sent (no share was deposited): the upload is kept, and sending the same file to the same people again goes on where it stopped`;
      throw error;
    }
    await kept.drop(draft.header.id);
    await abandonUpload(client, draft.header.id);
    const sent = "nothing was sent (no share was deposited)";
    if (error instanceof InterruptedOperationError)
      throw new InterruptedOperationError(`interrupted: ${sent}; the upload was dropped`);
    if (error instanceof SecureCommError) {
      error.message = `${error.message}; ${sent}`;
      if (error instanceof ServiceError) error.hint = LIMIT_HINTS[error.code] ?? error.hint;
    }
    throw error;
  }
  // From here the send completes or is taken back whole: nothing is kept to go on from.
  await kept.drop(draft.header.id);
  let receipts;
  try {
    receipts = await depositShares({ config, sender, draft, keys, progress });
  } catch (error) {
    await abandonUpload(client, draft.header.id);
    throw error;
  }
  if (signal?.aborted) {
    await withdraw(
      config,
      sender,
      Object.fromEntries(receipts.map((r) => [r.custodian, r])),
      draft.header.id,
    );
    await abandonUpload(client, draft.header.id);
    throw new InterruptedOperationError(
      "interrupted: nothing was sent; the upload was dropped and the deposits withdrawn",
    );
  }
  const envelope = await draft.finish(sender, receipts, digest);
  const sent = await postDocument({ config, sender, envelope, receipts, progress });
  for (const other of await kept.others(ticket, draft.header.id)) {
    // Begun under another policy and left for a send that asked for it: this file has now
    // gone to these people, and the relay's part of it would hold quota for a day.
    await kept.drop(other);
    const gone = await abandonUpload(client, other);
    warn(
      `the upload of message ${other} begun earlier, of this file to the same people under another policy, is dropped` +
        (gone
          ? " with the relay's part"
          : "; the relay's part could not be deleted now (the relay drops it within a day)"),
    );
  }
  return sent;
}

/**
 * What makes a later send of a file the same send: the same file, unchanged as far as the
 * browser says (name, size, last modified), to the same people with the same rule.
 */
function sendTicket(file, recipients, threshold, policy, filename) {
  return JSON.stringify({
    file: [file.name, file.size, file.lastModified],
    recipients,
    threshold,
    filename,
    policy: [policy.maxReleases, policy.requireApproval, policy.expires !== null],
  });
}

// How far apart two expiries may lie and still be one "expires in": each is counted from
// its own send's reading of the clock. Python's streamed.SAME_EXPIRY_SECONDS.
const SAME_EXPIRY_SECONDS = 5;

/**
 * Whether the policy of a kept draft's header is the one asked for now (Python's
 * streamed.same_rule): the same count of releases, approval and start, and an expiry as
 * long from the send that asks for it (`now`) as the kept one is from its header's making.
 * A resumed send that went on under the first one's had no burn or approval the second
 * asked for, or the first one's expiry.
 */
function sameRule(header, policy, now) {
  const rule = header.policy;
  if (
    rule.maxReleases !== policy.maxReleases ||
    rule.requireApproval !== policy.requireApproval ||
    rule.notBefore !== policy.notBefore
  )
    return false;
  if (rule.expires === null || policy.expires === null) return rule.expires === policy.expires;
  const kept = rule.expires - header.created;
  return Math.abs(kept - (policy.expires - now)) <= SAME_EXPIRY_SECONDS;
}

/**
 * The stream sends of one identity that did not finish, kept in this profile (the "pending"
 * store, as "sending:FINGERPRINT:ID") as the CLI keeps them in users/NAME.sending.json: each
 * one's ticket, header and shares, the shares sealed (HPKE) to the sender's own key. So a
 * send stopped by a closed tab or a link down for long goes on, when the same file is sent
 * again to the same people, from what the relay holds.
 */
class KeptSends {
  constructor(sender) {
    this.sender = sender;
    this.prefix = `sending:${sender.public.fingerprintHex}:`;
  }

  #info(messageId) {
    return hpke.info("keep", { message_id: messageId, owner: this.sender.public.fingerprintHex });
  }

  async put(ticket, draft) {
    const shares = canonical.dumps(draft.shares.map((share) => share.toText()));
    const sealed = await hpke.seal(this.sender.public.kem, this.#info(draft.header.id), shares);
    await store.put("pending", this.prefix + draft.header.id, {
      ticket,
      header: draft.header.toJson(),
      shares: b64encode(sealed),
    });
  }

  /** The kept draft of this very send, if there is one, made under the `policy` asked for
   * now (see sameRule) and its custodians hold the keys they hold now; one under another
   * policy is left for a send that asks for it, and any other kept under this ticket (its
   * expiry passed, or unusable) is dropped. */
  async take(ticket, custodians, filename, policy) {
    const now = Math.floor(Date.now() / 1000);
    for (const key of await store.keys("pending")) {
      if (typeof key !== "string" || !key.startsWith(this.prefix)) continue;
      const entry = await store.get("pending", key);
      if (entry?.ticket !== ticket) continue;
      const messageId = key.slice(this.prefix.length);
      try {
        const header = await Header.fromJson(entry.header, "kept.header", [2]);
        const expires = header.policy.expires;
        if (!(expires !== null && expires <= now) && !sameRule(header, policy, now)) continue;
        const opened = await hpke.open(
          this.sender.kemKey,
          this.sender.public.kem,
          this.#info(messageId),
          b64decode(entry.shares, { field: "kept.shares" }),
        );
        const texts = canonical.loads(opened, { what: "the kept shares" });
        const draft = await StreamDraft.restore(
          header,
          texts.map((text) => Share.fromText(text)),
          filename,
        );
        const slots = (list) => JSON.stringify(list.map((c) => [c.name, c.fingerprintHex]));
        if (
          header.id === messageId &&
          slots(header.custodians) === slots(custodians) &&
          (expires === null || expires > now)
        )
          return draft;
      } catch {
        // Not one this identity can go on with (altered, or made for other keys): dropped.
      }
      await this.drop(messageId);
    }
    return null;
  }

  /** The kept drafts of the same send as `ticket` (file, people, threshold) but under
   * another policy than message `messageId`'s: once that send is done, none of them is
   * wanted (Python's KeptDrafts.others). */
  async others(ticket, messageId) {
    const sameSend = (text) => {
      try {
        const { policy: _, ...send } = JSON.parse(text);
        return JSON.stringify(send);
      } catch {
        return null;
      }
    };
    const found = [];
    for (const key of await store.keys("pending")) {
      if (typeof key !== "string" || !key.startsWith(this.prefix)) continue;
      const other = key.slice(this.prefix.length);
      const entry = await store.get("pending", key);
      if (other !== messageId && sameSend(entry?.ticket) === sameSend(ticket)) found.push(other);
    }
    return found;
  }

  async drop(messageId) {
    await store.remove("pending", this.prefix + messageId);
  }

  /** Every kept draft of this identity, as the page lists them: id, file, people, size. */
  async list() {
    const found = [];
    for (const key of await store.keys("pending")) {
      if (typeof key !== "string" || !key.startsWith(this.prefix)) continue;
      const entry = await store.get("pending", key);
      let ticket = null;
      try {
        ticket = JSON.parse(entry?.ticket);
      } catch {
        // listed all the same, by its id: it can still be dropped
      }
      const [name, size] = Array.isArray(ticket?.file) ? ticket.file : [null, null];
      found.push({
        id: key.slice(this.prefix.length),
        file: typeof name === "string" ? name : null,
        size: Number.isSafeInteger(size) ? size : null,
        recipients: Array.isArray(ticket?.recipients) ? ticket.recipients.map(String) : [],
        created: Number.isSafeInteger(entry?.header?.created) ? entry.header.created : null,
      });
    }
    return found;
  }
}

/** The uploads of `sender` stopped earlier and kept in this profile (a closed tab, a link
 * down), to go on when the same file is sent to the same people again. */
export async function keptSends(sender) {
  return new KeptSends(sender).list();
}

/** Drop a kept upload and the relay's part of it (which holds room in the sender's quota
 * until the relay sweeps it). Whether the relay's part is known to be gone. */
export async function dropKeptSend(sender, messageId) {
  await new KeptSends(sender).drop(messageId);
  return abandonUpload(relay(sender), messageId);
}

const LIMIT_HINTS = {
  too_large:
    "the relay's limit is max_payload_bytes in the [server] section of its securecomm.toml",
  quota_exceeded:
    "the relay counts what you store and upload against its max_sender_bytes ([server] in its securecomm.toml)",
};

function stopIfCancelled(signal, what) {
  if (signal?.aborted) throw new InterruptedOperationError(`interrupted: ${what}`);
}

// The bytes the relay says an upload holds: a whole number of sealed chunks, or all of it.
function received(answer, length) {
  const held = answer?.received;
  if (
    !Number.isSafeInteger(held) ||
    held < 0 ||
    held > length ||
    (held % stream.SEALED_CHUNK_BYTES && held !== length)
  ) {
    throw new ServiceError(
      "relay",
      0,
      "bad_answer",
      "the relay says it holds an impossible length",
    );
  }
  return held;
}

/**
 * A piece's request that failed on the way (no answer, or HTTP 5xx: a proxy's or the relay's
 * own) is tried again after each of these waits, in turn, before its error stands: a link
 * that drops for a moment does not lose a large upload or download.
 */
export const RETRY_WAITS_MS = [1000, 3000, 9000];

function transient(error) {
  return error instanceof ServiceError && (error.code === "unreachable" || error.status >= 500);
}

function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    const stop = () => {
      clearTimeout(timer);
      reject(new InterruptedOperationError("interrupted"));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", stop);
      resolve();
    }, ms);
    if (signal?.aborted) stop();
    else signal?.addEventListener("abort", stop, { once: true });
  });
}

/**
 * `attempt(tried)` (tried: how many attempts failed before this one), again after each of
 * RETRY_WAITS_MS while it fails on the way; `retrying({attempt, of, waitMs, reason})` says
 * so before each wait. Any other error, or an abort, stands at once.
 */
async function patiently(attempt, { signal = null, retrying = () => {} } = {}) {
  for (let tried = 0; ; tried++) {
    try {
      return await attempt(tried);
    } catch (error) {
      if (!transient(error) || tried >= RETRY_WAITS_MS.length || signal?.aborted) throw error;
      const waitMs = RETRY_WAITS_MS[tried];
      const of = RETRY_WAITS_MS.length + 1;
      retrying({ attempt: tried + 2, of, waitMs, reason: error.reason ?? error.message });
      await pause(waitMs, signal);
    }
  }
}

/** Best effort: drop an upload and what it holds (absent is as good as dropped). */
/** Delete the relay's part of an upload; whether it is known to be gone (a failure is not
 * thrown: the relay drops an upload left alone within a day). */
async function abandonUpload(client, messageId) {
  return client
    .request("DELETE", `/api/v1/uploads/${messageId}`, { timeoutMs: 5000 })
    .then(
      () => true,
      (error) => error instanceof ServiceError && error.code === "not_found",
    );
}

// The file's bytes from `offset` on, a piece at a time (File.slice: never the whole file).
async function* fileSlices(file, offset = 0) {
  for (let at = offset; at < file.size; at += READ_BYTES) {
    let piece;
    try {
      piece = await file.slice(at, Math.min(file.size, at + READ_BYTES)).arrayBuffer();
    } catch {
      throw new ParameterError(
        `cannot read ${file.name} any more (did it change, or move, while it was sent?)`,
      );
    }
    yield new Uint8Array(piece);
  }
}

/**
 * Seal `file` and upload its stream to `client` in pieces of whole chunks, each appended at
 * the offset the relay holds; the SHA-256 of the whole stream. The next piece is sealed
 * while one is on its way.
 */
async function upload(client, draft, file, { config, progress, signal, held = 0 }) {
  const total = draft.streamLength;
  const said = Number.isSafeInteger(config.max_piece_bytes) ? config.max_piece_bytes : PIECE_BYTES;
  const chunks = Math.max(1, Math.floor(Math.min(said, PIECE_BYTES) / stream.SEALED_CHUNK_BYTES));
  const pieceBytes = chunks * stream.SEALED_CHUNK_BYTES;
  const hash = incrementalSha256.create();
  const path = `/api/v1/uploads/${draft.header.id}`;
  let inFlight = null;
  let offset = held; // what the relay holds: sealed again, to hash, not sent
  let position = 0;
  // What the relay holds of the upload: `at`, or `at` and the piece.
  const heldOf = async (piece, at) => {
    const held = received((await client.request("GET", path, { signal })).json(), total);
    if (held !== at && held !== at + piece.length)
      throw new ServiceError("relay", 0, "bad_answer", `the relay holds ${held} bytes, not ${at}`);
    return held;
  };
  const append = async (piece, at, tried) => {
    // The piece may have landed and its answer been lost: where does the upload stand?
    if (tried && (await heldOf(piece, at)) === at + piece.length) return at + piece.length;
    try {
      const answer = await client.request("POST", path, {
        raw: piece,
        contentType: "application/octet-stream",
        query: `offset=${at}`,
        timeoutMs: PIECE_TIMEOUT_MS,
        signal,
      });
      return received(answer.json(), total);
    } catch (error) {
      // An attempt that timed out may have gone on at the relay and taken the piece while
      // this one waited for it.
      if (tried && error instanceof ServiceError && error.code === "upload_offset")
        return heldOf(piece, at);
      throw error;
    }
  };
  const send = async (piece, at) => {
    const held = await patiently((tried) => append(piece, at, tried), {
      signal,
      retrying: (detail) => progress("retrying", { ...detail, done: at, total }),
    });
    if (held !== at + piece.length)
      throw new ServiceError("relay", 0, "bad_answer", "the relay acknowledged another length");
    progress("uploading", { done: at + piece.length, total });
  };
  let piece = new Uint8Array(Math.min(pieceBytes, total - offset));
  let filled = 0;
  progress("uploading", { done: offset, total });
  try {
    for await (const chunk of draft.seal(fileSlices(file))) {
      hash.update(chunk);
      position += chunk.length;
      if (position <= held) continue;
      piece.set(chunk, filled);
      filled += chunk.length;
      if (filled === piece.length) {
        if (inFlight) await inFlight;
        stopIfCancelled(signal, "");
        inFlight = send(piece, offset);
        inFlight.catch(() => {}); // awaited before the next piece; reported from there
        offset += filled;
        piece = new Uint8Array(Math.min(pieceBytes, total - offset));
        filled = 0;
      }
    }
    if (inFlight) await inFlight;
  } finally {
    // A piece still on its way when sealing failed: wait for it, whatever it comes to, so
    // the upload is dropped only after its last append.
    await inFlight?.catch(() => {});
  }
  if (offset !== total)
    throw new ParameterError(`the stream ended after ${offset} of its ${total} bytes`);
  return hash.digest();
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

/**
 * Remove a message from the reader's inbox at the relay (a recipient's DELETE: the relay drops
 * the envelope once no recipient lists it), and what reads of it kept here. Its shares stay
 * with the custodians, which only its sender destroys: a message the reader sent is refused,
 * as the relay would take its DELETE for an unsend that left every share in place.
 *
 * What earlier reads left with the custodians goes too (spec §12.2), as the CLI's delete:
 * requests still waiting for an operator are withdrawn, so none is approved for a message its
 * reader deleted, and each custodian whose release a short read kept here is told to drop
 * the copy it keeps for the reader. Quietly, as after a read: not awaited.
 */
export async function deleteFromInbox(reader, message, config) {
  if (message.sender.fingerprint === reader.public.fingerprintHex)
    throw new SecureCommError(
      `You sent this message: deleting it would leave its shares with the custodians. Unsend it on the Send tab (or securecomm unsend ${message.id} --as ${reader.name}), which destroys them too.`,
    );
  await relay(reader).request("DELETE", `/api/v1/messages/${message.id}`);
  const key = pendingKey(reader, message.id);
  const kept = keptState(await store.get("pending", key));
  await store.remove("pending", key);
  await store.remove("pending", goneKey(reader, message.id));
  const urls = Object.fromEntries((config?.custodians ?? []).map((c) => [c.name, c]));
  const known = (names) => names.filter((name) => Object.hasOwn(urls, name));
  const pending = Object.fromEntries(
    known(Object.keys(kept.pending)).map((name) => [name, kept.pending[name]]),
  );
  withdrawRequests(reader, urls, pending);
  acknowledgeReleases(reader, urls, message.id, known(Object.keys(kept.released)));
}

// A task of a gather that is over stops before it asks anything more.
function stopIfOver(over) {
  if (over.aborted) throw new InterruptedOperationError("not needed any more");
}

const pendingKey = (reader, messageId) => `${reader.public.fingerprintHex}:${messageId}`;

// The messages a read here found can no longer be read, per reader ("gone:FINGERPRINT:ID" in
// the "pending" store, as the CLI notes destroyed_at in users/NAME.read.json): the inbox
// offers no Read for them. Only the sender's unsend or a burn destroys shares, and neither
// is undone.
const goneKey = (reader, messageId) => `gone:${reader.public.fingerprintHex}:${messageId}`;

async function noteGone(reader, messageId) {
  await store.put("pending", goneKey(reader, messageId), {
    destroyed_at: Math.floor(Date.now() / 1000),
  });
}

/** The ids of `reader`'s messages that a read here found can no longer be read. */
export async function goneMessages(reader) {
  const prefix = goneKey(reader, "");
  return new Set(
    (await store.keys("pending"))
      .filter((k) => typeof k === "string" && k.startsWith(prefix))
      .map((k) => k.slice(prefix.length)),
  );
}

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

/** The relay's copy of message `messageId`, parsed (not yet verified). */
async function relaysCopy(client, messageId) {
  const data = (await client.request("GET", `/api/v1/messages/${messageId}`)).bytes;
  let envelope;
  try {
    envelope = await documentFromBytes(data);
  } catch (error) {
    throw new SignatureError(
      `the relay's copy of message ${messageId} is malformed (altered on the way?): ${error.message}`,
    );
  }
  if (envelope.id !== messageId)
    throw new SignatureError(`the relay answered with message ${envelope.id}, not ${messageId}`);
  return envelope;
}

/**
 * Unsend a message `sender` sent, as `securecomm unsend` does (client/flows.py, unsend):
 * every custodian its receipts name destroys its share, then the relay deletes the
 * envelope. While a custodian could not destroy its share the relay keeps the envelope,
 * which names every deposit, so that unsending again finishes (a custodian asked again for
 * a share it destroyed answers as before). The relay drops an envelope once no recipient
 * lists it, while its shares stay: a message the relay does not hold is unsent by its id at
 * every custodian of the network, and only one no custodian holds a share of either is not
 * found. Resolves to {shares, destroyed, failures}: how many shares it had (null when the
 * relay held it no more), the custodians that hold none to release any longer, and why
 * each that could not be asked could not, by name.
 */
export async function unsend({ config, sender, messageId }) {
  const client = relay(sender);
  let envelope;
  try {
    envelope = await relaysCopy(client, messageId);
  } catch (error) {
    if (!(error instanceof ServiceError && error.status === 404)) throw error;
    const byId = { path: "/v1/deposits", query: `message_id=${messageId}` };
    const asked = await destroyDeposits(
      config,
      sender,
      Object.fromEntries(config.custodians.map((c) => [c.name, byId])),
    );
    const failures = Object.fromEntries(
      Object.entries(asked.failures).filter(([name]) => asked.errors[name]?.code !== "no_deposit"),
    );
    if (!Object.keys(asked.results).length && !Object.keys(failures).length) {
      error.hint = `check the id (the one the Sent card showed): no custodian holds a share of it from ${sender.name} either`;
      throw error;
    }
    return { shares: null, destroyed: Object.keys(asked.results).sort(), failures };
  }
  const from = envelope.header.sender;
  if (from.fingerprintHex !== sender.public.fingerprintHex)
    throw new SecureCommError(
      `message ${messageId} was sent by ${from.name}, not ${sender.name}; nothing was destroyed. Only its sender unsends a message; to remove it from your inbox, delete it there.`,
    );
  const { results, failures } = await destroyDeposits(
    config,
    sender,
    Object.fromEntries(envelope.receipts.map((r) => [r.custodian, { path: `/v1/deposits/${r.ref}` }])),
  );
  if (!Object.keys(failures).length)
    await client.request("DELETE", `/api/v1/messages/${messageId}`);
  return { shares: envelope.receipts.length, destroyed: Object.keys(results).sort(), failures };
}

/**
 * Read message `messageId`: fetch and verify the envelope, ask every custodian for its
 * share, check each against the signed digest, combine t and decrypt. The read goes on
 * READ_GRACE_MS after t good shares are in, as the CLI's does, without waiting for the
 * other custodians (each is then "down", not waited for). `onStatus(name, state, detail)`
 * reports each custodian: asking, released, pending, refused, down, bad.
 * Throws (and decrypts nothing) unless every check passed. A read that ends with fewer
 * than t good shares keeps the releases that arrived for the next read, which uses them
 * as if they had just arrived instead of asking those custodians again (spec §12.2).
 *
 * A version 2 message is not decrypted here: the result's `download` (a StreamDownload)
 * has fetched and opened its first chunk, which holds the sender's file name, and saves the
 * rest when asked. Its releases are kept until it has saved the whole message, so a
 * download that stops goes on without asking the custodians again (a burn-after-reading
 * share is released once).
 */
export async function read({
  config,
  known,
  reader,
  messageId,
  onStatus = () => {},
  warn = () => {},
}) {
  const envelope = await relaysCopy(relay(reader), messageId);
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
  for (const name of names) {
    if (!urls[name])
      throw new SignatureError(
        `message ${messageId} names custodian ${name}, which this relay does not know`,
      );
  }
  // The custodians' keys pinned in this browser are checked against the envelope now; one
  // not pinned yet is fetched by the task that asks that custodian (collect, below), so a
  // custodian that hangs or is down costs its own share only, not the whole read.
  const keys = new Map(names.filter((name) => known.get(name)).map((n) => [n, known.get(n)]));
  await envelope.verify(pinnedSender, Object.fromEntries(keys), { recipient: reader.public });
  const key = pendingKey(reader, messageId);
  const kept = keptState(await store.get("pending", key));
  const now = { pending: {}, released: {} }; // what this read keeps if it comes up short
  // Each release and release id is kept as it arrives, with what earlier reads kept, so a
  // page closed or reloaded mid-read loses no share (a burnt one is released only once).
  // The writes go one after another; the read's last word on the record waits for them.
  let saving = Promise.resolve();
  const persist = () => {
    const record = {
      pending: { ...kept.pending, ...now.pending },
      released: { ...kept.released, ...now.released },
    };
    for (const name of Object.keys(record.released)) delete record.pending[name];
    saving = saving.then(() => store.put("pending", key, record)).catch(() => {});
  };

  const check = async (name, release) => {
    const share = await openRelease(release, reader, keys.get(name));
    await envelope.checkShare(name, share);
    return share;
  };

  // Ask custodian `name` for its share. `over` is aborted when the read stops waiting (it
  // has t good shares and the grace after them has passed): an answer that comes after
  // that changes nothing shown or kept, and its share is not used.
  const collect = async (name, over) => {
    const status = (state, detail) => {
      if (!over.aborted) onStatus(name, state, detail);
    };
    const keep = (kind, value) => {
      if (over.aborted) return;
      now[kind][name] = value;
      persist();
    };
    if (!keys.has(name)) {
      status("asking", "(fetching its key)");
      try {
        const presented = await presentedKey(urls[name]);
        stopIfOver(over);
        // The key the sender's header names and its receipt's signer, before it is pinned.
        await envelope.verifyCustodian(name, presented);
        await known.pin(presented); // refuses a changed key; the page lists the pinned ones
        keys.set(name, presented);
      } catch (error) {
        // What earlier reads kept of this custodian stays kept for the next read.
        if (kept.pending[name]) keep("pending", kept.pending[name]);
        if (kept.released[name]) keep("released", kept.released[name]);
        const down = error instanceof ServiceError && error.status === 0;
        status(down ? "down" : "bad", `its key: ${reason(error)} — it was not asked for its share`);
        throw error;
      }
    }
    let dropped = "";
    if (kept.released[name]) {
      try {
        const share = await check(name, kept.released[name]);
        keep("released", kept.released[name]);
        status(
          "released",
          `(kept from an earlier read) share ${share.index}, checked against the sender's digest`,
        );
        return share;
      } catch (error) {
        dropped = ` (the release kept from an earlier read failed its check: ${reason(error)}; it was dropped and ${name} asked again)`;
      }
    }
    // A read that is over asks for no release: nobody would use the share.
    stopIfOver(over);
    status("asking", dropped);
    const client = new ServiceClient(urls[name].url, name, reader);
    let answer;
    try {
      answer = kept.pending[name]
        ? await client.request("GET", `/v1/releases/${kept.pending[name]}`)
        : await client.request("POST", "/v1/releases", { body: { v: 1, message_id: messageId } });
    } catch (error) {
      const down = error instanceof ServiceError && error.status === 0;
      // A release id stays worth asking again while its custodian cannot be reached.
      if (down && kept.pending[name]) keep("pending", kept.pending[name]);
      status(down ? "down" : "refused", reason(error) + dropped);
      throw error;
    }
    if (answer.status === 202) {
      const releaseId = answer.json().release_id;
      keep("pending", releaseId);
      status(
        "pending",
        `waiting for ${name}'s operator to approve release ${releaseId.slice(0, 8)}…${dropped}`,
      );
      throw new ServiceError(name, 202, "pending", "waiting for the operator's approval");
    }
    try {
      const release = answer.json();
      const share = await check(name, release);
      keep("released", release);
      status(
        "released",
        `share ${share.index} released and checked against the sender's digest${dropped}`,
      );
      return share;
    } catch (error) {
      status("bad", `${reason(error)} — this share was not used`);
      throw error;
    }
  };

  const t = envelope.header.threshold;
  const tasks = Object.fromEntries(names.map((name) => [name, (over) => collect(name, over)]));
  const gathered = await gather(tasks, { enough: t, graceMs: READ_GRACE_MS });
  const { results: good, failures, errors, late } = gathered;
  for (const name of late) {
    // As for one that cannot be reached: what earlier reads kept of it stays kept.
    if (kept.pending[name]) now.pending[name] = kept.pending[name];
    const why =
      Object.keys(good).length >= t
        ? `as ${t} good shares were in`
        : `as the others' answers decided it: fewer than ${t} good shares could come`;
    onStatus(name, "down", `${failures[name]}; not waited for, ${why}`);
  }
  const usable = names.filter((name) => Object.hasOwn(good, name));
  await saving; // what each task kept is written before the read's own word below
  if (usable.length < t) {
    const keeping = Object.keys(now.released).length;
    if (keeping || Object.keys(now.pending).length) await store.put("pending", key, now);
    else await store.remove("pending", key);
    const [destroyed, denied] = ["destroyed", "denied"].map((code) =>
      names.filter((name) => errors[name] instanceof ServiceError && errors[name].code === code),
    );
    // Fewer than t shares exist any more, here or with a custodian: no read can succeed.
    const left = new Set([
      ...names.filter((name) => !destroyed.includes(name)),
      ...Object.keys(now.released),
    ]);
    const unreadable = left.size < t;
    if (unreadable) await noteGone(reader, messageId);
    // A denial is final (spec §12.2): with too many, this reader can never read it.
    const possible = [...left].filter((name) => !denied.includes(name) || now.released[name]);
    const refused = denied.length > 0 && possible.length < t;
    // Past the sender's expiry, custodians that say so will release it no more (as the CLI).
    const expires = envelope.header.policy.expires;
    const expired = names.filter(
      (name) => errors[name] instanceof ServiceError && errors[name].code === "expired",
    );
    // Each says "expired" by its own clock; this browser's may be behind (said by describe).
    const lapsed = expired.length > 0 && expires !== null;
    const short = `${usable.length} good share(s) of the ${t} needed; nothing was decrypted`;
    let headline = short;
    if (refused)
      headline = `message ${messageId} cannot be read by you: the operators of ${denied.length} of its ${names.length} custodians denied you their share (a denial is final), so at most ${possible.length} of the ${t} needed can be released; ${short}`;
    if (unreadable)
      headline = `message ${messageId} can no longer be read: ${destroyed.length} of its ${names.length} custodians destroyed their share (burnt after reading, or unsent by its sender); ${short}`;
    if (lapsed)
      headline = `message ${messageId} expired at ${utcText(expires)} (its sender's policy): ${expired.length} of its ${names.length} custodians release its share no more; ${short}`;
    const error = new QuorumError(listFailures(headline, failures));
    Object.assign(error, {
      good: usable.length,
      needed: t,
      kept: keeping,
      destroyed: destroyed.length,
      custodians: names.length,
      unreadable,
      denied: refused ? denied.length : 0,
      possible: possible.length,
      expired: expired.length,
      expiredAt: lapsed ? expires : null,
      clockBehind: lapsed && Date.now() / 1000 < expires ? Math.floor(Date.now() / 1000) : null,
      pending: Object.keys(now.pending).length,
    });
    throw error;
  }
  // Every good share, so a share the sender made off the polynomial is caught (§7.7 step 7).
  const chosen = Object.fromEntries(usable.map((name) => [name, good[name]]));
  // Burn after reading: each share released is destroyed, and with fewer than t left
  // anywhere this read is the last (the releases counted are those that came in time).
  const burnt =
    envelope.header.policy.maxReleases === 1 && names.length - Object.keys(now.released).length < t;
  // Each custodian asked may keep a release it gives once for this reader a while, in case
  // its answer was lost (spec §12.2): told the message arrived, it deletes it now.
  const givenOnce = envelope.header.policy.givesOnce
    ? names.filter((name) => !Object.hasOwn(now.pending, name))
    : [];
  const acknowledge = () => acknowledgeReleases(reader, urls, messageId, givenOnce);
  if (envelope instanceof StreamEnvelope) {
    const messageKey = await envelope.recoverKey(chosen);
    await store.put("pending", key, now);
    withdrawRequests(reader, urls, now.pending); // not awaited: it holds nothing up
    const download = new StreamDownload(reader, envelope, messageKey, key, burnt, acknowledge);
    await download.begin();
    return {
      download,
      filename: download.filename,
      envelope,
      sender,
      senderPinned: Boolean(pinnedSender),
      used: Object.keys(chosen),
    };
  }
  // The sender's file name, if any, was checked on decryption (spec §7.10).
  const { filename, content: plaintext } = await envelope.openNamed(chosen);
  await store.remove("pending", key);
  if (burnt) await noteGone(reader, messageId);
  withdrawRequests(reader, urls, now.pending); // not awaited: it holds nothing up
  acknowledge(); // nor this
  return {
    plaintext,
    filename,
    envelope,
    sender,
    senderPinned: Boolean(pinnedSender),
    used: Object.keys(chosen),
  };
}

/** The longest a read that succeeded waits to withdraw the requests it did not need. */
const WITHDRAW_MS = 3000;

/** Withdraw the releases still waiting for an operator that a read which succeeded did not
 * need (spec §12.2), so that no operator is asked to approve them; quietly, as the CLI's
 * flows.read: one not withdrawn only stays on its operator's list. */
async function withdrawRequests(reader, urls, pending) {
  await Promise.allSettled(
    Object.entries(pending).map(([name, releaseId]) =>
      new ServiceClient(urls[name].url, name, reader, WITHDRAW_MS).request(
        "DELETE",
        `/v1/releases/${releaseId}`,
      ),
    ),
  );
}

/** Tell the custodians `names` that message `messageId` arrived, so each deletes the
 * release it keeps for this reader (spec §12.2) now rather than within the hour; quietly,
 * as withdrawRequests. */
async function acknowledgeReleases(reader, urls, messageId, names) {
  await Promise.allSettled(
    names.map((name) =>
      new ServiceClient(urls[name].url, name, reader, WITHDRAW_MS).request(
        "DELETE",
        "/v1/releases",
        { query: `message_id=${messageId}` },
      ),
    ),
  );
}

/** How much a browser without the File System Access API may hold of a message, in a Blob
 * of its chunks, before it can save it: 1 GiB. */
export const BLOB_LIMIT_BYTES = 1024 ** 3;
// Blob parts are joined into one Blob each time this much has come (the browser may then
// keep it on disk), and a file is written this much at a time.
const BATCH_BYTES = 8 * 1024 * 1024;

/**
 * The payload stream of a version 2 message (spec/format-v2.md §3, §5.5), downloaded in
 * ranges of whole chunks (each a signed request, its answer's signature checked) and opened
 * chunk by chunk with the recovered message key. begin() opens chunk 0: the sender's file
 * name and the first plaintext. saveTo(sink) writes the message to `sink` as it opens
 * ({write, close, abort}: a file the File System Access API gives, or a Blob) and closes it
 * only once every chunk opened; on any refusal it aborts it, so nothing is saved.
 */
export class StreamDownload {
  #key;

  // `burnt`: saving the whole message is its last read (burn after reading). `acknowledge`
  // is called, not awaited, once it is saved (acknowledgeReleases).
  constructor(reader, envelope, key, keptKey, burnt = false, acknowledge = () => {}) {
    Object.assign(this, { reader, envelope, keptKey, burnt, acknowledge });
    Object.assign(this, { filename: null, size: null });
    this.#key = key;
    this.head = null;
  }

  get #last() {
    return stream.chunkCount(this.envelope.length) - 1;
  }

  // One range of the stream, as a signed request (again, while it fails on the way); the
  // answer must be exactly that long.
  async #range(offset, length, signal, retrying = () => {}) {
    const path = `/api/v1/messages/${this.envelope.id}/payload`;
    const fetchRange = () =>
      relay(this.reader).request("GET", path, {
        query: `offset=${offset}&length=${length}`,
        timeoutMs: PIECE_TIMEOUT_MS,
        signal,
      });
    const { bytes } = await patiently(fetchRange, { signal, retrying });
    if (bytes.length !== length)
      throw new SignatureError(
        `the relay answered ${bytes.length} bytes for ${length} of message ${this.envelope.id}'s stream at ${offset}`,
      );
    return bytes;
  }

  // The stream from `offset` on, a piece at a time, the next one fetched while one is opened.
  async *#pieces(offset, signal, retrying) {
    const total = this.envelope.payloadLength;
    const fetchFrom = (at) => {
      const fetching = this.#range(at, Math.min(PIECE_BYTES, total - at), signal, retrying);
      fetching.catch(() => {}); // awaited below; not to be reported if no longer wanted
      return fetching;
    };
    let next = offset < total ? fetchFrom(offset) : null;
    while (next) {
      const piece = await next;
      offset += piece.length;
      next = offset < total ? fetchFrom(offset) : null;
      yield piece;
    }
  }

  /** Fetch and open chunk 0: the sender's file name (null: none), and the message's size. */
  async begin() {
    const first = await this.#range(
      0,
      Math.min(stream.SEALED_CHUNK_BYTES, this.envelope.payloadLength),
    );
    const opened = [];
    for await (const plaintext of this.envelope.decrypt(this.#key, [first])) {
      opened.push(plaintext);
      if (this.#last > 0) break; // chunk 0 alone; the rest comes with saveTo
    }
    const plaintext = opened[0];
    const { filename, start } =
      this.envelope.header.payload === null ? { filename: null, start: 0 } : nameRecord(plaintext);
    Object.assign(this, { filename, size: this.envelope.length - start });
    this.head = plaintext.subarray(start);
  }

  /**
   * Write the message to `sink` as its chunks open, then close it (which commits it);
   * `progress({done, total})` in bytes of the message, with `retrying` ({attempt, of,
   * waitMs, reason}) while a piece is tried again. On a refusal, or `signal` aborted,
   * the sink is aborted and the error thrown: nothing is saved. Returns what close() gives.
   */
  async saveTo(sink, { progress = () => {}, signal = null } = {}) {
    const total = this.size;
    let done = 0;
    let batch = [];
    let batched = 0;
    const write = async (plaintext, last = false) => {
      if (plaintext.length) batch.push(plaintext);
      batched += plaintext.length;
      if (batched >= BATCH_BYTES || (last && batch.length)) {
        await sink.write(new Blob(batch));
        batch = [];
        batched = 0;
      }
      done += plaintext.length;
      progress({ done, total });
    };
    try {
      progress({ done, total });
      await write(this.head, this.#last === 0);
      if (this.#last > 0) {
        const retrying = (detail) => progress({ done, total, retrying: detail });
        const pieces = this.#pieces(stream.SEALED_CHUNK_BYTES, signal, retrying);
        let position = 1;
        for await (const plaintext of this.envelope.decrypt(this.#key, pieces, { start: 1 })) {
          await write(plaintext, position === this.#last);
          position += 1;
        }
      }
      if (signal?.aborted) throw new InterruptedOperationError("interrupted");
    } catch (error) {
      await Promise.resolve()
        .then(() => sink.abort())
        .catch(() => {});
      if (error instanceof InterruptedOperationError)
        throw new InterruptedOperationError(
          "interrupted: nothing was saved; the shares are kept, and reading it again goes on without asking the custodians",
        );
      throw error;
    }
    const result = await sink.close();
    await store.remove("pending", this.keptKey);
    if (this.burnt) await noteGone(this.reader, this.envelope.id);
    this.acknowledge();
    return result;
  }
}

/** A sink that keeps the message in a Blob of its chunks (where no file can be written as
 * it arrives), refusing one over BLOB_LIMIT_BYTES before anything is fetched. */
export function blobSink(size, limit = BLOB_LIMIT_BYTES) {
  if (size > limit)
    throw new ParameterError(
      `this message is ${size} bytes; this browser cannot write a file as it arrives (it lacks the File System Access API), and it keeps at most ${limit} bytes in memory: read it in Chromium, Chrome or Edge, or with the CLI`,
    );
  let parts = [];
  let held = 0;
  return {
    write(data) {
      parts.push(data);
      held += data.size ?? data.length;
      if (held >= BATCH_BYTES * 8) {
        parts = [new Blob(parts)];
        held = 0;
      }
    },
    close: () => new Blob(parts, { type: "application/octet-stream" }),
    abort() {
      parts = [];
    },
  };
}

/** A sink writing to a file the File System Access API gave (a FileSystemFileHandle): its
 * writable stream goes to a temporary file that close() puts in place and abort() drops. */
export async function fileSink(handle) {
  const writable = await handle.createWritable();
  return {
    write: (data) => writable.write(data),
    close: async () => {
      await writable.close();
      return handle;
    },
    abort: () => writable.abort(),
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
