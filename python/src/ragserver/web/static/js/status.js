// The status banner: /health every few seconds while the tab is visible, in words a person can act on.

import { apiRequest } from "./api.js";
import { h } from "./dom.js";

const POLL_MS = 5000;
const BANNER_CLASS = { ok: "ok", degraded: "degraded", starting: "degraded", error: "error" };

let banner;
let timer = null;
let shown = "";

/** Starts polling into `element`; it pauses while the tab is hidden and checks at once when it shows again. */
export function startStatus(element) {
  banner = element;
  document.addEventListener("visibilitychange", () => {
    clearTimeout(timer);
    timer = null;
    if (!document.hidden) refresh();
  });
  refresh();
}

async function refresh() {
  let health = null;
  try {
    const response = await apiRequest("/health");
    health = await response.json();
  } catch {
    health = null; // not answering, or not JSON (a proxy's error page): both read as down
  }
  render(health);
  if (!document.hidden) {
    clearTimeout(timer);
    timer = setTimeout(refresh, POLL_MS);
  }
}

function render(health) {
  const items = health?.database ? healthItems(health) : [h("li", {}, "The server did not answer")];
  const level = health ? (BANNER_CLASS[health.status] ?? "error") : "error";
  // a live region announces every change: rebuild only when the words differ
  const list = h("ul", {}, items);
  const signature = `${level}|${list.textContent}`;
  if (signature === shown) return;
  shown = signature;
  banner.className = `status-banner ${level}`;
  banner.replaceChildren(list);
}

function healthItems(health) {
  const { database, ml } = health;
  return [
    h(
      "li",
      {},
      `Database: ${database.state}`,
      database.state !== "ready" && database.reason ? ` (${database.reason})` : null,
    ),
    h("li", {}, `ML environment: ${ml.env.state}`, ml.env.state !== "ready" ? fixOf(ml.env) : null),
    h("li", {}, `Embedder: ${modelText(ml.embedder)}`),
    h("li", {}, ml.reranker.state === "loading" ? "Reranker: loading" : `Reranker: ${modelText(ml.reranker)}`),
  ];
}

function modelText(model) {
  const details = [model.state, model.device].filter(Boolean).join(", ");
  return `${model.model} (${details})`;
}

function fixOf(part) {
  const reason = part.reason ? ` — ${part.reason}` : "";
  return part.fix ? [reason, "; fix: ", h("code", {}, part.fix)] : reason;
}
