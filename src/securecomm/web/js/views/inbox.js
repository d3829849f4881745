// The Inbox tab: the messages for the active identity, and reading one custodian by custodian.

import * as api from "../api.js";
import { fromUtf8 } from "../bytes.js";
import {
  FormatError,
  InterruptedOperationError,
  SecureCommError,
  SignatureError,
  StreamError,
} from "../errors.js";
import {
  state,
  $,
  h,
  show,
  describe,
  setStatus,
  act,
  time,
  download,
  requireActive,
  lockedSentence,
  mib,
  rated,
  sizeText,
  retryingText,
  sayWhenStalled,
  utcText,
} from "./ui.js";
import { renderKnown } from "./identity.js";
import { whileUnlocked, wipeOnLock, wipeShown } from "./lock.js";

// What the sender's signed policy says of a message, as the relay lists it (null: unknown).
function policyNotes(policy, now) {
  if (!policy) return [];
  const notes = [];
  if (policy.max_releases === 1) notes.push("burn after reading");
  // Each custodian counts its own releases, to whoever asks: not a number of readers.
  else if (policy.max_releases)
    notes.push(`each share released at most ${policy.max_releases} times`);
  if (policy.require_approval) notes.push("needs approval");
  // Before not_before, and once expired, the entry says so in place of Read (windowBadge).
  if (policy.expires && windowOf(policy, now) === "open")
    notes.push(`expires ${time(policy.expires)}`);
  return notes;
}

// Where a message stands in its sender's time window (signed in the envelope's policy):
// "early" before its not_before, "expired" from its expiry on, else "open". Custodians release
// its shares only while it is open (too_early, expired): else a read could only fail, so the
// entry offers none. Judged when the list is drawn, and again as each of those times comes.
function windowOf(policy, now) {
  if (policy?.expires && now >= policy.expires) return "expired";
  if (policy?.not_before && now < policy.not_before) return "early";
  return "open";
}

const expiredBadge = (policy) =>
  h(
    "span",
    { class: "badge refused expired", title: `expired ${time(policy.expires)}` },
    `expired at ${utcText(policy.expires)}: can no longer be read`,
  );

// Before its not_before: Read comes then, without a reload (watchWindows).
const notBeforeBadge = (policy) =>
  h(
    "span",
    { class: "badge pending not-before", title: `not before ${time(policy.not_before)}` },
    `not before ${utcText(policy.not_before)}: cannot be read yet`,
  );

function windowBadge(policy, now) {
  const stands = windowOf(policy, now);
  if (stands === "expired") return expiredBadge(policy);
  if (stands === "early") return notBeforeBadge(policy);
  return null;
}

// How long the list waits at most before it looks at the time again: a timer's delay does not
// count the time a machine slept, nor a clock set forward meanwhile.
const RECHECK_MS = 60_000;
// Redraws the entries of the list drawn last whose time window turned (watchWindows).
let windowTimer = null;

export async function refreshInbox() {
  const card = $("#inbox .card");
  if (state.active && !state.active.identity) {
    // Locked: nothing of the inbox is fetched or shown until the passphrase is given.
    show($("#inbox-list"));
    setStatus(card, lockedSentence(state.active.name));
    $("#unlock-passphrase").focus();
    return;
  }
  await act(card, $("#inbox-refresh"), async (progress) => {
    const reader = requireActive();
    const epoch = state.epoch;
    progress("Fetching your inbox…");
    const messages = await api.inbox(reader);
    const gone = await api.goneMessages(reader);
    if (state.epoch !== epoch) return; // the page locked meanwhile
    const now = Date.now() / 1000;
    setStatus(
      card,
      messages.length
        ? `${messages.length} message(s) for ${reader.name}.`
        : `No messages for ${reader.name}.`,
      "ok",
    );
    clearTimeout(windowTimer); // the list it watched is replaced
    windowTimer = null;
    const list = messages.length
      ? h(
          "ul",
          { class: "messages" },
          messages
            .slice()
            .reverse()
            .map((m) => inboxEntry(m, reader, gone, now)),
        )
      : null;
    show($("#inbox-list"), list);
    if (list) watchWindows(list, messages, reader, epoch, now);
  });
}

// One message of the inbox list, as it stands at `now` (unix seconds).
function inboxEntry(m, reader, gone, now) {
  const open = windowOf(m.policy, now) === "open";
  return h(
    "li",
    { "data-message": m.id },
    h(
      "div",
      {},
      h("strong", {}, m.sender.name),
      " ",
      h("span", { class: "hint" }, `${time(m.created)} · ${sizeText(m.size)} · ${m.id.slice(0, 8)}…`),
      ...policyNotes(m.policy, now).map((note) => h("span", { class: "badge" }, note)),
      windowBadge(m.policy, now) ?? (gone.has(m.id) ? goneBadge() : null),
    ),
    h(
      "span",
      { class: "buttons" },
      // Not where a read here found it can no longer be read, nor outside its time window:
      // it would only fail.
      gone.has(m.id) || !open
        ? null
        : h(
            "button",
            {
              type: "button",
              class: "read",
              "aria-label": `Read the message from ${m.sender.name} of ${time(m.created)}`,
              onclick: (e) => readMessage(m.id, e.target),
            },
            "Read",
          ),
      // Not for a message you sent: only unsending, which destroys its shares too.
      m.sender.fingerprint === reader.public.fingerprintHex
        ? null
        : h(
            "button",
            {
              type: "button",
              class: "danger",
              "aria-label": `Delete the message from ${m.sender.name} of ${time(m.created)} from your inbox`,
              onclick: (e) => deleteMessage(m, e.target),
            },
            "Delete",
          ),
    ),
  );
}

// A list drawn before a message's not_before or expiry would go on offering Read, or none,
// until drawn again. So when the first of those times comes, the entries whose window turned
// are drawn again: Read comes at not_before and goes at the expiry, each saying so. Stops
// once the list is drawn again or emptied (the page locked).
function watchWindows(list, messages, reader, epoch, drawnAt) {
  const drawn = new Map(messages.map((m) => [m.id, windowOf(m.policy, drawnAt)]));
  const schedule = (now) => {
    const next = Math.min(
      ...messages
        .flatMap((m) => [m.policy?.not_before, m.policy?.expires])
        .filter((t) => t && t > now),
    );
    if (next === Infinity) return;
    // Fired before that time (RECHECK_MS, a clock set back), it only sets the next.
    windowTimer = setTimeout(turn, Math.min((next - now) * 1000, RECHECK_MS));
  };
  const turn = async () => {
    windowTimer = null;
    if (state.epoch !== epoch || !list.isConnected) return;
    const now = Date.now() / 1000;
    const turned = messages.filter((m) => windowOf(m.policy, now) !== drawn.get(m.id));
    // What a read here found since (showIfGone) stays said.
    const gone = turned.length ? await api.goneMessages(reader).catch(() => new Set()) : null;
    if (state.epoch !== epoch || !list.isConnected) return;
    for (const m of turned) {
      drawn.set(m.id, windowOf(m.policy, now));
      const old = $(`li[data-message="${m.id}"]`, list);
      if (!old) continue;
      const focused = old.contains(document.activeElement) ? document.activeElement : null;
      const entry = inboxEntry(m, reader, gone, now);
      old.replaceWith(entry);
      // Keyboard focus stays on the entry: on the same button, or the one left.
      if (focused) ($(`button.${focused.classList[0]}`, entry) ?? $("button", entry))?.focus();
    }
    schedule(now);
  };
  schedule(drawnAt);
}

const goneBadge = () => h("span", { class: "badge refused gone" }, "can no longer be read");

// Once a read here found a message can no longer be read, its inbox entry offers Read no more.
async function showIfGone(reader, messageId) {
  if (!(await api.goneMessages(reader)).has(messageId)) return;
  const item = $(`#inbox-list li[data-message="${messageId}"]`);
  if (!item || $(".gone", item)) return;
  item.firstElementChild.append(goneBadge());
  $("button.read", item)?.remove();
}

// Remove a message from the inbox, once the reader confirms: the list is fetched again after.
async function deleteMessage(message, button) {
  const from = `${message.sender.name} of ${time(message.created)}`;
  if (!window.confirm(`Delete the message from ${from} from your inbox? It cannot be read here again.`))
    return;
  const card = $("#inbox .card");
  let deleted = false; // act() shows a failure, and the list stays as it is
  await act(card, button, async (progress) => {
    progress("Deleting the message from your inbox…");
    await api.deleteFromInbox(requireActive(), message, state.config);
    deleted = true;
  });
  if (deleted) {
    await refreshInbox();
    setStatus(card, `Deleted the message from ${from} from your inbox.`, "ok");
  }
}

// Text longer than this is not shown in the page, only saved.
const SHOWN_TEXT_BYTES = 1024 * 1024;

// The text, or null for a file: UTF-8 with no control characters but tab and line ends (the
// CLI's rule, people.py _printable, whatever the size: a long text is still saved as .txt).
function asText(bytes) {
  let text;
  try {
    text = fromUtf8(bytes);
  } catch {
    return null;
  }
  return /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(text) ? null : text;
}

const STATE_LABELS = {
  waiting: "waiting",
  asking: "asking…",
  released: "released",
  pending: "pending approval",
  refused: "refused",
  down: "down",
  bad: "bad share",
  "not-asked": "not asked",
};

// Who sent a message, whether their key was known, and a button to pin it if not.
function senderLine(result) {
  return [
    h(
      "p",
      {},
      "From ",
      h("strong", {}, result.sender.name),
      " ",
      h("span", { class: "fingerprint" }, result.sender.shortFingerprint()),
      result.senderPinned
        ? h("span", { class: "badge released" }, "known key")
        : h("span", { class: "badge pending" }, "key not known before"),
    ),
    result.senderPinned
      ? null
      : h(
          "button",
          {
            type: "button",
            class: "small",
            id: "pin-sender",
            onclick: async (e) => {
              await state.known.pin(result.sender);
              renderKnown();
              e.target.replaceWith(
                h(
                  "span",
                  { class: "ok" },
                  ` ${result.sender.name}'s key is pinned: a message signed by another key under that name will be refused.`,
                ),
              );
            },
          },
          `I compared it: pin ${result.sender.name}'s key`,
        ),
  ];
}

// Where this browser saves a message as it opens: a file the person picks, written as the
// chunks open and completed only when all did (the File System Access API); or, without
// it, a Blob kept in memory up to api.BLOB_LIMIT_BYTES, offered as a download at the end.
const WRITES_FILES = () => typeof window.showSaveFilePicker === "function";

// A version 2 message: its file name and size, and a button that saves it.
function streamBody(result, messageId) {
  const { download: stream } = result;
  const name = result.filename ?? `message-${messageId.slice(0, 8)}.bin`;
  const bar = h("progress", { id: "save-progress", max: "1", value: "0", hidden: true });
  const cancel = h(
    "button",
    { type: "button", id: "save-cancel", class: "small", hidden: true },
    "Cancel",
  );
  const status = h("div", { class: "status", role: "status", "aria-live": "polite" });
  const box = h("div", { id: "stream-save" });
  const save = h(
    "button",
    {
      type: "button",
      id: "save-message",
      onclick: () => saveStream(stream, name, { box, save, bar, cancel }),
    },
    `Save ${name} (${stream.size} bytes)`,
  );
  box.append(
    h(
      "p",
      {},
      result.filename
        ? `This message is a file of ${mib(stream.size)}, named ${result.filename} by its sender.`
        : `This message is a file of ${mib(stream.size)}.`,
    ),
    save,
    cancel,
    bar,
    h(
      "p",
      { class: "hint", id: "save-how" },
      WRITES_FILES()
        ? "You choose where to save it; the file is written as the message is downloaded and opened, and it is completed only once every chunk has checked out."
        : `This browser cannot write a file as it arrives: it keeps the message in memory, up to ${api.BLOB_LIMIT_BYTES / 1024 ** 3} GiB, and offers it as a download once every chunk has checked out. For a larger one use Chromium, Chrome or Edge, or the CLI.`,
    ),
    status,
  );
  return box;
}

async function saveStream(stream, name, { box, save, bar, cancel }) {
  await act(box, save, async (progress) => {
    let sink;
    if (WRITES_FILES()) {
      // Called at once, within the click: the picker needs the person's gesture.
      let handle;
      try {
        handle = await window.showSaveFilePicker({ suggestedName: name });
      } catch (error) {
        if (error?.name === "AbortError") {
          setStatus(box, "No file was chosen, so nothing was saved.", "");
          return;
        }
        throw error;
      }
      sink = await api.fileSink(handle);
    } else {
      sink = api.blobSink(stream.size);
    }
    const controller = new AbortController();
    const stop = () => {
      cancel.disabled = true;
      controller.abort();
    };
    const release = whileUnlocked(controller); // locking the page stops the download
    const saving = rated();
    let retrying = false;
    const quiet = sayWhenStalled(
      saving,
      () => !retrying,
      (text) => progress(`Downloading and opening: ${text}`),
    );
    cancel.addEventListener("click", stop);
    Object.assign(cancel, { hidden: false, disabled: false });
    bar.hidden = false;
    box.removeAttribute("data-error");
    try {
      const saved = await stream.saveTo(sink, {
        signal: controller.signal,
        progress: (detail) => {
          retrying = Boolean(detail.retrying);
          bar.value = detail.total ? detail.done / detail.total : 1;
          progress(
            `Downloading and opening: ${detail.retrying ? retryingText(detail.retrying) : saving(detail)}`,
          );
        },
      });
      if (saved instanceof Blob) download(name, saved);
      setStatus(
        box,
        `Saved ${saved instanceof Blob ? name : saved.name} (${stream.size} bytes): every chunk opened and checked.`,
        "ok",
      );
      box.dataset.saved = "true";
      await showIfGone(stream.reader, stream.envelope.id).catch(() => {});
    } catch (error) {
      box.dataset.error = error?.name ?? "Error";
      if (error instanceof SignatureError || error instanceof FormatError)
        throw new SecureCommError(
          `Refused: an answer of the relay was altered or is not genuine (${error.message}); nothing was saved.`,
        );
      if (error instanceof StreamError || error instanceof InterruptedOperationError) throw error;
      throw new SecureCommError(
        `${describe(error)} Nothing was saved; the shares are kept, so reading it again asks no custodian.`,
      );
    } finally {
      quiet();
      release();
      cancel.removeEventListener("click", stop);
      cancel.hidden = true;
      bar.hidden = true;
    }
  });
}

async function readMessage(messageId, button) {
  const reader = requireActive();
  const epoch = state.epoch;
  wipeShown(); // the message shown before, which this read replaces
  const statuses = new Map(state.config.custodians.map((c) => [c.name, ["waiting", ""]]));
  const statusList = h("ul", { class: "custody", id: "custody-status" });
  const drawStatus = () =>
    show(
      statusList,
      [...statuses].map(([name, [st, detail]]) =>
        h(
          "li",
          { "data-custodian": name, "data-state": st },
          h("strong", {}, name),
          " ",
          h("span", { class: `badge ${st}` }, STATE_LABELS[st] ?? st),
          detail ? h("span", { class: "hint" }, ` ${detail}`) : null,
        ),
      ),
    );
  drawStatus();
  const panel = h(
    "div",
    { class: "card", id: "reading", "aria-busy": "true", tabindex: "-1" },
    h("h3", {}, `Message ${messageId.slice(0, 8)}…`),
    h("h4", {}, "Custodians"),
    statusList,
    h("div", { class: "status", role: "status", "aria-live": "polite" }, "Collecting shares…"),
  );
  show($("#read-result"), panel);
  // The result goes below the inbox list, a screen or more down: take the reader there.
  panel.scrollIntoView({ block: "start" });
  button.disabled = true;
  const warnings = [];
  try {
    const result = await api.read({
      config: state.config,
      known: state.known,
      reader,
      messageId,
      onStatus: (name, st, detail) => {
        statuses.set(name, [st, detail]);
        drawStatus();
      },
      warn: (line) => warnings.push(line),
    });
    wipeOnLock(result.plaintext);
    if (state.epoch !== epoch) {
      // The page locked while the shares came: show nothing of it.
      wipeShown();
      return;
    }
    renderKnown();
    if (result.download) {
      setStatus(
        panel,
        `The shares of ${result.used.join(", ")} rebuilt the key (commitment checked), and the stream's first chunk opened. Save the file to download, open and check the rest.`,
        "ok",
      );
      const message = h(
        "div",
        { id: "message", tabindex: "-1" },
        senderLine(result),
        warnings.map((line) => h("p", { class: "notice" }, line)),
        streamBody(result, messageId),
      );
      panel.append(message);
      message.scrollIntoView({ block: "start" });
      message.focus({ preventScroll: true });
      return;
    }
    const text = asText(result.plaintext);
    const shown = text !== null && result.plaintext.length <= SHOWN_TEXT_BYTES;
    const save = h(
      "button",
      {
        type: "button",
        id: "save-message",
        onclick: () =>
          download(
            result.filename ??
              `message-${messageId.slice(0, 8)}.${text === null ? "bin" : "txt"}`,
            result.plaintext,
          ),
      },
      result.filename
        ? `Save ${result.filename} (${result.plaintext.length} bytes)`
        : text === null
          ? `Save the ${result.plaintext.length}-byte file`
          : "Save as a file",
    );
    const body = [
      shown
        ? h("pre", { id: "plaintext", class: "plaintext", tabindex: "0" }, text)
        : h(
            "p",
            { id: "not-shown" },
            result.filename
              ? `This message is a file, named ${result.filename} by its sender.`
              : text === null
                ? "This message is a file, not text."
                : `This message is text, ${result.plaintext.length} bytes: too long to show here; save it as a file.`,
          ),
      save,
    ];
    setStatus(
      panel,
      `Decrypted with the shares of ${result.used.join(", ")}; key commitment and tag checked.`,
      "ok",
    );
    const message = h(
      "div",
      { id: "message", tabindex: "-1" },
      senderLine(result),
      warnings.map((line) => h("p", { class: "notice" }, line)),
      body,
    );
    panel.append(message);
    message.scrollIntoView({ block: "start" });
    message.focus({ preventScroll: true });
  } catch (error) {
    for (const [name, [st]] of statuses)
      if (st === "waiting") statuses.set(name, ["not-asked", ""]);
    drawStatus();
    const altered = error instanceof SignatureError || error instanceof FormatError;
    setStatus(
      panel,
      altered
        ? `Refused: this message was altered or is not genuine, so nothing was decrypted. ${error.message}`
        : describe(error),
      "error",
    );
    panel.append(...warnings.map((line) => h("p", { class: "notice" }, line)));
    panel.scrollIntoView({ block: "start" });
    panel.focus({ preventScroll: true });
  } finally {
    await showIfGone(reader, messageId).catch(() => {});
    panel.removeAttribute("aria-busy");
    button.disabled = false;
  }
}
