"""HTML -> (title, markdown, links) with crawl4ai's LXML scraping strategy and markdown generator.

crawl4ai is imported lazily, on the first page: importing it costs about a second, pulls in
playwright's Python module, and creates its home folder (~/.crawl4ai, or
$CRAWL4_AI_BASE_DIRECTORY). The server points that folder at DATA_DIR before the first import so
nothing is written into the user's home. The conversion is CPU work, so callers run `convert` in
a worker thread.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

# Sphinx/MkDocs heading permalinks ("[¶](url#anchor)") add noise to every heading and chunk.
PERMALINK = re.compile(r"\[[¶#§]\]\([^)]*\)")


@dataclass
class Converted:
    """What one HTML page yields: its title, its markdown (code blocks fenced) and its links."""

    title: str
    markdown: str
    links: list[str]


def prepare_crawl4ai(data_dir: Path) -> None:
    """Keep crawl4ai's import-time folder and banner out of the user's home and logs."""
    os.environ.setdefault("CRAWL4_AI_BASE_DIRECTORY", str(Path(data_dir).resolve()))
    os.environ.setdefault("CRAWL4AI_NO_CLOUD_NOTICE", "1")


@cache
def _tools() -> tuple[Any, Any]:
    from crawl4ai.content_scraping_strategy import LXMLWebScrapingStrategy
    from crawl4ai.markdown_generation_strategy import DefaultMarkdownGenerator

    return LXMLWebScrapingStrategy(), DefaultMarkdownGenerator()


def convert(url: str, html: str) -> Converted:
    """Scrape one page: crawl4ai cleans the HTML, finds links, and writes markdown with fenced code."""
    scraper, generator = _tools()
    scraped = scraper.scrap(url, html)
    result = generator.generate_markdown(scraped.cleaned_html, base_url=url, citations=False)
    links = [link.href for link in scraped.links.internal + scraped.links.external if link.href]
    title = (scraped.metadata or {}).get("title") or ""
    markdown = PERMALINK.sub("", result.raw_markdown).strip()
    return Converted(title.strip(), markdown, links)
