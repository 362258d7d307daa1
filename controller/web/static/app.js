// vxplane dashboard: state from the REST API, kept fresh by the live event stream.
//
// Every event is shown in the log and triggers a (debounced) reload of hosts, networks and
// endpoints, so the page never drifts from the API; a slow poll keeps heartbeat ages, flow
// counts and convergence current between events.

import { ApiError, api, get, getAll } from "./api.js";
import { ago, clock, h, netColor } from "./dom.js";
import { loadPolicies, policyRows } from "./policies.js";
import { renderTopology } from "./topology.js";
import { clusterChip, controllerRows, masterCell } from "./cluster.js";

const $ = (id) => document.getElementById(id);
const state = { hosts: [], networks: [], endpoints: [], policies: null, controllers: [], revision: 0, loaded: false };
const fresh = new Map(); // "network/name" -> time it was added or moved (highlight)
const ui = { tab: "hosts", search: "", logFilter: "", logSync: false, drawer: null, confirmDelete: null };
const MAX_LOG = 300;
let epoch = null;
let lastId = 0;

// ---------------------------------------------------------------- loading
let refreshTimer = null;
let refreshing = false;
let refreshAgain = false;

function scheduleRefresh(delay = 50) {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, delay);
}

async function refresh() {
  if (refreshing) { refreshAgain = true; return; }
  refreshing = true;
  try {
    const [health, hosts, networks, endpoints, controllers] = await Promise.all([
      get("/healthz"), getAll("/api/v1/hosts"), getAll("/api/v1/networks"), getAll("/api/v1/endpoints"),
      get("/api/v1/controllers").catch(() => null), // the database names them: null while it is down
    ]);
    Object.assign(state, { revision: health.revision, hosts, networks, endpoints, controllers, loaded: true });
    $("fatal").hidden = true;
    render();
    if (ui.tab === "policies") await refreshPolicies();
  } catch (err) {
    showFatal(err instanceof ApiError ? err.detail : String(err));
  } finally {
    refreshing = false;
    if (refreshAgain) { refreshAgain = false; scheduleRefresh(); }
  }
}

function showFatal(text) {
  $("fatal").textContent = `Cannot load the overlay: ${text}`;
  $("fatal").hidden = false;
}

// ---------------------------------------------------------------- events
const typeClass = (type) => {
  if (type === "host.lost" || type === "switch.disconnected") return "t-bad";
  if (type === "host.alive") return "t-good";
  return "t-" + type.split(".")[0];
};

function logVisible(ev) {
  if (!ui.logSync && ev.type === "switch.converged") return false;
  return !ui.logFilter || ev.type.startsWith(ui.logFilter + ".");
}

const logEvents = [];

function addEvents(events, animate) {
  const list = $("log");
  for (const ev of events) {
    if (ev.id <= lastId && animate) continue;
    lastId = Math.max(lastId, ev.id);
    logEvents.push(ev);
    if (animate && (ev.type === "endpoint.bound" || ev.type === "endpoint.moved")) {
      fresh.set(`${ev.data.network}/${ev.data.endpoint}`, Date.now());
    }
    if (!logVisible(ev)) continue;
    list.prepend(logItem(ev, animate));
  }
  while (logEvents.length > MAX_LOG) logEvents.shift();
  while (list.children.length > MAX_LOG) list.lastElementChild.remove();
}

function logItem(ev, animate) {
  return h("li", { class: animate ? "new" : "", dataset: { type: ev.type, id: ev.id } },
    h("time", { datetime: ev.time, text: clock(ev.time) }),
    h("span", { class: "etype " + typeClass(ev.type), text: ev.type.replace(".", " ") }),
    h("span", { class: "summary-text", text: ev.summary }));
}

function redrawLog() {
  const list = $("log");
  list.replaceChildren(...logEvents.filter(logVisible).reverse().map((ev) => logItem(ev, false)));
}

async function loadRecent() {
  const recent = await get("/api/v1/events/recent?limit=200");
  epoch = recent.epoch;
  logEvents.length = 0;
  $("log").replaceChildren();
  lastId = 0;
  addEvents(recent.events, false);
  lastId = recent.last_id;
}

function setStream(stateName, text) {
  $("stream").dataset.state = stateName;
  $("stream-text").textContent = text;
}

function openStream() {
  const source = new EventSource(`/api/v1/events?after=${lastId}`);
  source.addEventListener("open", () => setStream("live", "live"));
  source.addEventListener("error", () => setStream("down", "reconnecting…"));
  source.addEventListener("hello", async (msg) => {
    const hello = JSON.parse(msg.data);
    setStream("live", "live");
    if (epoch !== null && hello.epoch !== epoch) {
      // another event log (another database): its ids are not ours, reload everything
      await loadRecent().catch(() => {});
      scheduleRefresh(0);
    }
    epoch = hello.epoch;
  });
  source.addEventListener("resync", () => { loadRecent().catch(() => {}); scheduleRefresh(0); });
  source.addEventListener("message", (msg) => {
    const ev = JSON.parse(msg.data);
    addEvents([ev], true);
    scheduleRefresh();
  });
}

// ---------------------------------------------------------------- rendering
function render() {
  renderSummary();
  $("topo-empty").hidden = state.hosts.length > 0;
  renderGraph(false);
  renderLegend();
  renderHosts();
  renderNetworks();
  renderEndpoints();
  renderControllers();
  renderTraceForm();
  renderPolicies();
  if (ui.drawer) refreshDrawer();
}

// Redraw the graph only when what it shows changed (not on every heartbeat), so hovering,
// focus and clicks are not lost to a redraw.
let drawn = "";
function renderGraph(force) {
  const now = Date.now();
  for (const [key, t] of fresh) if (now - t > 10000) fresh.delete(key);
  const sig = JSON.stringify([
    state.hosts.map((x) => [x.name, x.status, x.underlay_ip, x.wanted_revision, x.switch]),
    state.networks.map((n) => [n.name, n.vni]),
    state.endpoints.filter((e) => e.host).map((e) => [e.network, e.name, e.host, e.ip, e.state, e.ofport]),
    [...fresh].filter(([, t]) => now - t < 4000).map(([k]) => k),
    $("topology").clientWidth,
  ]);
  if (!force && sig === drawn) return;
  drawn = sig;
  renderTopology($("topology"), state, { fresh, onEndpoint: openDrawer, onHost: showHostEndpoints });
}

function renderSummary() {
  const { hosts, networks, endpoints } = state;
  const connected = hosts.filter((x) => x.switch && x.switch.connected).length;
  const lost = hosts.filter((x) => x.status === "lost").length;
  const lagging = hosts.filter((x) => x.status === "lagging").length;
  const converged = hosts.filter((x) => x.status === "converged").length;
  const ready = endpoints.filter((e) => e.state === "ready").length;
  const pending = endpoints.filter((e) => e.state === "pending").length;
  const chip = (id, text, cls) => { const el = $(id); el.textContent = text; el.className = "chip " + (cls || ""); };
  chip("sum-hosts", `${connected}/${hosts.length} hosts connected` + (lost ? ` · ${lost} lost` : ""),
    lost ? "bad" : connected === hosts.length && hosts.length ? "good" : "warn");
  chip("sum-networks", `${networks.length} network${networks.length === 1 ? "" : "s"}`);
  chip("sum-endpoints", `${ready} ready · ${pending} pending · ${endpoints.length - ready - pending} reserved`,
    pending ? "warn" : "");
  const allGood = hosts.length > 0 && converged === hosts.length;
  chip("sum-converged", allGood ? "all switches converged" : `${converged}/${hosts.length} converged` + (lagging ? ` · ${lagging} lagging` : ""),
    allGood ? "good" : lost || hosts.some((x) => x.status === "disconnected") ? "bad" : "warn");
  chip("sum-revision", `revision ${state.revision}`, "muted");
  const cluster = clusterChip(state.controllers);
  chip("sum-controllers", cluster.text, cluster.cls);
  $("count-hosts").textContent = hosts.length;
  $("count-networks").textContent = networks.length;
  $("count-endpoints").textContent = endpoints.length;
}

function renderLegend() {
  $("legend").replaceChildren(...[...state.networks].sort((a, b) => a.vni - b.vni).map((n) =>
    h("span", { dataset: { network: n.name } }, h("i", { class: "swatch", "data-vni": n.vni }), `${n.name} ${n.subnet}`)));
  for (const sw of $("legend").querySelectorAll(".swatch")) sw.style.background = netColor(Number(sw.dataset.vni));
}

function matches(values) {
  if (!ui.search) return true;
  const q = ui.search.toLowerCase();
  return values.some((v) => v !== null && v !== undefined && String(v).toLowerCase().includes(q));
}

function fillTable(id, rows, columns, empty) {
  const body = $(id).tBodies[0];
  if (!rows.length) {
    body.replaceChildren(h("tr", {}, h("td", { class: "none", colspan: columns, text: empty })));
    return;
  }
  body.replaceChildren(...rows);
}

const statusBadge = (status) => h("span", { class: `status s-${status}`, text: status });

function renderHosts() {
  const now = Date.now();
  const rows = state.hosts
    .filter((x) => matches([x.name, x.underlay_ip, x.dpid, x.status, x.switch && x.switch.address, x.master && x.master.api_url]))
    .map((x) => {
      const sw = x.switch;
      const lag = x.status === "lagging";  // applied generation < wanted
      return h("tr", { dataset: { host: x.name, status: x.status } },
        h("td", {}, statusBadge(x.status)),
        h("td", {}, h("button", { class: "linkish", text: x.name, onclick: () => showHostEndpoints(x) })),
        h("td", { class: "mono", text: x.underlay_ip }),
        h("td", { text: sw ? (sw.connected ? `connected ${sw.address || ""}` : "disconnected") : "never connected" }),
        h("td", { class: "num", text: sw ? sw.flow_count : "-" }),
        h("td", { class: "num" + (lag ? " lag" : ""), text: `${sw ? sw.applied_revision : "-"} / ${x.wanted_revision}` }),
        h("td", { class: "num", text: x.endpoints }),
        h("td", { class: x.alive ? "" : "lag", title: x.last_seen || "", text: ago(x.last_seen, now) }),
        h("td", { class: "mono", text: x.dpid || "-" }),
        masterCell(x));
    });
  fillTable("hosts-table", rows, 10, state.hosts.length ? "no host matches the search" : "no hosts registered yet");
}

function renderControllers() {
  $("count-controllers").textContent = state.controllers ? state.controllers.length : "?";
  fillTable("controllers-table", controllerRows(state.controllers), 7, state.controllers
    ? "no controller registered (controllers older than this feature do not register)"
    : "cannot list the controllers now (the database is unavailable?)");
}

function hostsOfNetwork(name) {
  return [...new Set(state.endpoints.filter((e) => e.network === name && e.host).map((e) => e.host))].sort();
}

function renderNetworks() {
  const rows = state.networks
    .filter((n) => matches([n.name, n.subnet, n.gateway, n.vni]))
    .map((n) => {
      const confirming = ui.confirmDelete && ui.confirmDelete.name === n.name && ui.confirmDelete.until > Date.now();
      const del = h("button", { class: confirming ? "danger confirm" : "danger", text: confirming ? "Confirm delete" : "Delete",
        "aria-label": `delete network ${n.name}` });
      del.addEventListener("click", () => deleteNetwork(n.name, del));
      const dot = h("i", { class: "swatch" });
      dot.style.background = netColor(n.vni);
      return h("tr", { dataset: { network: n.name } },
        h("td", {}, dot, " ", h("strong", { text: n.name })),
        h("td", { class: "num", text: n.vni }),
        h("td", { class: "mono", text: n.subnet }),
        h("td", { class: "mono", text: n.gateway }),
        h("td", { class: "num", text: n.endpoints }),
        h("td", { text: hostsOfNetwork(n.name).join(", ") || "-" }),
        h("td", { title: n.created_at, text: ago(n.created_at) }),
        h("td", {}, del));
    });
  fillTable("networks-table", rows, 8, state.networks.length ? "no network matches the search" : "no networks yet: create one above");
}

function syncSelect(id, values) {
  const sel = $(id);
  const current = sel.value;
  const wanted = ["", ...values];
  const have = [...sel.options].map((o) => o.value);
  if (have.join("\n") !== wanted.join("\n")) {
    sel.replaceChildren(...wanted.map((v) => h("option", { value: v, text: v || "any" })));
  }
  sel.value = wanted.includes(current) ? current : "";
}

function renderEndpoints() {
  syncSelect("ef-network", state.networks.map((n) => n.name));
  syncSelect("ef-host", state.hosts.map((x) => x.name));
  const fnet = $("ef-network").value;
  const fhost = $("ef-host").value;
  const fstate = $("ef-state").value;
  const rows = state.endpoints
    .filter((e) => (!fnet || e.network === fnet) && (!fhost || e.host === fhost) && (!fstate || e.state === fstate))
    .filter((e) => matches([e.name, e.network, e.ip, e.mac, e.host, e.state]))
    .map((e) => h("tr", { dataset: { endpoint: `${e.network}/${e.name}`, host: e.host || "" } },
      h("td", { text: e.network }),
      h("td", {}, h("button", { class: "linkish", text: e.name, onclick: () => openDrawer(e) })),
      h("td", { class: "mono", text: e.ip }),
      h("td", { class: "mono", text: e.mac }),
      h("td", { text: e.host || "-" }),
      h("td", { class: "num", text: e.ofport ?? "-" }),
      h("td", {}, statusBadge(e.state)),
      h("td", { title: e.updated_at, text: ago(e.updated_at) })));
  fillTable("endpoints-table", rows, 8, state.endpoints.length ? "no endpoint matches the filters" : "no endpoints yet");
}

// ---------------------------------------------------------------- actions
function selectTab(tab) {
  ui.tab = tab;
  for (const btn of document.querySelectorAll(".tab")) btn.setAttribute("aria-selected", String(btn.dataset.tab === tab));
  for (const name of ["hosts", "networks", "endpoints", "trace", "policies", "controllers"]) $(`panel-${name}`).hidden = name !== tab;
  if (tab === "policies") refreshPolicies();
}

// ---------------------------------------------------------------- policies (policies.js)
async function refreshPolicies() {
  try {
    state.policies = await loadPolicies(state.networks);
    $("pf-error").hidden = true;
  } catch (e) {
    $("pf-error").textContent = e instanceof ApiError ? e.detail : String(e);
    $("pf-error").hidden = false;
  }
  renderPolicies();
}

function renderPolicies() {
  syncSelect("pf-network", state.networks.map((n) => n.name));
  if (state.policies === null) return;
  $("count-policies").textContent = state.policies.length;
  const rows = policyRows(state.policies, state.endpoints, { network: $("pf-network").value, search: matches });
  fillTable("policies-table", rows, 6, state.policies.length ? "no policy matches the filters" : "no policies yet: vxplane policy create NAME --network NET ...");
}

function showHostEndpoints(host) {
  $("ef-host").value = host.name;
  selectTab("endpoints");
  renderEndpoints();
  $("panel-endpoints").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

async function createNetwork(event) {
  event.preventDefault();
  const err = $("nf-error");
  const ok = $("nf-ok");
  err.hidden = ok.hidden = true;
  const body = { name: $("nf-name").value.trim(), subnet: $("nf-subnet").value.trim() };
  const gateway = $("nf-gateway").value.trim();
  const vni = $("nf-vni").value.trim();
  if (gateway) body.gateway = gateway;
  if (vni) body.vni = /^\d+$/.test(vni) ? Number(vni) : vni;
  $("nf-submit").disabled = true;
  try {
    const net = await api("POST", "/api/v1/networks", body);
    ok.textContent = `Created network ${net.name}: ${net.subnet}, VNI ${net.vni}, gateway ${net.gateway}.`;
    ok.hidden = false;
    $("network-form").reset();
    scheduleRefresh(0);
  } catch (e) {
    err.textContent = e instanceof ApiError ? e.detail : String(e);
    err.hidden = false;
  } finally {
    $("nf-submit").disabled = false;
  }
}

// The "Confirm delete" state lives in `ui`, not in the button: the tables are rebuilt every
// couple of seconds, and a rebuilt row must still be waiting for the confirming click.
async function deleteNetwork(name, button) {
  const pending = ui.confirmDelete;
  if (!pending || pending.name !== name || pending.until <= Date.now()) {
    ui.confirmDelete = { name, until: Date.now() + 4000 };
    button.classList.add("confirm");
    button.textContent = "Confirm delete";
    setTimeout(() => { if (ui.confirmDelete && ui.confirmDelete.until <= Date.now()) { ui.confirmDelete = null; renderNetworks(); } }, 4100);
    return;
  }
  ui.confirmDelete = null;
  const err = $("nf-error");
  err.hidden = true;
  try {
    await api("DELETE", `/api/v1/networks/${encodeURIComponent(name)}`);
    scheduleRefresh(0);
  } catch (e) {
    err.textContent = e instanceof ApiError ? e.detail : String(e);
    err.hidden = false;
  }
}

// ---------------------------------------------------------------- trace
// Pick two endpoints of a network: GET /api/v1/networks/{net}/trace runs one packet through the
// controller's model and through the real switches on its path; the table shows each table
// visit, the row that decided is marked, and each switch says whether it agrees.
function fillSelect(id, values, keep = true) {
  const sel = $(id);
  const current = sel.value;
  const have = [...sel.options].map((o) => o.value);
  if (have.join("\n") !== values.join("\n")) {
    sel.replaceChildren(...values.map((v) => h("option", { value: v, text: v })));
  }
  if (keep && values.includes(current)) sel.value = current;
}

function renderTraceForm() {
  fillSelect("tf-network", state.networks.map((n) => n.name));
  const net = $("tf-network").value;
  const eps = state.endpoints.filter((e) => e.network === net);
  fillSelect("tf-src", eps.filter((e) => e.host).map((e) => e.name));
  fillSelect("tf-dst", eps.map((e) => e.name));
}

async function runTrace(event) {
  event.preventDefault();
  const err = $("tf-error");
  err.hidden = true;
  const params = new URLSearchParams({ src: $("tf-src").value, dst: $("tf-dst").value, protocol: $("tf-protocol").value });
  const port = $("tf-port").value.trim();
  if (port && params.get("protocol") !== "icmp") params.set("port", port);
  $("tf-submit").disabled = true;
  try {
    const got = await get(`/api/v1/networks/${encodeURIComponent($("tf-network").value)}/trace?${params}`);
    showTrace(got);
  } catch (e) {
    err.textContent = e instanceof ApiError ? e.detail : String(e);
    err.hidden = false;
  } finally {
    $("tf-submit").disabled = false;
  }
}

function showTrace(got) {
  const verdict = $("trace-verdict");
  verdict.className = `trace-verdict ${got.verdict}`;
  verdict.dataset.verdict = got.verdict;
  verdict.dataset.agree = String(got.agree);
  verdict.textContent = `${got.verdict}: ${got.reason}` + (got.agree === false ? " — the switches and the model disagree" : "");
  verdict.hidden = false;
  const switches = new Map((got.switches || []).map((s) => [s.host, s]));
  const last = got.model.steps.length - 1;
  const rows = got.model.steps.map((s, i) => {
    const sw = switches.get(s.host);
    const mark = !sw ? "-" : !sw.answered ? "no answer" : sw.agrees ? "agrees" : "differs";
    return h("tr", { class: i === last ? "decided" : "", dataset: { host: s.host, table: s.table } },
      h("td", { text: s.host }),
      h("td", { text: `${s.table} ${s.table_name}` }),
      h("td", { class: "mono", text: s.cookie || "no match" }),
      h("td", { class: "num", text: s.priority ?? "" }),
      h("td", { class: "mono", text: s.match }),
      h("td", { class: "mono", text: s.actions }),
      h("td", { text: mark }));
  });
  $("trace-table").hidden = false;
  $("trace-table").querySelector("tbody").replaceChildren(...rows);
  $("trace-switches").replaceChildren(...(got.switches || []).map((s) => h("li",
    { class: s.answered && s.agrees ? "" : "differs", dataset: { host: s.host, agrees: String(s.agrees) } },
    `switch ${s.host}: ` + (!s.answered || s.error ? (s.error || "no answer")
      : `${s.agrees ? "agrees" : "DIFFERS"} (${s.steps.map((t) => `${t.table}:${t.cookie || "miss"}`).join(" ")}) → ${s.datapath_actions}`))));
}

// ---------------------------------------------------------------- endpoint drawer
function openDrawer(ep) {
  ui.drawer = { network: ep.network, name: ep.name };
  $("drawer").hidden = false;
  refreshDrawer();
}

async function refreshDrawer() {
  const { network, name } = ui.drawer;
  const ep = state.endpoints.find((e) => e.network === network && e.name === name);
  $("drawer-title").textContent = `${network}/${name}`;
  if (!ep) {
    $("drawer-body").replaceChildren(h("dt", { text: "state" }), h("dd", { text: "deleted" }));
    $("drawer-history").replaceChildren();
    return;
  }
  const fields = [["ip", `${ep.ip}/${ep.prefixlen}`], ["mac", ep.mac], ["gateway", ep.gateway],
    ["vni", ep.vni], ["host", ep.host || "-"], ["of port", ep.ofport ?? "-"], ["port", ep.port_name || "-"],
    ["state", ep.state], ["revision", ep.revision], ["created", ep.created_at], ["ready at", ep.ready_at || "-"],
    ["labels", Object.entries(ep.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "-"]];
  $("drawer-body").replaceChildren(...fields.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]));
  try {
    const path = `/api/v1/networks/${encodeURIComponent(network)}/endpoints/${name.split("/").map(encodeURIComponent).join("/")}/history`;
    const history = await getAll(path);
    $("drawer-history").replaceChildren(...(history.length ? history.map((m) => h("li", { dataset: { kind: m.kind } },
      h("time", { datetime: m.at, text: `${new Date(m.at).toLocaleString()} · rev ${m.revision}` }),
      m.kind === "moved" ? `moved from ${m.from_host} to ${m.host} (port ${m.ofport})`
        : m.kind === "bound" ? `added on ${m.host} (port ${m.ofport})` : `removed from ${m.from_host}`)) : [h("li", { text: "never bound to a host" })]));
  } catch (e) {
    $("drawer-history").replaceChildren(h("li", { text: e.message }));
  }
}

// ---------------------------------------------------------------- start
function wire() {
  for (const btn of document.querySelectorAll(".tab")) btn.addEventListener("click", () => selectTab(btn.dataset.tab));
  $("search").addEventListener("input", (e) => { ui.search = e.target.value.trim(); render(); });
  for (const id of ["ef-network", "ef-host", "ef-state"]) $(id).addEventListener("change", renderEndpoints);
  $("network-form").addEventListener("submit", createNetwork);
  $("trace-form").addEventListener("submit", runTrace);
  $("tf-network").addEventListener("change", renderTraceForm);
  $("pf-network").addEventListener("change", renderPolicies);
  $("log-filter").addEventListener("change", (e) => { ui.logFilter = e.target.value; redrawLog(); });
  $("log-sync").addEventListener("change", (e) => { ui.logSync = e.target.checked; redrawLog(); });
  $("drawer-close").addEventListener("click", () => { ui.drawer = null; $("drawer").hidden = true; });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("drawer-close").click(); });
  let width = 0;
  new ResizeObserver(() => {
    const w = $("topology").clientWidth;
    if (state.loaded && Math.abs(w - width) > 20) { width = w; renderGraph(true); }
  }).observe($("topology"));
}

// ---------------------------------------------------------------- sign-in
// The token goes to POST /api/v1/session once; the controller answers with an HttpOnly,
// SameSite=Strict cookie that carries it to the API and the event stream (an EventSource
// cannot send an Authorization header). This page never keeps the token itself.
async function signIn() {
  try {
    return await get("/api/v1/session");
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) throw e;
  }
  $("login").hidden = false;
  $("login-token").focus();
  return new Promise((resolve) => {
    $("login-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      $("login-error").hidden = true;
      $("login-submit").disabled = true;
      try {
        const who = await api("POST", "/api/v1/session", { token: $("login-token").value.trim() });
        $("login-token").value = "";
        $("login").hidden = true;
        resolve(who);
      } catch (e) {
        $("login-error").textContent = e instanceof ApiError ? e.detail : String(e);
        $("login-error").hidden = false;
      } finally {
        $("login-submit").disabled = false;
      }
    });
  });
}

async function signOut() {
  await api("DELETE", "/api/v1/session");
  window.location.reload();
}

function showWho(who) {
  $("whoami-role").textContent = who.host ? `${who.role} of ${who.host}` : who.role;
  $("whoami").hidden = false;
}

async function start() {
  wire();
  $("logout").addEventListener("click", signOut);
  try {
    showWho(await signIn());
  } catch (e) {
    showFatal(e instanceof ApiError ? e.detail : String(e));
    return;
  }
  try {
    await loadRecent();
  } catch (e) {
    showFatal(e instanceof ApiError ? e.detail : String(e));
  }
  await refresh();
  openStream();
  setInterval(() => scheduleRefresh(0), 2000); // heartbeat ages, flow counts, convergence
  document.body.dataset.ready = "true";
}

start();
