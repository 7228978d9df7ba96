// The ask view: a question over POST /api/rag/ask, streamed (server-sent events read from fetch, since an
// EventSource cannot POST), the answer rendered as markdown when it is complete, and the numbered references
// it cites. Text from the API goes in as text nodes; the finished answer goes through markdown.js (html: false),
// then its [n] citations become links to the numbered references.

import { apiRequest, errorFrom } from "./api.js";
import { alertBox, busyWhile, clear, h, hideError, showError } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import { fillSources, sourceField } from "./search.js";
import { externalLink, isWeb } from "./sources.js";

const MAX_QUESTION_CHARS = 4000;
const DEFAULT_COUNT = 5;

/** Builds the form once (a typed question survives navigation), then refreshes the source filter. */
export async function renderAsk(section) {
  if (!section.querySelector("form.ask-form")) buildView(section);
  await fillSources(section.querySelector("#ask-source"), section.querySelector(".ask-sources-error"));
}

function buildView(section) {
  const error = alertBox();
  const summary = h("p", { id: "ask-summary", "aria-live": "polite" });
  const answer = h("article", { "aria-label": "Answer", class: "ask-answer result card", hidden: true });
  const references = h("ol", { "aria-label": "References", class: "results ask-references" });
  const stop = h("button", { type: "button", hidden: true }, "Stop");
  const form = h(
    "form",
    { "aria-label": "Ask", class: "ask-form search-form card" },
    h(
      "div",
      { class: "field" },
      h("label", { for: "ask-question" }, "Ask a question"),
      h("textarea", { id: "ask-question", name: "question", required: true, rows: 3, maxlength: MAX_QUESTION_CHARS }),
    ),
    h(
      "div",
      { class: "search-options" },
      sourceField("ask-source"),
      h(
        "div",
        { class: "field search-count" },
        h("label", { for: "ask-count" }, "Passages"),
        h("input", { id: "ask-count", type: "number", name: "match_count", min: 1, max: 100, value: DEFAULT_COUNT }),
      ),
      h("button", { type: "submit", class: "primary" }, "Ask"),
      stop,
    ),
    h("p", { class: "alert ask-sources-error", role: "alert", hidden: true }),
  );
  const view = { error, summary, answer, references, stop };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    runAsk(form, view);
  });
  // Ctrl/Cmd+Enter asks from the textarea (a plain Enter is a new line there)
  form.querySelector("textarea").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  section.append(form, error, summary, answer, references);
}

async function runAsk(form, view) {
  const data = new FormData(form);
  const question = String(data.get("question") ?? "").trim();
  // Ctrl+Enter submits even while the Ask button is disabled: one answer at a time
  if (!question || form.hasAttribute("aria-busy")) return;
  const body = { question, match_count: Number(data.get("match_count")) || DEFAULT_COUNT, stream: true };
  if (data.get("source")) body.source = String(data.get("source"));
  const controller = new AbortController();
  const onStop = () => controller.abort();
  view.stop.addEventListener("click", onStop);
  view.stop.hidden = false;
  form.setAttribute("aria-busy", "true");
  hideError(view.error);
  clear(view.references);
  view.summary.textContent = "Searching…";
  view.answer.textContent = "";
  view.answer.hidden = false;
  try {
    await busyWhile(form.querySelector("button[type=submit]"), () => stream(body, view, controller.signal));
  } catch (err) {
    view.summary.textContent = err?.name === "AbortError" ? "Stopped." : "";
    showError(view.error, err);
    if (!view.answer.textContent) view.answer.hidden = true;
  } finally {
    view.stop.removeEventListener("click", onStop);
    const stopHadFocus = document.activeElement === view.stop;
    view.stop.hidden = true;
    if (stopHadFocus) form.querySelector("button[type=submit]").focus(); // a hidden button drops the focus
    form.removeAttribute("aria-busy");
  }
}

/** Reads the answer's events as they come: references, delta..., then done (or error); nothing else ends it. */
async function stream(body, view, signal) {
  const response = await apiRequest("/api/rag/ask", {
    method: "POST",
    json: body,
    signal,
    headers: { Accept: "text/event-stream" },
  });
  if (!response.ok) throw errorFrom(response, await response.json().catch(() => null));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (!event) continue;
      if (event.name === "references") {
        view.summary.textContent = `Answering from ${event.data.references.length} passages…`;
        showReferences(view.references, event.data.references);
      } else if (event.name === "delta") {
        text += event.data.text;
        view.answer.append(event.data.text);
      } else if (event.name === "done") {
        await finish(view, text, event.data);
        return;
      } else if (event.name === "error") {
        throw new Error(event.data.message);
      }
    }
  }
  throw new Error("The answer broke off before it was complete.");
}

/** {name, data} of one server-sent event block (`event:` and `data:` lines), or null without data. */
function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { name, data: JSON.parse(data.join("\n")) } : null;
}

async function finish(view, text, done) {
  await renderMarkdown(view.answer, text);
  linkCitations(view.answer, view.references);
  for (const item of view.references.children) {
    const cited = done.cited.includes(Number(item.dataset.number));
    item.classList.toggle("cited", cited);
    item.querySelector(".ask-cited").textContent = cited ? "cited" : "";
  }
  const parts = [];
  if (done.answered) parts.push(`${done.cited.length} of ${view.references.children.length} passages cited`);
  else parts.push("The knowledge base has no answer");
  if (done.model) parts.push(done.model);
  if (done.finish_reason === "length") parts.push("cut short (LLM_MAX_TOKENS)");
  parts.push(`search ${Math.round(done.latency.search_ms)} ms`);
  if (done.model) parts.push(`LLM ${Math.round(done.latency.llm_ms)} ms`);
  view.summary.textContent = parts.join(" · ");
}

/** Each [n] in the answer's text (not in code or a link) that names a reference becomes a link to it. */
function linkCitations(answer, references) {
  const walker = document.createTreeWalker(answer, NodeFilter.SHOW_TEXT);
  const texts = [];
  while (walker.nextNode()) if (!walker.currentNode.parentElement.closest("a, code")) texts.push(walker.currentNode);
  for (const node of texts) {
    const pieces = node.data.split(/(\[\d+\])/);
    if (pieces.length === 1) continue;
    node.replaceWith(...pieces.map((piece) => citationLink(piece, references) ?? piece));
  }
}

function citationLink(piece, references) {
  const number = /^\[(\d+)\]$/.exec(piece)?.[1];
  const target = number && references.querySelector(`#ask-ref-${number}`);
  if (!target) return null;
  // the hash is the router's: follow the link by moving the focus to the reference instead
  const follow = (event) => {
    event.preventDefault();
    target.focus();
  };
  const attrs = { href: `#${target.id}`, class: "citation", title: target.dataset.title, on: { click: follow } };
  return h("a", attrs, piece);
}

function showReferences(list, references) {
  clear(list);
  list.append(
    ...references.map((reference) => {
      const title = reference.title || reference.url;
      return h(
        "li",
        {
          id: `ask-ref-${reference.number}`,
          "data-number": reference.number,
          "data-title": title,
          tabindex: -1,
          class: "result card",
        },
        h(
          "h3",
          { class: "result-title" },
          `[${reference.number}] `,
          isWeb(reference.url) ? externalLink(reference.url, title) : title,
        ),
        reference.heading_path.length ? h("p", { class: "result-path" }, reference.heading_path.join(" › ")) : null,
        h("p", { class: "result-url" }, h("small", {}, reference.url), " ", h("strong", { class: "ask-cited" })),
      );
    }),
  );
}
