// The Relay API as the console calls it: the same origin, the sender's API token as a bearer.
//
// The token lives in this tab's sessionStorage only: it is sent in the Authorization header, never
// in a URL or a cookie (fetch omits credentials), and "Sign out" forgets it. The console calls
// nothing but the public API, so it can do nothing the token could not.

const TOKEN_KEY = "relay.console.token";

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  signIn: (token) => sessionStorage.setItem(TOKEN_KEY, token),
  signOut: () => sessionStorage.removeItem(TOKEN_KEY),
};

// The API's base: the page is served at <base>/console (a deployed stage's prefix, e.g. /v1).
export function apiBase() {
  return location.pathname.replace(/\/console\/?$/, "");
}

// An answer other than 2xx, in Relay's error shape {"error": {code, message, requestId, details}}.
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `The API answered ${status}.`);
    this.status = status;
    this.code = error.code || (status ? `HTTP_${status}` : "NETWORK_ERROR");
    this.requestId = error.requestId || null;
    this.details = Array.isArray(error.details) ? error.details : [];
  }
}

function query(parameters) {
  const defined = Object.entries(parameters).filter(([, value]) => value !== undefined && value !== null && value !== "");
  return defined.length ? `?${new URLSearchParams(defined)}` : "";
}

async function call(method, path, body, token = session.token()) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, credentials: "omit", cache: "no-store", redirect: "error" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(apiBase() + path, init);
  } catch {
    throw new ApiError(0, { error: { message: "The API could not be reached." } });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const id = (value) => encodeURIComponent(value);

export const api = {
  // Whether `token` is a sender's token (the cheapest call that needs one).
  check: (token) => call("GET", "/targets", undefined, token),
  listMessages: (status, limit, cursor) => call("GET", `/messages${query({ status, limit, cursor })}`),
  message: (messageId, eventsCursor) => call("GET", `/messages/${id(messageId)}${query({ eventsCursor })}`),
  replay: (messageId) => call("POST", `/messages/${id(messageId)}/replay`),
  cancel: (messageId) => call("POST", `/messages/${id(messageId)}/cancel`),
  replayMany: (filter) => call("POST", "/messages/replay", filter),
  replayJob: (jobId) => call("GET", `/replays/${id(jobId)}`),
  targets: () => call("GET", "/targets"),
  putTarget: (limits) => call("PUT", "/targets", limits),
  deleteTarget: (targetId) => call("DELETE", `/targets/${id(targetId)}`),
  health: (origin) => call("GET", `/targets/health${query({ origin })}`),
  resume: (origin) => call("POST", "/targets/resume", { origin }),
};

// What this deployment's API offers (served with the console's files; needs no token).
export async function loadCapabilities() {
  const response = await fetch("console/capabilities.json", { credentials: "omit", cache: "no-store" });
  if (!response.ok) throw new ApiError(response.status, null);
  return response.json();
}
