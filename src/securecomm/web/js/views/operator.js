// The Operator tab: a custodian's pending releases and its audit log, for its operator.

import * as api from "../api.js";
import { ServiceError } from "../errors.js";
import { state, $, h, show, describe, setStatus, act, time, requireActive } from "./ui.js";

// Each refresh has a number: one that a later refresh overtook draws nothing more.
let refreshes = 0;

export async function refreshOperator() {
  const refresh = ++refreshes;
  const list = $("#operator-list");
  if (!state.active) {
    show(list, h("p", { class: "notice" }, "Import an operator key file under Identity first."));
    return;
  }
  let operator;
  try {
    operator = requireActive();
  } catch (error) {
    show(list, h("p", { class: "notice" }, describe(error)));
    return;
  }
  const epoch = state.epoch;
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
        if (state.epoch !== epoch) return; // the page locked meanwhile
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
  if (refresh !== refreshes || state.epoch !== epoch) return;
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
  const redraw = async () => {
    const [again, newLog] = await Promise.all([
      api.pendingReleases(custodian, operator),
      api.audit(custodian, operator, state.known),
    ]);
    drawOperator(card, custodian, operator, again, newLog);
  };
  const decideButton = (release, verdict, label) =>
    h(
      "button",
      {
        type: "button",
        class: verdict === "deny" ? "danger" : "",
        "aria-label": `${label} release ${release.release_id.slice(0, 8)} to ${release.recipient.name}`,
        onclick: (e) =>
          act(card, e.target, async (progress) => {
            const reader = release.recipient.name;
            if (
              verdict === "deny" &&
              !window.confirm(
                `Deny ${reader} ${custodian.name}'s share of message ${release.message_id.slice(0, 8)}…? A denial is final: ${custodian.name} will not release this share to ${reader} later.`,
              )
            ) {
              setStatus(card, "Not denied.");
              return;
            }
            progress(`${label === "Approve" ? "Approving" : "Denying"}…`);
            try {
              await api.decide(custodian, operator, release.release_id, verdict);
            } catch (error) {
              // The row was stale (decided elsewhere, withdrawn by its reader, its share
              // destroyed): draw what waits now, then say why this verdict was refused.
              if (error instanceof ServiceError) await redraw().catch(() => {});
              throw error;
            }
            await redraw();
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
