// The page's lock (spec/sessions.md §2): an identity is unlocked with its passphrase into
// non-extractable keys held in memory only, and every identity is locked again after a time
// without input or on request. Locking drops those keys and every message the page showed.

import * as store from "../store.js";
import { SecureCommError } from "../errors.js";
import { Identity } from "../identity.js";
import { keyFileEncrypted, readKeyFile, writeKeyFile } from "../keyfile.js";
import { storedRecord, unwrapIdentity, wrapKeys } from "../keywrap.js";
import { MIN_PASSPHRASE_LENGTH, weakness } from "../passphrases.js";
import { state, $, show, setStatus, act } from "./ui.js";

export const IDLE_LIMIT_MS = 15 * 60 * 1000;
const INPUT_EVENTS = ["pointerdown", "pointermove", "keydown", "wheel", "touchstart"];

/** The idle limit: 15 minutes, or `?idle=SECONDS` if that is shorter; nothing lengthens it. */
export function idleLimit(search = location.search) {
  const asked = Number(new URLSearchParams(search).get("idle"));
  return Number.isFinite(asked) && asked >= 1 && asked * 1000 < IDLE_LIMIT_MS
    ? asked * 1000
    : IDLE_LIMIT_MS;
}

/** "15 min", "90 s". */
export function duration(ms) {
  return ms % 60000 === 0 ? `${ms / 60000} min` : `${Math.round(ms / 1000)} s`;
}

let limit = IDLE_LIMIT_MS;
let onChange = () => {};
let timer = null;
let lastWall = 0;
let lastClock = 0;

// The wall clock runs on through a suspended machine, the monotonic one through a clock set back.
const idleFor = () => Math.max(Date.now() - lastWall, performance.now() - lastClock);

function noteInput() {
  lastWall = Date.now();
  lastClock = performance.now();
}

const anyUnlocked = () => [...state.identities.values()].some((record) => record.identity);

// One timer at a time, set for the earliest moment the limit can be reached: input only
// moves the mark, and the timer, when it fires, locks or waits for what is left.
function check() {
  clearTimeout(timer);
  timer = null;
  if (!anyUnlocked()) return;
  const idle = idleFor();
  if (idle >= limit) lockAll(`Locked after ${duration(limit)} without use.`);
  else timer = setTimeout(check, limit - idle);
}

/** Start watching for input; `changed` redraws the page after a lock or an unlock. */
export function startLock({ changed }) {
  limit = idleLimit();
  onChange = changed;
  noteInput();
  for (const type of INPUT_EVENTS)
    window.addEventListener(type, noteInput, { capture: true, passive: true });
  // A hidden tab's timers are slowed down, and a page kept in the back-forward cache stops
  // its own: check again as soon as it is shown.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") check();
  });
  window.addEventListener("pageshow", check);
  $("#unlock-form").addEventListener("submit", onUnlock);
  $("#lock-button").addEventListener("click", () => {
    lockAll("Locked.");
    others?.postMessage("lock");
  });
  // Lock is the profile's: the page's other tabs lock with this one (each keeps its own
  // idle limit: input in one tab says nothing of another left open).
  others?.addEventListener("message", (event) => {
    if (event.data === "lock" && anyUnlocked()) lockAll("Locked in another tab.");
  });
  check();
}

// The page's other tabs in this profile (same origin), where the browser has the channel.
const others = "BroadcastChannel" in window ? new BroadcastChannel("securecomm-lock") : null;

export function lockNote() {
  return `Kept in this browser wrapped under your passphrase; locked after ${duration(limit)} without use, or with Lock.`;
}

/**
 * Lock every identity: drop its keys, stop what is running, wipe the plaintexts held, and
 * empty everything the page showed of messages (and the draft being written).
 */
export function lockAll(sentence) {
  for (const record of state.identities.values()) record.identity = null;
  state.epoch += 1;
  for (const controller of state.running) controller.abort();
  state.running.clear();
  wipeShown();
  for (const selector of ["#inbox-list", "#read-result", "#send-result", "#operator-list"])
    show($(selector));
  setStatus($("#inbox .card"), "");
  for (const form of [$("#send-form"), $("#unsend-form")]) {
    setStatus(form, "");
    form.reset();
  }
  clearTimeout(timer);
  timer = null;
  onChange();
  setStatus($("#unlock-form"), sentence);
}

/** Show the unlock form if the active identity is locked, and Lock if any is unlocked. */
export function renderLock() {
  $("#lock-button").hidden = !anyUnlocked();
  const form = $("#unlock-form");
  const record = state.active;
  if (!record || record.identity) {
    form.hidden = true;
    return;
  }
  const fresh = form.dataset.identity !== record.name;
  const choosing = !record.wrapped && !keyFileEncrypted(record.keyFile);
  form.dataset.identity = record.name;
  form.hidden = false;
  $("#unlock-title").textContent = choosing
    ? `${record.name} has no passphrase yet`
    : `${record.name} is locked`;
  $("#unlock-why").textContent = choosing
    ? `An earlier version of this page kept ${record.name} without a passphrase. Choose one (at least ${MIN_PASSPHRASE_LENGTH} characters) to lock it with; its key file is then encrypted with it too.`
    : `Enter ${record.name}'s passphrase to send, read or export. A locked page shows no message.`;
  $("#unlock-passphrase-label").textContent = choosing ? "New passphrase" : "Passphrase";
  $("#unlock-passphrase").autocomplete = choosing ? "new-password" : "current-password";
  $("#unlock-again").hidden = !choosing;
  if (fresh) setStatus(form, "");
}

async function onUnlock(event) {
  event.preventDefault();
  const form = event.target;
  await act(form, $("button", form), async (progress) => {
    const record = state.active;
    if (!record || record.identity) return;
    const passphrase = $("#unlock-passphrase").value;
    if (!passphrase) throw new SecureCommError("Enter the passphrase.");
    progress(`Unlocking ${record.name}…`);
    const identity = await unlock(record, passphrase, $("#unlock-confirm").value, progress);
    if (state.active !== record) return;
    record.identity = identity;
    form.reset();
    setStatus(form, "");
    noteInput();
    check();
    onChange();
  });
}

/**
 * `record`'s Identity, unlocked with `passphrase`. A record not wrapped yet is unlocked from
 * its key file (with a new passphrase, given twice, if the file is not encrypted), then
 * stored wrapped.
 */
async function unlock(record, passphrase, again, progress) {
  if (record.wrapped) return unwrapIdentity(record.public, record.wrapped, passphrase);
  if (!record.keyFile)
    throw new SecureCommError(
      `This browser holds no key file for ${record.name}: forget it and import its key file again.`,
    );
  const encrypted = keyFileEncrypted(record.keyFile);
  if (!encrypted) checkNewPassphrase(passphrase, again);
  const keys = await readKeyFile(record.keyFile, encrypted ? passphrase : null);
  try {
    const identity = await Identity.fromPkcs8(record.name, keys.ed25519Pkcs8, keys.x25519Pkcs8);
    if (!identity.public.sameKeys(record.public) || keys.name !== record.name)
      throw new SecureCommError(
        `The key file kept for ${record.name} holds other keys: forget it and import its key file again.`,
      );
    progress(`Protecting ${record.name}'s keys with the passphrase…`);
    const keyFile = encrypted
      ? record.keyFile
      : await writeKeyFile(record.name, keys.ed25519Pkcs8, keys.x25519Pkcs8, passphrase);
    const wrapped = await wrapKeys(keys.ed25519Pkcs8, keys.x25519Pkcs8, passphrase);
    await store.put("identities", record.name, storedRecord(record.public, keyFile, wrapped));
    Object.assign(record, { keyFile, wrapped });
    return identity;
  } finally {
    keys.ed25519Pkcs8.fill(0);
    keys.x25519Pkcs8.fill(0);
  }
}

/** Throw unless `passphrase` is hard enough to guess (passphrases.js) and typed the same
 * twice. Only a passphrase that is to lock a key: one that unlocks is never checked. */
export function checkNewPassphrase(passphrase, again) {
  if (passphrase === "")
    throw new SecureCommError(
      "Type a passphrase (twice) to protect the keys: nothing was locked without one.",
    );
  const weak = weakness(passphrase);
  if (weak)
    throw new SecureCommError(
      `That passphrase ${weak.why}: it is too easy to guess, and nothing was locked with it. Choose a longer one, such as four words that do not go together; not a run like “abcdefgh” or “qwertyui”, nor a common password.`,
    );
  if (passphrase !== again) throw new SecureCommError("The two passphrases differ.");
}

/** Note that an identity was just unlocked by being made or imported, and watch for idle. */
export function unlocked() {
  noteInput();
  check();
}

/** Register a running operation's controller: locking aborts it. Returns a release function. */
export function whileUnlocked(controller) {
  state.running.add(controller);
  return () => state.running.delete(controller);
}

/** Keep `bytes` (a plaintext shown) to be wiped when the page locks or shows another. */
export function wipeOnLock(bytes) {
  if (bytes instanceof Uint8Array) state.shown.add(bytes);
}

/** Zero the plaintexts kept by wipeOnLock: the page shows them no more. */
export function wipeShown() {
  for (const bytes of state.shown) bytes.fill(0);
  state.shown.clear();
}
