"""Crawling: discover a site's pages (llms.txt, sitemaps, links), fetch them, hand them to ingestion."""

from ragserver.crawl.ports import CrawlStore, DocumentSink
from ragserver.crawl.request import MAX_DEPTH_LIMIT, MAX_PAGES_LIMIT, CrawlRequest
from ragserver.crawl.service import CrawlService, source_id_for

__all__ = [
    "MAX_DEPTH_LIMIT",
    "MAX_PAGES_LIMIT",
    "CrawlRequest",
    "CrawlService",
    "CrawlStore",
    "DocumentSink",
    "source_id_for",
]
