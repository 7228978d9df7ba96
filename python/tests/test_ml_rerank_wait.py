"""A search in the first seconds after start, while the reranker still loads, waits for it.

The app runs on the real store with the real tiny models; only the reranker's folder is gated
(support.models.GatedModelFolder): its load blocks until the test releases it, so "still
loading" lasts exactly as long as the test wants and no sleep decides anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.api_fixtures import RunningApp, running_app
from support.models import GatedModelFolder
from support.polling import apoll_until, wait_operation

from ragserver.config import Settings

pytestmark = pytest.mark.slow

SEARCH_LOGGER = "ragserver.search.service"
SAFETY_TIMEOUT_S = 120  # only turns a hang into a failure; never reached when the code works


class WaitingForReranker(logging.Handler):
    """Sets `seen` when the search logs that a query waits for the reranker (it runs on the loop)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "waits up to" in record.getMessage():
            self.seen.set()


@contextlib.asynccontextmanager
async def app_with_gated_reranker(
    settings: Settings, tiny_reranker_dir: Path, tmp_path: Path, wait_s: int
) -> AsyncIterator[tuple[RunningApp, GatedModelFolder, str]]:
    """The app, up with its embedder, its reranker held loading, and one document of ours ingested."""
    gate = GatedModelFolder(tiny_reranker_dir, tmp_path / "gated-reranker")
    gated = dataclasses.replace(settings, reranker_model=str(gate.path), rerank_load_wait_s=wait_s)
    try:
        async with running_app(gated, wait_ml=False) as app:
            try:
                await apoll_until(
                    lambda: health(app),
                    lambda body: body["ml"]["embedder"]["state"] == "ready",
                    what="embedder ready",
                )
                marker = f"zw{uuid.uuid4().hex[:10]}"
                text = f"# {marker} lamps\n\nThe {marker} lamp burns oil.\n\n## Care\n\nTrim the {marker} wick.\n"
                files = {"file": (f"{marker}.md", text.encode())}
                started = await app.client.post("/api/documents/upload", files=files)
                assert started.status_code == 200, started.text
                state = await wait_operation(app.client, started.json()["progressId"])
                assert state["status"] == "completed", state
                yield app, gate, marker
            finally:
                gate.close()  # never leave the loader blocked while the app stops
    finally:
        gate.close()


async def health(app: RunningApp) -> dict[str, Any]:
    response = await app.client.get("/health")
    body: dict[str, Any] = response.json()
    return body


async def query(app: RunningApp, marker: str) -> dict[str, Any]:
    response = await app.client.post("/api/rag/query", json={"query": f"{marker} lamp wick"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_query_during_the_reranker_load_waits_and_is_reranked(
    api_settings: Settings, tiny_reranker_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SEARCH_LOGGER)
    waiting = WaitingForReranker()
    logging.getLogger(SEARCH_LOGGER).addHandler(waiting)
    try:
        async with app_with_gated_reranker(api_settings, tiny_reranker_dir, tmp_path, wait_s=600) as (
            app,
            gate,
            marker,
        ):
            response = await app.client.get("/health")
            assert response.status_code == 200, response.text  # a liveness probe stays green while it loads
            assert response.json()["ml"]["reranker"]["state"] == "loading", response.text

            answer = asyncio.ensure_future(query(app, marker))
            await asyncio.wait_for(waiting.seen.wait(), SAFETY_TIMEOUT_S)
            assert not answer.done()  # the query is held at the reranker, not answered in fused order
            await asyncio.to_thread(gate.release)
            result = await asyncio.wait_for(answer, SAFETY_TIMEOUT_S)

            assert result["reranking_applied"] is True and result["rerank_skipped"] is None, result
            assert result["reranker_model"] == str(gate.path)
            assert result["results"] and all(hit["rerank_score"] is not None for hit in result["results"])
            scores = [hit["rerank_score"] for hit in result["results"]]
            assert scores == sorted(scores, reverse=True)
            assert (await health(app))["ml"]["reranker"]["state"] == "ready"
    finally:
        logging.getLogger(SEARCH_LOGGER).removeHandler(waiting)


async def test_a_query_answers_unreranked_when_the_load_outlasts_the_budget(
    api_settings: Settings, tiny_reranker_dir: Path, tmp_path: Path
) -> None:
    async with app_with_gated_reranker(api_settings, tiny_reranker_dir, tmp_path, wait_s=1) as (app, _, marker):
        result = await query(app, marker)

        assert result["reranking_applied"] is False and result["rerank_skipped"] == "loading", result
        assert result["search_mode"] == "hybrid" and result["reranker_model"] is None
        hits = result["results"]
        assert hits and all(hit["rerank_score"] is None for hit in hits)
        assert all(marker in hit["content"] for hit in hits[:1])
        fused = [hit["fused_score"] for hit in hits]
        assert fused == sorted(fused, reverse=True)  # the fused (RRF) order
        assert (await health(app))["ml"]["reranker"]["state"] == "loading"
