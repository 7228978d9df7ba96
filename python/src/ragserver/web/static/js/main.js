// The entry: hash routing between the five views, the status banner, and the API key dialog.

import { initAuth } from "./auth.js";
import { alertBox, fillView, showError } from "./dom.js";
import { renderBrowse } from "./browse.js";
import { renderSources } from "./sources.js";
import { startStatus } from "./status.js";

/** Each route: its section, its nav link, and how to render it (Add, Search and Ask load on first use). */
const ROUTES = {
  sources: { view: "view-sources", nav: "#/sources", render: renderSources },
  browse: { view: "view-browse", nav: "#/sources", render: renderBrowse },
  add: { view: "view-add", nav: "#/add", render: lazy("./add.js", "renderAdd") },
  search: { view: "view-search", nav: "#/search", render: lazy("./search.js", "renderSearch") },
  ask: { view: "view-ask", nav: "#/ask", render: lazy("./ask.js", "renderAsk") },
};

function lazy(module, name) {
  return async (section, params) => {
    let render;
    try {
      render = (await import(module))[name];
    } catch (error) {
      const alert = alertBox();
      fillView(section, alert);
      showError(alert, new Error(`This view did not load (${module}: ${error.message}).`));
      return;
    }
    return render(section, params);
  };
}

/** #/sources, #/sources/<id>, #/add, #/search, #/ask; anything else (a mangled id too) is the start page. */
function parse(hash) {
  const [, first = "", ...rest] = hash.replace(/^#/, "").split("/");
  const sourceId = rest.join("/");
  if (first === "sources" && sourceId) {
    try {
      return { name: "browse", params: { sourceId: decodeURIComponent(sourceId) } };
    } catch {
      return null; // a malformed %-escape
    }
  }
  if (Object.hasOwn(ROUTES, first) && first !== "browse") return { name: first, params: {} };
  return null;
}

function navigate({ moveFocus }) {
  const route = parse(location.hash);
  if (!route) {
    history.replaceState(null, "", "#/sources");
    navigate({ moveFocus });
    return;
  }
  const { view, nav, render } = ROUTES[route.name];
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== view;
  for (const link of document.querySelectorAll('nav[aria-label="Main"] a')) {
    if (link.getAttribute("href") === nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const section = document.getElementById(view);
  render(section, route.params);
  if (moveFocus) section.querySelector("h2").focus();
}

initAuth();
startStatus(document.getElementById("status-banner"));
window.addEventListener("hashchange", () => navigate({ moveFocus: true }));
document.addEventListener("ragserver:key-changed", () => navigate({ moveFocus: true }));
navigate({ moveFocus: false });
