"""Browsing the knowledge base: its sources, the pages of a source, one page read in slices.

service.py    CatalogService: sources (library/version filters), page listings, page reads
results.py    the answers as Pydantic models (Archon v1 field names where Archon had them)
"""

from ragserver.catalog.results import PageContent, PageListing, PageSummary, SourceSummary
from ragserver.catalog.service import CatalogService

__all__ = ["CatalogService", "PageContent", "PageListing", "PageSummary", "SourceSummary"]
