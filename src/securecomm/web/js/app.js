// The page: identities, send, inbox and read, and the operator's view. Everything secret
// stays in this page; what it shows of a failure is a sentence, never a stack trace.

import * as api from "./api.js";
import { b64encode, fromUtf8, toHex, utf8 } from "./bytes.js";
import { Policy, nameForFile, prepare } from "./envelope.js";
import {
  DecryptionError,
  FormatError,
  KeyChangedError,
  QuorumError,
  SecureCommError,
  ServiceError,
  SignatureError,
} from "./errors.js";
import { Identity, checkName } from "./identity.js";
import { writeKeyFile } from "./keyfile.js";
import * as store from "./store.js";

const state = { config: null, known: null, identities: new Map(), active: null };

// DOM helpers: text always goes in as text, never as HTML.

const $ = (selector, root = document) => root.querySelector(selector);

function h(tag, attrs = {}, ...children) {
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

function show(container, ...nodes) {
  container.replaceChildren(...nodes.flat().filter(Boolean));
}

/** A failure as a sentence a person can act on. */
export function describe(error) {
  if (error instanceof DecryptionError) {
    return "The message could not be decrypted: it was altered, or a share was wrong. Nothing was shown.";
  }
  if (error instanceof QuorumError) {
    const kept = error.kept
      ? ` The ${error.kept} share(s) collected are kept, sealed to you, for the next read.`
      : "";
    return `Not enough custodians released a good share: ${error.good} of the ${error.needed} needed. Nothing was decrypted; each custodian's answer is listed above.${kept}`;
  }
  if (error instanceof KeyChangedError)
    return `${error.message}. ${error.hint[0].toUpperCase()}${error.hint.slice(1)} (Identity → Known keys).`;
  if (error instanceof SecureCommError) return error.message;
  if (error?.name === "NotSupportedError")
    return "This browser lacks Ed25519 or X25519 in WebCrypto; use a current Chromium, Firefox or Safari.";
  return `Something went wrong in the page (${error?.name ?? "error"}); nothing secret was sent.`;
}

function setStatus(form, text, kind = "") {
  const status = $(".status", form);
  status.className = `status ${kind}`;
  status.textContent = text;
}

/** Run an action for a form or button; disable it meanwhile, show progress and failures. */
async function act(form, button, action) {
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

function time(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

function download(name, bytes, type = "application/octet-stream") {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const link = h("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Identities

async function loadIdentities() {
  state.identities.clear();
  for (const record of await store.values("identities")) {
    state.identities.set(record.name, {
      ...record,
      identity: await Identity.fromStored(record.stored),
    });
  }
  const wanted = await store.get("settings", "active");
  state.active = state.identities.get(wanted) ?? state.identities.values().next().value ?? null;
}

async function saveIdentity(identity, keyFile, encrypted) {
  if (state.identities.has(identity.name))
    throw new SecureCommError(`this browser already has an identity named ${identity.name}`);
  const record = {
    name: identity.name,
    stored: identity.toStored(),
    keyFile,
    encrypted,
  };
  await store.put("identities", identity.name, record);
  await store.put("settings", "active", identity.name);
  state.identities.set(identity.name, { ...record, identity });
  state.active = state.identities.get(identity.name);
  // Your own key is pinned too: a directory entry that differs is then caught.
  await state.known.pin(identity.public).catch(() => {});
}

async function registerActive(progress = () => {}) {
  const record = state.active;
  progress(`Registering ${record.name} in the relay's directory…`);
  await api.register(record.identity);
}

function renderActive() {
  const select = $("#active-identity");
  show(
    select,
    state.identities.size
      ? [...state.identities.keys()].map((name) =>
          h("option", { value: name, selected: state.active?.name === name }, name),
        )
      : h("option", { value: "" }, "no identity yet"),
  );
  select.disabled = !state.identities.size;
  $("#active-fingerprint").textContent = state.active
    ? state.active.identity.public.shortFingerprint()
    : "";
  renderIdentity();
}

function renderIdentity() {
  const container = $("#identity-current");
  const record = state.active;
  $("#create-form h3").textContent = state.identities.size
    ? "Add another identity"
    : "Create an identity";
  if (!record) {
    show(
      container,
      h(
        "p",
        { class: "notice" },
        "You have no identity in this browser yet: create one, or import a key file.",
      ),
    );
    return;
  }
  const pub = record.identity.public;
  const status = h("div", { class: "status", role: "status", "aria-live": "polite" });
  const card = h(
    "div",
    { class: "card current", id: "identity-card" },
    h("h3", {}, "You are ", h("strong", { id: "identity-name" }, pub.name)),
    h("p", {}, "Fingerprint (compare it with your contacts out of band):"),
    h("p", { class: "fingerprint big", id: "identity-fingerprint" }, pub.shortFingerprint()),
    h(
      "details",
      {},
      h("summary", {}, "Full fingerprint"),
      h("code", { class: "wrap" }, pub.fingerprintHex),
    ),
    h("p", { id: "identity-registered" }, "Checking this relay's directory…"),
    h(
      "div",
      { class: "buttons" },
      h(
        "button",
        {
          type: "button",
          id: "export-button",
          onclick: () => {
            download(`${pub.name}.key`, utf8(record.keyFile), "text/plain");
            setStatus(
              card,
              record.encrypted
                ? `Exported ${pub.name}.key, protected by your passphrase.`
                : `Exported ${pub.name}.key (it was imported unencrypted and is exported as it came).`,
              "ok",
            );
          },
        },
        "Export key file",
      ),
      h(
        "button",
        {
          type: "button",
          class: "danger",
          id: "forget-button",
          onclick: async () => {
            if (
              !confirm(
                `Forget ${pub.name} in this browser? Without an exported key file it is gone for good.`,
              )
            )
              return;
            await store.remove("identities", pub.name);
            state.identities.delete(pub.name);
            state.active = state.identities.values().next().value ?? null;
            await store.put("settings", "active", state.active?.name ?? "");
            renderActive();
          },
        },
        "Forget",
      ),
    ),
    status,
  );
  show(container, card);
  showRegistration(record, card);
}

/** Say what the relay's directory holds under this name; offer Register only if nothing. */
async function showRegistration(record, card) {
  const pub = record.identity.public;
  const register = h(
    "button",
    {
      type: "button",
      id: "register-button",
      onclick: (e) =>
        act(card, e.target, async (progress) => {
          await registerActive(progress);
          renderIdentity();
          setStatus(
            $("#identity-card"),
            `${pub.name} is registered: others can now send to you by name.`,
            "ok",
          );
        }),
    },
    "Register in the directory",
  );
  let text = "Not registered in this relay's directory.";
  let kind = "";
  let offer = true;
  try {
    const found = await api.registration(record.identity);
    offer = found.state === "absent";
    if (found.state === "registered") text = "Registered in this relay's directory with this key.";
    if (found.state === "other") {
      text = `${pub.name} is registered in this relay's directory with another key (${found.listed.shortFingerprint()}): whoever looks ${pub.name} up gets that key, not this one.`;
      kind = "notice";
    }
  } catch (error) {
    // Registering says whether it worked, so it stays on offer when the check fails.
    text = `Could not check this relay's directory: ${describe(error)}`;
    kind = "error";
  }
  if (!card.isConnected) return; // the card was drawn again meanwhile
  const line = $("#identity-registered", card);
  line.textContent = text;
  line.className = kind;
  if (offer) $(".buttons", card).prepend(register);
}

function renderKnown() {
  const rows = [...state.known.map.values()].sort((a, b) => a.name.localeCompare(b.name));
  const isCustodian = new Set((state.config?.custodians ?? []).map((c) => c.name));
  show(
    $("#known-keys"),
    rows.length
      ? h(
          "table",
          {},
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, "Name"),
              h("th", { scope: "col" }, "Fingerprint"),
              h("th", { scope: "col" }, ""),
            ),
          ),
          h(
            "tbody",
            {},
            rows.map((key) =>
              h(
                "tr",
                {},
                h(
                  "td",
                  {},
                  key.name,
                  isCustodian.has(key.name) ? h("span", { class: "badge" }, "custodian") : null,
                ),
                h("td", { class: "fingerprint" }, key.shortFingerprint()),
                h(
                  "td",
                  {},
                  h(
                    "button",
                    {
                      type: "button",
                      class: "small",
                      "aria-label": `Forget the key of ${key.name}`,
                      onclick: async () => {
                        if (
                          !confirm(
                            `Forget the pinned key of ${key.name}? The next key seen for that name will be trusted.`,
                          )
                        )
                          return;
                        await state.known.forget(key.name);
                        renderKnown();
                      },
                    },
                    "Forget",
                  ),
                ),
              ),
            ),
          ),
        )
      : h("p", { class: "hint" }, "None yet."),
  );
  show(
    $("#contacts"),
    rows.filter((k) => !isCustodian.has(k.name)).map((k) => h("option", { value: k.name })),
  );
}

async function onCreate(event) {
  event.preventDefault();
  const form = event.target;
  await act(form, $("button", form), async (progress) => {
    const name = $("#create-name").value.trim();
    const passphrase = $("#create-passphrase").value;
    checkName(name, { field: "name" });
    if (passphrase.length < 8)
      throw new SecureCommError("Choose a passphrase of at least 8 characters.");
    if (passphrase !== $("#create-confirm").value)
      throw new SecureCommError("The two passphrases differ.");
    progress("Making your keys…");
    const { identity, ed25519Pkcs8, x25519Pkcs8 } = await Identity.generate(name);
    progress("Protecting your key file (600,000 rounds of PBKDF2)…");
    const keyFile = await writeKeyFile(name, ed25519Pkcs8, x25519Pkcs8, passphrase);
    ed25519Pkcs8.fill(0);
    x25519Pkcs8.fill(0);
    await saveIdentity(identity, keyFile, true);
    form.reset();
    renderActive();
    renderKnown();
    try {
      await registerActive(progress);
      renderIdentity();
      setStatus(
        form,
        `Created ${name} (${identity.public.shortFingerprint()}) and registered it in the directory.`,
        "ok",
      );
    } catch (error) {
      setStatus(
        form,
        `Created ${name}, but registering it failed: ${describe(error)} Try “Register” again.`,
        "error",
      );
    }
  });
}

async function onImport(event) {
  event.preventDefault();
  const form = event.target;
  await act(form, $("button", form), async (progress) => {
    const file = $("#import-file").files[0];
    const text = file ? await file.text() : $("#import-text").value;
    if (!text.trim()) throw new SecureCommError("Choose a key file or paste one.");
    const passphrase = $("#import-passphrase").value || null;
    progress(passphrase ? "Opening the key file…" : "Reading the key file…");
    const identity = await Identity.fromKeyFile(text, passphrase);
    await saveIdentity(identity, text, passphrase !== null);
    form.reset();
    renderActive();
    renderKnown();
    setStatus(
      form,
      `Imported ${identity.name} (${identity.public.shortFingerprint()}). It is now the identity you act as.`,
      "ok",
    );
  });
}

// Send

function renderCustodians() {
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

function requireActive() {
  if (!state.active)
    throw new SecureCommError("Create or import an identity first (under Identity).");
  return state.active.identity;
}

async function onSend(event) {
  event.preventDefault();
  const form = event.target;
  await act(form, $("button[type=submit]", form), async (progress) => {
    const sender = requireActive();
    const recipients = $("#send-to")
      .value.split(",")
      .map((s) => s.trim())
      .filter(Boolean);
    if (!recipients.length) throw new SecureCommError("Name at least one recipient.");
    for (const name of recipients) checkName(name, { field: "recipient" });
    if (new Set(recipients).size !== recipients.length)
      throw new SecureCommError("A recipient is named twice.");
    const file = $("#send-file").files[0];
    const text = $("#send-text").value;
    if (file && text) throw new SecureCommError("Send either a message or a file, not both.");
    if (!file && !text) throw new SecureCommError("Write a message or choose a file.");
    const message = file ? new Uint8Array(await file.arrayBuffer()) : utf8(text);
    const limit = Math.floor(state.config.max_envelope_bytes * 0.74) - 8192;
    if (message.length > limit)
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
      "depositing shares": "Sealing and depositing a share with each custodian…",
      uploading: "Posting the envelope to the relay…",
    };
    const result = await api.send({
      config: state.config,
      known: state.known,
      sender,
      recipients,
      message,
      // The file's name travels encrypted with it (spec §7.10), for the reader to save under.
      filename: file ? nameForFile(file.name) : null,
      policy,
      prepare,
      progress: (stage) => progress(stages[stage] ?? stage),
      warn: (line) => warnings.push(line),
    });
    renderKnown();
    renderCustodians();
    setStatus(form, `Sent to ${recipients.join(", ")}.`, "ok");
    form.reset();
    showSent(result, recipients, warnings);
  });
}

function showSent(result, recipients, warnings) {
  const { envelope, copy, digest, relayDigest } = result;
  const sentJson = JSON.parse(fromUtf8(result.data));
  const copyJson =
    copy === null
      ? { ciphertext: `(not fetched: ${result.copyError})` }
      : JSON.parse(fromUtf8(copy));
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
        h("dd", {}, h("code", { id: "sent-id" }, envelope.id)),
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

// Inbox and read

// What the sender's signed policy says of a message, as the relay lists it (null: unknown).
function policyNotes(policy) {
  if (!policy) return [];
  const notes = [];
  if (policy.max_releases === 1) notes.push("burn after reading");
  else if (policy.max_releases) notes.push(`at most ${policy.max_releases} reads`);
  if (policy.require_approval) notes.push("needs approval");
  const now = Date.now() / 1000;
  if (policy.not_before && now < policy.not_before)
    notes.push(`not before ${time(policy.not_before)}`);
  if (policy.expires)
    notes.push(`${now >= policy.expires ? "expired" : "expires"} ${time(policy.expires)}`);
  return notes;
}

async function refreshInbox() {
  const card = $("#inbox .card");
  await act(card, $("#inbox-refresh"), async (progress) => {
    const reader = requireActive();
    progress("Fetching your inbox…");
    const messages = await api.inbox(reader);
    setStatus(
      card,
      messages.length
        ? `${messages.length} message(s) for ${reader.name}.`
        : `No messages for ${reader.name}.`,
      "ok",
    );
    show(
      $("#inbox-list"),
      messages.length
        ? h(
            "ul",
            { class: "messages" },
            messages
              .slice()
              .reverse()
              .map((m) =>
                h(
                  "li",
                  { "data-message": m.id },
                  h(
                    "div",
                    {},
                    h("strong", {}, m.sender.name),
                    " ",
                    h(
                      "span",
                      { class: "hint" },
                      `${time(m.created)} · ${m.size} bytes · ${m.id.slice(0, 8)}…`,
                    ),
                    ...policyNotes(m.policy).map((note) => h("span", { class: "badge" }, note)),
                  ),
                  h(
                    "button",
                    {
                      type: "button",
                      "aria-label": `Read the message from ${m.sender.name} of ${time(m.created)}`,
                      onclick: (e) => readMessage(m.id, e.target),
                    },
                    "Read",
                  ),
                ),
              ),
          )
        : null,
    );
  });
}

// Text to show, or null for a file: UTF-8, not huge, no control characters but tab and line ends.
function asText(bytes) {
  if (bytes.length > 1024 * 1024) return null;
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

async function readMessage(messageId, button) {
  const reader = requireActive();
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
    renderKnown();
    const text = asText(result.plaintext);
    const save = h(
      "button",
      {
        type: "button",
        id: "save-message",
        onclick: () =>
          download(result.filename ?? `message-${messageId.slice(0, 8)}.bin`, result.plaintext),
      },
      result.filename
        ? `Save ${result.filename} (${result.plaintext.length} bytes)`
        : text === null
          ? `Save the ${result.plaintext.length}-byte file`
          : "Save as a file",
    );
    const body = [
      text === null
        ? h(
            "p",
            {},
            result.filename
              ? `This message is a file, named ${result.filename} by its sender.`
              : "This message is a file, not text.",
          )
        : h("pre", { id: "plaintext", class: "plaintext", tabindex: "0" }, text),
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
    panel.removeAttribute("aria-busy");
    button.disabled = false;
  }
}

// Operator

async function refreshOperator() {
  const list = $("#operator-list");
  if (!state.active) {
    show(list, h("p", { class: "notice" }, "Import an operator key file under Identity first."));
    return;
  }
  const operator = state.active.identity;
  show(
    list,
    state.config.custodians.map((c) =>
      h(
        "div",
        { class: "card", "data-custodian": c.name, id: `operator-${c.name}` },
        h("h3", {}, c.name),
        h("div", { class: "status", role: "status", "aria-live": "polite" }, "Loading…"),
      ),
    ),
  );
  const others = [];
  await Promise.all(
    state.config.custodians.map(async (custodian) => {
      const card = $(`#operator-${custodian.name}`);
      try {
        const [pending, log] = await Promise.all([
          api.pendingReleases(custodian, operator),
          api.audit(custodian, operator, state.known),
        ]);
        drawOperator(card, custodian, operator, pending, log);
      } catch (error) {
        if (error instanceof ServiceError && error.code === "not_operator") {
          others.push(custodian.name);
          card.remove();
        } else {
          setStatus(card, describe(error), "error");
        }
      }
    }),
  );
  if (others.length) {
    const names = state.config.custodians
      .map((c) => c.name)
      .filter((name) => others.includes(name));
    const text =
      others.length === state.config.custodians.length
        ? `${operator.name} is the operator of none of these custodians. Import an operator's key file under Identity, then act as it.`
        : `${operator.name} is not the operator of ${names.join(", ")}.`;
    list.append(h("p", { class: "hint", id: "operator-others" }, text));
  }
}

function drawOperator(card, custodian, operator, pending, log) {
  const { report, entries, read } = log;
  const decideButton = (release, verdict, label) =>
    h(
      "button",
      {
        type: "button",
        class: verdict === "deny" ? "danger" : "",
        "aria-label": `${label} release ${release.release_id.slice(0, 8)} to ${release.recipient.name}`,
        onclick: (e) =>
          act(card, e.target, async (progress) => {
            progress(`${label === "Approve" ? "Approving" : "Denying"}…`);
            await api.decide(custodian, operator, release.release_id, verdict);
            const [again, newLog] = await Promise.all([
              api.pendingReleases(custodian, operator),
              api.audit(custodian, operator, state.known),
            ]);
            drawOperator(card, custodian, operator, again, newLog);
            setStatus(
              card,
              `Release ${release.release_id.slice(0, 8)}… ${verdict === "approve" ? "approved" : "denied"}.`,
              "ok",
            );
          }),
      },
      label,
    );
  show(
    card,
    h("h3", {}, custodian.name),
    h("h4", {}, "Pending releases"),
    pending.length
      ? h(
          "ul",
          { class: "pending" },
          pending.map((r) =>
            h(
              "li",
              { "data-release": r.release_id },
              h(
                "span",
                {},
                h("strong", {}, r.recipient.name),
                ` asks for message ${r.message_id.slice(0, 8)}… (${time(r.created)})`,
              ),
              h(
                "span",
                { class: "buttons" },
                decideButton(r, "approve", "Approve"),
                decideButton(r, "deny", "Deny"),
              ),
            ),
          ),
        )
      : h("p", { class: "hint" }, "Nothing waits for you."),
    h("h4", {}, "Audit log"),
    h(
      "p",
      { class: `audit-result ${report.ok ? "ok" : "error"}` },
      report.ok
        ? `${report.count} entries; the hash chain and every signature verify.`
        : `FAILED at ${report.reason}; the first ${report.count} entries verify.`,
    ),
    h(
      "details",
      {},
      h(
        "summary",
        {},
        read > entries.length
          ? `Show the newest ${entries.length} of ${read} entries`
          : `Show the ${read} entries`,
      ),
      h(
        "div",
        { class: "scroll" },
        h(
          "table",
          {},
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["#", "Time", "Event", "Details"].map((t) => h("th", { scope: "col" }, t)),
            ),
          ),
          h(
            "tbody",
            {},
            entries
              .slice()
              .reverse()
              .map((e) =>
                h(
                  "tr",
                  {},
                  h("td", {}, e.seq),
                  h("td", {}, time(e.time)),
                  h("td", {}, e.event),
                  h(
                    "td",
                    {},
                    h(
                      "code",
                      { class: "wrap" },
                      Object.entries(e.data)
                        .map(([k, v]) => `${k}=${String(v).slice(0, 16)}`)
                        .join(" "),
                    ),
                  ),
                ),
              ),
          ),
        ),
      ),
    ),
    h("div", { class: "status", role: "status", "aria-live": "polite" }),
  );
}

// Navigation

const SECTIONS = ["identity", "send", "inbox", "operator"];

function route() {
  const wanted = location.hash.slice(1);
  const current = SECTIONS.includes(wanted) ? wanted : state.active ? "send" : "identity";
  for (const name of SECTIONS) {
    $(`#${name}`).hidden = name !== current;
    const tab = $(`#tab-${name}`);
    if (name === current) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  document.title = `securecomm · ${current[0].toUpperCase()}${current.slice(1)}`;
  if (current === "inbox" && state.active) refreshInbox();
  if (current === "operator") refreshOperator();
}

async function main() {
  try {
    state.known = await store.KnownKeys.load();
    state.config = await api.loadConfig();
    await loadIdentities();
  } catch (error) {
    const box = $("#page-error");
    box.hidden = false;
    box.textContent = `The page could not start: ${describe(error)}`;
    return;
  }
  $("#rule").textContent = `${state.config.threshold} of ${state.config.n}`;
  if (!state.config.origins.includes(location.origin)) {
    // The custodians would refuse every call from here: say where the page works instead.
    const there = state.config.origins[0] + location.pathname + location.hash;
    const box = $("#page-error");
    box.hidden = false;
    show(
      box,
      `The custodians only answer pages opened at ${state.config.origins.join(" or ")}, not at ${location.origin}. `,
      h("a", { href: there, id: "origin-link" }, `Open ${there}`),
      " (identities are kept per address, too).",
    );
  }
  renderActive();
  renderKnown();
  renderCustodians();
  $("#create-form").addEventListener("submit", onCreate);
  $("#import-form").addEventListener("submit", onImport);
  $("#send-form").addEventListener("submit", onSend);
  $("#inbox-refresh").addEventListener("click", refreshInbox);
  $("#operator-refresh").addEventListener("click", refreshOperator);
  $("#active-identity").addEventListener("change", async (event) => {
    state.active = state.identities.get(event.target.value) ?? null;
    await store.put("settings", "active", state.active?.name ?? "");
    renderActive();
    route();
  });
  window.addEventListener("hashchange", route);
  route();
  document.body.dataset.ready = "true";
}

main();
