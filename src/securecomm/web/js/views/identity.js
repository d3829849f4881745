// The Identity tab: create, import, export and register identities, and the keys pinned so far.

import * as api from "../api.js";
import * as store from "../store.js";
import { utf8 } from "../bytes.js";
import { SecureCommError } from "../errors.js";
import { Identity, checkName } from "../identity.js";
import { writeKeyFile } from "../keyfile.js";
import { state, $, h, show, describe, setStatus, act, download } from "./ui.js";

export async function loadIdentities() {
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

export async function onCreate(event) {
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

export async function onImport(event) {
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
