// The Policies tab: each network's policies (GET /api/v1/networks/{net}/policies), their
// selector, the endpoints it selects now (from the endpoints' labels) and their rules.
//
// Policies are read only while the tab is shown (one request per network, refreshed with the
// rest of the page), so a dashboard left on another tab costs the controller nothing more.

import { ApiError, getAll } from "./api.js";
import { h } from "./dom.js";

const pairs = (labels) => Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`);

// Kubernetes' matchLabels: every pair must be among the endpoint's labels ({} selects all).
export function selects(selector, labels) {
  const want = (selector && selector.matchLabels) || {};
  const have = labels || {};
  return Object.entries(want).every(([k, v]) => Object.hasOwn(have, k) && have[k] === v);
}

export function selectorText(selector) {
  const text = pairs(selector && selector.matchLabels);
  return text.length ? text.join(", ") : "every endpoint of the network";
}

function peerText(peer) {
  if (peer.cidr) return peer.cidr;
  const text = pairs(peer.selector && peer.selector.matchLabels);
  return text.length ? text.join(" ") : "any endpoint of the network";
}

function portText(port) {
  return port.port === null || port.port === undefined ? `${port.protocol} (any port)` : `${port.protocol}/${port.port}`;
}

// One rule as a sentence: who (peers), on what (ports). No peers: anyone; no ports: any port.
export function ruleText(rule, direction) {
  const peers = (direction === "ingress" ? rule.from : rule.to) || [];
  const ports = rule.ports || [];
  const who = peers.length ? peers.map(peerText).join(" or ") : "anyone";
  const what = ports.length ? ports.map(portText).join(", ") : "any port";
  return `${direction === "ingress" ? "from" : "to"} ${who} · ${what}`;
}

// The cell of one direction: its rules, "nothing allowed" when the policy has the type but no
// rule, "not restricted" when the policy does not have that type.
function rulesCell(policy, direction) {
  const type = direction === "ingress" ? "Ingress" : "Egress";
  const rules = policy[direction] || [];
  if (!(policy.policy_types || []).includes(type)) {
    return h("td", { class: "muted", dataset: { direction }, text: "not restricted" });
  }
  if (!rules.length) return h("td", { class: "deny", dataset: { direction }, text: "nothing allowed" });
  return h("td", { dataset: { direction } },
    h("ul", { class: "rules" }, ...rules.map((r) => h("li", { class: "mono", text: ruleText(r, direction) }))));
}

export async function loadPolicies(networks) {
  const lists = await Promise.all(networks.map((n) =>
    getAll(`/api/v1/networks/${encodeURIComponent(n.name)}/policies`).catch((e) => {
      if (e instanceof ApiError && e.status === 404) return []; // the network just went away
      throw e;
    })));
  return lists.flat();
}

// Rows of #policies-table for `policies`, with the endpoints each selects among `endpoints`.
export function policyRows(policies, endpoints, { network = "", search = () => true } = {}) {
  return policies
    .filter((p) => !network || p.network === network)
    .filter((p) => search([p.name, p.network, selectorText(p.selector)]))
    .map((p) => {
      const members = endpoints.filter((e) => e.network === p.network && selects(p.selector, e.labels));
      const bound = members.filter((e) => e.host);
      const names = members.map((e) => e.name);
      return h("tr", { dataset: { network: p.network, policy: p.name, selected: bound.length } },
        h("td", { text: p.network }),
        h("td", {}, h("strong", { text: p.name })),
        h("td", { class: "mono", text: selectorText(p.selector) }),
        h("td", { class: "num", title: names.join(", ") || "none",
          text: `${bound.length} bound` + (members.length > bound.length ? ` · ${members.length - bound.length} not` : "") }),
        rulesCell(p, "ingress"),
        rulesCell(p, "egress"));
    });
}
