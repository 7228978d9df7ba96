// Small DOM helpers: every piece of text from the API goes in as a text node, never as HTML.

/**
 * Builds an element. attrs: `class`, `on` ({event: handler}), booleans (true sets, false/null omits), the rest
 * as attributes. Children: nodes, strings (text nodes), arrays; null/undefined/false are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "on")
      for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(element) {
  element.replaceChildren();
}

/** Replaces a view's content below its h2 (the heading stays: navigation focuses it). */
export function fillView(section, ...children) {
  const heading = section.querySelector("h2");
  section.replaceChildren(heading);
  append(section, children);
}

/** An empty `role=alert` paragraph; `showError` fills it. Hidden while empty so it takes no room. */
export function alertBox() {
  return h("p", { role: "alert", class: "alert", hidden: true });
}

/** Shows a failure's message (an ApiError's is the API's own; a network failure's says the server did not answer). */
export function showError(box, error) {
  if (error?.name === "AbortError") return;
  box.textContent = error?.message || String(error);
  box.hidden = false;
}

export function hideError(box) {
  box.textContent = "";
  box.hidden = true;
}

/**
 * Disables `button` while `work` runs. A disabled button drops the keyboard focus, so it gets it back after, or
 * `fallback` (tabindex -1) does when the work hid the button (a "More" button at the end of its list).
 */
export async function busyWhile(button, work, fallback = null) {
  const hadFocus = document.activeElement === button;
  button.disabled = true;
  try {
    return await work();
  } finally {
    button.disabled = false;
    const lost = document.activeElement === document.body || document.activeElement === button;
    if (hadFocus && lost) (button.hidden ? fallback : button)?.focus();
  }
}

const RELATIVE = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const UNITS = [
  ["year", 365 * 24 * 3600],
  ["month", 30 * 24 * 3600],
  ["week", 7 * 24 * 3600],
  ["day", 24 * 3600],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];

/** "5 minutes ago" for an ISO time; the local date and time go in a title by `timeElement`. */
export function formatTime(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return "";
  const seconds = (when.getTime() - Date.now()) / 1000;
  const [unit, size] = UNITS.find(([, size]) => Math.abs(seconds) >= size) ?? ["second", 1];
  return RELATIVE.format(Math.round(seconds / size), unit);
}

/** A <time> showing the relative time, with the exact local time as its tooltip. */
export function timeElement(iso) {
  const when = new Date(iso);
  return h("time", { datetime: iso, title: when.toLocaleString() }, formatTime(iso));
}
