// Tiny DOM helpers: elements built with textContent only (no HTML strings, CSP-friendly).

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const h = (tag, attrs, ...children) => fill(document.createElement(tag), attrs, children);
export const s = (tag, attrs, ...children) =>
  fill(document.createElementNS(SVG_NS, tag), attrs, children);

export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const secs = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (secs < 2) return "just now";
  if (secs < 60) return `${secs} s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
  return `${Math.floor(secs / 86400)} d ago`;
}

export function clock(iso) {
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour12: false });
}

// A stable colour per network (by VNI), readable on the dark background.
const PALETTE = ["#4fd1c5", "#f6ad55", "#b794f4", "#63b3ed", "#f687b3", "#9ae6b4", "#faf089",
  "#fc8181", "#76e4f7", "#d6bcfa"];
export const netColor = (vni) => PALETTE[((vni || 0) - 1 + PALETTE.length * 1000) % PALETTE.length];
