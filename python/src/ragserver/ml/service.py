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
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Generic, TypedDict, TypeVar

from ragserver.config import Settings
from ragserver.errors import RemoteModelError, Unavailable
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
from ragserver.ml.remote_backends import NOT_NEEDED, describe, local_env_needed, remote_embedder, remote_reranker
from ragserver.ml.remote_embedder import PROBE_TEXT, OpenAIEmbedder, estimate_tokens
from ragserver.ml.remote_http import RemoteServer
from ragserver.ml.remote_reranker import RemoteReranker
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
# Pauses between probes of an embedding server that did not answer at start (doubling up to the max).
REPROBE_FIRST_S = 2.0
REPROBE_MAX_S = 60.0

_EMBEDDERS: _ModelCache[Embedder] = _ModelCache()
_RERANKERS: _ModelCache[Reranker] = _ModelCache()


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
        # A remote embedder's ingest runs in a worker of its own: its retries must not hold searches.
        self._bulk_embed_worker: BatchWorker[str, list[float]] | None = None
        self._rerank_worker: BatchWorker[tuple[str, str], float] | None = None
        self._remote_embedder: OpenAIEmbedder | None = None
        self._remote_reranker: RemoteReranker | None = None
        self._reprobe: asyncio.Task[None] | None = None
        self._embedder_up = asyncio.Event()  # set once the embedder serves (after start, or a late probe)

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
        remote_embed = remote_embedder(self.settings)
        remote_rerank = remote_reranker(self.settings) if self.settings.use_reranking else None
        placement = await self._local_placement(local_env_needed(self.settings), remote_embed, remote_rerank)
        if self.settings.use_reranking and (placement or remote_rerank):
            self._rerank_state.set("loading", f"waiting for the embedder ({self.settings.embedding_model}) to load")
        if remote_embed is not None:
            self._remote_embedder = remote_embed
            if await self._probe_remote(remote_embed):
                self._start_remote_embed_workers(remote_embed)
            else:
                self._reprobe = asyncio.create_task(self._reprobe_remote(remote_embed), name="ml-embedder-reprobe")
        elif placement is not None:
            embedder = await self._load(
                self.settings.embedding_model, _EMBEDDERS, SentenceTransformerEmbedder, placement, self._embed_state
            )
            if embedder is not None:
                self._start_local_embed_worker(embedder)
        if not self.settings.use_reranking:
            return
        reranker: Reranker | None = remote_rerank
        if remote_rerank is not None:
            self._remote_reranker = remote_rerank
            # one pair scored, so /health names a rerank server that is down from the start (the server
            # records the failure); searches still ask it, it may come up later
            self._rerank_state.set("loading", f"probing {remote_rerank.server.url} with one pair")
            with contextlib.suppress(RemoteModelError):
                await asyncio.to_thread(remote_rerank.score, [(PROBE_TEXT, PROBE_TEXT)])
            self._rerank_state.set("ready")
        elif placement is not None:
            reranker = await self._load(
                self.settings.reranker_model, _RERANKERS, load_reranker, placement, self._rerank_state
            )
        if reranker is not None:
            self._reranker = reranker
            self._rerank_worker = BatchWorker(
                "reranker",
                partial(remote_rerank.score, quick=True) if remote_rerank else reranker.score,
                reranker.count_tokens,
                max_batch_tokens=self.batch_tokens,
                queue_size=self.settings.ml_queue_size,
                thread_setup=self._thread_setup("search") if remote_rerank is None else None,
            )
            self._rerank_worker.start()
        self._rerank_settled.set()

    async def _local_placement(
        self, needed: bool, remote_embed: OpenAIEmbedder | None, remote_rerank: RemoteReranker | None
    ) -> Placement | None:
        """Probe the ML env and place the local models; None (with the local models' states saying why)
        when they cannot run, or when no model is local (the env is then `not_needed`)."""
        if not needed:
            self._env = NOT_NEEDED
            return None
        self._env = await asyncio.to_thread(probe_env, self.settings.ml_user_base)
        failure: tuple[str, str, dict[str, object]] | None = None
        placement: Placement | None = None
        if self._env.state != "ready":
            failure = ("unavailable", f"ML env {self._env.state}: {self._env.reason}", {"fix": self._env.fix})
        else:
            try:
                placement = self._placement = await asyncio.to_thread(choose_placement, self.settings.ml_device)
            except Unavailable as exc:
                failure = ("failed", exc.message, {})
        if failure is not None:
            if remote_embed is None:
                self._embed_state.set(*failure)
            if remote_rerank is None:
                self._settle_reranker(*failure)
            return None
        self._cpu_threads = {"search": search_cpu_threads(self.settings.ml_threads), "bulk": usable_cores()}
        return placement

    def _thread_setup(self, kind: str) -> Callable[[], None] | None:
        """Pins a local model's inference thread to its share of the cores (search or bulk)."""
        return partial(use_cpu_threads, self._cpu_threads[kind]) if self._cpu_threads else None

    def _start_local_embed_worker(self, embedder: Embedder) -> None:
        """One worker; its bulk rounds run in a low-priority thread on the bulk share of the cores."""
        bulk = bulk_executor("ml-embedder-bulk", self.settings.bulk_nice, setup=self._thread_setup("bulk"))
        self._serve_embedder(
            embedder, self._embed_batcher("embedder", embedder, embedder.embed, self._thread_setup("search"), bulk)
        )

    def _start_remote_embed_workers(self, embedder: OpenAIEmbedder) -> None:
        """Searches' quick calls in one worker, ingest's patient ones (with retries) in another, so a hanging
        server holds a search for REMOTE_QUERY_TIMEOUT_S at most (the server does its own batching)."""
        self._bulk_embed_worker = self._embed_batcher("embedder-bulk", embedder, embedder.embed)
        self._bulk_embed_worker.start()
        self._serve_embedder(embedder, self._embed_batcher("embedder", embedder, partial(embedder.embed, quick=True)))

    def _embed_batcher(
        self,
        name: str,
        embedder: Embedder,
        run: Callable[[list[str]], list[list[float]]],
        thread_setup: Callable[[], None] | None = None,
        bulk: ThreadPoolExecutor | None = None,
    ) -> BatchWorker[str, list[float]]:
        limit = embedder.max_seq_length
        return BatchWorker(
            name,
            run,
            lambda texts: [min(n, limit) for n in embedder.measure(texts)],
            max_batch_tokens=self.batch_tokens,
            queue_size=self.settings.ml_queue_size,
            thread_setup=thread_setup,
            bulk_executor=bulk,
        )

    def _serve_embedder(self, embedder: Embedder, worker: BatchWorker[str, list[float]]) -> None:
        self._embedder, self._embed_worker = embedder, worker
        worker.start()
        self._embedder_up.set()

    async def _probe_remote(self, embedder: OpenAIEmbedder) -> bool:
        """One tiny embed to learn the remote model's dimension; the state says how it went."""
        if self._embed_state.state != "failed":  # a re-probe keeps saying why it failed until it works
            self._embed_state.set("loading", f"probing {embedder.server.url} for {embedder.model_name}'s dimension")
        try:
            await asyncio.to_thread(embedder.probe)
        except RemoteModelError as exc:
            self._embed_state.set("failed", exc.message, {"retry_in_s": REPROBE_FIRST_S})
            return False
        self._embed_state.set("ready")
        return True

    async def _reprobe_remote(self, embedder: OpenAIEmbedder) -> None:
        """Probe an unreachable embedding server again, with growing pauses, until it answers (a GPU
        box that starts after this server must not need a restart here)."""
        pause = REPROBE_FIRST_S
        while True:
            await asyncio.sleep(pause)
            if await self._probe_remote(embedder):
                self._start_remote_embed_workers(embedder)
                log.info("the embedding server %s answers now (dimension %d)", embedder.server.url, embedder.dimension)
                return
            pause = min(pause * 2, REPROBE_MAX_S)
            self._embed_state.details["retry_in_s"] = pause

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
        if self._reprobe is not None:
            self._reprobe.cancel()
            await asyncio.gather(self._reprobe, return_exceptions=True)
        for worker in (self._embed_worker, self._bulk_embed_worker, self._rerank_worker):
            if worker is not None:
                await worker.stop()
        self._embed_worker = self._bulk_embed_worker = self._rerank_worker = None
        for remote in (self._remote_embedder, self._remote_reranker):
            if remote is not None:
                remote.server.close()
        self._rerank_settled.set()

    async def embedder_serving(self) -> None:
        """Returns once the embedder serves: at start, or later when a remote server answers at last."""
        await self._embedder_up.wait()

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
    def embedder_state(self) -> str:
        """not_started | loading | ready | failed | unavailable (as /health shows it, before a remote failure)."""
        return self._embed_state.state

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
    def _embed_workers(self) -> list[BatchWorker[str, list[float]]]:
        return [worker for worker in (self._embed_worker, self._bulk_embed_worker) if worker is not None]

    @property
    def batches_run(self) -> dict[str, int]:
        """Forward passes each worker has run (observability; tests check batching with it)."""
        return {
            "embedder": sum(worker.batches_run for worker in self._embed_workers),
            "reranker": self._rerank_worker.batches_run if self._rerank_worker else 0,
        }

    @property
    def tokens_run(self) -> dict[str, int]:
        """Tokens of the forward passes each worker has run (observability; budget tests time by it)."""
        return {
            "embedder": sum(worker.tokens_run for worker in self._embed_workers),
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
        embed_server = self._remote_embedder.server if self._remote_embedder else None
        rerank_server = self._remote_reranker.server if self._remote_reranker else None
        embedder = {
            **_with_remote_failure(self._embed_state, embed_server),
            "model": self.embedding_model,
            "dimension": self.dimension,
            "device": device if self._embedder and not embed_server else None,
            **describe(self.settings.embedding_backend, embed_server),
        }
        reranker = {
            **_with_remote_failure(self._rerank_state, rerank_server),
            "model": self.reranker_model,
            "kind": self._reranker.kind if self._reranker else None,
            "device": device if self._reranker and not rerank_server else None,
            **describe(self.settings.rerank_backend, rerank_server),
        }
        return {"env": env, "cpu_threads": self._cpu_threads, "embedder": embedder, "reranker": reranker}

    async def embed(self, texts: list[str], *, bulk: bool = False) -> list[list[float]]:
        """Unit-length embeddings of `texts`; Unavailable when not ready, Busy when the queue is full.

        `bulk` (ingest, re-embed) yields to searches and runs at low priority.
        """
        if self._embed_worker is None:
            raise Unavailable(f"embedder not ready: {self._embed_state.reason}", details=self._fix())
        worker = self._bulk_embed_worker if bulk and self._bulk_embed_worker else self._embed_worker
        return await worker.submit(list(texts), bulk=bulk)

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


def _with_remote_failure(state: ModelState, server: RemoteServer | None) -> dict[str, object]:
    """A model's state for /health; a ready remote model whose server fails now shows `error` and why."""
    failure = server.failure if server else None
    if state.state == "ready" and failure:
        return {**state.to_dict(), "state": "error", "reason": failure}
    return state.to_dict()
