"""The remote model clients against a real HTTP server: the model-server STAND-IN (support.remote_standin),
standing in for OpenAI, Ollama, Cohere and TEI, which cannot run here; it computes real MiniLM numbers.

Shapes (index order, Ollama's OpenAI-compatible endpoint, Cohere's and TEI's /rerank), the key sent as a
bearer token, and the faults: down, 500 then ok (retried), timeout, garbage, 401 (not retried), 413 (split).
"""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
from support.remote_standin import ModelServerStandin

from ragserver.config import Settings
from ragserver.errors import ConfigError, RemoteModelError
from ragserver.logredact import configured_secrets
from ragserver.ml.check import run_check
from ragserver.ml.remote_backends import local_env_needed, remote_embedder, remote_reranker
from ragserver.ml.remote_embedder import OpenAIEmbedder
from ragserver.ml.remote_http import RemoteServer, public_url
from ragserver.ml.remote_reranker import RemoteReranker

KEY = "sk-standin-0123456789"
TEXTS = ["Postgres stores vectors with pgvector.", "The quick brown fox jumps.", "Rust is a systems language."]


def _server(standin: ModelServerStandin, path: str, *, retries: int = 2, timeout_s: float = 5.0) -> RemoteServer:
    return RemoteServer("embedding", standin.base_url + path, KEY, timeout_s=timeout_s, retries=retries)


def _embedder(standin: ModelServerStandin, *, batch_size: int = 64, **server: float) -> OpenAIEmbedder:
    return OpenAIEmbedder(_server(standin, "/v1", **server), "all-minilm", batch_size=batch_size)  # type: ignore[arg-type]


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("flavour", ["openai", "ollama"])
def test_embeddings_come_back_in_input_order_as_the_local_model_computes_them(
    standin: ModelServerStandin, minilm_embed, flavour: str
) -> None:
    standin.flavour = flavour
    embedder = _embedder(standin)
    assert embedder.probe() == 384
    vectors = embedder.embed(TEXTS)
    for remote, local in zip(vectors, minilm_embed(TEXTS), strict=True):
        assert _cosine(remote, local) > 0.9999
        assert math.isclose(math.sqrt(_cosine(remote, remote)), 1.0, rel_tol=1e-6)
    seen = standin.requests[-1]
    assert seen.path == "/v1/embeddings" and seen.authorization == f"Bearer {KEY}"
    assert seen.body == {"model": "all-minilm", "input": TEXTS, "encoding_format": "float"}


def test_a_500_is_retried_and_then_answers(standin: ModelServerStandin) -> None:
    embedder = _embedder(standin)
    standin.faults.extend(["500", "500"])
    assert len(embedder.embed(TEXTS)) == 3
    assert standin.inputs_per_request("/v1/embeddings") == [3, 3, 3]
    assert embedder.server.failure is None


def test_a_server_that_keeps_failing_fails_after_its_retries_and_says_so_until_it_recovers(
    standin: ModelServerStandin,
) -> None:
    embedder = _embedder(standin, retries=1)
    standin.faults.extend(["500", "500"])
    with pytest.raises(RemoteModelError, match=r"HTTP 500.*\(2 attempts\)") as caught:
        embedder.embed(TEXTS)
    assert standin.base_url in caught.value.message and caught.value.status_code == 502
    assert embedder.server.failure == caught.value.message
    embedder.embed(TEXTS)
    assert embedder.server.failure is None


def test_after_a_failure_the_server_is_not_asked_again_for_the_cooldown(standin: ModelServerStandin) -> None:
    server = RemoteServer("embedding", f"{standin.base_url}/v1", KEY, timeout_s=5, retries=0, cooldown_s=3600)
    embedder = OpenAIEmbedder(server, "all-minilm", batch_size=8)
    standin.faults.append("500")
    with pytest.raises(RemoteModelError, match="HTTP 500"):
        embedder.embed(TEXTS)
    with pytest.raises(RemoteModelError, match=r"HTTP 500.*not asked again for REMOTE_COOLDOWN_S=3600 s"):
        embedder.embed(TEXTS)
    assert len(standin.requests) == 1


def test_a_server_that_is_down_is_unreachable(standin: ModelServerStandin) -> None:
    embedder = _embedder(standin, retries=1)
    standin.down()
    with pytest.raises(RemoteModelError, match="unreachable"):
        embedder.probe()
    standin.up()
    assert embedder.probe() == 384


def test_a_server_that_does_not_answer_times_out(standin: ModelServerStandin) -> None:
    embedder = _embedder(standin, retries=0, timeout_s=0.5)
    standin.faults.append("timeout")
    with pytest.raises(RemoteModelError, match=r"no answer within 0.5 s \(REMOTE_TIMEOUT_S\)"):
        embedder.embed(TEXTS)


def test_a_search_s_call_is_tried_once_within_its_own_budget_and_its_failure_does_not_stop_ingest(
    standin: ModelServerStandin,
) -> None:
    server = RemoteServer(
        "embedding", f"{standin.base_url}/v1", KEY, timeout_s=30, retries=2, cooldown_s=3600, query_timeout_s=0.5
    )
    embedder = OpenAIEmbedder(server, "all-minilm", batch_size=8)
    standin.faults.append("timeout")
    with pytest.raises(RemoteModelError, match=r"no answer within 0.5 s \(REMOTE_QUERY_TIMEOUT_S\) \(1 attempt\)"):
        embedder.embed(TEXTS[:1], quick=True)
    with pytest.raises(RemoteModelError, match="not asked again for REMOTE_COOLDOWN_S"):
        embedder.embed(TEXTS[:1], quick=True)
    assert len(standin.requests) == 1 and standin.holding == 1
    standin.faults.append("500")
    assert len(embedder.embed(TEXTS)) == 3  # ingest: asked despite the search's failure, and retried
    assert standin.inputs_per_request("/v1/embeddings") == [1, 3, 3] and server.failure is None
    assert len(embedder.embed(TEXTS[:1], quick=True)) == 1  # the server answered: searches ask it again


def test_a_401_is_not_retried(standin: ModelServerStandin) -> None:
    embedder = _embedder(standin, retries=3)
    standin.faults.append("401")
    with pytest.raises(RemoteModelError, match="HTTP 401") as caught:
        embedder.embed(TEXTS)
    assert len(standin.requests) == 1
    assert KEY not in caught.value.message and "Bearer ***" in caught.value.message  # the server echoed it


def test_the_url_s_query_string_goes_with_every_request_and_is_never_shown(standin: ModelServerStandin) -> None:
    """A gateway (Azure-style) wants `?api-version=` on each call; a `key=` there is a secret like the key."""
    server = RemoteServer(
        "embedding", f"{standin.base_url}/v1/?api-version=2024-02-01&key=gw-secret-42", KEY, timeout_s=5, retries=0
    )
    embedder = OpenAIEmbedder(server, "all-minilm", batch_size=8)
    assert embedder.probe() == 384
    assert standin.requests[-1].path == "/v1/embeddings"
    assert standin.requests[-1].query == {"api-version": "2024-02-01", "key": "gw-secret-42"}
    assert server.url == f"{standin.base_url}/v1"
    standin.faults.append("401")
    with pytest.raises(RemoteModelError, match="HTTP 401") as caught:
        embedder.embed(TEXTS)
    assert "/v1/embeddings?" in caught.value.message, "the server echoed the query string"
    assert "gw-secret-42" not in caught.value.message and KEY not in caught.value.message


@pytest.mark.parametrize("garbage", ["not_json", "no_data", "wrong_count", "nan", "wrong_dimension"])
def test_garbage_is_refused_not_stored(standin: ModelServerStandin, garbage: str) -> None:
    embedder = _embedder(standin, retries=3)
    embedder.probe()
    standin.faults.append(garbage)
    with pytest.raises(RemoteModelError, match="answered garbage"):
        embedder.embed(TEXTS)
    assert len(standin.requests) == 2  # the probe and the one garbage answer: garbage is not retried
    assert "garbage" in (embedder.server.failure or "")


def test_an_oversized_batch_is_halved_until_the_server_takes_it(standin: ModelServerStandin, minilm_embed) -> None:
    standin.max_batch = 3
    texts = [f"text number {i} about vectors" for i in range(10)]
    vectors = _embedder(standin, batch_size=8).embed(texts)
    for remote, local in zip(vectors, minilm_embed(texts), strict=True):
        assert _cosine(remote, local) > 0.9999
    # 8 -> 413 -> 4 -> 413 -> 2 + 2, 4 -> 413 -> 2 + 2; then the last 2
    assert standin.inputs_per_request("/v1/embeddings") == [8, 4, 2, 2, 4, 2, 2, 2]


def test_a_single_text_too_large_is_an_error(standin: ModelServerStandin) -> None:
    standin.max_batch = 0
    with pytest.raises(RemoteModelError, match="413"):
        _embedder(standin).embed(["one"])


PAIRS = [
    ("what stores vectors?", "Postgres stores vectors with pgvector."),
    ("what stores vectors?", "The quick brown fox jumps."),
    ("which language is for systems?", "Rust is a systems language."),
    ("what stores vectors?", "Rust is a systems language."),
]


@pytest.mark.parametrize(("backend", "path"), [("cohere", "/v1"), ("tei", "/tei")])
def test_rerank_scores_map_back_to_their_pairs(standin: ModelServerStandin, minilm_embed, backend, path) -> None:
    reranker = RemoteReranker(_server(standin, path), "tiny-ce", backend, batch_size=2)
    scores = reranker.score(PAIRS)
    for (query, document), score in zip(PAIRS, scores, strict=True):
        q, d = minilm_embed([query, document])
        assert math.isclose(score, (1 + _cosine(q, d)) / 2, abs_tol=1e-4)
    assert scores[0] > scores[1]
    # grouped by query, RERANK_BATCH_SIZE documents a request
    assert standin.inputs_per_request(f"{path}/rerank") == [2, 1, 1]
    body = standin.requests[0].body
    if backend == "cohere":
        assert body["model"] == "tiny-ce" and body["documents"] == [PAIRS[0][1], PAIRS[1][1]]
    else:
        assert body["texts"] == [PAIRS[0][1], PAIRS[1][1]] and "model" not in body


@pytest.mark.parametrize("garbage", ["wrong_count", "nan", "not_json"])
def test_rerank_garbage_is_an_error(standin: ModelServerStandin, garbage: str) -> None:
    reranker = RemoteReranker(_server(standin, "/v1"), "tiny-ce", "cohere", batch_size=8)
    standin.faults.append(garbage)
    with pytest.raises(RemoteModelError, match="garbage"):
        reranker.score(PAIRS)


def test_settings_refuse_a_remote_backend_without_its_url() -> None:
    with pytest.raises(ConfigError, match="EMBEDDING_BACKEND=openai needs EMBEDDING_URL"):
        Settings(embedding_backend="openai")
    with pytest.raises(ConfigError, match="RERANK_BACKEND=tei needs RERANK_URL"):
        Settings.from_env({"RERANK_BACKEND": "tei"})
    with pytest.raises(ConfigError, match=re.escape("RERANK_BACKEND must be one of local | cohere | tei, got 'jina'")):
        Settings(rerank_backend="jina")
    with pytest.raises(ConfigError, match="REMOTE_TIMEOUT_S"):
        Settings(remote_timeout_s=0)


def test_remote_settings_build_remote_models_and_keep_keys_secret() -> None:
    settings = Settings(
        embedding_backend="openai",
        embedding_url="http://user:pw-in-url-123@gpu-box:7997/v1/",
        embedding_api_key=KEY,
        rerank_backend="cohere",
        rerank_url="http://gpu-box:7997/v1",
        rerank_api_key="rk-standin-9876543210",
    )
    embedder, reranker = remote_embedder(settings), remote_reranker(settings)
    assert embedder is not None and embedder.server.url == "http://gpu-box:7997/v1"
    assert reranker is not None and reranker.kind == "remote-cohere"
    assert not local_env_needed(settings)
    assert local_env_needed(dataclasses.replace(settings, rerank_backend="local"))
    assert not local_env_needed(dataclasses.replace(settings, rerank_backend="local", use_reranking=False))
    assert {KEY, "rk-standin-9876543210", "pw-in-url-123"} <= set(configured_secrets(settings))
    with_query = dataclasses.replace(settings, rerank_url="http://gpu-box:7997/v1?api-version=1&key=gw-secret-42")
    assert "gw-secret-42" in configured_secrets(with_query) and "1" not in configured_secrets(with_query)
    assert public_url("https://a:b@[::1]:8443/v1/") == "https://[::1]:8443/v1"


def test_check_ml_checks_remote_models_against_their_servers(standin: ModelServerStandin, tmp_path) -> None:
    settings = Settings(
        embedding_backend="openai",
        embedding_url=f"{standin.base_url}/v1",
        rerank_backend="tei",
        rerank_url=f"{standin.base_url}/tei",
        remote_retries=0,
        ml_user_base=tmp_path / "no-ml-env",
    )
    report = run_check(settings)
    assert report["ok"] is True and report["env"]["state"] == "not_needed", report
    assert report["embedder"]["dimension"] == 384 and report["embedder"]["url"] == f"{standin.base_url}/v1"
    assert report["reranker"]["kind"] == "remote-tei" and 0 <= report["reranker"]["score"] <= 1
    standin.down()
    report = run_check(settings)
    assert report["ok"] is False and "unreachable" in report["embedder"]["error"], report
