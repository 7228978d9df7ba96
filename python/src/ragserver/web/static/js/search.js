// The search view: a query form over POST /api/rag/query, a summary of which stages ran, and the ranked
// results with the query's terms marked. Result text goes in as text nodes only, never as HTML.

import { api } from "./api.js";
import { alertBox, busyWhile, clear, h, hideError, showError } from "./dom.js";
import { externalLink, isWeb } from "./sources.js";

const MAX_QUERY_CHARS = 4000;
const DEFAULT_COUNT = 10;
const SNIPPET_CHARS = 300;
const SNIPPET_LEAD = 80; // characters kept before the first matched term

/** Builds the form once (a typed query survives navigation), then refreshes the source filter. */
export async function renderSearch(section) {
  if (!section.querySelector("form[role=search]")) buildView(section);
  await fillSources(section.querySelector("#search-source"), section.querySelector(".search-sources-error"));
}

function buildView(section) {
  const error = alertBox();
  const summary = h("p", { id: "search-summary", "aria-live": "polite" });
  const results = h("ol", { "aria-label": "Results", class: "results" });
  const form = h(
    "form",
    { role: "search", "aria-label": "Search", class: "search-form card" },
    h(
      "div",
      { class: "field search-query" },
      h("label", { for: "search-query" }, "Search the knowledge base"),
      h("input", {
        id: "search-query",
        type: "search",
        name: "query",
        required: true,
        maxlength: MAX_QUERY_CHARS,
        autocomplete: "off",
      }),
    ),
    h(
      "div",
      { class: "search-options" },
      sourceField("search-source"),
      h(
        "fieldset",
        { class: "search-mode" },
        h("legend", {}, "Results as"),
        radio("chunks", "Chunks", true),
        radio("pages", "Pages", false),
      ),
      h(
        "div",
        { class: "field search-count" },
        h("label", { for: "search-count" }, "Results"),
        h("input", { id: "search-count", type: "number", name: "match_count", min: 1, max: 100, value: DEFAULT_COUNT }),
      ),
      h("button", { type: "submit", class: "primary" }, "Search"),
    ),
    h("p", { class: "alert search-sources-error", role: "alert", hidden: true }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    runSearch(form, { error, summary, results });
  });
  section.append(form, error, summary, results);
}

function radio(value, text, checked) {
  return h("label", { class: "radio" }, h("input", { type: "radio", name: "return_mode", value, checked }), ` ${text}`);
}

/** The Source filter's field, empty until `fillSources` lists the sources (the ask view has one too). */
export function sourceField(id) {
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, "Source"),
    h("select", { id, name: "source" }, h("option", { value: "" }, "All sources")),
  );
}

/** The source filter: "All sources", then each source by title; the current choice is kept when it still exists. */
export async function fillSources(select, error) {
  const chosen = select.value;
  try {
    const { sources } = await api("/api/rag/sources");
    select.replaceChildren(
      h("option", { value: "" }, "All sources"),
      ...sources.map((source) => h("option", { value: source.source_id }, source.title)),
    );
    select.value = sources.some((source) => source.source_id === chosen) ? chosen : "";
    hideError(error);
  } catch (err) {
    showError(error, `The sources could not be listed: ${err.message}`);
  }
}

async function runSearch(form, { error, summary, results }) {
  const data = new FormData(form);
  const query = String(data.get("query") ?? "").trim();
  if (!query) return;
  const body = {
    query,
    match_count: Number(data.get("match_count")) || DEFAULT_COUNT,
    return_mode: data.get("return_mode") === "pages" ? "pages" : "chunks",
  };
  if (data.get("source")) body.source = String(data.get("source"));
  const button = form.querySelector("button[type=submit]");
  form.setAttribute("aria-busy", "true");
  const started = performance.now();
  try {
    const answer = await busyWhile(button, () => api("/api/rag/query", { method: "POST", json: body }));
    const latency = performance.now() - started;
    hideError(error);
    summary.textContent = summaryText(answer, latency);
    const terms = queryTerms(query);
    clear(results);
    results.append(...answer.results.map((result) => resultItem(result, answer.return_mode, terms)));
    if (!answer.results.length) results.append(h("li", { class: "no-results card" }, "Nothing matched."));
  } catch (err) {
    showError(error, err);
  } finally {
    form.removeAttribute("aria-busy");
  }
}

/** "<n> results · <mode> · reranked a of b (or: not reranked: why) · rerank x ms · y ms". */
function summaryText(answer, latencyMs) {
  const count = answer.results.length;
  const parts = [`${count} ${count === 1 ? "result" : "results"}`, answer.search_mode];
  if (answer.reranking_applied) parts.push(`reranked ${answer.reranked_count} of ${answer.rerank_candidates}`);
  else parts.push(answer.rerank_skipped ? `not reranked: ${answer.rerank_skipped}` : "not reranked");
  if (typeof answer.rerank_ms === "number") parts.push(`rerank ${Math.round(answer.rerank_ms)} ms`);
  parts.push(`${Math.round(latencyMs)} ms`);
  return parts.join(" · ");
}

function resultItem(result, mode, terms) {
  const best = mode === "pages" ? result.matched_chunks[0] : result;
  const title = result.title || result.url;
  const text = bodyOf(best.content, result.title, best.heading_path);
  const scores = [`fused ${result.fused_score.toFixed(4)}`];
  if (typeof result.rerank_score === "number") scores.push(`rerank ${result.rerank_score.toFixed(3)}`);
  if (mode === "pages") {
    scores.push(`${result.chunk_matches} matching ${result.chunk_matches === 1 ? "chunk" : "chunks"}`);
  }
  return h(
    "li",
    { class: "result card" },
    h("h3", { class: "result-title" }, isWeb(result.url) ? externalLink(result.url, title) : title),
    h("p", { class: "result-url" }, h("small", {}, result.url)),
    best.heading_path.length ? h("p", { class: "result-path" }, best.heading_path.join(" › ")) : null,
    h("p", { class: "result-snippet" }, highlighted(snippet(text, terms), terms)),
    h("p", { class: "result-scores" }, scores.join(" · ")),
  );
}

/** A chunk's text without its first paragraph when that is the context line ("Title > Heading"), shown above. */
function bodyOf(content, title, headingPath) {
  const split = content.indexOf("\n\n");
  if (split < 0) return content;
  const first = content.slice(0, split);
  const last = [title, ...headingPath].filter(Boolean).at(-1) ?? "";
  const flat = (text) => text.replace(/\s+/g, " ").trim().toLowerCase();
  const lastPart = flat(first.split(" > ").at(-1));
  return !first.includes("\n") && lastPart && flat(last).startsWith(lastPart) ? content.slice(split + 2) : content;
}

// Words too common to be worth marking when the query has others ("how to configure the widget": "widget").
const STOPWORDS = new Set(
  "a an and are as at be by do does for from how i in is it of on or the to what when where which who why with".split(
    " ",
  ),
);

/** The query's distinct words, longest first (so the longer of two overlapping terms is the one marked). */
function queryTerms(query) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  const useful = words.filter((word) => word.length > 1 && !STOPWORDS.has(word));
  return [...new Set(useful.length ? useful : words)].sort((a, b) => b.length - a.length);
}

/** One capturing group of all terms, regex characters escaped, in any case, where a word starts ("widget" marks
 * "widgets" but "in" not the middle of "bearings"). */
function termPattern(terms) {
  const alternatives = terms.map((term) => term.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")).join("|");
  return new RegExp(`(?<![\\p{L}\\p{N}_])(${alternatives})`, "giu");
}

/** About SNIPPET_CHARS of `text` (blanks collapsed) from a little before the first matched term. */
function snippet(text, terms) {
  const flat = text.replace(/\s+/g, " ").trim();
  if (flat.length <= SNIPPET_CHARS) return flat;
  const first = terms.length ? flat.search(termPattern(terms)) : -1;
  const start = Math.max(0, Math.min(first - SNIPPET_LEAD, flat.length - SNIPPET_CHARS));
  const end = start + SNIPPET_CHARS;
  return `${start > 0 ? "…" : ""}${flat.slice(start, end).trim()}${end < flat.length ? "…" : ""}`;
}

/** Text with every occurrence of a term wrapped in <mark>: split on the one group, the odd parts matched. */
function highlighted(text, terms) {
  if (!terms.length) return [text];
  return text.split(termPattern(terms)).map((part, index) => (index % 2 ? h("mark", {}, part) : part));
}
