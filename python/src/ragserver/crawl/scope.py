"""Which URLs one crawl may visit: its scope (subpages, hostname, domain) and its URL patterns.

Scopes, from narrow to wide:
- `subpages`: the start URL's host, and only paths at or under the start URL's folder (for
  `/docs/intro.html` that is `/docs`; for `/docs/guide/` it is `/docs/guide`);
- `hostname` (the default, and what crawls always did): any path on the start URL's host;
- `domain`: any host of the start URL's registrable domain (`docs.example.com` and
  `api.example.com` are both `example.com`), see `registrable_domain`.
A leading `www.` and the scheme never matter. The host rule also decides where a crawl may
follow a redirect and which hosts' sitemaps it reads.

Patterns narrow the scope: a URL is visited when it matches some include pattern (or there are
none) and no exclude pattern (exclude wins). A pattern between slashes (`/\\/v2\\//`) is a regular
expression searched anywhere in the canonical URL (anchor it with `^`/`$`); anything else is a
glob (fnmatch, case-sensitive) that must match the whole canonical URL, so `*/api/*`. Patterns
apply to every discovered URL (links, sitemap entries, llms.txt and its links), never to the
start URL: a crawl always fetches the page it was asked for.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import posixpath
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from ragserver.crawl.urls import looks_binary

ScopeName = Literal["subpages", "hostname", "domain"]
MAX_MATCHED_URL_CHARS = 2048
DEFAULT_SCOPE: ScopeName = "hostname"

# No public suffix list ships with the server, so the registrable domain is a heuristic: the last
# two labels, or three under a two-letter country code whose second level is a generic one
# (example.co.uk, example.com.au), or one more under a shared hosting suffix where every
# subdomain is a different owner (project.readthedocs.io, user.github.io).
GENERIC_SECOND_LEVELS = frozenset(
    {"ac", "asn", "co", "com", "edu", "go", "gob", "gouv", "gov", "gv", "id", "ltd", "mil", "ne", "net", "nic", "or"}
    | {"org", "plc"}
)
SHARED_HOST_SUFFIXES = frozenset(
    {
        "appspot.com",
        "azurewebsites.net",
        "blogspot.com",
        "cloudfront.net",
        "firebaseapp.com",
        "fly.dev",
        "github.io",
        "gitbook.io",
        "gitlab.io",
        "herokuapp.com",
        "hf.space",
        "mintlify.app",
        "netlify.app",
        "notion.site",
        "onrender.com",
        "pages.dev",
        "readthedocs.io",
        "readthedocs.org",
        "rtfd.io",
        "s3.amazonaws.com",
        "surge.sh",
        "vercel.app",
        "web.app",
        "workers.dev",
    }
)


class BadPattern(ValueError):
    """A URL pattern that cannot be used; the message names the pattern."""


@dataclass(frozen=True)
class UrlPattern:
    """One include or exclude pattern, compiled once: a glob, or a /regex/."""

    text: str
    regex: re.Pattern[str]
    is_regex: bool

    def matches(self, url: str) -> bool:
        """A regex is searched in `url`; a glob must match all of it."""
        found = self.regex.search(url) if self.is_regex else self.regex.fullmatch(url)
        return found is not None


def compile_pattern(text: str) -> UrlPattern:
    """The compiled pattern; BadPattern (naming it) when a /regex/ does not compile."""
    if len(text) >= 3 and text.startswith("/") and text.endswith("/"):
        try:
            return UrlPattern(text, re.compile(text[1:-1]), is_regex=True)
        except re.error as exc:
            raise BadPattern(f"{text!r} is not a valid regular expression: {exc}") from exc
    return UrlPattern(text, re.compile(fnmatch.translate(text)), is_regex=False)


def host_key(url: str) -> str:
    """The host a URL is on for scope checks: lowercased, a leading `www.` ignored."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return host.removeprefix("www.")


def registrable_domain(host: str) -> str:
    """The domain a host belongs to, by the heuristic above; an IP address or a one-label name is its own."""
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host
    except ValueError:
        pass
    labels = host.split(".")
    keep = 2
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in GENERIC_SECOND_LEVELS:
        keep = 3
    for size in (3, 2):  # a shared host's suffix (github.io, s3.amazonaws.com) plus the owner's label
        if len(labels) > size and ".".join(labels[-size:]) in SHARED_HOST_SUFFIXES:
            keep = size + 1
            break
    return ".".join(labels[-keep:])


def _subpage_root(start_url: str) -> str:
    """The folder a `subpages` crawl stays in: the start path, or its folder when it names a file."""
    path = urlsplit(start_url).path or "/"
    name = posixpath.basename(path.rstrip("/"))
    if not path.endswith("/") and "." in name:
        path = posixpath.dirname(path)
    return path.rstrip("/")


def _under(path: str, root: str) -> bool:
    return not root or path == root or path.startswith(root + "/")


@dataclass
class Scope:
    """The visiting rule of one crawl: host rule of its scope, path rule of `subpages`, then the patterns."""

    start_url: str
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    scope: ScopeName = DEFAULT_SCOPE

    def __post_init__(self) -> None:
        self._host = host_key(self.start_url)
        self._domain = registrable_domain(self._host)
        self._root = _subpage_root(self.start_url)
        self._include = [compile_pattern(p) for p in self.include]
        self._exclude = [compile_pattern(p) for p in self.exclude]

    def same_site(self, url: str) -> bool:
        """True when `url` is on a host this crawl covers (redirect targets, sitemaps, headers)."""
        host = host_key(url)
        if self.scope == "domain":
            return host == self._domain or host.endswith("." + self._domain)
        return host == self._host

    def same_host(self, url: str) -> bool:
        """True when `url` is on the start URL's own host: the only one a crawl's request headers go to
        (a domain scope's heuristic may take in hosts of other owners, e.g. another *.gitbook.io site)."""
        return host_key(url) == self._host

    def allows(self, url: str) -> bool:
        """True when the crawl may fetch `url` (canonical) as a page; never a URL longer than
        MAX_MATCHED_URL_CHARS, so a site's links cannot make a caller's /regex/ backtrack for long."""
        if len(url) > MAX_MATCHED_URL_CHARS or not self.same_site(url) or looks_binary(url):
            return False
        if self.scope == "subpages" and not _under(urlsplit(url).path, self._root):
            return False
        if self._include and not any(p.matches(url) for p in self._include):
            return False
        return not any(p.matches(url) for p in self._exclude)
