"""Our OpenAI and Cohere clients against a real Infinity server (infinity-emb, on CPU), no stand-in.

Infinity serves the test all-MiniLM-L6-v2 and the tiny classic cross-encoder of the model fixtures from
their folders; its venv is built by tests/support/infinity_env.sh (INFINITY_VENV, default
~/.cache/ragserver/infinity-venv; ./run-tests.sh builds it when RAGSERVER_INFINITY=1) and these tests skip,
saying so, until it exists. The numbers must be the ones our local models compute; then the server ingests
and answers through it end to end.
"""

from __future__ import annotations

import dataclasses
import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.api_fixtures import free_port, running_app
from support.infinity import VENV, binary, running_infinity
from support.polling import wait_operation

from ragserver.config import Settings
from ragserver.ml.loading import choose_placement
from ragserver.ml.remote_embedder import OpenAIEmbedder
from ragserver.ml.remote_http import RemoteServer
from ragserver.ml.remote_reranker import RemoteReranker
from ragserver.ml.reranker import load_reranker

MISSING = f"no Infinity venv at {VENV}: build it with tests/support/infinity_env.sh"
if not binary().exists() and os.environ.get("RAGSERVER_INFINITY") == "1":
    # ./run-tests.sh built it when RAGSERVER_INFINITY=1 (CI sets it): there a missing server is a failure, not a skip
    pytest.fail(MISSING, pytrace=False)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not binary().exists(), reason=MISSING)]
PAIRS = [
    ("what stores vectors in Postgres?", "pgvector adds a vector column type to Postgres."),
    ("what stores vectors in Postgres?", "The quick brown fox jumps over the lazy dog."),
    ("which language is for systems?", "Rust is a systems programming language."),
]


@pytest.fixture(scope="module")
def infinity(minilm_dir: Path, tiny_cross_encoder_dir: Path) -> Iterator[str]:
    """Infinity serving `minilm` and `tiny-ce`; yields its /v1 base URL."""
    with running_infinity({"minilm": minilm_dir, "tiny-ce": tiny_cross_encoder_dir}, free_port()) as base_url:
        yield base_url


def _server(url: str, role: str) -> RemoteServer:
    return RemoteServer(role, url, "", timeout_s=60, retries=0)


def test_infinity_embeddings_are_the_local_minilm_vectors(infinity: str, minilm_embed) -> None:
    embedder = OpenAIEmbedder(_server(infinity, "embedding"), "minilm", batch_size=2)
    assert embedder.probe() == 384
    texts = [document for _, document in PAIRS]
    for remote, local in zip(embedder.embed(texts), minilm_embed(texts), strict=True):
        assert sum(a * b for a, b in zip(remote, local, strict=True)) > 0.999


def test_infinity_rerank_scores_are_the_local_cross_encoder_scores(infinity: str, tiny_cross_encoder_dir: Path) -> None:
    remote = RemoteReranker(_server(infinity, "rerank"), "tiny-ce", "cohere", batch_size=8).score(PAIRS)
    local = load_reranker("tiny-ce", tiny_cross_encoder_dir, choose_placement("cpu")).score(PAIRS)
    for mine, theirs in zip(local, remote, strict=True):
        assert math.isclose(mine, theirs, abs_tol=1e-3), (local, remote)


async def test_the_server_ingests_and_answers_through_infinity(
    infinity: str, pg_settings: Settings, tmp_path: Path
) -> None:
    settings = dataclasses.replace(
        pg_settings,
        embedding_backend="openai",
        embedding_url=infinity,
        embedding_model="minilm",
        rerank_backend="cohere",
        rerank_url=infinity,
        reranker_model="tiny-ce",
        use_reranking=True,
        ml_user_base=tmp_path / "no-ml-env",
    )
    marker = f"inf{uuid.uuid4().hex[:10]}"
    document = f"# Notes\n\n## Lamps\n\nThe {marker} lamp burns whale oil.\n\n## Soil\n\nTomatoes like sun.\n"
    async with running_app(settings) as running:
        health = (await running.client.get("/health")).json()
        assert health["status"] == "ok" and health["ml"]["env"]["state"] == "not_needed", health
        upload = await running.client.post("/api/documents/upload", files={"file": (f"{marker}.md", document)})
        assert (await wait_operation(running.client, upload.json()["progressId"]))["status"] == "completed"
        answer = (await running.client.post("/api/rag/query", json={"query": "what does the lamp burn?"})).json()
    assert answer["search_mode"] == "hybrid" and answer["reranking_applied"] is True, answer
    assert any(marker in result["content"] for result in answer["results"])
    assert all(0 <= result["rerank_score"] <= 1 for result in answer["results"])
