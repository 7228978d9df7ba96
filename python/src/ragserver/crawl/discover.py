"""Discovery: sitemaps (indexes and .gz), llms.txt and llms-full.txt, read before crawling.

Sitemaps are read with a regex over `<loc>` instead of an XML parser: it tolerates the broken
XML found in the wild and expands no entities. Gzip is inflated in steps with a hard output cap
(CRAWL_MAX_PAGE_BYTES), so a small .gz cannot expand into gigabytes. Sitemap indexes are followed
to a bounded depth and count. An llms-full.txt is split at its top-level headings, each section
becoming one page, because it concatenates a site's pages.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ragserver.crawl.fetch import Fetched, Fetcher, SkippedPage
from ragserver.domain import Document
from ragserver.errors import RagServerError

log = logging.getLogger(__name__)

# Both patterns stay linear on hostile input: no part can run past the next "<" (LOC) or "[" / "("
# (MD_LINK), so an unclosed <loc> or "[a](" repeated a million times costs one pass, not n².
LOC = re.compile(r"<loc>([^<]*)</loc>", re.IGNORECASE)
SITEMAP_INDEX = re.compile(r"<sitemapindex[\s>]", re.IGNORECASE)
MD_LINK = re.compile(r"\[[^\[\]]*\]\(\s*<?([^)\s<>\[\]]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
SOURCE_LINE = re.compile(r"^(?:source|url):\s*(https?://\S+)\s*$", re.IGNORECASE)
MAX_SITEMAP_FILES = 50
MAX_SITEMAP_DEPTH = 3
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Sitemap:
    """URLs gathered from one sitemap tree (index files already followed)."""

    urls: list[str]
    files: int


def inflate_capped(data: bytes, max_bytes: int) -> bytes:
    """Decompress gzip data, refusing output larger than `max_bytes` (a decompression-bomb cap)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise SkippedPage(f"bad gzip data: {exc}") from exc
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise SkippedPage(f"gzip content expands beyond {max_bytes} bytes")
    return out


def sitemap_text(page: Fetched, max_bytes: int) -> str:
    """The XML of a fetched sitemap, inflating .gz bodies under the cap."""
    body = page.body
    if body[:2] == GZIP_MAGIC:
        body = inflate_capped(body, max_bytes)
    return body.decode("utf-8", errors="replace")


def is_sitemap_xml(text: str) -> bool:
    """True when `text` looks like a sitemap or sitemap index."""
    head = text[:2048].lower()
    return "<urlset" in head or "<sitemapindex" in head


def parse_sitemap(page: Fetched, max_bytes: int) -> tuple[list[str], bool] | None:
    """(the <loc> URLs, whether it is a sitemap index), or None when the body is no sitemap."""
    text = sitemap_text(page, max_bytes)
    if not is_sitemap_xml(text):
        return None
    return [html.unescape(m.strip()) for m in LOC.findall(text)], SITEMAP_INDEX.search(text) is not None


async def read_sitemaps(fetcher: Fetcher, urls: list[str], *, limit: int, allowed: Callable[[str], bool]) -> Sitemap:
    """Collect up to `limit` page URLs from these sitemaps, following indexes breadth first.

    Unreachable or malformed sitemaps are skipped: discovery must never fail the crawl.
    """
    pending = [(u, 0) for u in urls]
    seen: set[str] = set()
    found: list[str] = []
    files = 0
    while pending and len(found) < limit and files < MAX_SITEMAP_FILES:
        url, depth = pending.pop(0)
        if url in seen or not allowed(url):
            continue
        seen.add(url)
        try:
            page = await fetcher.get(url, same_site=allowed)
            # inflating and scanning up to max_bytes (10 MB) of XML is CPU work: not on the event loop
            parsed = await asyncio.to_thread(parse_sitemap, page, fetcher.max_bytes)
        except RagServerError as exc:
            log.info("sitemap %s skipped: %s", url, exc.message)
            continue
        if parsed is None:
            continue
        files += 1
        locs, is_index = parsed
        if is_index:
            if depth < MAX_SITEMAP_DEPTH:
                pending.extend((loc, depth + 1) for loc in locs)
            continue
        found.extend(locs[: limit - len(found)])
    return Sitemap(found, files)


def markdown_links(markdown: str) -> list[str]:
    """Link targets in a markdown text (how llms.txt lists a site's pages)."""
    return [m.group(1) for m in MD_LINK.finditer(markdown)]


def markdown_title(markdown: str, fallback: str) -> str:
    """The first heading of a markdown text, else `fallback`."""
    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            return stripped.lstrip("#").strip() or fallback
    return fallback


def split_llms_full(url: str, text: str) -> Iterator[Document]:
    """One Document per top-level section of an llms-full.txt (`# ` headings outside code fences).

    A section that names its page (`Source: https://...`) is stored under that URL; otherwise
    under the file URL with a numbered fragment, so every section is a distinct page.
    """
    level = "# " if _count_headings(text, "# ") > 1 else "## "
    sections: list[list[str]] = [[]]
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        if not in_fence and line.startswith(level) and any(s.strip() for s in sections[-1]):
            sections.append([])
        sections[-1].append(line)
    used: set[str] = set()
    for number, lines in enumerate(sections, start=1):
        body = "\n".join(lines).strip()
        if not body:
            continue
        title = markdown_title(body, f"Section {number}")
        page_url = _section_url(lines, url, number, used)
        used.add(page_url)
        yield Document(page_url, title, body, {"content_type": "text/markdown", "llms_full": url})


def _count_headings(text: str, prefix: str) -> int:
    count = 0
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and line.startswith(prefix):
            count += 1
    return count


def _section_url(lines: list[str], file_url: str, number: int, used: set[str]) -> str:
    for line in lines[:5]:
        match = SOURCE_LINE.match(line.strip())
        if match and match.group(1) not in used:
            return match.group(1)
    return f"{file_url}#section-{number}"
