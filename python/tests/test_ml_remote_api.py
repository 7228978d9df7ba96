"""The server with remote models, through its API, on the real embedded Postgres; the models are served by
the model-server STAND-IN (support.remote_standin: OpenAI's /v1/embeddings and Cohere's /rerank shapes,
real MiniLM numbers), standing in for Infinity / vLLM / Ollama, which cannot run in this test tier.

End to end without any ML env (torch is blocked, as in the slim image), then the faults: a failing
backend makes searches fall back and /health say why; an ingest fails its run and nothing of it shows;
a server down at start is probed again; a changed model goes through the re-embed flow.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
import test_degraded
from support.api_fixtures import running_app, serve_subprocess, wait_for_health
from support.polling import apoll_until, wait_operation, wait_operation_sync
from support.remote_standin import ModelServerStandin

from ragserver.config import Settings
from ragserver.domain import Document, SourceInfo
from ragserver.errors import RemoteModelError

pytestmark = pytest.mark.slow
torch_blocked = test_degraded.torch_blocked  # the fixture: torch not importable, as in the slim image

EMBED_KEY = "sk-embed-standin-0123456789"
RERANK_KEY = "rk-rerank-standin-0123456789"
DOCUMENT = """# Lighthouse keeping

## Lamps

The {marker} lighthouse lamp burns whale oil and is trimmed every four hours.

## Gardens

Tomatoes grow best in full sun with deep, infrequent watering.
"""


async def upload_document(client: httpx.AsyncClient, marker: str) -> dict:
    """Upload DOCUMENT with `marker` in it and wait for its operation to end; returns its final state."""
    upload = await client.post(
        "/api/documents/upload", files={"file": (f"{marker}.md", DOCUMENT.format(marker=marker))}
    )
    assert upload.status_code == 200, upload.text
    return await wait_operation(client, upload.json()["progressId"])


def remote_settings(base: Settings, standin: ModelServerStandin, tmp_path: Path, **changes: object) -> Settings:
    """Both models remote on the stand-in; ML_USER_BASE an empty folder (there is no ML env)."""
    return dataclasses.replace(
        base,
        embedding_backend="openai",
        embedding_url=f"{standin.base_url}/v1",
        embedding_api_key=EMBED_KEY,
        embedding_model="all-minilm-remote",
        rerank_backend="cohere",
        rerank_url=f"{standin.base_url}/v1",
        rerank_api_key=RERANK_KEY,
        reranker_model="minilm-cosine-reranker",
        use_reranking=True,
        ml_user_base=tmp_path / "no-ml-env",
        # each request asks the server (the cooldown has its own test)
        **{"remote_retries": 1, "remote_timeout_s": 10.0, "remote_cooldown_s": 0.0, **changes},
    )


def test_slim_server_with_both_models_remote_needs_no_ml_env(
    pg_settings: Settings, standin: ModelServerStandin, tmp_path: Path, torch_blocked: dict[str, str]
) -> None:
    settings = remote_settings(pg_settings, standin, tmp_path)
    marker = f"rem{uuid.uuid4().hex[:10]}"
    with serve_subprocess(settings, torch_blocked) as base_url:
        health = wait_for_health(
            base_url,
            lambda r: r.status_code == 200 and r.json()["ml"]["reranker"]["state"] not in ("loading", "not_started"),
        )
        assert health["status"] == "ok" and health["issues"] == [], health
        assert health["ml"]["env"]["state"] == "not_needed", health["ml"]["env"]
        embedder, reranker = health["ml"]["embedder"], health["ml"]["reranker"]
        assert embedder["state"] == "ready" and embedder["reason"] is None
        assert (embedder["backend"], embedder["url"], embedder["dimension"]) == (
            "openai",
            f"{standin.base_url}/v1",
            384,
        )
        assert (reranker["state"], reranker["backend"], reranker["kind"]) == ("ready", "cohere", "remote-cohere")
        assert EMBED_KEY not in json.dumps(health) and RERANK_KEY not in json.dumps(health)

        with httpx.Client(base_url=base_url, timeout=60) as client:
            upload = client.post(
                "/api/documents/upload", files={"file": (f"{marker}.md", DOCUMENT.format(marker=marker))}
            )
            assert upload.status_code == 200, upload.text
            assert wait_operation_sync(client, upload.json()["progressId"])["status"] == "completed"
            answer = client.post("/api/rag/query", json={"query": "how is the lighthouse lamp fuelled?"}).json()
        assert answer["search_mode"] == "hybrid" and answer["reranking_applied"] is True, answer
        assert answer["embedding_model"] == "all-minilm-remote" and answer["reranker_model"] == "minilm-cosine-reranker"
        top = answer["results"][0]
        assert marker in top["content"] and top["similarity"] > 0.3 and 0 <= top["rerank_score"] <= 1, top
        health = httpx.get(f"{base_url}/health").json()
        assert {"model": "all-minilm-remote", "dimension": 384} in health["database"]["embedding_spaces"]
    auth = {seen.authorization for seen in standin.requests}
    assert auth == {f"Bearer {EMBED_KEY}", f"Bearer {RERANK_KEY}"}


async def test_failing_backends_make_searches_fall_back_and_health_say_why(
    pg_settings: Settings, standin: ModelServerStandin, tmp_path: Path
) -> None:
    settings = remote_settings(pg_settings, standin, tmp_path)
    marker = f"fb{uuid.uuid4().hex[:10]}"
    async with running_app(settings) as running:
        client = running.client
        assert (await upload_document(client, marker))["status"] == "completed"

        standin.faults.extend(["nan", "500"])  # the query's embedding is garbage; the rerank fails (not retried)
        answer = (await client.post("/api/rag/query", json={"query": f"{marker} lighthouse lamp"})).json()
        assert answer["search_mode"] == "full_text_fallback", answer
        assert answer["reranking_applied"] is False and answer["rerank_skipped"] == "error", answer
        assert marker in answer["results"][0]["content"]  # full text still finds it
        health = (await client.get("/health")).json()
        assert health["status"] == "degraded", health
        embedder, reranker = health["ml"]["embedder"], health["ml"]["reranker"]
        assert embedder["state"] == "error" and "answered garbage" in embedder["reason"]
        assert reranker["state"] == "error" and "HTTP 500" in reranker["reason"]
        assert any(standin.base_url in issue and issue.startswith("embedder error") for issue in health["issues"])

        answer = (await client.post("/api/rag/query", json={"query": f"{marker} lighthouse lamp"})).json()
        assert answer["search_mode"] == "hybrid" and answer["reranking_applied"] is True, answer
        health = (await client.get("/health")).json()
        assert health["status"] == "ok" and health["ml"]["embedder"]["state"] == "ready", health


@pytest.mark.parametrize(("hanging", "faults"), [("query embed", ["timeout"]), ("rerank", ["ok", "timeout"])])
async def test_a_server_that_holds_a_search_s_request_costs_it_only_its_query_budget(
    pg_settings: Settings, standin: ModelServerStandin, tmp_path: Path, hanging: str, faults: list[str]
) -> None:
    """Ingest's budget (REMOTE_TIMEOUT_S x retries) is far beyond the guard's deadline: only the query budget
    lets the search answer, while the stand-in still holds the request, and the next search be served."""
    settings = remote_settings(
        pg_settings, standin, tmp_path, remote_timeout_s=600.0, remote_retries=3, remote_query_timeout_s=1.0
    )
    marker = f"hang{uuid.uuid4().hex[:10]}"
    async with running_app(settings) as running:
        client = running.client
        assert (await upload_document(client, marker))["status"] == "completed"

        standin.faults.extend(faults)
        query = {"query": f"{marker} lighthouse lamp"}
        async with asyncio.timeout(120):  # a guard against a hang, not a measurement
            answer = (await client.post("/api/rag/query", json=query)).json()
            assert standin.holding == 1, "the stand-in answered the held request"
            if hanging == "query embed":
                assert answer["search_mode"] == "full_text_fallback", answer
            else:
                assert answer["search_mode"] == "hybrid" and answer["rerank_skipped"] == "error", answer
            assert marker in answer["results"][0]["content"]
            model = "embedder" if hanging == "query embed" else "reranker"
            reason = (await client.get("/health")).json()["ml"][model]["reason"]
            assert "no answer within 1 s (REMOTE_QUERY_TIMEOUT_S) (1 attempt)" in reason, reason

            answer = (await client.post("/api/rag/query", json=query)).json()  # the inference thread is free
        assert answer["search_mode"] == "hybrid" and answer["reranking_applied"] is True, answer
        assert standin.holding == 1


async def test_an_ingest_whose_embeddings_fail_fails_its_run_and_nothing_of_it_shows(
    pg_settings: Settings, standin: ModelServerStandin, tmp_path: Path
) -> None:
    settings = remote_settings(pg_settings, standin, tmp_path, ingest_batch_size=1)
    marker = f"ing{uuid.uuid4().hex[:10]}"
    async with running_app(settings) as running:
        ingest, tracker = running.runtime.services.ingest, running.runtime.tracker
        source = SourceInfo(source_id=f"remote-fail-{marker}", title="fails", origin=f"test:{marker}")
        docs = [
            Document(url=f"test://{marker}/{i}", title=f"Doc {i}", markdown=f"# Doc {i}\n\n{marker} words {i}.")
            for i in range(3)
        ]
        standin.faults.extend(["ok", "500", "500"])  # the first document's chunks embed, the second's fail
        with pytest.raises(RemoteModelError, match=r"the embedding server at .* failed: HTTP 500"):
            await ingest.ingest_documents(source, docs, tracker.start("ingest"), "ingest")
        ingest_requests = len(standin.inputs_per_request("/v1/embeddings"))
        answer = (await running.client.post("/api/rag/query", json={"query": f"{marker} words"})).json()
        assert answer["results"] == [], answer
    with psycopg.connect(settings.database_url) as conn:
        runs = conn.execute("SELECT status, error FROM rag_runs WHERE source_id = %s", [source.source_id]).fetchall()
        chunks = conn.execute(
            "SELECT count(*) FROM rag_chunks c JOIN rag_runs r USING (run_id) WHERE r.source_id = %s",
            [source.source_id],
        ).fetchone()
        active = conn.execute(
            "SELECT active_run_id FROM rag_sources WHERE source_id = %s", [source.source_id]
        ).fetchone()
    [(status, error)] = runs
    assert status == "failed" and "HTTP 500" in error, runs
    assert active is None or active[0] is None, active  # the run was never published
    assert chunks == (0,)  # the first document's chunks, written before the failure, went with the failed run
    assert ingest_requests == 1 + 3  # the probe; doc 1; doc 2 twice (one retry); never doc 3


async def test_an_embedding_server_down_at_start_is_probed_until_it_answers(
    pg_settings: Settings, standin: ModelServerStandin, tmp_path: Path
) -> None:
    settings = remote_settings(pg_settings, standin, tmp_path)
    marker = f"late{uuid.uuid4().hex[:10]}"
    standin.down()
    async with running_app(settings) as running:
        client = running.client
        health = (await client.get("/health")).json()
        embedder = health["ml"]["embedder"]
        assert health["status"] == "degraded" and embedder["state"] == "failed", embedder
        assert "unreachable" in embedder["reason"] and embedder["url"] == f"{standin.base_url}/v1"
        assert embedder["retry_in_s"] > 0
        reranker = health["ml"]["reranker"]
        assert reranker["state"] == "error" and "unreachable" in reranker["reason"], reranker

        done = await upload_document(client, marker)
        assert done["status"] == "completed" and done["result"]["chunks_unembedded"] >= 1, done
        answer = (await client.post("/api/rag/query", json={"query": f"{marker} lamp", "rerank": False})).json()
        assert answer["search_mode"] == "full_text_fallback" and marker in answer["results"][0]["content"], answer

        standin.up()
        store = running.runtime.store
        await apoll_until(
            store.embedding_counts,
            lambda counts: counts.get("all-minilm-remote", 0) >= done["result"]["chunks_unembedded"],
            what="the chunks stored while the server was down, embedded once it answers",
        )
        answer = (await client.post("/api/rag/query", json={"query": f"{marker} lamp"})).json()
        assert answer["search_mode"] == "hybrid" and answer["reranking_applied"] is True, answer


async def test_a_changed_remote_model_goes_through_the_reembed_flow(
    pg_settings: Settings, standin: ModelServerStandin, tmp_path: Path
) -> None:
    first = remote_settings(pg_settings, standin, tmp_path)
    marker = f"swap{uuid.uuid4().hex[:10]}"
    async with running_app(first) as running:
        assert (await upload_document(running.client, marker))["status"] == "completed"
        stored = (await running.runtime.store.embedding_counts())["all-minilm-remote"]

    second = dataclasses.replace(first, embedding_model="all-minilm-remote-v2")
    async with running_app(second) as running:
        counts = await apoll_until(
            running.runtime.store.embedding_counts,
            lambda counts: counts.get("all-minilm-remote-v2", 0) >= stored,
            what="every chunk embedded under the new model name",
        )
        assert counts["all-minilm-remote"] == stored  # the old space stays until its vectors are dropped
        models = {seen.body.get("model") for seen in standin.requests if seen.path == "/v1/embeddings"}
        assert models == {"all-minilm-remote", "all-minilm-remote-v2"}
        answer = (await running.client.post("/api/rag/query", json={"query": f"{marker} lighthouse lamp"})).json()
        assert answer["search_mode"] == "hybrid" and answer["embedding_model"] == "all-minilm-remote-v2"
