"""Degraded mode: `ragserver serve` where the ML stack is not importable still ingests and answers.

A `torch` package that raises ModuleNotFoundError on import sits first on PYTHONPATH, which is
what the slim image looks like without the ./ml-env mount; ML_USER_BASE points at an empty folder
(no ml-env.json).
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import httpx
import pytest
from support.api_fixtures import serve_subprocess, wait_for_health
from support.polling import wait_operation_sync

pytestmark = pytest.mark.slow

BLOCKER = 'raise ModuleNotFoundError("No module named \'torch\' (blocked by the degraded-mode test)", name="torch")\n'


@pytest.fixture
def torch_blocked(tmp_path: Path) -> dict[str, str]:
    package = tmp_path / "blocker" / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(BLOCKER)
    return {"PYTHONPATH": str(tmp_path / "blocker")}


def test_server_without_ml_stack_ingests_and_answers_with_full_text(pg_settings, tmp_path, torch_blocked) -> None:
    settings = dataclasses.replace(pg_settings, ml_user_base=tmp_path / "no-ml-env")
    marker = f"deg{uuid.uuid4().hex[:10]}"
    with serve_subprocess(settings, torch_blocked) as base_url:
        health = wait_for_health(
            base_url, lambda r: r.status_code == 200 and r.json()["ml"]["env"]["state"] != "not_started"
        )
        assert health["status"] == "degraded", health
        assert health["database"]["state"] == "ready"
        env = health["ml"]["env"]
        assert env["state"] == "missing" and "torch" in env["reason"], env
        assert env["fix"] == "./bootstrap-ml-env.sh"
        assert any("./bootstrap-ml-env.sh" in issue for issue in health["issues"])
        assert health["ml"]["embedder"]["state"] != "ready" and health["ml"]["reranker"]["state"] != "ready"

        with httpx.Client(base_url=base_url, timeout=60) as client:
            document = f"# {marker} notes\n\nThe {marker} lantern burns whale oil slowly.\n"
            started = client.post("/api/documents/upload", files={"file": (f"{marker}.md", document.encode())})
            assert started.status_code == 200, started.text
            progress_id = started.json()["progressId"]
            state = wait_operation_sync(client, progress_id)
            assert state["status"] == "completed", state

            sources = client.get("/api/rag/sources").json()["sources"]
            [source] = [s for s in sources if marker in str(s)]
            assert source["chunk_count"] >= 1

            answer = client.post("/api/rag/query", json={"query": f"{marker} lantern"}).json()
            assert answer["search_mode"] == "full_text" and answer["reranking_applied"] is False, answer
            assert answer["rerank_skipped"] == "unavailable", answer  # says why, without waiting for a reranker
            top = answer["results"][0]
            assert marker in top["content"]
            assert top["similarity"] is None and top["vector_rank"] is None  # found by full text only
            assert top["fused_score"] > 0 and top["rerank_score"] is None

            embed = client.post("/api/ml/embed", json={"texts": ["x"]})
            assert embed.status_code == 503 and embed.json()["error"] == "unavailable"
