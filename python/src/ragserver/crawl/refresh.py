"""What a refresh knows of the previous crawl: each stored page's validators, hash and links.

The crawler asks each page conditionally (If-None-Match / If-Modified-Since with the validators
the page was stored with) and hands a page on as carried (`Document.carried_from`: copied in the
store with its chunks and vectors) when it answers 304, or when its new title and markdown hash
to the stored one under new validators. Every other page is processed again: changed when the
previous crawl had it, new otherwise; pages of the previous crawl that this one did not store are
removed by the commit (counted here at the end).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ragserver.store.store import PreviousPage

LinksOf = Callable[[int], Awaitable[list[str]]]


def content_hash(title: str, markdown: str) -> str:
    """The hash a page is compared by: its title and its markdown, as converted."""
    return hashlib.sha256(f"{title}\n{markdown}".encode()).hexdigest()


@dataclass
class RefreshCounts:
    """Pages of this crawl by what happened to them against the previous one."""

    unchanged: int = 0
    changed: int = 0
    new: int = 0
    removed: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "pages_unchanged": self.unchanged,
            "pages_changed": self.changed,
            "pages_new": self.new,
            "pages_removed": self.removed,
        }


class PreviousCrawl:
    """The previous generation's pages by URL (empty for a first crawl), and the tally against it."""

    def __init__(
        self, pages: list[PreviousPage] | None = None, links_of: LinksOf | None = None, *, revalidate: bool = True
    ) -> None:
        self._pages = {page["url"]: page for page in pages or []}
        # False when the stored pages were extracted otherwise (other content rules, an older
        # conversion): a 304 would keep their old markdown, so every page is fetched whole
        self.revalidate = revalidate
        self._links_of = links_of
        self._stored: set[str] = set()
        self.counts = RefreshCounts()

    def page(self, url: str) -> PreviousPage | None:
        """The stored page of a canonical URL."""
        return self._pages.get(url)

    def conditions(self, url: str) -> dict[str, str]:
        """The conditional request headers for a canonical URL (none for a page not stored before)."""
        page = self._pages.get(url)
        if page is None or not self.revalidate:
            return {}
        headers = {}
        if page["etag"]:
            headers["If-None-Match"] = page["etag"]
        if page["last_modified"]:
            headers["If-Modified-Since"] = page["last_modified"]
        return headers

    async def links(self, url: str) -> list[str]:
        """The links the stored page of `url` had (a 304 answer has none of its own)."""
        page = self._pages.get(url)
        if page is None or self._links_of is None:
            return []
        return await self._links_of(page["page_id"])

    def unchanged(self, url: str, title: str, markdown: str) -> int | None:
        """The stored page id when `url`'s new title and markdown hash to the stored ones."""
        page = self._pages.get(url)
        if page is None or page["content_hash"] != content_hash(title, markdown):
            return None
        return page["page_id"]

    def record(self, url: str, *, carried: bool) -> None:
        """Tally one page handed on for storing."""
        self._stored.add(url)
        if carried:
            self.counts.unchanged += 1
        elif url in self._pages:
            self.counts.changed += 1
        else:
            self.counts.new += 1

    def finish(self) -> None:
        """Count the previous pages this crawl did not store: the commit removes them."""
        self.counts.removed = len(self._pages.keys() - self._stored)
