// The add view: start a crawl (the options of CrawlRequest in crawl/request.py) or upload files (one
// POST /api/documents/upload per file); each operation gets its own card below the forms.

import { api } from "./api.js";
import { alertBox, busyWhile, h, hideError, showError } from "./dom.js";
import { showActiveOperations, trackOperation } from "./progress.js";

const SCOPES = [
  ["hostname", "Hostname: the start URL’s host"],
  ["subpages", "Subpages: under the start URL’s folder"],
  ["domain", "Domain: its domain and subdomains"],
];
const LABEL_FIELDS = ["library", "version", "tags"];

/** Builds the forms once (what was typed survives navigation), then shows the operations running now. */
export async function renderAdd(section) {
  let operations = section.querySelector("section[aria-label=Operations]");
  if (!operations) {
    operations = h(
      "section",
      { "aria-label": "Operations", class: "operations" },
      h("h3", {}, "Operations"),
      h("p", { class: "operations-empty" }, "Nothing running."),
    );
    section.append(h("div", { class: "add-forms" }, crawlForm(operations), uploadForm(operations)), operations);
  }
  await showActiveOperations(operations);
}

// -- crawl ----------------------------------------------------------------------------------------------------

function crawlForm(operations) {
  const error = alertBox();
  const depth = h("input", { type: "number", name: "max_depth", min: 0, max: 10 });
  const form = h(
    "form",
    { "aria-label": "Crawl a site", class: "add-form card" },
    h("h3", {}, "Crawl a site"),
    field("crawl-url", "URL", h("input", { type: "url", name: "url", required: true, placeholder: "https://" })),
    h(
      "div",
      { class: "field-row" },
      field("crawl-depth", "Max depth", depth, "Default 2."),
      field(
        "crawl-pages",
        "Max pages",
        h("input", { type: "number", name: "max_pages", min: 1, max: 100000 }),
        "Default: the server’s CRAWL_MAX_PAGES.",
      ),
    ),
    field(
      "crawl-scope",
      "Scope",
      h(
        "select",
        { name: "scope" },
        SCOPES.map(([value, label]) => option(value, label)),
      ),
    ),
    field(
      "crawl-include",
      "Include patterns",
      h("textarea", { name: "include_patterns", rows: 2 }),
      "One per line: a glob of the whole URL or a /regex/.",
    ),
    field(
      "crawl-exclude",
      "Exclude patterns",
      h("textarea", { name: "exclude_patterns", rows: 2 }),
      "One per line; they win over includes.",
    ),
    labelFields("crawl"),
    h(
      "details",
      { class: "more-options" },
      h("summary", {}, "More options"),
      field(
        "crawl-selector",
        "Content selector",
        h("input", { type: "text", name: "content_selector" }),
        "CSS selector of the main content.",
      ),
      field(
        "crawl-exclude-selectors",
        "Exclude selectors",
        h("textarea", { name: "exclude_selectors", rows: 2 }),
        "CSS selectors to cut, one per line.",
      ),
      field(
        "crawl-headers",
        "Request headers",
        h("textarea", { name: "headers", rows: 2, autocomplete: "off", spellcheck: "false" }),
        "“Name: value”, one per line; sent to the crawled host only.",
      ),
      checkbox("keep_link_pages", "Keep link pages", false),
      checkbox("extract_code_examples", "Extract code examples", true),
    ),
    error,
    h("button", { type: "submit", class: "primary" }, "Start crawl"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, error, async () => {
      const body = crawlBody(new FormData(form));
      const started = await api("/api/knowledge-items/crawl", { method: "POST", json: body });
      trackOperation(started.progressId, body.url, operations);
    });
  });
  return form;
}

/** The crawl request of the form: only the fields that were filled in (the server's defaults hold for the rest). */
function crawlBody(data) {
  const text = (name) => String(data.get(name) ?? "").trim();
  const body = { url: text("url"), scope: text("scope") };
  for (const name of ["max_depth", "max_pages"]) if (text(name)) body[name] = Number(text(name));
  for (const name of ["include_patterns", "exclude_patterns", "exclude_selectors"]) {
    const lines = linesOf(text(name));
    if (lines.length) body[name] = lines;
  }
  const headers = headersOf(text("headers"));
  if (Object.keys(headers).length) body.headers = headers;
  if (text("content_selector")) body.content_selector = text("content_selector");
  if (data.get("keep_link_pages")) body.keep_link_pages = true;
  if (!data.get("extract_code_examples")) body.extract_code_examples = false;
  const { tags, ...labels } = labelsOf(data);
  if (tags)
    body.tags = tags
      .split(",")
      .map((tag) => tag.trim())
      .filter(Boolean);
  return { ...body, ...labels };
}

function linesOf(text) {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
}

/** "Name: value" lines as an object; a line without a colon goes with an empty value, for the server to judge. */
function headersOf(text) {
  const headers = {};
  for (const line of linesOf(text)) {
    const colon = line.indexOf(":");
    if (colon < 0) headers[line] = "";
    else headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  return headers;
}

// -- upload ---------------------------------------------------------------------------------------------------

function uploadForm(operations) {
  const error = alertBox();
  const input = h("input", { id: "upload-input", type: "file", name: "file", multiple: true });
  const chosenList = h("ul", { class: "chosen-files", "aria-label": "Chosen files" });
  const dropzone = h(
    "div",
    { class: "dropzone" },
    h("label", { for: "upload-input" }, "Upload"),
    input,
    h("p", { class: "hint" }, "Choose files or drop them here: md, txt, html, pdf or jsonl."),
    chosenList,
  );
  const form = h(
    "form",
    { "aria-label": "Upload files", class: "add-form card" },
    h("h3", {}, "Upload files"),
    dropzone,
    labelFields("upload"),
    error,
    h("button", { type: "submit", class: "primary" }, "Upload files"),
  );
  let chosen = [];
  const choose = (files) => {
    chosen = files;
    chosenList.replaceChildren(...chosen.map((file) => h("li", {}, `${file.name} (${sizeText(file.size)})`)));
  };
  input.addEventListener("change", () => choose([...input.files]));
  dropzone.addEventListener("dragover", (event) => {
    event.preventDefault(); // without it the browser opens the dropped file instead
    event.dataTransfer.dropEffect = "copy";
    dropzone.classList.add("dragging");
  });
  dropzone.addEventListener("dragleave", (event) => {
    if (!dropzone.contains(event.relatedTarget)) dropzone.classList.remove("dragging"); // not when onto a child
  });
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("dragging");
    choose([...chosen, ...event.dataTransfer.files]);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, error, async () => {
      if (!chosen.length) throw new Error("Choose or drop at least one file.");
      const labels = labelsOf(new FormData(form));
      const refused = [];
      for (const file of chosen) {
        try {
          const started = await api("/api/documents/upload", { method: "POST", form: uploadData(file, labels) });
          trackOperation(started.progressId, started.filename, operations);
        } catch (err) {
          refused.push(`${file.name}: ${err.message}`);
        }
      }
      form.reset();
      choose([]);
      if (refused.length) throw new Error(refused.join("\n"));
    });
  });
  return form;
}

function uploadData(file, labels) {
  const data = new FormData();
  data.append("file", file, file.name);
  for (const [name, value] of Object.entries(labels)) data.append(name, value);
  return data;
}

function sizeText(bytes) {
  const units = ["bytes", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  for (; value >= 1024 && unit < units.length - 1; unit += 1) value /= 1024;
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

// -- shared by both forms -------------------------------------------------------------------------------------

/** Library, Version and Tags, with ids unique per form. */
function labelFields(prefix) {
  return [
    h(
      "div",
      { class: "field-row" },
      field(`${prefix}-library`, "Library", h("input", { type: "text", name: "library", maxlength: 200 })),
      field(`${prefix}-version`, "Version", h("input", { type: "text", name: "version", maxlength: 200 })),
    ),
    field(`${prefix}-tags`, "Tags", h("input", { type: "text", name: "tags" }), "Comma separated."),
  ];
}

/** The form's non-empty library, version and tags, under the API's field names. */
function labelsOf(data) {
  const filled = {};
  for (const name of LABEL_FIELDS) {
    const value = String(data.get(name) ?? "").trim();
    if (value) filled[name] = value;
  }
  return filled;
}

function field(id, text, control, hint) {
  control.id = id;
  const hintId = `${id}-hint`;
  if (hint) control.setAttribute("aria-describedby", hintId);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, text),
    control,
    hint ? h("small", { id: hintId, class: "hint" }, hint) : null,
  );
}

function option(value, label) {
  return h("option", { value }, label);
}

function checkbox(name, text, checked) {
  return h("label", { class: "checkbox" }, h("input", { type: "checkbox", name, checked }), ` ${text}`);
}

/** Runs `action` with the submit button busy (busyWhile keeps a keyboard user's focus); its failure goes in the alert. */
async function submitting(form, error, action) {
  hideError(error);
  try {
    await busyWhile(form.querySelector("button[type=submit]"), action);
  } catch (err) {
    showError(error, err);
  }
}
