"""URL canonicalization, so each page is fetched and stored once (which URLs a crawl visits: scope.py).

Two URLs that name the same page (fragment, default port, trailing slash, tracking parameters,
query order, host case) map to the same canonical string; the crawler dedupes on it and stores
the page under it.
"""

from __future__ import annotations

import posixpath
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

TRACKING_PARAMS = frozenset(
    {"gclid", "fbclid", "msclkid", "dclid", "yclid", "mc_cid", "mc_eid", "_ga", "_hsenc", "_hsmi", "ref_src"}
)
TRACKING_PREFIXES = ("utm_",)
DEFAULT_PORTS = {"http": 80, "https": 443}
INDEX_FILES = ("index.html", "index.htm")

# Links with these endings are never pages worth fetching (checked before any request).
_BINARY_SUFFIXES = (
    ".png .jpg .jpeg .gif .webp .svg .ico .bmp .tif .tiff .avif .mp3 .mp4 .m4a .wav .ogg .webm .mov .avi "
    ".zip .gz .tgz .bz2 .xz .7z .rar .tar .whl .egg .exe .msi .dmg .deb .rpm .apk .iso .bin .so .dll "
    ".pdf .doc .docx .xls .xlsx .ppt .pptx .odt .epub .woff .woff2 .ttf .otf .eot .css .js .mjs .map "
    ".wasm .jar .class .pyc"
)
BINARY_SUFFIXES = frozenset(_BINARY_SUFFIXES.split())


def canonicalize(url: str, base: str | None = None) -> str | None:
    """The canonical form of `url` (resolved against `base`), or None when it is not an http(s) URL.

    Drops the fragment, default port, tracking parameters and a trailing `index.html`; sorts the
    query; lowercases scheme and host; collapses `.`/`..` segments; keeps a trailing slash off
    every path except the root (so `/docs` and `/docs/` are one page).
    """
    url = url.strip()
    if base is not None:
        url = urljoin(base, url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower().rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _clean_path(parts.path)
    query = urlencode(sorted(_kept_params(parts.query)))
    return urlunsplit((scheme, netloc, path, query, ""))


def _clean_path(path: str) -> str:
    if not path:
        return "/"
    normalized = posixpath.normpath(path)
    if normalized.startswith("//"):
        normalized = "/" + normalized.lstrip("/")
    name = posixpath.basename(normalized)
    if name in INDEX_FILES:
        normalized = posixpath.dirname(normalized)
    normalized = normalized.rstrip("/")
    return normalized or "/"


def _kept_params(query: str) -> list[tuple[str, str]]:
    return [
        (key, value)
        for key, value in parse_qsl(query, keep_blank_values=True)
        if key.lower() not in TRACKING_PARAMS and not key.lower().startswith(TRACKING_PREFIXES)
    ]


def looks_binary(url: str) -> bool:
    """True when the path ends in an extension that is never an HTML or text page."""
    path = urlsplit(url).path.lower()
    return posixpath.splitext(path)[1] in BINARY_SUFFIXES or path.endswith(".tar.gz")


def url_kind(url: str) -> str:
    """What a URL names by its path: 'sitemap', 'llms-full', 'llms', 'text' or 'page'."""
    name = posixpath.basename(urlsplit(url).path.lower())
    if name.endswith((".xml", ".xml.gz")) and "sitemap" in name:
        return "sitemap"
    if name.startswith("llms") and name.endswith(".txt"):
        return "llms-full" if "full" in name else "llms"
    if name.endswith((".txt", ".md", ".markdown")):
        return "text"
    return "page"
