"""MLService: the one object the rest of the server uses for embeddings and reranking.

`start()` probes the ML env and loads the models in a thread; it never raises for a missing
or broken env or model, it records the state so /health can say what is wrong and how to
fix it, and search falls back to full-text. The embedder serves as soon as it is loaded, while
the reranker is still loading; searches wait a bounded time for the reranker through
`reranker_settled()` instead of silently answering unreranked. Models are cached per process
(keyed by name, folder and placement), so several app instances in one process (tests, CLI) load
them once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Generic, TypedDict, TypeVar

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

ModelT = TypeVar("ModelT")
Loader = Callable[[str, Path, Placement], ModelT]


class _ModelCache(Generic[ModelT]):
    """Models of one kind loaded once per process, by (name, resolved folder, placement)."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, str, Placement], ModelT] = {}
        self._lock = threading.Lock()

    def get(self, name: str, placement: Placement, loader: Loader[ModelT]) -> ModelT:
        """The cached model, loading it first if needed (blocking; call from a thread)."""
        path = resolve_model_path(name)
        key = (name, str(path), placement)
        with self._lock:
            if key not in self._models:
                self._models[key] = loader(name, path, placement)
            return self._models[key]


log = logging.getLogger(__name__)

# How long stop() lets a model load still running in its thread finish (a load patches
# process-wide torch/transformers state; shutdown must still fit Docker's stop grace period).
STOP_LOAD_WAIT_S = 5.0

_EMBEDDERS: _ModelCache[Embedder] = _ModelCache()
_RERANKERS: _ModelCache[Reranker] = _ModelCache()


def estimate_tokens(text: str) -> int:
    """Rough token count (~4 characters per token) when no tokenizer is loaded."""
    return math.ceil(len(text) / 4)


@dataclass
class ModelState:
    """What /health says of one model: not_started | loading | ready | failed | unavailable | disabled."""

    state: str = "not_started"
    reason: str | None = None
    details: dict[str, object] = field(default_factory=dict)  # e.g. the fix, from Unavailable's details

    def set(self, state: str, reason: str | None = None, details: dict[str, object] | None = None) -> None:
        self.state, self.reason, self.details = state, reason, dict(details or {})

    def to_dict(self) -> dict[str, object]:
        return {"state": self.state, "reason": self.reason, **self.details}


class MLStatus(TypedDict):
    """The ML part of /health."""

    env: dict[str, object]
    cpu_threads: dict[str, int] | None  # torch threads of a search / bulk forward pass
    embedder: dict[str, object]
    reranker: dict[str, object]


class MLService:
    """Probe, load, and serve the embedder and the reranker through one batching worker each."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedding_model = settings.embedding_model
        self.reranker_model = settings.reranker_model
        self._env: EnvStatus | None = None
        self._embedder: Embedder | None = None
        self._reranker: Reranker | None = None
        self._placement: Placement | None = None
        self._cpu_threads: dict[str, int] | None = None
        self._embed_state = ModelState()
        self._rerank_state = ModelState()
        self._rerank_settled = asyncio.Event()  # set once the reranker is ready, failed, disabled or stopped
        # The load running in a thread. A cancelled start does not stop that thread, and a load
        # patches process-wide torch/transformers state while it runs, so stop() waits it out.
        self._no_load_running = asyncio.Event()
        self._no_load_running.set()
        self._embed_worker: BatchWorker[str, list[float]] | None = None
        self._rerank_worker: BatchWorker[tuple[str, str], float] | None = None

    async def start(self) -> None:
        """Probe the env and load the models off the loop; failures become states, not exceptions.

        The embedder's worker starts before the reranker loads, so searches embed meanwhile.
        """
        self._embed_state.set("loading", "probing the ML environment")
        if self.settings.use_reranking:
            self._rerank_state.set("loading", "probing the ML environment")
        else:
            self._settle_reranker("disabled", "USE_RERANKING=false")
        try:
            await self._start()
        finally:  # whatever happened (even a cancelled start), a waiting search must not wait in vain
            if not self._rerank_settled.is_set():
                self._settle_reranker(self._rerank_state.state, self._rerank_state.reason, self._rerank_state.details)

    async def _start(self) -> None:
        self._env = await asyncio.to_thread(probe_env, self.settings.ml_user_base)
        if self._env.state != "ready":
            reason = f"ML env {self._env.state}: {self._env.reason}"
            self._embed_state.set("unavailable", reason, {"fix": self._env.fix})
            self._settle_reranker("unavailable", reason, {"fix": self._env.fix})
            return
        try:
            placement = self._placement = await asyncio.to_thread(choose_placement, self.settings.ml_device)
        except Unavailable as exc:
            self._embed_state.set("failed", exc.message)
            self._settle_reranker("failed", exc.message)
            return
        self._cpu_threads = {"search": search_cpu_threads(self.settings.ml_threads), "bulk": usable_cores()}
        search_setup = partial(use_cpu_threads, self._cpu_threads["search"])
        bulk_setup = partial(use_cpu_threads, self._cpu_threads["bulk"])
        if self.settings.use_reranking:
            self._rerank_state.set("loading", f"waiting for the embedder ({self.settings.embedding_model}) to load")
        embedder = await self._load(
            self.settings.embedding_model, _EMBEDDERS, SentenceTransformerEmbedder, placement, self._embed_state
        )
        if embedder is not None:
            self._embedder = embedder
            limit = embedder.max_seq_length
            self._embed_worker = BatchWorker(
                "embedder",
                embedder.embed,
                lambda texts: [min(n, limit) for n in embedder.measure(texts)],
                max_batch_tokens=self.batch_tokens,
                queue_size=self.settings.ml_queue_size,
                thread_setup=search_setup,
                bulk_executor=bulk_executor("ml-embedder-bulk", self.settings.bulk_nice, setup=bulk_setup),
            )
            self._embed_worker.start()
        if not self.settings.use_reranking:
            return
        reranker = await self._load(
            self.settings.reranker_model, _RERANKERS, load_reranker, placement, self._rerank_state
        )
        if reranker is not None:
            self._reranker = reranker
            self._rerank_worker = BatchWorker(
                "reranker",
                reranker.score,
                reranker.count_tokens,
                max_batch_tokens=self.batch_tokens,
                queue_size=self.settings.ml_queue_size,
                thread_setup=search_setup,
            )
            self._rerank_worker.start()
        self._rerank_settled.set()

    async def _load(
        self, name: str, cache: _ModelCache[ModelT], loader: Loader[ModelT], placement: Placement, state: ModelState
    ) -> ModelT | None:
        """One model through the process cache; `state` says loading, then ready or failed (never raises)."""
        state.set("loading", f"loading {name}")
        loading = asyncio.get_running_loop().run_in_executor(None, cache.get, name, placement, loader)
        self._no_load_running.clear()
        loading.add_done_callback(lambda _: self._no_load_running.set())
        try:
            model = await asyncio.shield(loading)
        except Unavailable as exc:
            state.set("failed", exc.message, exc.details)
            return None
        except Exception as exc:  # a model that does not load must not take the server down
            state.set("failed", f"loading {name} failed: {type(exc).__name__}: {exc}")
            return None
        state.set("ready")
        return model

    def _settle_reranker(self, state: str, reason: str | None, details: dict[str, object] | None = None) -> None:
        self._rerank_state.set(state, reason, details)
        self._rerank_settled.set()

    async def stop(self) -> None:
        """Wait (briefly) for a model load still running in its thread, then stop the workers;
        pending requests fail with Unavailable. Models stay cached."""
        try:
            await asyncio.wait_for(self._no_load_running.wait(), STOP_LOAD_WAIT_S)
        except TimeoutError:  # a process that exits ends the thread anyway; do not hold shutdown for it
            log.warning("stopping while a model still loads (gave it %.0f s)", STOP_LOAD_WAIT_S)
        for worker in (self._embed_worker, self._rerank_worker):
            if worker is not None:
                await worker.stop()
        self._embed_worker = self._rerank_worker = None
        self._rerank_settled.set()

    async def reranker_settled(self) -> None:
        """Returns once the reranker is ready, has failed, is disabled or the service stopped.

        Searches await it (bounded by RERANK_LOAD_WAIT_S) so that a query in the first seconds
        after start is reranked like any other, instead of silently answering in fused order.
        """
        await self._rerank_settled.wait()

    @property
    def embedder_ready(self) -> bool:
        return self._embed_worker is not None

    @property
    def reranker_ready(self) -> bool:
        return self._rerank_worker is not None

    @property
    def reranker_state(self) -> str:
        """not_started | loading | ready | failed | unavailable | disabled (as /health shows it)."""
        return self._rerank_state.state

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
    def device(self) -> str | None:
        """Where the models run (cpu | cuda) once placed; None before (or without an ML env)."""
        return self._placement.device if self._placement else None

    @property
    def batches_run(self) -> dict[str, int]:
        """Forward passes each worker has run (observability; tests check batching with it)."""
        return {
            "embedder": self._embed_worker.batches_run if self._embed_worker else 0,
            "reranker": self._rerank_worker.batches_run if self._rerank_worker else 0,
        }

    @property
    def tokens_run(self) -> dict[str, int]:
        """Tokens of the forward passes each worker has run (observability; budget tests time by it)."""
        return {
            "embedder": self._embed_worker.tokens_run if self._embed_worker else 0,
            "reranker": self._rerank_worker.tokens_run if self._rerank_worker else 0,
        }

    def status(self) -> MLStatus:
        """The ML part of /health: the env, then each model's state, model, kind and device."""
        env: dict[str, object] = (
            self._env.to_dict()
            if self._env
            else {"state": "not_started", "reason": None, "fix": None, "manifest": None}
        )
        device = self._placement.device if self._placement else None
        embedder = {
            **self._embed_state.to_dict(),
            "model": self.embedding_model,
            "dimension": self.dimension,
            "device": device if self._embedder else None,
        }
        reranker = {
            **self._rerank_state.to_dict(),
            "model": self.reranker_model,
            "kind": self._reranker.kind if self._reranker else None,
            "device": device if self._reranker else None,
        }
        return {"env": env, "cpu_threads": self._cpu_threads, "embedder": embedder, "reranker": reranker}

    async def embed(self, texts: list[str], *, bulk: bool = False) -> list[list[float]]:
        """Unit-length embeddings of `texts`; Unavailable when not ready, Busy when the queue is full.

        `bulk` (ingest, re-embed) yields to searches and runs at low priority.
        """
        if self._embed_worker is None:
            raise Unavailable(f"embedder not ready: {self._embed_state.reason}", details=self._fix())
        return await self._embed_worker.submit(list(texts), bulk=bulk)

    async def rerank(self, query: str, documents: list[str]) -> list[float]:
        """Relevance in [0, 1] of each document to `query`, in input order."""
        if self._rerank_worker is None:
            raise Unavailable(f"reranker not ready: {self._rerank_state.reason}", details=self._fix())
        return await self._rerank_worker.submit([(query, doc) for doc in documents])

    async def rerank_tokens(self, query: str, documents: list[str]) -> list[int]:
        """Tokens each (query, document) pair costs the reranker, as its worker counts them (searches
        plan their rerank time budget with it); counted in a thread, off the loop."""
        if self._reranker is None or self._rerank_worker is None:
            raise Unavailable(f"reranker not ready: {self._rerank_state.reason}", details=self._fix())
        return await asyncio.to_thread(self._reranker.count_tokens, [(query, doc) for doc in documents])

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Embedding-tokenizer counts (sync, thread-safe); an estimate when no embedder is loaded."""
        if self._embedder is None:
            return [estimate_tokens(text) for text in texts]
        return self._embedder.count_tokens(texts)

    def _fix(self) -> dict[str, object]:
        return {"fix": self._env.fix} if self._env and self._env.fix else {}
