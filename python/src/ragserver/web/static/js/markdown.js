// Crawled markdown as HTML, safely: raw HTML is escaped (html: false), markdown-it drops javascript:/vbscript:/
// data: links, and the page's CSP refuses any script that still got through. Without the library: plain text.

const LIBRARY = "/assets/vendor/markdown-it.esm.min.mjs";
let renderer = null;

function loadRenderer() {
  renderer ??= import(LIBRARY).then(
    ({ default: markdownit }) => configure(markdownit({ html: false, linkify: false })),
    () => null,
  );
  return renderer;
}

/**
 * Links open outside the page, without referrer or opener; relative links and images resolve against the page's
 * own URL, and where it has none (an upload) they are left without a target instead of pointing at this server.
 * Nothing rendered carries a style attribute.
 */
function configure(md) {
  const renderToken = (tokens, index, options, env, self) => self.renderToken(tokens, index, options);
  const renderLink = md.renderer.rules.link_open ?? renderToken;
  md.renderer.rules.link_open = (tokens, index, options, env, self) => {
    const token = tokens[index];
    setOrDrop(token, "href", absolute(token.attrGet("href"), env.baseUrl));
    token.attrSet("target", "_blank");
    token.attrSet("rel", "noopener noreferrer nofollow");
    return renderLink(tokens, index, options, env, self);
  };
  const renderImage = md.renderer.rules.image;
  md.renderer.rules.image = (tokens, index, options, env, self) => {
    const token = tokens[index];
    setOrDrop(token, "src", absolute(token.attrGet("src"), env.baseUrl));
    token.attrSet("loading", "lazy");
    return renderImage(tokens, index, options, env, self);
  };
  // table alignment comes as style="text-align:…", which the CSP refuses (style-src 'self'): a class instead
  for (const cell of ["th_open", "td_open"]) {
    md.renderer.rules[cell] = (tokens, index, options, env, self) => {
      const token = tokens[index];
      const align = /text-align:(left|right|center)/.exec(token.attrGet("style") ?? "")?.[1];
      setOrDrop(token, "style", null);
      if (align) token.attrJoin("class", `align-${align}`);
      return self.renderToken(tokens, index, options);
    };
  }
  return md;
}

function setOrDrop(token, name, value) {
  if (value === null) token.attrs = (token.attrs ?? []).filter(([attr]) => attr !== name);
  else token.attrSet(name, value);
}

/** The link as an absolute URL (markdown-it has already refused javascript: and the like), else null. */
function absolute(link, baseUrl) {
  if (!link) return null;
  try {
    return new URL(link, /^https?:/i.test(baseUrl ?? "") ? baseUrl : undefined).href;
  } catch {
    return null; // relative, and the page has no web address to resolve it against
  }
}

/** Renders `text` into `container` (replacing what it held); `baseUrl` is where the page was crawled from. */
export async function renderMarkdown(container, text, baseUrl = "") {
  const md = await loadRenderer();
  if (!md) {
    const pre = document.createElement("pre");
    pre.className = "markdown-source";
    pre.textContent = text;
    container.replaceChildren(pre);
    return;
  }
  container.innerHTML = md.render(text, { baseUrl }); // the only HTML the page inserts: markdown-it's, html:false
}
