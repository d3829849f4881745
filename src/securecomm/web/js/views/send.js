// The Send tab: the custodians this page deposits with, the form, and what was sent.

import * as api from "../api.js";
import { b64encode, fromUtf8, toHex, utf8 } from "../bytes.js";
import { Policy, nameForFile, prepare } from "../envelope.js";
import { SecureCommError } from "../errors.js";
import { checkName } from "../identity.js";
import {
  state,
  $,
  h,
  show,
  setStatus,
  act,
  requireActive,
  rated,
  retryingText,
  sayWhenStalled,
  mib,
  time,
} from "./ui.js";
import { renderKnown } from "./identity.js";
import { whileUnlocked } from "./lock.js";

export function renderCustodians() {
  const config = state.config;
  show(
    $("#custodian-list"),
    h(
      "p",
      { id: "custody-rule" },
      `The key is split into ${config.n} shares, one per custodian; any ${config.threshold} rebuild it.`,
    ),
    h(
      "ul",
      { class: "custodians" },
      config.custodians.map((c) => {
        const pinned = state.known.get(c.name);
        return h(
          "li",
          { "data-custodian": c.name },
          h("strong", {}, c.name),
          " ",
          h("span", { class: "hint" }, c.url),
          " ",
          pinned
            ? h("span", { class: "fingerprint", title: "pinned key" }, pinned.shortFingerprint())
            : null,
        );
      }),
    ),
  );
}

export async function onSend(event) {
  event.preventDefault();
  const form = event.target;
  await act(form, $("button[type=submit]", form), async (progress) => {
    const sender = requireActive();
    const epoch = state.epoch;
    // Each name once, in the order given, as the CLI takes "--to bob,carol,bob".
    const recipients = [
      ...new Set(
        $("#send-to")
          .value.split(",")
          .map((s) => s.trim())
          .filter(Boolean),
      ),
    ];
    if (!recipients.length) throw new SecureCommError("Name at least one recipient.");
    for (const name of recipients) checkName(name, { field: "recipient" });
    const file = $("#send-file").files[0];
    const text = $("#send-text").value;
    if (file && text) throw new SecureCommError("Send either a message or a file, not both.");
    if (!file && !text) throw new SecureCommError("Write a message or choose a file.");
    // Only the typed text: a file may hold anything, blanks included.
    if (!file && !text.trim())
      throw new SecureCommError(
        "The message is only spaces or line breaks: write something, or choose a file. Nothing was sent.",
      );
    const streamed = Boolean(file) && file.size > api.STREAM_ABOVE_BYTES;
    const message = streamed ? null : file ? new Uint8Array(await file.arrayBuffer()) : utf8(text);
    const limit = Math.floor(state.config.max_envelope_bytes * 0.74) - 8192;
    if (!streamed && message.length > limit)
      throw new SecureCommError(
        `That is ${message.length} bytes; this relay takes messages up to about ${limit} bytes.`,
      );
    const expires = $("#send-expires").value;
    const policy = new Policy({
      expires: expires ? Math.floor(Date.now() / 1000) + Number(expires) : null,
      maxReleases: $("#send-burn").checked ? 1 : null,
      requireApproval: $("#send-approval").checked,
    });
    const warnings = [];
    const stages = {
      "checking keys": "Checking the custodians' keys…",
      encrypting: "Encrypting in this page…",
      "opening the upload": "Asking the relay to take a stream of this size…",
      "going on with the upload":
        "Going on with the upload of this file begun earlier: asking the relay how much it holds…",
      "depositing shares": "Sealing and depositing a share with each custodian…",
      posting: streamed
        ? "Posting the signed document to the relay…"
        : "Posting the envelope to the relay…",
    };
    const bar = $("#send-progress");
    const uploading = rated();
    let stage = null; // the last one reported
    const common = {
      config: state.config,
      known: state.known,
      sender,
      recipients,
      // The file's name travels encrypted with it (spec §7.10), for the reader to save under.
      filename: file ? nameForFile(file.name) : null,
      policy,
      progress: (now, detail) => {
        stage = now;
        if (stage === "uploading") {
          bar.hidden = false;
          bar.value = detail.total ? detail.done / detail.total : 1;
          progress(`Encrypting and uploading the file: ${uploading(detail)}`);
        } else if (stage === "retrying") {
          progress(`Uploading the file: ${retryingText(detail)}`);
        } else {
          progress(stages[stage] ?? stage);
        }
      },
      warn: (line) => warnings.push(line),
    };
    let result;
    if (streamed) {
      const cancel = $("#send-cancel");
      const controller = new AbortController();
      const stop = () => {
        cancel.disabled = true;
        controller.abort();
      };
      cancel.hidden = false;
      cancel.disabled = false;
      cancel.addEventListener("click", stop);
      const release = whileUnlocked(controller); // locking the page stops the upload
      const quiet = sayWhenStalled(
        uploading,
        () => stage === "uploading",
        (text) => progress(`Encrypting and uploading the file: ${text}`),
      );
      try {
        result = await api.sendFile({ ...common, file, signal: controller.signal });
      } finally {
        quiet();
        release();
        cancel.removeEventListener("click", stop);
        cancel.hidden = true;
        bar.hidden = true;
      }
    } else {
      result = await api.send({ ...common, message, prepare });
    }
    renderKnown();
    renderCustodians();
    if (state.epoch !== epoch) {
      setStatus(form, `Sent to ${recipients.join(", ")}; the page locked meanwhile.`, "ok");
      return;
    }
    setStatus(form, `Sent to ${recipients.join(", ")}.`, "ok");
    form.reset();
    showSent(result, recipients, warnings);
  });
  renderKeptSends(); // one kept, taken or dropped by this send (act has said how it ended)
}

/** Unsend the message whose id is in the Unsend form (the Sent card's *Unsend* puts it
 * there), as `securecomm unsend` does, once the sender confirms. */
export async function onUnsend(event) {
  event.preventDefault();
  const form = event.target;
  await act(form, $("button[type=submit]", form), async (progress) => {
    const sender = requireActive();
    const messageId = $("#unsend-id").value.trim().toLowerCase();
    if (!/^[0-9a-f]{32}$/.test(messageId))
      throw new SecureCommError(
        "A message id is 32 hex digits, as the Sent card or the recipient's inbox shows it. Nothing was destroyed.",
      );
    if (
      !window.confirm(
        `Unsend message ${messageId}? Every custodian destroys its share: no one can read it after.`,
      )
    ) {
      setStatus(form, "Not unsent.");
      return;
    }
    progress("Asking every custodian to destroy its share…");
    const { shares, destroyed, failures } = await api.unsend({
      config: state.config,
      sender,
      messageId,
    });
    const failed = Object.entries(failures);
    const why = failed.map(([name, reason]) => `${name}: ${reason}`).join("; ");
    if (shares === null) {
      // The relay held it no more: each custodian of the network was asked by its id.
      const held = destroyed.length ? ` (destroyed: ${destroyed.join(", ")})` : "";
      if (failed.length)
        throw new SecureCommError(
          `Message ${messageId}: the relay holds it no more; ${failed.length} custodian(s) could not be asked to destroy a share (${why})${held}. Try again once they answer.`,
        );
      setStatus(
        form,
        `Message ${messageId}: the relay holds it no more (each recipient deleted it, or it was unsent before); the shares of ${destroyed.join(", ")} are destroyed.`,
        "ok",
      );
      form.reset();
      return;
    }
    if (failed.length)
      throw new SecureCommError(
        `Message ${messageId}: ${failed.length} of its ${shares} shares could not be destroyed (${why}); the ${shares - failed.length} others were. The relay keeps the envelope, so that unsending again can finish: try again once they answer.`,
      );
    setStatus(
      form,
      `Message ${messageId}: all ${shares} shares destroyed, removed from the relay.`,
      "ok",
    );
    form.reset();
  });
}

/** The uploads stopped earlier (a closed tab, a link down) and kept in this profile for the
 * unlocked identity, each with Drop: a reload left them unseen, holding the sender's quota
 * at the relay for a day, with no way to cancel them. */
export async function renderKeptSends() {
  const box = $("#kept-sends");
  const sender = state.active?.identity;
  let kept = [];
  try {
    kept = sender ? await api.keptSends(sender) : [];
  } catch {
    // the profile's storage refused: nothing to list, and the send itself says why
  }
  if (sender !== state.active?.identity) return; // another identity, or locked, meanwhile
  if (!kept.length) {
    show(box);
    box.hidden = true;
    return;
  }
  box.hidden = false;
  show(
    box,
    h("h3", {}, "Stopped uploads"),
    h(
      "p",
      { class: "hint" },
      "Sending the same file to the same people again goes on from what the relay holds. Drop one to free its room at the relay.",
    ),
    h(
      "ul",
      {},
      kept.map((item) => {
        const button = h("button", { type: "button", class: "kept-drop" }, "Drop");
        const status = h("span", { class: "status", role: "status" });
        const row = h(
          "li",
          { "data-message": item.id },
          h("strong", {}, item.file ?? "a file"),
          item.size === null ? "" : ` (${mib(item.size)})`,
          item.recipients.length ? ` to ${item.recipients.join(", ")}` : "",
          item.created === null ? "" : `, begun ${time(item.created)}`,
          " · message ",
          h("code", {}, item.id),
          " ",
          button,
          " ",
          status,
        );
        button.addEventListener("click", async () => {
          button.disabled = true;
          const gone = await api.dropKeptSend(sender, item.id);
          status.className = `status ${gone ? "ok" : "error"}`;
          status.textContent = gone
            ? "dropped, with the relay's part"
            : "dropped here; the relay's part could not be deleted now (the relay drops it within a day)";
        });
        return row;
      }),
    ),
  );
}

// What the page shows of a sent document's ciphertext: version 1's, or version 2's stream.
function ciphertextOf(json) {
  if (json.v !== 2) return json.ciphertext;
  const { digest, length } = json.payload;
  return `a stream of ${length} bytes (${Math.ceil(length / 65552)} sealed chunks), SHA-256 ${digest}`;
}

// The Sent card's Unsend: the Unsend form, with this message's id, does it.
function unsendSent(messageId) {
  const form = $("#unsend-form");
  $("#unsend-id").value = messageId;
  form.scrollIntoView({ block: "nearest" });
  form.requestSubmit();
}

function showSent(result, recipients, warnings) {
  const { envelope, copy, digest, relayDigest } = result;
  const sentJson = { ciphertext: ciphertextOf(JSON.parse(fromUtf8(result.data))) };
  const copyJson =
    copy === null
      ? { ciphertext: `(not fetched: ${result.copyError})` }
      : { ciphertext: ciphertextOf(JSON.parse(fromUtf8(copy))) };
  const same = relayDigest === digest && copy !== null && toHex(copy) === toHex(result.data);
  show(
    $("#send-result"),
    h(
      "div",
      { class: "card", id: "sent" },
      h("h3", {}, "Sent"),
      warnings.map((line) => h("p", { class: "notice" }, line)),
      h(
        "dl",
        {},
        h("dt", {}, "Message id"),
        h(
          "dd",
          {},
          h("code", { id: "sent-id" }, envelope.id),
          " ",
          h(
            "button",
            { type: "button", id: "sent-unsend", onclick: () => unsendSent(envelope.id) },
            "Unsend",
          ),
        ),
        h("dt", {}, "To"),
        h("dd", {}, recipients.join(", ")),
        h("dt", {}, "Ciphertext sent"),
        h(
          "dd",
          {},
          h(
            "code",
            { class: "wrap", id: "sent-ciphertext" },
            sentJson.ciphertext.slice(0, 120) + (sentJson.ciphertext.length > 120 ? "…" : ""),
          ),
        ),
        h("dt", {}, "Copy from the server"),
        h(
          "dd",
          {},
          h(
            "code",
            { class: "wrap", id: "relay-ciphertext" },
            copyJson.ciphertext.slice(0, 120) + (copyJson.ciphertext.length > 120 ? "…" : ""),
          ),
        ),
        h("dt", {}, "Check"),
        h(
          "dd",
          { id: "copy-check", class: same ? "ok" : "error" },
          same
            ? `identical: SHA-256 ${digest.slice(0, 16)}… of ${result.data.length} bytes, as the relay reported`
            : `the relay reported the right SHA-256 (${digest.slice(0, 16)}…), but its copy could not be fetched back to compare`,
        ),
      ),
      h("h4", {}, "Custody receipts"),
      h(
        "div",
        { class: "scroll" },
        h(
          "table",
          { id: "receipts" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Custodian", "Share", "Reference", "Share digest"].map((t) =>
                h("th", { scope: "col" }, t),
              ),
            ),
          ),
          h(
            "tbody",
            {},
            envelope.receipts.map((r) =>
              h(
                "tr",
                {},
                h("td", {}, r.custodian),
                h("td", {}, r.index),
                h("td", {}, h("code", { class: "wrap" }, r.ref)),
                h(
                  "td",
                  {},
                  h("code", { class: "wrap" }, b64encode(r.shareDigest).slice(0, 16) + "…"),
                ),
              ),
            ),
          ),
        ),
      ),
      h(
        "p",
        { class: "hint" },
        "The relay holds this ciphertext and these signed receipts; each key share went, sealed, to its custodian only.",
      ),
    ),
  );
}
