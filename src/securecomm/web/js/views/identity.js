// The Identity tab: create, import, export and register identities, the active one's devices
// (views/devices.js), and the keys pinned so far. Every identity is kept wrapped under its
// passphrase and starts locked (views/lock.js).

import * as api from "../api.js";
import * as store from "../store.js";
import { utf8 } from "../bytes.js";
import { SecureCommError } from "../errors.js";
import { Identity, checkName } from "../identity.js";
import {
  keyFileEncrypted,
  nameAdvice,
  newNameRefusal,
  readKeyFile,
  writeKeyFile,
} from "../keyfile.js";
import { readRecord, storedRecord, wrapKeys } from "../keywrap.js";
import { state, $, h, show, describe, setStatus, act, download, requireActive } from "./ui.js";
import { checkNewPassphrase, lockNote, renderLock, unlocked } from "./lock.js";
import { renderDevices } from "./devices.js";

/** Read the stored identities, all locked. A record of the page's first version, whose keys
 * any script of the page could use, is rewritten at once without them. */
export async function loadIdentities() {
  state.identities.clear();
  for (const name of await store.keys("identities")) {
    const { earlier, ...record } = await readRecord(await store.get("identities", name), name);
    if (earlier)
      await store.put("identities", name, storedRecord(record.public, record.keyFile, null));
    state.identities.set(name, { ...record, identity: null });
  }
  const wanted = await store.get("settings", "active");
  state.active = state.identities.get(wanted) ?? state.identities.values().next().value ?? null;
}

/** Store a new identity wrapped under `passphrase`, unlocked in this page. */
async function saveIdentity(identity, keyFile, keys, passphrase, progress) {
  progress(`Wrapping ${identity.name}'s keys under the passphrase…`);
  const wrapped = await wrapKeys(keys.ed25519Pkcs8, keys.x25519Pkcs8, passphrase);
  const stored = storedRecord(identity.public, keyFile, wrapped);
  await store.put("identities", identity.name, stored);
  await store.put("settings", "active", identity.name);
  state.identities.set(identity.name, {
    name: identity.name,
    public: identity.public,
    keyFile,
    wrapped,
    identity,
  });
  state.active = state.identities.get(identity.name);
  unlocked();
  // Your own key is pinned too: a directory entry that differs is then caught.
  await state.known.pin(identity.public).catch(() => {});
}

function refuseTaken(name) {
  if (state.identities.has(name))
    throw new SecureCommError(`this browser already has an identity named ${name}`);
}

// A name the network's parties hold, or someone registered already, makes no identity here:
// it could never be registered, and its key pinned under that name would stand in for the
// real one's (a custodian's, or the person's) in this profile.
// So is a name ending in a separator, or one a reader would take for a name registered or
// reserved (spec §14.6): the relay refuses to register them.
async function refuseListed(name, progress) {
  const parties = api.partyNames(state.config);
  if (parties.includes(name))
    throw new SecureCommError(
      `${name} is the name of ${name === "relay" ? "the relay" : "a custodian"} of this network: choose another name`,
    );
  const alike = newNameRefusal(name, parties);
  if (alike) throw new SecureCommError(`${alike}. Choose another name.`);
  progress("Checking that the name is free in the relay's directory…");
  const refused = await api.nameRefusal(name);
  if (refused) throw new SecureCommError(`The relay refuses the name ${name}: ${refused}`);
  const listed = await api.listedUnder(name);
  if (listed)
    throw new SecureCommError(
      `${name} is registered in this relay's directory already (key ${listed.shortFingerprint()}): choose another name, or, if it is yours, import its key file`,
    );
}

async function registerActive(progress = () => {}) {
  const identity = requireActive();
  progress(`Registering ${identity.name} in the relay's directory…`);
  await api.register(identity);
  // Its devices were fetched when it was drawn, before it was in the directory.
  renderDevices();
}

export function renderActive() {
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
  $("#active-fingerprint").textContent = state.active ? state.active.public.shortFingerprint() : "";
  renderIdentity();
  renderDevices();
  renderLock();
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
  const pub = record.public;
  const locked = !record.identity;
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
      "p",
      { id: "identity-lock", class: locked ? "notice" : "hint" },
      locked ? `Locked: unlock ${pub.name} above to send, read, register or export. ` : "",
      lockNote(),
    ),
    h(
      "div",
      { class: "buttons" },
      locked
        ? null
        : h(
            "button",
            {
              type: "button",
              id: "export-button",
              onclick: () => {
                download(`${pub.name}.key`, utf8(record.keyFile), "text/plain");
                setStatus(card, `Exported ${pub.name}.key, protected by your passphrase.`, "ok");
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
  showRegistration(record, card, !locked);
}

/** Say what the relay's directory holds under this name; offer Register only if nothing. */

async function showRegistration(record, card, canRegister) {
  const pub = record.public;
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
    const found = await api.registration(record);
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
  if (offer && canRegister) $(".buttons", card).prepend(register);
}

export function renderKnown() {
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
                  key.name === "relay" ? h("span", { class: "badge" }, "relay") : null,
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

/** As a name is typed: what is wrong with it and what to type instead, which the browser
 * shows on Create in place of its "Please match the requested format". */
export function onNameInput(event) {
  event.target.setCustomValidity(nameAdvice(event.target.value) ?? "");
}

export async function onCreate(event) {
  event.preventDefault();
  const form = event.target;
  await act(form, $("button", form), async (progress) => {
    const name = $("#create-name").value.trim();
    const passphrase = $("#create-passphrase").value;
    checkName(name, { field: "name" });
    checkNewPassphrase(passphrase, $("#create-confirm").value);
    refuseTaken(name);
    await refuseListed(name, progress);
    progress("Making your keys…");
    const { identity, ...keys } = await Identity.generate(name);
    try {
      progress("Protecting your key file (600,000 rounds of PBKDF2)…");
      const keyFile = await writeKeyFile(name, keys.ed25519Pkcs8, keys.x25519Pkcs8, passphrase);
      await saveIdentity(identity, keyFile, keys, passphrase, progress);
    } finally {
      keys.ed25519Pkcs8.fill(0);
      keys.x25519Pkcs8.fill(0);
    }
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
      const why = describe(error);
      setStatus(
        form,
        `Created ${name}, but registering it failed: ${why}${/[.!?]$/.test(why) ? "" : "."} Try “Register” again.`,
        "error",
      );
    }
  });
}

export async function onImport(event) {
  event.preventDefault();
  const form = event.target;
  await act(form, $("button", form), async (progress) => {
    const file = $("#import-file").files[0];
    const text = file ? await file.text() : $("#import-text").value;
    if (!text.trim()) throw new SecureCommError("Choose a key file or paste one.");
    // An encrypted file's passphrase locks it here too; an unencrypted one gets a new one.
    const encrypted = keyFileEncrypted(text);
    const chosen = $("#import-new").value;
    let passphrase = $("#import-passphrase").value;
    if (encrypted && chosen)
      throw new SecureCommError(
        "This key file has a passphrase, which locks it in this page too: leave “New passphrase” empty.",
      );
    progress(encrypted ? "Opening the key file…" : "Reading the key file…");
    const keys = await readKeyFile(text, encrypted ? passphrase || null : null);
    let identity;
    try {
      if (!encrypted && passphrase)
        throw new SecureCommError(
          "This key file is not encrypted: leave “Passphrase” empty and choose a new passphrase, twice, to lock it in this page.",
        );
      if (!encrypted) {
        checkNewPassphrase(chosen, $("#import-again").value);
        passphrase = chosen;
      }
      refuseTaken(keys.name);
      identity = await Identity.fromPkcs8(keys.name, keys.ed25519Pkcs8, keys.x25519Pkcs8);
      // An unencrypted file is kept encrypted with the new passphrase, as the page exports it.
      if (!encrypted) progress("Encrypting the key file with the new passphrase…");
      const keyFile = encrypted
        ? text
        : await writeKeyFile(keys.name, keys.ed25519Pkcs8, keys.x25519Pkcs8, passphrase);
      await saveIdentity(identity, keyFile, keys, passphrase, progress);
    } finally {
      keys.ed25519Pkcs8.fill(0);
      keys.x25519Pkcs8.fill(0);
    }
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
