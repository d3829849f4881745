// What every view of the page shares: its state, DOM helpers that put text in as text (never
// as HTML), and how an action shows its progress and turns a failure into a sentence.

import {
  DecryptionError,
  KeyChangedError,
  QuorumError,
  SecureCommError,
  ServiceError,
  StreamError,
} from "../errors.js";
import { utcText } from "../envelope.js";
import { LockedError } from "../keywrap.js";

// `identities`: name → {name, public, keyFile, wrapped, identity}, where `identity` holds the
// unlocked keys, or is null while locked. `epoch` counts locks: a result that arrives after
// one is not shown. `running`: AbortControllers a lock aborts; `shown`: plaintexts it wipes.
export const state = {
  config: null,
  known: null,
  identities: new Map(),
  active: null,
  epoch: 0,
  running: new Set(),
  shown: new Set(),
};

export const $ = (selector, root = document) => root.querySelector(selector);

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false)
      node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function show(container, ...nodes) {
  container.replaceChildren(...nodes.flat().filter(Boolean));
}

/** A failure as a sentence a person can act on. */

export function describe(error) {
  if (error instanceof StreamError) {
    return `Refused (${error.name}): the message's stream is not the one its sender sealed (${error.message}); it was altered on the way or at the relay. Nothing was saved.`;
  }
  if (error instanceof DecryptionError) {
    return "The message could not be decrypted: it was altered, or a share was wrong. Nothing was shown.";
  }
  if (error instanceof QuorumError) {
    const kept = error.kept
      ? ` The ${error.kept} share(s) collected are kept, sealed to you, for the next read.`
      : "";
    // Fewer than t shares exist any more: no read can succeed, and the headline says so.
    // Too many operators denied this reader (a denial is final): said, as the CLI does.
    let gone = error.unreadable
      ? `This message can no longer be read: ${error.destroyed} of its ${error.custodians} custodians destroyed their share (burnt after reading, or unsent by its sender). `
      : error.denied
        ? `This message cannot be read by you: the operators of ${error.denied} of its ${error.custodians} custodians denied you their share (a denial is final), so at most ${error.possible} of the ${error.needed} needed can be released. If a denial was a mistake, ask the sender to send it again. `
        : "";
    // Past its expiry the custodians release it no more: the sender's policy, said so.
    if (error.expiredAt)
      gone = `This message expired at ${utcText(error.expiredAt)} (its sender's policy): ${error.expired} of its ${error.custodians} custodians release its share no more. `;
    // By their clocks: this browser's says the expiry is still to come.
    if (error.clockBehind)
      gone += `This browser's clock says ${utcText(error.clockBehind)}, before that expiry: if it is behind, set it right. `;
    // As the CLI's hint: approvals given between reads add up.
    const waiting =
      error.pending && !error.denied
        ? ` ${error.pending} release(s) wait for their custodian's operator: read again once enough are approved.`
        : "";
    return `${gone}Not enough custodians released a good share: ${error.good} of the ${error.needed} needed. Nothing was decrypted; each custodian's answer is listed above.${kept}${waiting}`;
  }
  if (error instanceof KeyChangedError)
    return `${error.message}. ${error.hint[0].toUpperCase()}${error.hint.slice(1)} (Identity → Known keys).`;
  if (error instanceof ServiceError && error.hint) return `${error.message} (${error.hint})`;
  if (error instanceof SecureCommError) return error.message;
  if (error?.name === "NotSupportedError")
    return "This browser lacks Ed25519 or X25519 in WebCrypto; use a current Chromium, Firefox or Safari.";
  return `Something went wrong in the page (${error?.name ?? "error"}); nothing secret was sent.`;
}

export function setStatus(form, text, kind = "") {
  const status = $(".status", form);
  status.className = `status ${kind}`;
  status.textContent = text;
}

/** Run an action for a form or button; disable it meanwhile, show progress and failures. */

export async function act(form, button, action) {
  button.disabled = true;
  form.setAttribute("aria-busy", "true");
  try {
    await action((text) => setStatus(form, text, "busy"));
  } catch (error) {
    setStatus(form, describe(error), "error");
  } finally {
    button.disabled = false;
    form.removeAttribute("aria-busy");
  }
}

export function time(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

/** A time as the custodians, the CLI and the read say it: "2026-01-02 03:04:05 UTC". */
export { utcText };

/** "12.0 MiB". */
export function mib(bytes) {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** A size as the CLI's inbox says it: "2,996 bytes"; from a mebibyte, "286.2 MiB". */
export function sizeText(bytes) {
  if (bytes < 1048576) return `${bytes.toLocaleString("en-US")} bytes`;
  return `${(bytes / 1048576).toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 })} MiB`;
}

/** A formatter of progress in bytes, {done, total} → "12.0 MiB of 200.0 MiB, 35.2 MiB/s",
 * the rate taken since its first call. Its `stalled()` says, once nothing moved for
 * STALLED_MS, where it stands and for how long: "12.0 MiB of 200.0 MiB; no answer from the
 * relay for 5 s" (else null), for a view to show while the relay hangs. */
export function rated() {
  let first = null;
  let last = null;
  const format = ({ done, total }) => {
    const now = performance.now();
    first ??= { now, done };
    last = { now, done, total };
    const seconds = (now - first.now) / 1000;
    const rate = seconds >= 0.25 ? `, ${mib((done - first.done) / seconds)}/s` : "";
    return `${mib(done)} of ${mib(total)}${rate}`;
  };
  format.stalled = () => {
    const quiet = last ? performance.now() - last.now : 0;
    if (quiet < STALLED_MS || last.done >= last.total) return null;
    return `${mib(last.done)} of ${mib(last.total)}; no answer from the relay for ${Math.floor(quiet / 1000)} s`;
  };
  return format;
}

const STALLED_MS = 3000;

/** While a transfer runs: each second, `show(text)` where `formatter` (from rated()) is
 * stalled and `moving()` says the transfer is what the page waits for. Returns the stop. */
export function sayWhenStalled(formatter, moving, show) {
  const timer = setInterval(() => {
    const text = moving() && formatter.stalled();
    if (text) show(text);
  }, 1000);
  return () => clearInterval(timer);
}

/** A piece tried again ({attempt, of, waitMs, reason}, from api.js): "the link failed
 * (relay cannot be reached …); trying again in 3 s (attempt 3 of 4)". */
export function retryingText({ attempt, of, waitMs, reason }) {
  return `the link failed (${reason}); trying again in ${Math.round(waitMs / 1000)} s (attempt ${attempt} of ${of})`;
}

/** Offer `bytes` (a Uint8Array or a Blob) as a download named `name`. */
export function download(name, bytes, type = "application/octet-stream") {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const link = h("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** The active identity's unlocked keys; if it is locked, ask for its passphrase. */
export function requireActive() {
  if (!state.active)
    throw new SecureCommError("Create or import an identity first (under Identity).");
  if (!state.active.identity) {
    $("#unlock-passphrase")?.focus();
    throw new LockedError(lockedSentence(state.active.name));
  }
  return state.active.identity;
}

export const lockedSentence = (name) =>
  `${name} is locked: enter its passphrase above to unlock it.`;
