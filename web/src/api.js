// The one way the UI talks to nudge: JSON in and out, the session's CSRF token on every state
// change, and errors in nudge's shape ({error: {message, field, line, column}}, plus the
// `reasons` of an incompatible schema and the `warnings` of a rule refused in strict mode).

let csrfToken = null;
// Set once sign-out starts, so a poll answered 401 meanwhile does not start a second navigation
// that aborts the one to the sign-in page.
let signingOut = false;

export function setCsrf(token) {
  csrfToken = token;
}

export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.field = error?.field;
    this.line = error?.line;
    this.column = error?.column;
    this.reasons = error?.reasons ?? [];
    this.warnings = error?.warnings ?? [];
  }
}

export async function api(method, path, body, { raw = false, contentType } = {}) {
  const headers = { accept: "application/json" };
  let payload = body;
  if (body !== undefined && !raw) {
    headers["content-type"] = "application/json";
    payload = JSON.stringify(body);
  } else if (contentType) {
    headers["content-type"] = contentType;
  }
  if (method !== "GET" && csrfToken) headers["x-csrf-token"] = csrfToken;
  const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (response.status === 401 && !signingOut && !location.pathname.startsWith("/login")) {
    location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
  }
  if (!response.ok) throw new ApiError(response.status, data?.error);
  return { status: response.status, data };
}

export async function signOut() {
  signingOut = true;
  await api("POST", "/logout").catch(() => {});
  location.assign("/login");
}

export const get = (path) => api("GET", path).then((r) => r.data);

export function describe(error) {
  if (!(error instanceof ApiError)) return String(error?.message ?? error);
  const where = error.field ? ` (${error.field})` : "";
  return `${error.message}${where}`;
}

export function ago(rfc3339) {
  if (!rfc3339) return "never";
  const seconds = Math.round((Date.now() - Date.parse(rfc3339)) / 1000);
  if (seconds < 60) return `${Math.max(seconds, 0)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

export const ROLES = ["viewer", "marketer", "developer", "admin"];
export const can = (session, role) => ROLES.indexOf(session?.role) >= ROLES.indexOf(role);
