// The page: identities, send, inbox and read, and the operator's view, one module each in
// views/, and the lock over them all (views/lock.js); this one starts the page and moves
// between the tabs. Everything secret stays in this page; what it shows of a failure is a
// sentence, never a stack trace.

import * as api from "./api.js";
import * as store from "./store.js";
import { state, $, h, show, describe } from "./views/ui.js";
import {
  loadIdentities,
  renderActive,
  renderKnown,
  onCreate,
  onImport,
  onNameInput,
} from "./views/identity.js";
import { renderCustodians, renderKeptSends, onSend, onUnsend } from "./views/send.js";
import { refreshInbox } from "./views/inbox.js";
import { refreshOperator } from "./views/operator.js";
import { startLock } from "./views/lock.js";

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
    state.config = await api.loadConfig(state.known);
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
  startLock({
    changed: () => {
      renderActive();
      renderKeptSends();
      route();
    },
  });
  renderActive();
  renderKnown();
  renderCustodians();
  renderKeptSends();
  $("#create-name").addEventListener("input", onNameInput);
  $("#create-form").addEventListener("submit", onCreate);
  $("#import-form").addEventListener("submit", onImport);
  $("#send-form").addEventListener("submit", onSend);
  $("#unsend-form").addEventListener("submit", onUnsend);
  $("#inbox-refresh").addEventListener("click", refreshInbox);
  $("#operator-refresh").addEventListener("click", refreshOperator);
  $("#active-identity").addEventListener("change", async (event) => {
    state.active = state.identities.get(event.target.value) ?? null;
    await store.put("settings", "active", state.active?.name ?? "");
    renderActive();
    renderKeptSends();
    route();
  });
  window.addEventListener("hashchange", route);
  route();
  document.body.dataset.ready = "true";
}

main();
