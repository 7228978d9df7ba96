// One source: its pages (markdown rendered safely) and its code examples, each list loaded a window at a time.

import { api } from "./api.js";
import { alertBox, busyWhile, fillView, h, hideError, showError } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import { externalLink, isWeb } from "./sources.js";

const PAGE_WINDOW = 50;
const EXAMPLE_WINDOW = 20;
const PAGE_CHARS = 100000;
const FILTER_DELAY_MS = 300;

let renders = 0; // a render that finishes after a newer one started leaves the view alone

/** Fills #view-browse for `params.sourceId`; the h2 becomes the source's title. */
export async function renderBrowse(section, { sourceId }) {
  const heading = section.querySelector("h2");
  heading.textContent = "Source";
  const alert = alertBox();
  const loading = h("p", { class: "empty" }, "Loading…");
  fillView(section, alert, loading);
  const render = ++renders;
  let source;
  try {
    const { sources } = await api("/api/rag/sources");
    source = sources.find((candidate) => candidate.source_id === sourceId);
  } catch (error) {
    showError(alert, error);
    return;
  } finally {
    loading.remove();
  }
  if (render !== renders) return;
  if (!source) {
    heading.textContent = "Source not found";
    showError(alert, new Error(`There is no source ${sourceId}.`));
    section.append(h("p", {}, h("a", { href: "#/sources" }, "Back to sources")));
    return;
  }
  heading.textContent = source.title;
  const pages = pagesPanel(source);
  const examples = examplesPanel(source);
  section.append(summary(source), tabs([pages, examples]), pages.panel, examples.panel);
}

function summary(source) {
  const counts = [
    plural(source.page_count, "page", "pages"),
    plural(source.chunk_count, "chunk", "chunks"),
    plural(source.code_example_count, "code example", "code examples"),
  ].join(" · ");
  const origin = isWeb(source.origin) ? externalLink(source.origin) : source.origin;
  const labels = [source.library, source.version].filter(Boolean).join(" ");
  return h("p", { class: "summary" }, origin, " · ", counts, labels ? ` · ${labels}` : null);
}

/** An ARIA tab list: the arrow keys move between tabs, Tab moves into the shown panel. */
function tabs(parts) {
  const buttons = parts.map((part, index) =>
    h(
      "button",
      {
        type: "button",
        role: "tab",
        id: `tab-${part.id}`,
        "aria-controls": part.panel.id,
        on: { click: () => select(index) },
      },
      part.label,
    ),
  );
  parts.forEach((part, index) => part.panel.setAttribute("aria-labelledby", buttons[index].id));
  const list = h("div", { role: "tablist", "aria-label": "Source content", class: "tabs" }, buttons);
  list.addEventListener("keydown", (event) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    const next = (buttons.indexOf(document.activeElement) + step + buttons.length) % buttons.length;
    select(next);
    buttons[next].focus();
  });
  function select(chosen) {
    parts.forEach((part, index) => {
      const selected = index === chosen;
      buttons[index].setAttribute("aria-selected", String(selected));
      buttons[index].tabIndex = selected ? 0 : -1;
      part.panel.hidden = !selected;
      if (selected) part.show();
    });
  }
  select(0);
  return list;
}

/** A button "More …" that appends the next window of `list` while the API gives a next_offset. */
function pager(label, list, loadWindow) {
  let offset = 0;
  const button = h("button", { type: "button", class: "more", hidden: true }, label);
  list.tabIndex = -1; // where the focus goes when the last window hides the button
  async function next() {
    await busyWhile(
      button,
      async () => {
        const nextOffset = await loadWindow(offset);
        offset = nextOffset ?? offset;
        button.hidden = nextOffset === null || nextOffset === undefined;
      },
      list,
    );
  }
  button.addEventListener("click", next);
  return {
    button,
    next,
    restart: () => {
      offset = 0;
      return next();
    },
  };
}

function pagesPanel(source) {
  const alert = alertBox();
  const list = h("ul", { "aria-label": "Pages", class: "page-list card" });
  const article = h("article", { "aria-label": "Page content", class: "page-content card", hidden: true });
  const filter = h("input", { type: "search", id: "page-filter", autocomplete: "off" });
  let inFlight = null; // a new filter aborts the window still loading: an older answer never lands last
  const more = pager("More pages", list, async (offset) => {
    const query = new URLSearchParams({ source_id: source.source_id, offset, limit: PAGE_WINDOW });
    if (filter.value.trim()) query.set("section", filter.value.trim());
    inFlight?.abort();
    inFlight = new AbortController();
    try {
      const listing = await api(`/api/pages?${query}`, { signal: inFlight.signal });
      hideError(alert);
      if (offset === 0) list.replaceChildren();
      list.append(...listing.pages.map((page) => pageItem(page, list, article)));
      if (!list.children.length) list.append(h("li", { class: "empty" }, "No pages match."));
      return listing.next_offset;
    } catch (error) {
      showError(alert, error);
      return null;
    }
  });
  let delay = null;
  filter.addEventListener("input", () => {
    clearTimeout(delay);
    delay = setTimeout(more.restart, FILTER_DELAY_MS);
  });
  const filterForm = h(
    "form",
    { class: "filter", role: "search", "aria-label": "Filter pages" },
    h("label", { for: "page-filter" }, "Filter pages by section"),
    filter,
  );
  filterForm.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(delay);
    more.restart();
  });
  const panel = h(
    "div",
    { role: "tabpanel", id: "panel-pages", class: "pages-panel" },
    h("div", { class: "page-index" }, filterForm, alert, list, more.button),
    article,
  );
  return { id: "pages", label: "Pages", panel, show: once(more.next) };
}

function pageItem(page, list, article) {
  const button = h(
    "button",
    { type: "button", class: "page-link" },
    h("span", { class: "page-title" }, page.title || page.section_title || page.url),
    h("span", { class: "page-url" }, page.url),
  );
  button.addEventListener("click", () => {
    for (const other of list.querySelectorAll("[aria-current]")) other.removeAttribute("aria-current");
    button.setAttribute("aria-current", "true");
    showPage(page, article);
  });
  return h("li", {}, button);
}

/** Loads a page into the article; "Load more" fetches the rest and renders the whole markdown again. */
async function showPage(page, article) {
  const alert = alertBox();
  const heading = h("h3", { tabindex: "-1" }, page.title || page.url);
  const content = h("div", { class: "markdown", "aria-busy": "true", tabindex: "-1" });
  const loadMore = h("button", { type: "button", class: "more", hidden: true }, "Load more");
  const url = h("p", { class: "page-url" }, isWeb(page.url) ? externalLink(page.url) : page.url);
  article.replaceChildren(h("header", { class: "page-header" }, heading, url), alert, content, loadMore);
  article.hidden = false;
  heading.focus();
  let markdown = "";
  let offset = 0;
  async function load() {
    try {
      const slice = await api(`/api/pages/${page.page_id}?offset=${offset}&max_chars=${PAGE_CHARS}`);
      markdown += slice.full_content;
      await renderMarkdown(content, markdown, slice.url);
      offset = slice.next_offset ?? offset;
      loadMore.hidden = !slice.truncated || slice.next_offset === null;
    } catch (error) {
      showError(alert, error);
    } finally {
      content.removeAttribute("aria-busy");
    }
  }
  loadMore.addEventListener("click", () => busyWhile(loadMore, load, content));
  await load();
}

function examplesPanel(source) {
  const alert = alertBox();
  const list = h("div", { class: "code-examples" });
  const more = pager("More code examples", list, async (offset) => {
    const query = new URLSearchParams({ offset, limit: EXAMPLE_WINDOW });
    try {
      const listing = await api(`/api/sources/${encodeURIComponent(source.source_id)}/code-examples?${query}`);
      hideError(alert);
      list.append(...listing.examples.map(codeExample));
      if (!list.children.length) list.append(h("p", { class: "empty" }, "No code examples."));
      return listing.next_offset;
    } catch (error) {
      showError(alert, error);
      return null;
    }
  });
  const panel = h("div", { role: "tabpanel", id: "panel-examples" }, alert, list, more.button);
  return { id: "examples", label: "Code examples", panel, show: once(more.next) };
}

function codeExample(example) {
  const language = example.language || "text";
  return h(
    "article",
    { class: "code-example card" },
    h("h3", {}, example.title || example.summary || "Code example"),
    h(
      "p",
      { class: "example-meta" },
      h("span", { class: "language" }, language),
      " · ",
      ...headingPath(example.heading_path),
      isWeb(example.url) ? externalLink(example.url) : example.url,
    ),
    example.summary && example.summary !== example.title ? h("p", {}, example.summary) : null,
    h("pre", {}, h("code", { class: `language-${language}` }, example.content)),
  );
}

/** Where on its page the example stands ("Install › From source · "), nothing when it has no headings. */
function headingPath(headings) {
  if (!headings || !headings.length) return [];
  return [h("span", { class: "heading-path" }, headings.join(" › ")), " · "];
}

function plural(count, one, many) {
  return `${count.toLocaleString()} ${count === 1 ? one : many}`;
}

function once(action) {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    action();
  };
}
