// The active identity's devices, in the Identity tab (spec/sessions.md §3): the list the
// relay's directory publishes, each entry checked against this identity's key; adding a
// device (a delegation signed here, and the X25519 key read from the key file with the
// passphrase, sealed to the device); revoking one at the relay and at every custodian, each
// confirming with a signed receipt. A locked identity shows nothing of it but the prompt.

import * as api from "../api.js";
import {
  MAX_DELEGATION_SECONDS,
  delegate,
  deviceFromCode,
  isLabel,
  revoke,
  sealPersonKey,
  stateOf,
} from "../devices.js";
import { SecureCommError, ServiceError } from "../errors.js";
import { Identity } from "../identity.js";
import { parsePrivateKeyInfo, readKeyFile } from "../keyfile.js";
import { state, $, h, show, describe, setStatus, act, time } from "./ui.js";

const DAY_SECONDS = 86400;
const DEFAULT_DAYS = 90;
const MAX_DAYS = MAX_DELEGATION_SECONDS / DAY_SECONDS;

// Each listing has a number: one that a later listing overtook draws nothing.
let listings = 0;

// Whether what was started for `record` at `epoch` may still be shown: the page did not
// lock meanwhile and still acts as that identity.
const current = (record, epoch) =>
  state.epoch === epoch && state.active === record && Boolean(record.identity);

/** Draw the devices card of the active identity, and list its devices if it is unlocked. */
export function renderDevices() {
  const container = $("#identity-devices");
  const record = state.active;
  container.hidden = !record;
  if (!record) {
    show(container);
    return;
  }
  const title = h("h3", { id: "devices-title" }, "Devices");
  if (!record.identity) {
    listings += 1; // a listing still on its way is not drawn
    show(
      container,
      title,
      h(
        "p",
        { class: "notice", id: "devices-locked" },
        `Unlock ${record.name} above to list, add or revoke its devices.`,
      ),
    );
    return;
  }
  show(
    container,
    title,
    h(
      "p",
      { class: "hint" },
      "Another device of yours (its own home, where ",
      h("code", {}, `securecomm devices init --as ${record.name}`),
      " made its key) reads, lists your inbox and unsends for you until its delegation" +
        " expires or you revoke it. It cannot send: an envelope takes your own key.",
    ),
    h(
      "div",
      { id: "devices-listing" },
      h("div", { id: "devices-list" }),
      h(
        "button",
        { type: "button", class: "small", id: "devices-refresh", onclick: () => list(record) },
        "Refresh",
      ),
      h("div", { class: "status", role: "status", "aria-live": "polite" }),
    ),
    h("div", { id: "device-revoke", "aria-live": "polite" }),
    addForm(record),
  );
  list(record);
}

/** Fetch and check the list; draw it, or say what is wrong with it and draw none of it. */
async function list(record) {
  const listing = ++listings;
  const epoch = state.epoch;
  const box = $("#devices-listing");
  if (!box) return;
  const drawn = () => listing === listings && current(record, epoch) && box.isConnected;
  setStatus(box, "Fetching your devices from the relay's directory…", "busy");
  let entries;
  try {
    entries = await api.devices(record.public);
  } catch (error) {
    if (!drawn()) return;
    show($("#devices-list"));
    if (error instanceof ServiceError && error.code === "not_found")
      setStatus(
        box,
        `${record.name} is not registered in this relay's directory: register it to add devices.`,
      );
    else if (error instanceof ServiceError)
      setStatus(box, `Could not fetch your devices from the relay: ${describe(error)}`, "error");
    else setStatus(box, `The relay's list of devices was refused: ${describe(error)}`, "error");
    return;
  }
  if (!drawn()) return;
  show(
    $("#devices-list"),
    entries.length ? h("div", { class: "scroll" }, table(record, entries)) : null,
  );
  setStatus(
    box,
    entries.length
      ? `${entries.length} device(s), each signed by your key.`
      : `${record.name} has added no device.`,
    entries.length ? "ok" : "",
  );
}

function stateText(entry, at) {
  const { delegation, revocation } = entry;
  const shown = stateOf(entry, at);
  if (shown === "revoked") return `revoked ${time(revocation.revoked)}`;
  return `${shown === "valid" ? "valid until" : "expired"} ${time(delegation.expires)}`;
}

function table(record, entries) {
  const at = Math.floor(Date.now() / 1000);
  return h(
    "table",
    { id: "devices-table" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Label"),
        h("th", { scope: "col" }, "Fingerprint"),
        h("th", { scope: "col" }, "State"),
        h("th", { scope: "col" }, ""),
      ),
    ),
    h(
      "tbody",
      {},
      entries.map((entry) => {
        const { delegation } = entry;
        const label = delegation.label;
        return h(
          "tr",
          { "data-device": delegation.device.fingerprintHex, "data-state": stateOf(entry, at) },
          h("td", {}, label),
          h("td", { class: "fingerprint" }, delegation.device.shortFingerprint()),
          h("td", { class: "device-state" }, stateText(entry, at)),
          h(
            "td",
            {},
            entry.revocation
              ? null
              : h(
                  "button",
                  {
                    type: "button",
                    class: "small danger",
                    "aria-label": `Revoke the device ${label}`,
                    onclick: (e) => onRevoke(record, entry, e.target),
                  },
                  "Revoke",
                ),
          ),
        );
      }),
    ),
  );
}

// Adding

function addForm(record) {
  const form = h(
    "form",
    // Checked by onAdd, which says what is wrong in a sentence, rather than by the browser.
    { id: "device-add-form", autocomplete: "off", novalidate: true },
    h("h4", {}, "Add a device"),
    h("label", { for: "device-code" }, "Device code"),
    h("textarea", {
      id: "device-code",
      rows: "3",
      spellcheck: "false",
      "aria-describedby": "device-code-hint",
    }),
    h(
      "p",
      { class: "hint", id: "device-code-hint" },
      "What ",
      h("code", {}, `securecomm devices init --as ${record.name}`),
      " printed on the device. Compare the fingerprint it printed for you with yours.",
    ),
    h("label", { for: "device-label" }, "Label"),
    h("input", {
      id: "device-label",
      maxlength: "64",
      placeholder: "laptop",
      autocapitalize: "none",
      spellcheck: "false",
    }),
    h("label", { for: "device-days" }, "Days it may act for you"),
    h("input", {
      id: "device-days",
      type: "number",
      min: "1",
      max: String(MAX_DAYS),
      step: "1",
      value: String(DEFAULT_DAYS),
    }),
    h("label", { for: "device-passphrase" }, `${record.name}'s passphrase`),
    h("input", {
      id: "device-passphrase",
      type: "password",
      autocomplete: "current-password",
      "aria-describedby": "device-passphrase-hint",
    }),
    h(
      "p",
      { class: "hint", id: "device-passphrase-hint" },
      "The device needs your X25519 key to open the shares sealed to you: the passphrase" +
        " opens your key file for this once, and the key goes to the relay only sealed to" +
        " the device (HPKE), which alone can open it.",
    ),
    h("button", { type: "submit" }, "Add device"),
    h("div", { class: "status", role: "status", "aria-live": "polite" }),
  );
  form.addEventListener("submit", (event) => onAdd(event, record));
  return form;
}

/**
 * The person's X25519 private key read from their key file with `passphrase`, sealed to
 * `device`. The raw key exists only for this sealing: every copy is overwritten after it.
 */
async function sealedKey(record, passphrase, device) {
  if (!record.keyFile)
    throw new SecureCommError(
      `This browser holds no key file for ${record.name}: forget it and import its key file again.`,
    );
  const keys = await readKeyFile(record.keyFile, passphrase);
  let raw = null;
  try {
    const fromFile = await Identity.fromPkcs8(keys.name, keys.ed25519Pkcs8, keys.x25519Pkcs8);
    if (keys.name !== record.name || !fromFile.public.sameKeys(record.public))
      throw new SecureCommError(
        `The key file kept for ${record.name} holds other keys: forget it and import its key file again.`,
      );
    raw = parsePrivateKeyInfo(keys.x25519Pkcs8).privateRaw;
    return await sealPersonKey(raw, record.public, device);
  } finally {
    raw?.fill(0);
    keys.ed25519Pkcs8.fill(0);
    keys.x25519Pkcs8.fill(0);
  }
}

async function onAdd(event, record) {
  event.preventDefault();
  const form = event.target;
  const field = $("#device-passphrase", form);
  await act(form, $("button[type=submit]", form), async (progress) => {
    // Read once and taken out of the page at once, whatever follows.
    const passphrase = field.value;
    field.value = "";
    const epoch = state.epoch;
    const identity = record.identity;
    if (!current(record, epoch)) throw new SecureCommError(`Unlock ${record.name} first.`);
    const device = await deviceFromCode($("#device-code", form).value, record.name);
    // Said before the passphrase is asked for: the relay would refuse it only after.
    const listed = (await api.devices(record.public)).find(
      ({ delegation, revocation }) =>
        revocation && delegation.device.fingerprintHex === device.fingerprintHex,
    );
    if (listed)
      throw new SecureCommError(
        `${record.name} revoked that device (${listed.delegation.label}, ${device.shortFingerprint()}) on ${time(listed.revocation.revoked)}, and a revoked key stays revoked. On the device, run 'securecomm devices init --as ${record.name}' again: it makes a new key in place of the revoked one; add the code it prints.`,
      );
    const label = $("#device-label", form).value.trim();
    if (!isLabel(label))
      throw new SecureCommError(
        "Give the device a label of 1 to 64 letters, digits, spaces or . _ @ + -, starting with a letter or digit (laptop, say).",
      );
    const days = Number($("#device-days", form).value);
    if (!Number.isInteger(days) || days < 1 || days > MAX_DAYS)
      throw new SecureCommError(`A device may act for you from 1 to ${MAX_DAYS} days.`);
    if (!passphrase)
      throw new SecureCommError(
        `Enter ${record.name}'s passphrase: it opens your key file, whose X25519 key is sealed to the device.`,
      );
    progress("Opening your key file and sealing your key to the device…");
    const sealed = await sealedKey(record, passphrase, device);
    progress("Signing the delegation…");
    const delegation = await delegate(identity, device, label, days * DAY_SECONDS);
    progress("Handing it to the relay…");
    await api.addDevice(identity, delegation, sealed);
    if (!current(record, epoch)) return;
    form.reset();
    setStatus(
      form,
      `Added ${label} (${device.shortFingerprint()}) for ${record.name} until ${time(delegation.expires)}: it acts for ${record.name} from its next command.`,
      "ok",
    );
    list(record);
  });
}

// Revoking

async function onRevoke(record, entry, button) {
  const { label } = entry.delegation;
  const fingerprint = entry.delegation.device.shortFingerprint();
  const services = 1 + state.config.custodians.length;
  if (
    !confirm(
      `Revoke ${label} (${fingerprint})? The relay and every custodian refuse its requests from then on. This cannot be undone: a revoked device starts over with a new key. Revoking cannot unread what it read, nor take back the key it was given.`,
    )
  )
    return;
  const box = $("#device-revoke");
  show(
    box,
    h("h4", {}, `Revoking ${label}`),
    h("div", { class: "status", role: "status", "aria-live": "polite" }),
    h("ul", { class: "custody", id: "revoke-services" }),
    h("div", { class: "buttons", id: "revoke-actions" }),
  );
  await act(box, button, async (progress) => {
    const epoch = state.epoch;
    const identity = record.identity;
    if (!current(record, epoch)) throw new SecureCommError(`Unlock ${record.name} first.`);
    progress(`Signing the revocation of ${label}…`);
    const revocation = await revoke(identity, entry.delegation.device.fingerprintHex);
    await post({ record, identity, label, revocation, services, box, progress, epoch });
  });
}

/** Post `revocation` everywhere and show which service confirmed it and which did not. */
async function post({ record, identity, label, revocation, services, box, progress, epoch }) {
  progress(`Posting the revocation of ${label} to the relay and every custodian…`);
  const { confirmed, failures } = await api.revokeDevice({
    config: state.config,
    known: state.known,
    identity,
    revocation,
  });
  if (!current(record, epoch) || !box.isConnected) return;
  const rows = [
    ...confirmed.map((name) =>
      h(
        "li",
        { "data-service": name, "data-state": "confirmed" },
        h("strong", {}, name),
        h("span", { class: "badge released" }, "confirmed"),
        " ",
        h("span", { class: "hint" }, "its signed receipt checked against its pinned key"),
      ),
    ),
    ...Object.entries(failures).map(([name, why]) =>
      h(
        "li",
        { "data-service": name, "data-state": "unconfirmed" },
        h("strong", {}, name),
        h("span", { class: "badge refused" }, "not confirmed"),
        " ",
        h("span", { class: "hint" }, why),
      ),
    ),
  ];
  show($("#revoke-services", box), rows);
  show($("#revoke-actions", box));
  const missing = Object.keys(failures);
  if (!missing.length) {
    setStatus(
      box,
      `Revoked ${label} at the relay and all ${services - 1} custodians: each confirmed it with a signed receipt and refuses its requests from now on. What it read stays read, and it still holds the key it was given.`,
      "ok",
    );
  } else {
    setStatus(
      box,
      `${label} is revoked at ${confirmed.length} of ${services} services; not confirmed by ${missing.join(", ")}. Revoke again to post it to them again (a service that holds it already confirms it again).`,
      "error",
    );
    const again = h(
      "button",
      {
        type: "button",
        id: "revoke-again",
        onclick: () =>
          act(box, again, async (progress) => {
            if (!current(record, epoch)) throw new SecureCommError(`Unlock ${record.name} first.`);
            await post({ record, identity, label, revocation, services, box, progress, epoch });
          }),
      },
      "Revoke again",
    );
    show($("#revoke-actions", box), again);
  }
  list(record);
}
