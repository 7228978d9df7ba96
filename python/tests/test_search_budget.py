"""The rerank time budget (RERANK_BUDGET_MS) on real parts: store, MiniLM, the tiny Qwen3 reranker.

Time is the reranker's work: RerankWorkClock advances SECONDS_PER_TOKEN for every token of every
forward pass the real reranker runs (MLService.tokens_run), so each batch "costs" exactly its
tokens and a test knows, from the candidates' token counts, how many fit a budget; no sleep and
no wall-clock reading decides anything.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from support.api_fixtures import RunningApp
from support.clock import SteppedClock
from support.polling import wait_operation

from ragserver.config import Settings
from ragserver.errors import ConfigError, InputError
from ragserver.ingest.service import IngestService
from ragserver.ml.service import MLService
from ragserver.progress import ProgressTracker
from ragserver.search.budget import CPU_BUDGET_MS, MAX_BUDGET_MS, RerankPace
from ragserver.search.results import ChunkResult, QueryResponse
from ragserver.search.service import SearchService

pytestmark = pytest.mark.timeout(300)

SECONDS_PER_TOKEN = 0.001  # a token costs 1 ms of RerankWorkClock time, so budgets in ms count tokens
TOP_N = 8
PAGES = TOP_N + 4


class RerankWorkClock(SteppedClock):
    """A clock that moves only while the reranker works: SECONDS_PER_TOKEN per token it has run."""

    def __init__(self, ml: MLService) -> None:
        super().__init__()
        self.ml = ml

    def now(self) -> float:
        return self.time + SECONDS_PER_TOKEN * self.ml.tokens_run["reranker"]


@dataclasses.dataclass
class Corpus:
    settings: Settings
    store: Any
    ml: MLService
    query: str


@pytest_asyncio.fixture(loop_scope="session")
async def corpus(store: Any, ml_service: MLService, pg_settings: Settings, tmp_path: Path) -> Corpus:
    """PAGES pages of different lengths that all match the query, ingested through the real pipeline."""
    marker = f"zq{uuid.uuid4().hex[:10]}"
    folder = tmp_path / "lamps"
    folder.mkdir()
    for page in range(PAGES):
        care = " ".join(f"Trim the {marker} wick of lamp {page} before night {n}." for n in range(1 + page % 4))
        text = f"# {marker} lamp {page}\n\nThe {marker} lamp {page} burns oil. {care}\n"
        (folder / f"lamp-{page}.md").write_text(text, encoding="utf-8")
    settings = dataclasses.replace(
        pg_settings,
        embedding_model=ml_service.embedding_model,
        reranker_model=ml_service.reranker_model,
        use_reranking=True,
        rerank_top_n=TOP_N,
    )
    result = await IngestService(store, ml_service, settings, ProgressTracker()).ingest_path(folder)
    assert result["chunks_stored"] >= PAGES, result
    return Corpus(settings, store, ml_service, f"{marker} lamp wick oil")


def search_service(corpus: Corpus, **settings: Any) -> SearchService:
    """A fresh SearchService (no pace yet) timed by the reranker's work."""
    return SearchService(
        corpus.store, corpus.ml, dataclasses.replace(corpus.settings, **settings), clock=RerankWorkClock(corpus.ml)
    )


def chunks(answer: QueryResponse) -> list[ChunkResult]:
    results = [hit for hit in answer.results if isinstance(hit, ChunkResult)]
    assert len(results) == len(answer.results)
    return results


async def fused_order(corpus: Corpus) -> tuple[list[int], list[int]]:
    """The top TOP_N chunk ids in fused order and the reranker tokens each costs with the query."""
    answer = await search_service(corpus).query(corpus.query, match_count=TOP_N, rerank=False)
    hits = chunks(answer)
    assert len(hits) == TOP_N and answer.reranking_applied is False
    assert corpus.ml.reranker is not None
    lengths = corpus.ml.reranker.count_tokens([(corpus.query, hit.content) for hit in hits])
    return [hit.id for hit in hits], lengths


async def test_without_a_budget_every_candidate_is_reranked(corpus: Corpus) -> None:
    answer = await search_service(corpus).query(corpus.query, match_count=TOP_N, rerank_budget_ms=-1)

    assert answer.reranking_applied is True and answer.rerank_skipped is None
    assert answer.rerank_candidates == TOP_N and answer.reranked_count == TOP_N
    assert answer.rerank_budget_ms is None and answer.rerank_ms is not None
    scores = [hit.rerank_score for hit in chunks(answer)]
    assert None not in scores and scores == sorted(scores, reverse=True)  # type: ignore[type-var]


async def test_a_budget_reranks_the_fused_head_as_far_as_it_goes(corpus: Corpus) -> None:
    fused, lengths = await fused_order(corpus)
    budget_ms = lengths[0] + lengths[1] + lengths[2] // 2  # two candidates and half of the third
    search = search_service(corpus)

    passes = corpus.ml.batches_run["reranker"]
    first = await search.query(corpus.query, match_count=TOP_N, rerank_budget_ms=budget_ms)
    first_passes = corpus.ml.batches_run["reranker"] - passes

    assert first.rerank_candidates == TOP_N and first.reranked_count == 2
    assert first.reranking_applied is True and first.rerank_budget_ms == budget_ms
    assert first.rerank_ms == pytest.approx(lengths[0] + lengths[1])  # within the budget: no batch overshot
    assert first_passes == 2  # uncalibrated: one candidate to take the pace, then what fits
    hits = chunks(first)
    assert {hit.id for hit in hits[:2]} == set(fused[:2])
    assert [hit.id for hit in hits[2:]] == fused[2:]  # the rest keep their fused order below them
    assert hits[0].rerank_score is not None and hits[1].rerank_score is not None
    assert hits[0].rerank_score >= hits[1].rerank_score
    assert all(hit.rerank_score is None for hit in hits[2:])

    second = await search.query(corpus.query, match_count=TOP_N, rerank_budget_ms=budget_ms)  # the pace is known
    assert second.reranked_count == 2 and second.rerank_ms == pytest.approx(lengths[0] + lengths[1])


async def test_a_budget_smaller_than_one_candidate(corpus: Corpus) -> None:
    fused, lengths = await fused_order(corpus)
    search = search_service(corpus)

    first = await search.query(corpus.query, match_count=TOP_N, rerank_budget_ms=1)
    assert first.reranked_count == 1  # no pace yet: one candidate is reranked to take it
    assert first.rerank_ms == pytest.approx(lengths[0])  # over the budget by that one batch only

    answer = await search.query(corpus.query, match_count=TOP_N, rerank_budget_ms=1)
    assert answer.reranked_count == 0 and answer.rerank_candidates == TOP_N
    assert answer.reranking_applied is False and answer.rerank_skipped == "budget"
    assert answer.reranker_model is None and answer.rerank_ms == pytest.approx(0.0)
    hits = chunks(answer)
    assert [hit.id for hit in hits] == fused and all(hit.rerank_score is None for hit in hits)


async def test_the_budget_setting_and_auto(corpus: Corpus) -> None:
    _, lengths = await fused_order(corpus)
    everything = sum(lengths) + 1  # a token to spare: a float rounding must not decide the last one

    configured = search_service(corpus, rerank_budget_ms=everything)
    answer = await configured.query(corpus.query, match_count=TOP_N)
    assert answer.rerank_budget_ms == everything and answer.reranked_count == TOP_N

    auto = await search_service(corpus, rerank_budget_ms=0).query(corpus.query, match_count=TOP_N)
    assert corpus.ml.device == "cpu" and auto.rerank_budget_ms == CPU_BUDGET_MS

    overridden = await configured.query(corpus.query, match_count=TOP_N, rerank_budget_ms=-1)
    assert overridden.rerank_budget_ms is None and overridden.reranked_count == TOP_N

    unreranked = await configured.query(corpus.query, match_count=TOP_N, rerank=False)
    assert unreranked.rerank_candidates == 0 and unreranked.reranked_count == 0
    assert unreranked.rerank_budget_ms is None and unreranked.rerank_ms is None


@pytest.mark.parametrize("budget_ms", [-2, -1000, MAX_BUDGET_MS + 1, 10**12])
async def test_bad_budgets_are_refused(corpus: Corpus, budget_ms: int) -> None:
    with pytest.raises(InputError, match="rerank_budget_ms"):
        await search_service(corpus).query(corpus.query, rerank_budget_ms=budget_ms)
    with pytest.raises(ConfigError, match="RERANK_BUDGET_MS"):
        search_service(corpus, rerank_budget_ms=budget_ms)


def test_a_batch_is_what_fits_the_time_left_and_one_forward_pass() -> None:
    pace = RerankPace()
    assert pace.batch_size([100, 100], remaining_s=0.001, max_batch_tokens=2048) == 1  # no pace: one, to take it
    pace.observe(tokens=100, seconds=1.0)
    pace.observe(tokens=100, seconds=3.0)
    assert pace.seconds_per_token == pytest.approx(0.02)  # the newest batch weighs half
    assert pace.batch_size([100, 100, 100], remaining_s=9.0, max_batch_tokens=2048) == 2  # 4 s of 9: half at most
    assert pace.batch_size([100, 100], remaining_s=3.0, max_batch_tokens=2048) == 1  # 2 s alone may take all 3
    assert pace.batch_size([100, 100, 300], remaining_s=60.0, max_batch_tokens=600) == 2  # 3 x 300 > 600
    assert pace.batch_size([300], remaining_s=5.0, max_batch_tokens=100) == 0  # predicted 6 s > 5 s left
    assert pace.batch_size([300], remaining_s=60.0, max_batch_tokens=100) == 1  # alone, though over the pass
    assert pace.batch_size([], remaining_s=60.0, max_batch_tokens=100) == 0
    assert pace.batch_size([1], remaining_s=0.0, max_batch_tokens=100) == 0


async def test_the_budget_over_http(api: RunningApp) -> None:
    marker = f"zh{uuid.uuid4().hex[:10]}"
    text = f"# {marker} lamps\n\nThe {marker} lamp burns oil.\n\n## Care\n\nTrim the {marker} wick.\n"
    started = await api.client.post("/api/documents/upload", files={"file": (f"{marker}.md", text.encode())})
    assert started.status_code == 200, started.text
    assert (await wait_operation(api.client, started.json()["progressId"]))["status"] == "completed"
    query = {"query": f"{marker} lamp wick", "match_count": 10}

    unbounded = await api.client.post("/api/rag/query", json={**query, "rerank_budget_ms": -1})
    assert unbounded.status_code == 200, unbounded.text
    body = unbounded.json()
    assert body["rerank_budget_ms"] is None and body["reranking_applied"] is True
    assert body["rerank_candidates"] >= 1 and body["reranked_count"] == body["rerank_candidates"]
    assert isinstance(body["rerank_ms"], float)

    default = (await api.client.post("/api/rag/query", json=query)).json()
    assert default["rerank_budget_ms"] == CPU_BUDGET_MS  # RERANK_BUDGET_MS=0 (auto) on a CPU
    chosen = (await api.client.post("/api/rag/query", json={**query, "rerank_budget_ms": 12_345})).json()
    assert chosen["rerank_budget_ms"] == 12_345
    assert 0 <= chosen["reranked_count"] <= chosen["rerank_candidates"]

    for bad in (-2, MAX_BUDGET_MS + 1, 10**30, "soon", 1.5):
        refused = await api.client.post("/api/rag/query", json={**query, "rerank_budget_ms": bad})
        assert refused.status_code == 422, (bad, refused.text)
        assert "rerank_budget_ms" in refused.text
