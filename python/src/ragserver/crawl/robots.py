"""robots.txt: which paths the crawler may fetch, its Crawl-delay, and the sitemaps it names.

Parsed with the standard library's RobotFileParser; fetched through the crawl's own Fetcher so
it obeys the same guard and budgets as every page. A missing or broken robots.txt allows all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.robotparser import RobotFileParser

from ragserver.crawl.fetch import Fetcher
from ragserver.errors import RagServerError

log = logging.getLogger(__name__)


@dataclass
class Robots:
    """The robots.txt rules of one site, for one user agent."""

    user_agent: str
    parser: RobotFileParser | None = None
    sitemaps: list[str] = field(default_factory=list)

    def allows(self, url: str) -> bool:
        """True when robots.txt lets our user agent fetch `url` (always, without a robots.txt)."""
        return self.parser is None or self.parser.can_fetch(self.user_agent, url)

    def crawl_delay(self) -> float:
        """Seconds the site asks between requests (0 when it does not say)."""
        if self.parser is None:
            return 0.0
        delay = self.parser.crawl_delay(self.user_agent)
        return float(delay) if delay else 0.0


async def load_robots(fetcher: Fetcher, root: str, user_agent: str) -> Robots:
    """Fetch and parse `{root}/robots.txt`; any failure means 'no rules'."""
    url = root.rstrip("/") + "/robots.txt"
    try:
        page = await fetcher.get(url)
    except RagServerError as exc:
        log.debug("no robots.txt at %s: %s", url, exc.message)
        return Robots(user_agent)
    parser = RobotFileParser(url)
    parser.parse(page.text().splitlines())
    token = user_agent.split("/")[0]
    return Robots(token, parser, list(parser.site_maps() or []))
