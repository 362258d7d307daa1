// The topology graph as inline SVG: hosts hang off the VXLAN underlay; each network present on
// a host is a coloured lane inside it holding that host's endpoints; a network that spans
// hosts is drawn as a coloured overlay line joining them. Layout is deterministic (sorted by
// name), so nothing jumps around when one endpoint comes, goes or moves.

import { netColor, s } from "./dom.js";

const HOST_W = 250;
const GAP = 26;
const PAD = 14;
const HEAD_H = 50;
const LANE_H = 22;
const EP_H = 21;
const MAX_PER_LANE = 12;
const STATUS_COLOR = { converged: "#48bb78", lagging: "#ecc94b", disconnected: "#ed8936", lost: "#f56565" };

function hostLanes(host, endpoints, networks) {
  const byNet = new Map();
  for (const ep of endpoints) {
    if (ep.host !== host.name) continue;
    if (!byNet.has(ep.network)) byNet.set(ep.network, []);
    byNet.get(ep.network).push(ep);
  }
  return [...byNet.keys()].sort().map((name) => ({
    network: networks.get(name) || { name, vni: 0 },
    endpoints: byNet.get(name).sort((a, b) => a.name.localeCompare(b.name)),
  }));
}

function laneHeight(lane) {
  const shown = Math.min(lane.endpoints.length, MAX_PER_LANE);
  const more = lane.endpoints.length > MAX_PER_LANE ? EP_H : 0;
  return LANE_H + shown * EP_H + more + 6;
}

function badge(x, y, status) {
  const label = status || "unknown";
  const w = label.length * 7 + 12;
  return s("g", { class: "badge", transform: `translate(${x - w},${y})` },
    s("rect", { class: "badge-bg", width: w, height: 17, rx: 4, fill: STATUS_COLOR[status] || "#718096" }),
    s("text", { class: "badge-text", x: w / 2, y: 12.5, "text-anchor": "middle", text: label }));
}

function endpointNode(ep, y, color, fresh, onEndpoint) {
  const key = `${ep.network}/${ep.name}`;
  const g = s("g", {
    class: "endpoint" + (fresh ? " fresh" : ""),
    transform: `translate(18,${y})`,
    dataset: { endpoint: key, host: ep.host || "", state: ep.state, ip: ep.ip },
    tabindex: 0,
    role: "button",
    "aria-label": `endpoint ${key} ${ep.ip} on ${ep.host} (${ep.state})`,
    onclick: () => onEndpoint(ep),
    onkeydown: (e) => { if (e.key === "Enter") onEndpoint(ep); },
  },
  s("title", { text: `${key}\n${ep.ip}  ${ep.mac}\nport ${ep.ofport ?? "-"}  ${ep.state}` }),
  s("rect", { class: "hit", x: -4, y: -10, width: HOST_W - 30, height: 20, fill: "transparent" }),
  s("circle", { class: "ring", cx: 6, cy: 0, r: 6, stroke: color }),
  s("circle", { class: "ep-dot", cx: 6, cy: 0, r: 6, fill: color, stroke: color, "stroke-width": 1.5 }),
  s("text", { class: "ep-name", x: 18, y: 4, text: ep.name.length > 20 ? ep.name.slice(0, 19) + "…" : ep.name }),
  s("text", { class: "ep-ip", x: HOST_W - 36, y: 4, "text-anchor": "end", text: ep.ip }));
  return g;
}

export function renderTopology(container, state, opts) {
  const { hosts, endpoints } = state;
  const networks = new Map(state.networks.map((n) => [n.name, n]));
  const fresh = opts.fresh || new Map();
  const now = Date.now();
  const width = Math.max(container.clientWidth || 900, HOST_W + 2 * PAD);
  const perRow = Math.max(1, Math.floor((width - 2 * PAD + GAP) / (HOST_W + GAP)));
  const bound = endpoints.filter((e) => e.host);
  const netOrder = [...networks.values()].sort((a, b) => a.vni - b.vni).map((n) => n.name);

  const boxes = [...hosts].sort((a, b) => a.name.localeCompare(b.name)).map((host) => {
    const lanes = hostLanes(host, bound, networks);
    const height = HEAD_H + Math.max(26, lanes.reduce((sum, l) => sum + laneHeight(l), 0)) + 8;
    return { host, lanes, height };
  });

  const svg = s("svg", { xmlns: "http://www.w3.org/2000/svg", width, class: "topology" });
  let y = PAD;
  for (let start = 0; start < boxes.length; start += perRow) {
    const row = boxes.slice(start, start + perRow);
    const netsInRow = netOrder.filter((n) => row.some((b) => b.lanes.some((l) => l.network.name === n)));
    const busTop = y + 14;
    const boxTop = busTop + 18 + netsInRow.length * 7;
    const rowH = Math.max(...row.map((b) => b.height));
    const xs = row.map((_, i) => PAD + i * (HOST_W + GAP));
    const xEnd = xs[xs.length - 1] + HOST_W;

    // the underlay: one grey bus per row, a stub down to every host
    svg.append(s("line", { class: "fabric", x1: PAD, x2: xEnd, y1: busTop, y2: busTop }));
    if (start === 0) {
      svg.append(s("text", { class: "fabric-label", x: PAD, y: busTop - 6, text: "VXLAN underlay" }));
    }
    row.forEach((b, i) => {
      const cx = xs[i] + HOST_W - 24;
      svg.append(s("line", { class: "stub", x1: cx, x2: cx, y1: busTop, y2: boxTop }));
    });
    // overlays: one coloured line per network present in this row, joining its hosts
    netsInRow.forEach((name, k) => {
      const net = networks.get(name);
      const color = netColor(net.vni);
      const ly = busTop + 9 + k * 7;
      const idx = row.map((b, i) => (b.lanes.some((l) => l.network.name === name) ? i : -1)).filter((i) => i >= 0);
      const tick = (i) => xs[i] + 16 + (netOrder.indexOf(name) % 8) * 9;
      const g = s("g", { class: "overlay", dataset: { network: name } });
      g.append(s("line", { x1: tick(idx[0]) - 4, x2: tick(idx[idx.length - 1]) + 4, y1: ly, y2: ly, stroke: color, "stroke-width": 2.5, "stroke-linecap": "round" }));
      for (const i of idx) {
        g.append(s("line", { x1: tick(i), x2: tick(i), y1: ly, y2: boxTop, stroke: color, "stroke-width": 2 }));
        g.append(s("circle", { cx: tick(i), cy: ly, r: 3, fill: color }));
      }
      svg.append(g);
    });

    row.forEach((b, i) => {
      const { host } = b;
      const sw = host.switch;
      const g = s("g", { class: "host", transform: `translate(${xs[i]},${boxTop})`, dataset: { host: host.name, status: host.status } });
      g.append(s("rect", { class: "host-box", width: HOST_W, height: rowH, rx: 8 }));
      g.append(s("text", { class: "host-name", x: 12, y: 21, text: host.name, onclick: () => opts.onHost(host) }));
      const applied = sw ? sw.applied_revision : "-";
      g.append(s("text", { class: "host-sub", x: 12, y: 39,
        text: `${host.underlay_ip}  ·  ${sw && sw.connected ? sw.flow_count + " flows" : "no switch"}  ·  rev ${applied}/${host.wanted_revision}` }));
      g.append(badge(HOST_W - 10, 8, host.status));
      let ly = HEAD_H;
      if (!b.lanes.length) {
        g.append(s("text", { class: "more", x: 14, y: ly + 14, text: "no endpoints" }));
      }
      for (const lane of b.lanes) {
        const color = netColor(lane.network.vni);
        const lg = s("g", { class: "netgroup", dataset: { network: lane.network.name } });
        lg.append(s("rect", { x: 8, y: ly, width: HOST_W - 16, height: laneHeight(lane) - 4, rx: 5, fill: color, "fill-opacity": 0.07, stroke: color, "stroke-opacity": 0.35 }));
        lg.append(s("text", { class: "netlabel", x: 14, y: ly + 15, text: `${lane.network.name} · vni ${lane.network.vni}` }));
        let ey = ly + LANE_H + 8;
        for (const ep of lane.endpoints.slice(0, MAX_PER_LANE)) {
          const key = `${ep.network}/${ep.name}`;
          const isFresh = fresh.has(key) && now - fresh.get(key) < 4000;
          lg.append(endpointNode(ep, ey, color, isFresh, opts.onEndpoint));
          ey += EP_H;
        }
        if (lane.endpoints.length > MAX_PER_LANE) {
          lg.append(s("text", { class: "more", x: 24, y: ey + 4, text: `+ ${lane.endpoints.length - MAX_PER_LANE} more` }));
        }
        g.append(lg);
        ly += laneHeight(lane);
      }
      svg.append(g);
    });
    y = boxTop + rowH + 10;
  }
  svg.setAttribute("height", Math.max(y + PAD, 120));
  svg.setAttribute("viewBox", `0 0 ${width} ${Math.max(y + PAD, 120)}`);
  container.replaceChildren(svg);
}
