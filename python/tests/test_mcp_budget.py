"""RERANK_BUDGET_MS seen through MCP: what the budget let the reranker score is what the answer says and orders.

The budget's arithmetic is tested on a stepped clock in test_search_budget.py; here a real server
with the tiny real reranker shows the budget reaches the tool, and the answer's order rule:
the reranked candidates first by rerank score, the rest in fused order with no rerank score.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.api_fixtures import API_KEY, live_server
from support.mcp_client import call, http_session
from support.mcp_fixtures import mcp_settings, uploaded

from ragserver.config import Settings

pytestmark = pytest.mark.timeout(300)

QUERY = {"query": "indexes quokka zebra migration", "return_mode": "chunks", "match_count": 50}


def check_order(answer: dict[str, Any]) -> int:
    """The reranked prefix is sorted by rerank score and the rest has none; returns its length."""
    stages = answer["stages"]
    scores = [hit["rerank_score"] for hit in answer["results"]]
    reranked = [score for score in scores if score is not None]
    assert scores[: len(reranked)] == sorted(reranked, reverse=True)
    assert all(score is None for score in scores[len(reranked) :])
    assert len(reranked) == stages["reranked_count"] <= stages["rerank_candidates"]
    return len(reranked)


async def test_without_a_budget_every_candidate_is_reranked(api_settings: Settings) -> None:
    async with live_server(mcp_settings(api_settings, rerank_budget_ms=-1)) as server:
        await uploaded(server)
        async with http_session(server.base_url, API_KEY) as client:
            answer = await call(client, "rag_search_knowledge_base", QUERY)
    stages = answer["stages"]
    assert stages["rerank_budget_ms"] is None and stages["reranking_applied"] is True
    assert stages["rerank_candidates"] > 3
    assert check_order(answer) == stages["rerank_candidates"]


async def test_a_budget_stops_the_reranking_and_the_rest_keeps_fused_order(api_settings: Settings) -> None:
    # 1 ms is less than counting the candidates' tokens and one forward pass take on any machine:
    # the reranking stops long before the candidates run out
    async with live_server(mcp_settings(api_settings, rerank_budget_ms=1)) as server:
        await uploaded(server)
        async with http_session(server.base_url, API_KEY) as client:
            answer = await call(client, "rag_search_knowledge_base", QUERY)
    stages = answer["stages"]
    assert stages["rerank_budget_ms"] == 1 and stages["rerank_candidates"] > 3
    reranked = check_order(answer)
    assert reranked < stages["rerank_candidates"]
    assert stages["reranking_applied"] is (reranked > 0)
    fused = [hit["fused_score"] for hit in answer["results"][reranked:]]
    assert fused == sorted(fused, reverse=True)
