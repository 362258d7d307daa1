// The controller cluster: the members sharing the database (GET /api/v1/controllers: id, API
// URL, lease age, the switches each masters) and, per host, who masters its switch and the
// role the controller this page talks to holds there (GET /api/v1/hosts: master, switch.role).
// Kept apart from app.js, which only fetches the list and calls these.

import { h } from "./dom.js";

const short = (id) => (id || "").slice(0, 12);
const memberName = (m) => m.api_url || short(m.id);

// The summary chip: live members out of those listed; bad when one lapsed.
export function clusterChip(members) {
  if (members === null) return { text: "controllers unknown", cls: "warn" };
  const live = members.filter((m) => m.alive).length;
  if (!members.length) return { text: "no controller registered", cls: "muted" };
  const text = `${live}/${members.length} controller${members.length === 1 ? "" : "s"} live`;
  return { text, cls: live === members.length ? "good" : "bad" };
}

// One row per member: state, id ("this" marks the one answering), API URL, OpenFlow target,
// lease age, and the hosts whose switches it masters.
export function controllerRows(members) {
  return (members || []).map((m) => {
    const hosts = m.switches.map((s) => s.host || s.dpid);
    return h("tr", { dataset: { controller: m.id, alive: String(m.alive), this: String(m.this) } },
      h("td", {}, h("span", { class: `status ${m.alive ? "s-converged" : "s-lost"}`, text: m.alive ? "live" : "lapsed" })),
      h("td", { class: "mono", title: m.id, text: short(m.id) + (m.this ? " (this)" : "") }),
      h("td", { class: "mono", text: m.api_url || "-" }),
      h("td", { class: "mono", text: m.openflow || "-" }),
      h("td", { class: "num" + (m.alive ? "" : " lag"), text: `${m.lease_age.toFixed(1)} s` }),
      h("td", { class: "num", text: hosts.length }),
      h("td", { class: "masters", text: hosts.join(", ") || "-" }));
  });
}

// The hosts table's "Master" cell: the master's API URL (or "this controller") and, when the
// controller answering is not that master, its own role on the switch.
export function masterCell(host) {
  const m = host.master;
  const role = host.switch ? host.switch.role : null;
  if (!m) return h("td", { class: "master", dataset: { master: "", role: role || "" }, text: "none yet" });
  const name = m.this ? "this controller" : memberName(m);
  const extra = !m.alive ? " (lease lapsed)" : !m.this && role ? ` · here: ${role}` : m.this && role && role !== "master" ? ` · ${role} so far` : "";
  return h("td", { class: "master" + (m.alive ? "" : " lag"), title: m.id, dataset: { master: m.id, role: role || "" } },
    name, h("span", { class: "muted", text: extra }));
}
