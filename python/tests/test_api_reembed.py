"""Chunks stored while the embedder was unavailable get their vectors when a server starts with it."""

from __future__ import annotations

import dataclasses

import pytest
from support.api_fixtures import running_app
from support.polling import apoll_until

from ragserver.domain import Document, SourceInfo
from ragserver.ingest.service import IngestService
from ragserver.ml.service import MLService
from ragserver.progress import ProgressTracker
from ragserver.store import open_store

pytestmark = pytest.mark.slow


async def test_server_start_embeds_chunks_stored_without_vectors(pg_settings, ml_settings) -> None:
    settings = dataclasses.replace(ml_settings, database_url=pg_settings.database_url, data_dir=pg_settings.data_dir)
    async with open_store(settings) as store:
        not_started = MLService(settings)  # never started: no embedder, like a server without the ML env
        tracker = ProgressTracker()
        ingest = IngestService(store, not_started, settings, tracker)
        source = SourceInfo(source_id="no-vectors", title="No vectors", origin="test:no-vectors")
        docs = [
            Document(url=f"test://{i}", title=f"Doc {i}", markdown=f"# Doc {i}\n\nPlain words {i}.") for i in range(3)
        ]
        await ingest.ingest_documents(source, docs, tracker.start("ingest"), "ingest")
        assert await store.embedding_counts() == {}

    async with running_app(settings) as running:
        await apoll_until(
            running.runtime.store.embedding_counts,
            lambda counts: counts.get(settings.embedding_model, 0) >= 3,
            what="vectors for the chunks stored without them",
        )
        kinds = [o["type"] for o in running.runtime.tracker.list()]
        assert "reembed" in kinds
        answer = (await running.client.post("/api/rag/query", json={"query": "plain words"})).json()
        assert answer["search_mode"] == "hybrid" and answer["results"]
