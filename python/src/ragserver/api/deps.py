"""Route dependencies as Annotated aliases, so a route's signature says what it needs.

Everything comes from the process Runtime on `app.state`; a dependency that is not up yet
(database migrating) answers 503 through the error tree instead of a route checking by hand.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ragserver.answer import AnswerService
from ragserver.catalog.service import CatalogService
from ragserver.crawl.service import CrawlService
from ragserver.ingest.service import IngestService
from ragserver.ml.service import MLService
from ragserver.progress import ProgressTracker
from ragserver.runtime import Runtime
from ragserver.search.service import SearchService
from ragserver.store import Store


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime  # put there by create_app
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_store(runtime: RuntimeDep) -> Store:
    return runtime.store


def get_search(runtime: RuntimeDep) -> SearchService:
    return runtime.services.search


def get_ingest(runtime: RuntimeDep) -> IngestService:
    return runtime.services.ingest


def get_crawl(runtime: RuntimeDep) -> CrawlService:
    return runtime.services.crawl


def get_catalog(runtime: RuntimeDep) -> CatalogService:
    return runtime.services.catalog


def get_answers(runtime: RuntimeDep) -> AnswerService:
    return runtime.services.answer


def get_progress(runtime: RuntimeDep) -> ProgressTracker:
    return runtime.tracker


def get_ml(runtime: RuntimeDep) -> MLService:
    return runtime.ml


StoreDep = Annotated[Store, Depends(get_store)]
SearchDep = Annotated[SearchService, Depends(get_search)]
IngestDep = Annotated[IngestService, Depends(get_ingest)]
CrawlDep = Annotated[CrawlService, Depends(get_crawl)]
CatalogDep = Annotated[CatalogService, Depends(get_catalog)]
ProgressDep = Annotated[ProgressTracker, Depends(get_progress)]
MLDep = Annotated[MLService, Depends(get_ml)]
AnswerDep = Annotated[AnswerService, Depends(get_answers)]
