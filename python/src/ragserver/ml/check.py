"""`ragserver check-ml`: prove the ML env works end to end, as one printable dict.

Used after ./bootstrap-ml-env.sh and in the Docker verify profile: it goes through the same
probe and loaders as the server (same offline rules), then embeds one text and scores one
query-document pair, so "ready" here means the server will rerank. A remote model (EMBEDDING_BACKEND,
RERANK_BACKEND) is checked by the same embed or score, against its server; with both remote the ML env
is not needed and not probed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from ragserver.config import Settings
from ragserver.errors import RagServerError
from ragserver.ml.contracts import Embedder, Reranker
from ragserver.ml.embedder import SentenceTransformerEmbedder
from ragserver.ml.loading import Placement, cached_models, choose_placement, hf_hub_cache, resolve_model_path
from ragserver.ml.probe import probe_env
from ragserver.ml.remote_backends import NOT_NEEDED, local_env_needed, remote_embedder, remote_reranker
from ragserver.ml.reranker import load_reranker

CHECK_QUERY = "What does pgvector add to Postgres?"
CHECK_DOCUMENT = "pgvector adds a vector column type and nearest-neighbour indexes to Postgres."

T = TypeVar("T")
M = TypeVar("M")


def _timed(step: dict[str, Any], label: str, func: Callable[[], T]) -> T | None:
    """Run one step, recording its seconds under `label`; on failure record the error text."""
    started = time.perf_counter()
    try:
        return func()
    except Exception as exc:
        step["ok"] = False
        step["error"] = exc.message if isinstance(exc, RagServerError) else f"{type(exc).__name__}: {exc}"
        return None
    finally:
        step.setdefault("seconds", {})[label] = round(time.perf_counter() - started, 3)


def run_check(settings: Settings) -> dict[str, Any]:
    """Probe, load both models, embed and score once; `ok` is True only if every step passed."""
    if not local_env_needed(settings):
        report: dict[str, Any] = {"env": NOT_NEEDED.to_dict(), "device": {"setting": settings.ml_device}}
        report["embedder"], report["reranker"] = _check_remote(settings)
        return _verdict(report)
    report = {"env": probe_env(settings.ml_user_base).to_dict()}
    if report["env"]["state"] != "ready":
        report["ok"] = False
        return report
    import sentence_transformers
    import torch

    report["torch"] = {"version": torch.__version__, "cuda_available": torch.cuda.is_available()}
    report["sentence_transformers"] = sentence_transformers.__version__
    report["hf_cache"] = {"path": str(hf_hub_cache()), "models": cached_models()}
    placement = _timed(
        report.setdefault("device", {"setting": settings.ml_device}),
        "choose",
        partial(choose_placement, settings.ml_device),
    )
    if placement is None:
        report["ok"] = False
        return report
    report["device"].update(device=placement.device, dtype=placement.dtype)

    report["embedder"], report["reranker"] = _check_remote(settings)
    if settings.embedding_backend == "local":
        report["embedder"] = _check_local(settings.embedding_model, SentenceTransformerEmbedder, placement, _embed_once)
    if settings.rerank_backend == "local":
        report["reranker"] = _check_local(settings.reranker_model, load_reranker, placement, _score_once)
    return _verdict(report)


def _check_local(
    name: str,
    loader: Callable[[str, Path, Placement], M],
    placement: Placement,
    use: Callable[[dict[str, Any], M], None],
) -> dict[str, Any]:
    """Resolve and load one local model, then `use` it once; each step timed, a failure recorded."""
    step: dict[str, Any] = {"model": name}
    path = _timed(step, "resolve", partial(resolve_model_path, name))
    if path is not None:
        step["path"] = str(path)
        model = _timed(step, "load", partial(loader, name, path, placement))
        if model is not None:
            use(step, model)
    return step


def _embed_once(step: dict[str, Any], embedder: Embedder) -> None:
    if _timed(step, "embed", partial(embedder.embed, [CHECK_QUERY])) is not None:
        step.update(dimension=embedder.dimension, max_seq_length=embedder.max_seq_length)


def _score_once(step: dict[str, Any], reranker: Reranker) -> None:
    step["kind"] = reranker.kind
    scores = _timed(step, "score", partial(reranker.score, [(CHECK_QUERY, CHECK_DOCUMENT)]))
    if scores is not None:
        step.update(query=CHECK_QUERY, document=CHECK_DOCUMENT, score=round(scores[0], 6))


def _verdict(report: dict[str, Any]) -> dict[str, Any]:
    report["ok"] = all(report[key].get("ok", True) for key in ("device", "embedder", "reranker"))
    for key in ("device", "embedder", "reranker"):
        report[key].setdefault("ok", True)
    return report


def _check_remote(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The embed and score steps against the remote servers the settings name ({} for a local model)."""
    embed_step: dict[str, Any] = {}
    embedder = remote_embedder(settings)
    if embedder is not None:
        embed_step.update(model=settings.embedding_model, backend=settings.embedding_backend, url=embedder.server.url)
        dimension = _timed(embed_step, "embed", embedder.probe)
        if dimension is not None:
            embed_step.update(dimension=dimension, max_seq_length=embedder.max_seq_length)
        embedder.server.close()
    rerank_step: dict[str, Any] = {}
    reranker = remote_reranker(settings)
    if reranker is not None:
        rerank_step.update(model=settings.reranker_model, backend=settings.rerank_backend, url=reranker.server.url)
        _score_once(rerank_step, reranker)
        reranker.server.close()
    return embed_step, rerank_step
