// The one way the page talks to the server: adds the API key, turns failures into ApiError, reports 401s.

const KEY_STORAGE = "ragserver.apiKey";
const NO_ANSWER = "The server did not answer";

/** A failed call: `status` 0 when the server did not answer; `message` is the API's own words. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/** The key kept for this browser session, or "" (sessionStorage can be unavailable: then there is none). */
export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) ?? "";
  } catch {
    return "";
  }
}

export function setApiKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage refused (private mode settings): the key lasts until the page reloads
  }
}

/** Tells the key dialog the server refused us; the socket calls it too on an 'unauthorized' connect_error. */
export function reportUnauthorized() {
  document.dispatchEvent(new CustomEvent("ragserver:unauthorized", { detail: { hadKey: apiKey() !== "" } }));
}

/**
 * The raw Response of a call (any status but 401 is the caller's to read: /health answers 503 with a body,
 * progress polling reads 304). Throws ApiError(0) when the server does not answer; an abort stays an AbortError.
 */
export async function apiRequest(path, { method = "GET", json, form, signal, headers = {} } = {}) {
  const init = { method, signal, headers: { Accept: "application/json", ...headers } };
  const key = apiKey();
  if (key) init.headers.Authorization = `Bearer ${key}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form; // FormData: the browser writes the multipart boundary
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", NO_ANSWER);
  }
  if (response.status === 401) reportUnauthorized();
  return response;
}

/** Parsed JSON of a successful call; anything else throws ApiError with the API's message. */
export async function api(path, options = {}) {
  const response = await apiRequest(path, options);
  const body = await readJson(response);
  if (!response.ok) throw errorFrom(response, body);
  return body;
}

/** The ApiError an error response stands for, from its {error, message} body when it has one. */
export function errorFrom(response, body) {
  const fallback = `${response.status} ${response.statusText}`.trim();
  const message = typeof body?.message === "string" && body.message ? body.message : fallback;
  return new ApiError(response.status, typeof body?.error === "string" ? body.error : "http", message);
}

async function readJson(response) {
  let text;
  try {
    text = await response.text();
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", NO_ANSWER);
  }
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null; // a proxy's HTML error page: errorFrom falls back to the status line
  }
}
