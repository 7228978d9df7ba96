// The start page: every source with its counts and last run; refresh, delete (after asking) and browse.

import { api } from "./api.js";
import { alertBox, busyWhile, fillView, h, hideError, showError, timeElement } from "./dom.js";

const COLUMNS = ["Title", "Origin", "Type", "Library / version", "Pages", "Chunks", "Code examples", "Last run"];

let progressModule = null;
let view = null; // {section, body, alert, operations}: the view now shown, for the refresh after an operation

/** Fills #view-sources; called on each navigation to #/sources. */
export function renderSources(section) {
  const alert = alertBox();
  const body = h(
    "div",
    { class: "sources-body", "aria-busy": "true" },
    h("p", { class: "empty loading" }, "Loading sources…"),
  );
  const operations = h("section", { "aria-label": "Operations", class: "operations" });
  fillView(section, alert, operations, body);
  view = { section, body, alert, operations };
  loadProgress().then((progress) => progress?.showActiveOperations(operations));
  return loadList(view);
}

/** progress.js draws the operation cards; without it the list still works (the alert says what is missing). */
function loadProgress() {
  progressModule ??= import("./progress.js").catch(() => null);
  return progressModule;
}

document.addEventListener("ragserver:operation-finished", () => {
  if (view && !view.section.hidden) loadList(view);
});

async function loadList(current) {
  current.body.setAttribute("aria-busy", "true");
  try {
    const { sources } = await api("/api/rag/sources");
    hideError(current.alert);
    // a reload after an operation must not drop a keyboard user's place: refocus the same button
    const focused = current.body.contains(document.activeElement)
      ? document.activeElement.getAttribute("aria-label")
      : null;
    current.body.replaceChildren(sources.length ? table(current, sources) : emptyState());
    if (focused) current.body.querySelector(`[aria-label="${CSS.escape(focused)}"]`)?.focus();
  } catch (error) {
    showError(current.alert, error);
    current.body.querySelector(".loading")?.remove(); // a table shown before stays: it is only out of date
  } finally {
    current.body.removeAttribute("aria-busy");
  }
}

function emptyState() {
  return h("p", { class: "empty" }, "No sources yet. ", h("a", { href: "#/add" }, "Add a source"));
}

function table(current, sources) {
  const sorted = [...sources].sort((a, b) => a.title.localeCompare(b.title));
  const sourcesTable = h(
    "table",
    { class: "sources-table card" },
    h("caption", {}, "Sources"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        COLUMNS.map((name) => h("th", { scope: "col" }, name)),
        h("th", { scope: "col" }, "Actions"),
      ),
    ),
    h(
      "tbody",
      {},
      sorted.map((source) => row(current, source)),
    ),
  );
  return h("div", { class: "table-scroll" }, sourcesTable);
}

function row(current, source) {
  const cells = [
    h("a", { href: `#/sources/${encodeURIComponent(source.source_id)}` }, source.title),
    isWeb(source.origin) ? externalLink(source.origin) : source.origin,
    source.knowledge_type,
    [source.library, source.version].filter(Boolean).join(" ") || "—",
    number(source.page_count),
    number(source.chunk_count),
    number(source.code_example_count),
    lastRun(source),
  ];
  const tr = h(
    "tr",
    { "data-source-id": source.source_id },
    cells.map((content, index) =>
      h(index === 0 ? "th" : "td", { "data-label": COLUMNS[index], scope: index === 0 ? "row" : null }, content),
    ),
  );
  tr.append(h("td", { "data-label": "Actions", class: "actions" }, actions(current, source, tr)));
  return tr;
}

function actions(current, source, tr) {
  const buttons = [];
  if (isWeb(source.origin)) {
    buttons.push(
      h(
        "button",
        {
          type: "button",
          "aria-label": `Refresh ${source.title}`,
          on: { click: (event) => refresh(current, source, event.currentTarget) },
        },
        "Refresh",
      ),
    );
  }
  buttons.push(
    h(
      "button",
      {
        type: "button",
        class: "danger",
        "aria-label": `Delete ${source.title}`,
        on: { click: () => remove(current, source, tr) },
      },
      "Delete",
    ),
  );
  return buttons;
}

export function isWeb(origin) {
  return /^https?:\/\//i.test(origin);
}

export function externalLink(url, text = url) {
  return h("a", { href: url, target: "_blank", rel: "noopener noreferrer nofollow", class: "origin" }, text);
}

function number(value) {
  return (value ?? 0).toLocaleString();
}

function lastRun(source) {
  if (!source.last_run_status) return "—";
  return h(
    "span",
    { class: `run run-${source.last_run_status}` },
    h("span", { class: "run-status" }, source.last_run_status),
    source.last_run_at ? [" ", timeElement(source.last_run_at)] : null,
    source.partial ? [" ", h("span", { class: "flag" }, "partial")] : null,
    source.last_run_error ? h("span", { class: "run-error" }, source.last_run_error) : null,
  );
}

async function refresh(current, source, button) {
  const path = `/api/knowledge-items/${encodeURIComponent(source.source_id)}/refresh`;
  try {
    const started = await busyWhile(button, () => api(path, { method: "POST" }));
    hideError(current.alert);
    const progress = await loadProgress();
    if (progress) progress.trackOperation(started.progressId, source.title, current.operations);
    else
      showError(current.alert, new Error(`Refresh of ${source.title} started; progress.js did not load to show it.`));
  } catch (error) {
    showError(current.alert, error);
  }
}

async function remove(current, source, tr) {
  const text = `Delete ${source.title}? This removes its pages, chunks and code examples.`;
  if (!(await confirmDelete(text))) return;
  try {
    await api(`/api/sources/${encodeURIComponent(source.source_id)}`, { method: "DELETE" });
    hideError(current.alert);
    const tbody = tr.parentElement;
    tr.remove();
    if (!tbody.rows.length) current.body.replaceChildren(emptyState());
    current.section.querySelector("h2").focus();
  } catch (error) {
    showError(current.alert, error);
  }
}

/** Asks in #confirm-dialog; Cancel has focus first and Escape cancels. Focus goes back where it was. */
function confirmDelete(text) {
  const dialog = document.getElementById("confirm-dialog");
  const opener = document.activeElement;
  document.getElementById("confirm-dialog-text").textContent = text;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
        resolve(dialog.returnValue === "confirm");
      },
      { once: true },
    );
    dialog.showModal();
  });
}
