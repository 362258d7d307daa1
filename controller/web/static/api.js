// The controller's public REST API, as the dashboard uses it. Errors carry the API's `detail`.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

export async function api(method, path, body) {
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
  if (resp.status === 204) return null;
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
  return data;
}

export const get = (path) => api("GET", path);
