"""MLService: the one object the rest of the server uses for embeddings and reranking.

`start()` probes the ML env and loads the models in a thread; it never raises for a missing
or broken env or model, it records the state so /health can say what is wrong and how to
fix it, and search falls back to full-text. Models are cached per process (keyed by name,
folder and placement), so several app instances in one process (tests, CLI) load them once.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from ragserver.config import Settings
from ragserver.errors import Unavailable
from ragserver.lowpriority import bulk_executor
from ragserver.ml.contracts import Embedder, Reranker
from ragserver.ml.embedder import SentenceTransformerEmbedder
from ragserver.ml.loading import (
    Placement,
    choose_placement,
    resolve_model_path,
    search_cpu_threads,
    usable_cores,
    use_cpu_threads,
)
from ragserver.ml.probe import EnvStatus, probe_env
from ragserver.ml.reranker import load_reranker
from ragserver.ml.worker import BatchWorker

_MODELS: dict[tuple, Any] = {}
_MODELS_LOCK = threading.Lock()


def _cached_model(kind: str, name: str, placement: Placement, factory: Callable[..., Any]) -> Any:
    """Load a model once per process (blocking; call from a thread)."""
    path = resolve_model_path(name)
    key = (kind, name, str(path), placement)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = factory(name, path, placement)
        return _MODELS[key]


def estimate_tokens(text: str) -> int:
    """Rough token count (~4 characters per token) when no tokenizer is loaded."""
    return math.ceil(len(text) / 4)


class MLService:
    """Probe, load, and serve the embedder and the reranker through one batching worker each."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedding_model = settings.embedding_model
        self._env: EnvStatus | None = None
        self._embedder: SentenceTransformerEmbedder | None = None
        self._reranker: Any = None
        self._placement: Placement | None = None
        self._cpu_threads: dict[str, int] | None = None  # torch threads per forward pass: search, bulk
        self._embed_state = {"state": "not_started", "reason": None}
        self._rerank_state = {"state": "not_started", "reason": None}
        self._embed_worker: BatchWorker[str, list[float]] | None = None
        self._rerank_worker: BatchWorker[tuple[str, str], float] | None = None

    async def start(self) -> None:
        """Probe the env and load the models off the loop; failures become states, not exceptions."""
        self._env = await asyncio.to_thread(probe_env, self.settings.ml_user_base)
        if self._env.state != "ready":
            reason = f"ML env {self._env.state}: {self._env.reason}"
            self._embed_state = {"state": "unavailable", "reason": reason, "fix": self._env.fix}
            self._rerank_state = dict(self._embed_state)
            return
        try:
            self._placement = await asyncio.to_thread(choose_placement, self.settings.ml_device)
        except Unavailable as exc:
            self._embed_state = {"state": "failed", "reason": exc.message}
            self._rerank_state = dict(self._embed_state)
            return
        self._embedder = await self._load("embedder", SentenceTransformerEmbedder, self._embed_state)
        if not self.settings.use_reranking:
            self._rerank_state = {"state": "disabled", "reason": "USE_RERANKING=false"}
        else:
            self._reranker = await self._load("reranker", load_reranker, self._rerank_state)
        budget, queue = self.batch_tokens, self.settings.ml_queue_size
        self._cpu_threads = {"search": search_cpu_threads(self.settings.ml_threads), "bulk": usable_cores()}
        search_setup = partial(use_cpu_threads, self._cpu_threads["search"])
        bulk_setup = partial(use_cpu_threads, self._cpu_threads["bulk"])
        if self._embedder is not None:
            embedder, limit = self._embedder, self._embedder.max_seq_length
            self._embed_worker = BatchWorker(
                "embedder",
                embedder.embed,
                lambda texts: [min(n, limit) for n in embedder.measure(texts)],
                max_batch_tokens=budget,
                queue_size=queue,
                thread_setup=search_setup,
                bulk_executor=bulk_executor("ml-embedder-bulk", self.settings.bulk_nice, setup=bulk_setup),
            )
            self._embed_worker.start()
        if self._reranker is not None:
            self._rerank_worker = BatchWorker(
                "reranker",
                self._reranker.score,
                self._reranker.count_tokens,
                max_batch_tokens=budget,
                queue_size=queue,
                thread_setup=search_setup,
            )
            self._rerank_worker.start()

    async def _load(self, kind: str, factory: Callable[..., Any], state: dict) -> Any:
        name = self.settings.embedding_model if kind == "embedder" else self.settings.reranker_model
        state.update(state="loading", reason=None)
        try:
            model = await asyncio.to_thread(_cached_model, kind, name, self._placement, factory)
        except Unavailable as exc:
            state.update(state="failed", reason=exc.message, **exc.details)
            return None
        except Exception as exc:  # a model that does not load must not take the server down
            state.update(state="failed", reason=f"loading {name} failed: {type(exc).__name__}: {exc}")
            return None
        state.update(state="ready", reason=None)
        return model

    async def stop(self) -> None:
        """Stop the workers; pending requests fail with Unavailable. Models stay cached."""
        for worker in (self._embed_worker, self._rerank_worker):
            if worker is not None:
                await worker.stop()
        self._embed_worker = self._rerank_worker = None

    @property
    def embedder_ready(self) -> bool:
        return self._embed_worker is not None

    @property
    def reranker_ready(self) -> bool:
        return self._rerank_worker is not None

    @property
    def dimension(self) -> int | None:
        return self._embedder.dimension if self._embedder else None

    @property
    def max_seq_length(self) -> int | None:
        return self._embedder.max_seq_length if self._embedder else None

    @property
    def embedder(self) -> Embedder | None:
        """The loaded embedder (blocking API), e.g. for benchmarks; None when not ready."""
        return self._embedder

    @property
    def reranker(self) -> Reranker | None:
        """The loaded reranker (blocking API); None when not ready."""
        return self._reranker

    @property
    def batch_tokens(self) -> int:
        """Token budget of one forward pass of either worker (Placement.batch_tokens)."""
        configured = self.settings.ml_max_batch_tokens
        return self._placement.batch_tokens(configured) if self._placement else configured

    @property
    def batches_run(self) -> dict[str, int]:
        """Forward passes each worker has run (observability; tests check batching with it)."""
        return {
            "embedder": self._embed_worker.batches_run if self._embed_worker else 0,
            "reranker": self._rerank_worker.batches_run if self._rerank_worker else 0,
        }

    def status(self) -> dict[str, Any]:
        """The ML part of /health."""
        env = (
            self._env.to_dict()
            if self._env
            else {"state": "not_started", "reason": None, "fix": None, "manifest": None}
        )
        device = self._placement.device if self._placement else None
        embedder = {**self._embed_state, "model": self.settings.embedding_model, "dimension": self.dimension}
        reranker = {
            **self._rerank_state,
            "model": self.settings.reranker_model,
            "kind": getattr(self._reranker, "kind", None),
        }
        return {
            "env": env,
            "cpu_threads": self._cpu_threads,  # torch threads of a search / bulk forward pass
            "embedder": {**embedder, "device": device if self._embedder else None},
            "reranker": {**reranker, "device": device if self._reranker else None},
        }

    async def embed(self, texts: list[str], *, bulk: bool = False) -> list[list[float]]:
        """Unit-length embeddings of `texts`; Unavailable when not ready, Busy when the queue is full.

        `bulk` (ingest, re-embed) yields to searches and runs at low priority.
        """
        if self._embed_worker is None:
            raise Unavailable(f"embedder not ready: {self._embed_state['reason']}", details=self._fix())
        return await self._embed_worker.submit(list(texts), bulk=bulk)

    async def rerank(self, query: str, documents: list[str]) -> list[float]:
        """Relevance in [0, 1] of each document to `query`, in input order."""
        if self._rerank_worker is None:
            raise Unavailable(f"reranker not ready: {self._rerank_state['reason']}", details=self._fix())
        return await self._rerank_worker.submit([(query, doc) for doc in documents])

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Embedding-tokenizer counts (sync, thread-safe); an estimate when no embedder is loaded."""
        if self._embedder is None:
            return [estimate_tokens(text) for text in texts]
        return self._embedder.count_tokens(texts)

    def _fix(self) -> dict[str, Any]:
        return {"fix": self._env.fix} if self._env and self._env.fix else {}
