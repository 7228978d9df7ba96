"""MLService with the real models: MiniLM from its package, the tiny Qwen3 reranker from the fixture."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.models import install_in_hf_cache

from ragserver.config import Settings
from ragserver.errors import Unavailable
from ragserver.ml.check import run_check
from ragserver.ml.service import MLService, estimate_tokens

TEXTS = ["Postgres stores vectors with pgvector.", "A reranker scores query-document pairs.", "short"]


async def test_status_reports_ready_models(ml_service: MLService, ml_settings: Settings) -> None:
    status = ml_service.status()
    assert status["env"]["state"] == "ready" and "no ml-env.json" in status["env"]["reason"]
    assert status["embedder"] == {
        "state": "ready",
        "reason": None,
        "model": ml_settings.embedding_model,
        "dimension": 384,
        "device": "cpu",
        "backend": "local",
        "url": None,
    }
    assert status["reranker"]["state"] == "ready" and status["reranker"]["kind"] == "causal-lm-yes-no"
    assert ml_service.embedder_ready and ml_service.reranker_ready
    assert ml_service.embedding_model == ml_settings.embedding_model
    json.dumps(status)  # /health serializes it as is


async def test_embeddings_have_the_models_dimension_and_unit_length(ml_service: MLService, minilm_dir: Path) -> None:
    config = json.loads((minilm_dir / "config.json").read_text())
    vectors = await ml_service.embed(TEXTS)
    assert ml_service.dimension == config["hidden_size"] == 384
    assert ml_service.max_seq_length == 256
    assert len(vectors) == len(TEXTS) and all(len(v) == 384 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, abs_tol=1e-5) for v in vectors)
    assert await ml_service.embed([]) == []


async def test_embeddings_match_sentence_transformers_and_ignore_batch_company(
    ml_service: MLService, minilm_dir: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    direct = SentenceTransformer(str(minilm_dir), device="cpu").encode(TEXTS, normalize_embeddings=True)
    together = await ml_service.embed(TEXTS)
    alone = [(await ml_service.embed([text]))[0] for text in TEXTS]
    for a, b, c in zip(direct.tolist(), together, alone, strict=True):
        assert a == pytest.approx(b, abs=1e-5) and b == pytest.approx(c, abs=1e-5)


async def test_concurrent_requests_are_batched_together(ml_service: MLService) -> None:
    before = ml_service.batches_run
    texts = [[f"request {i} text {j}" for j in range(3)] for i in range(8)]
    results = await asyncio.gather(*[ml_service.embed(t) for t in texts])
    assert [len(r) for r in results] == [3] * 8
    assert ml_service.batches_run["embedder"] - before["embedder"] <= 2  # 8 requests, 1-2 forward passes

    before = ml_service.batches_run
    scores = await asyncio.gather(*[ml_service.rerank(f"query {i}", ["doc one", "doc two"]) for i in range(6)])
    assert all(len(s) == 2 for s in scores)
    assert ml_service.batches_run["reranker"] - before["reranker"] <= 2
    alone = await ml_service.rerank("query 3", ["doc one", "doc two"])
    assert alone == pytest.approx(scores[3], abs=1e-5)


async def test_count_tokens_uses_the_embedding_tokenizer(ml_service: MLService, minilm_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    long_text = "tokens " * 400  # longer than max_seq_length: counted in full, not truncated
    expected = [len(tokenizer(t)["input_ids"]) for t in [*TEXTS, long_text]]
    assert ml_service.count_tokens([*TEXTS, long_text]) == expected
    assert expected[-1] > 256


async def test_not_started_service_is_unavailable_and_estimates_tokens(ml_settings: Settings) -> None:
    service = MLService(ml_settings)
    assert not service.embedder_ready and not service.reranker_ready
    assert service.dimension is None and service.max_seq_length is None
    assert (
        service.count_tokens(["abcdefgh", "abc", ""])
        == [2, 1, 0]
        == [estimate_tokens(t) for t in ("abcdefgh", "abc", "")]
    )
    with pytest.raises(Unavailable, match="embedder not ready"):
        await service.embed(["x"])
    with pytest.raises(Unavailable, match="reranker not ready"):
        await service.rerank("q", ["d"])
    assert service.status()["env"]["state"] == "not_started"


async def test_a_model_that_cannot_load_is_a_state_not_a_crash(ml_settings: Settings, tmp_path: Path) -> None:
    settings = dataclasses.replace(ml_settings, embedding_model=str(tmp_path / "no-such-model"), use_reranking=False)
    service = MLService(settings)
    await service.start()
    try:
        status = service.status()
        assert status["embedder"]["state"] == "failed"
        assert "no-such-model" in status["embedder"]["reason"]
        assert "bootstrap-ml-env.sh" in status["embedder"]["fix"]
        assert status["reranker"]["state"] == "disabled"
        with pytest.raises(Unavailable):
            await service.embed(["x"])
    finally:
        await service.stop()


async def test_a_classic_cross_encoder_serves_through_the_same_interface(
    ml_settings: Settings, tiny_cross_encoder_dir: Path
) -> None:
    service = MLService(dataclasses.replace(ml_settings, reranker_model=str(tiny_cross_encoder_dir)))
    await service.start()
    try:
        assert service.status()["reranker"]["kind"] == "cross-encoder"
        documents = ["vectors in Postgres", "a fox", "x " * 600]  # the last one exceeds 512 tokens
        scores = await service.rerank("pgvector", documents)
        assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
        direct = service.reranker.score([("pgvector", d) for d in documents])
        assert scores == pytest.approx(direct, abs=1e-5)
    finally:
        await service.stop()


async def test_incompatible_env_leaves_models_unloaded_with_the_fix(ml_settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "ml-env.json").write_text(json.dumps({"python": "2.7.18"}))
    service = MLService(dataclasses.replace(ml_settings, ml_user_base=tmp_path))
    await service.start()
    status = service.status()
    assert status["env"]["state"] == "incompatible"
    assert status["embedder"]["state"] == "unavailable" and "incompatible" in status["embedder"]["reason"]
    assert status["reranker"]["fix"] == "./bootstrap-ml-env.sh --force"
    with pytest.raises(Unavailable) as raised:
        await service.embed(["x"])
    assert raised.value.details == {"fix": "./bootstrap-ml-env.sh --force"}
    await service.stop()


def test_check_ml_reports_every_step(ml_settings: Settings) -> None:
    report = run_check(ml_settings)
    assert report["ok"] is True, report
    assert report["env"]["state"] == "ready"
    assert report["device"]["device"] == "cpu" and report["device"]["dtype"] == "float32"
    assert report["embedder"]["dimension"] == 384 and report["embedder"]["ok"]
    assert report["reranker"]["kind"] == "causal-lm-yes-no"
    assert 0.0 <= report["reranker"]["score"] <= 1.0
    assert isinstance(report["hf_cache"]["models"], list)
    json.dumps(report)


def test_default_model_ids_resolve_offline_from_hf_home(minilm_dir: Path, tiny_reranker_dir: Path, tmp_path) -> None:
    """The Docker shape: default settings (HF ids), models only in the HF cache mounted at HF_HOME."""
    hf_home = tmp_path / "hf"
    install_in_hf_cache(minilm_dir, hf_home, "sentence-transformers/all-MiniLM-L6-v2")
    install_in_hf_cache(tiny_reranker_dir, hf_home, "Qwen/Qwen3-Reranker-0.6B")
    defaults = Settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "EMBEDDING_", "RERANKER_", "ML_"))}
    env.update(HF_HOME=str(hf_home), ML_USER_BASE=str(tmp_path / "ml-env"), ML_DEVICE="cpu")
    code = "import json; from ragserver.config import get_settings; from ragserver.ml.check import run_check; "
    code += "print(json.dumps(run_check(get_settings())))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] is True, report
    assert report["embedder"]["model"] == defaults.embedding_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert report["reranker"]["model"] == defaults.reranker_model == "Qwen/Qwen3-Reranker-0.6B"
    assert report["embedder"]["path"].startswith(str(hf_home / "hub"))
    assert report["hf_cache"]["path"] == str(hf_home / "hub")
    cached = {row["repo_id"] for row in report["hf_cache"]["models"]}
    assert cached == {"sentence-transformers/all-MiniLM-L6-v2", "Qwen/Qwen3-Reranker-0.6B"}


def test_check_ml_names_the_failing_model(ml_settings: Settings, tmp_path: Path) -> None:
    report = run_check(dataclasses.replace(ml_settings, reranker_model=str(tmp_path / "absent")))
    assert report["ok"] is False
    assert report["embedder"]["ok"] is True
    assert report["reranker"]["ok"] is False and "absent" in report["reranker"]["error"]
