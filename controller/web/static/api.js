// The controller's public REST API, as the dashboard uses it. Errors carry the API's `detail`.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

export async function api(method, path, body) {
  return (await request(method, path, body)).data;
}

// Every item of a paged list: the pages after the first come from the `Link: <...>;
// rel="next"` header, which the controller sets while there are more (docs/api.md, Paging).
export async function getAll(path) {
  const items = [];
  for (let next = path, pages = 0; next && pages < 10000; pages++) {
    const { resp, data } = await request("GET", next);
    items.push(...data);
    next = nextLink(resp.headers.get("Link"));
  }
  return items;
}

export function nextLink(header) {
  const match = /<([^>]*)>\s*;[^,]*\brel="?next"?/i.exec(header || "");
  return match ? match[1] : null;
}

async function request(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `cannot reach the controller (${err.message})`);
  }
  if (resp.status === 204) return { resp, data: null };
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : `HTTP ${resp.status}`;
    throw new ApiError(resp.status, detail);
  }
  return { resp, data };
}

export const get = (path) => api("GET", path);
