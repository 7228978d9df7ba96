"""The resources of one server process and the order in which they come up and go down.

The HTTP server must answer /health while the database migrates and the models load, so nothing
slow happens inside the ASGI lifespan itself: `start()` launches background tasks and returns.
The store is held open by one task (entered and exited in the same task, as async context
managers want); the ML service starts in another; once both are up a server starts the re-embed
job (an operation like any other) that fills the vectors missing under the current model. The CLI uses the same
object with `server=False`: it fails fast when the database is unreachable instead of retrying.

A database whose schema this release cannot run on (SchemaMismatch: a released migration was
edited, or a newer release migrated it) is never retried: no wait fixes it. The runtime records
it in `failure`, sets `failed`, and `ragserver serve` stops the server and exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from dataclasses import dataclass
from typing import Literal

from ragserver.answer import AnswerService, ChatClient, chat_client
from ragserver.catalog.service import CatalogService
from ragserver.config import Settings
from ragserver.crawl.service import CrawlService
from ragserver.errors import RagServerError, SchemaMismatch, Unavailable
from ragserver.ingest.service import IngestService
from ragserver.logredact import MASK, configured_secrets
from ragserver.looplag import LoopLagMonitor
from ragserver.ml.service import MLService
from ragserver.progress import ProgressTracker
from ragserver.replicas import ReplicaWorker
from ragserver.search.service import SearchService
from ragserver.store import Store, open_store

log = logging.getLogger(__name__)

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0
OWN_LINE_MAX = 1000
FOREIGN_LINE_MAX = 300


@dataclass(frozen=True)
class Services:
    """The services the faces (API, CLI) call, built together once the database is open."""

    ingest: IngestService
    search: SearchService
    crawl: CrawlService
    catalog: CatalogService
    answer: AnswerService


@dataclass(frozen=True)
class DatabaseState:
    """Where opening the database stands, for /health: `reason` says why it is not ready."""

    state: Literal["starting", "ready", "error"]
    reason: str = ""


class Runtime:
    """Store, ML service, progress tracker and the services built on them, for one process."""

    def __init__(self, settings: Settings, *, server: bool = True) -> None:
        self.settings = settings
        self.server = server
        self.tracker = ProgressTracker()
        self.loop_lag = LoopLagMonitor()
        self.ml = MLService(settings)
        self.chat = chat_client(settings)  # None: no LLM configured (asking answers 409)
        self.database = DatabaseState("starting", "opening the database")
        self.migrations: list[str] = []
        self.ready = asyncio.Event()
        self.ml_started = asyncio.Event()
        # Set (with `failure`) when start-up hit an error no retry can fix; `ragserver serve` exits on it.
        self.failed = asyncio.Event()
        self.failure: RagServerError | None = None
        self._store: Store | None = None
        self.replica: ReplicaWorker | None = None
        self._replica_task: asyncio.Task[None] | None = None
        self._services: Services | None = None
        self._closing = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._store_task: asyncio.Task[None] | None = None

    async def start(self, *, ml: bool = True) -> None:
        """Launch the background start-up; returns at once so the server can answer /health.

        `ml=False` (the `migrate` command) opens only the database.
        """
        self._store_task = asyncio.create_task(self._hold_store(), name="ragserver-store")
        self._tasks = [self._store_task]
        if self.server:
            self._tasks.append(asyncio.create_task(self.loop_lag.run(), name="ragserver-loop-lag"))
        if ml:
            self._tasks += [
                asyncio.create_task(self._run_ml(), name="ragserver-ml-start"),
                asyncio.create_task(self._after_start(), name="ragserver-embeddings"),
            ]

    async def wait_ready(self, *, with_ml: bool = True) -> None:
        """Wait until the database is migrated (and the ML service has settled, when asked).

        Raises the store's error when it could not be opened (without retries, server=False, or a
        SchemaMismatch).
        """
        assert self._store_task is not None, "start() first"
        ready = asyncio.ensure_future(self.ready.wait())
        await asyncio.wait({ready, self._store_task}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            self._store_task.result()
            raise Unavailable("the database closed before it was ready")
        if with_ml:
            await self.ml_started.wait()

    async def stop(self) -> None:
        """Cancel active operations, stop the ML service, close the store."""
        if self.replica is not None:
            self.replica.stop()
        if self._replica_task is not None:
            self._replica_task.cancel()  # claims no new job while the running ones stop
        await self.tracker.cancel_all()
        if self._services is not None:
            self._services.crawl.close()
        self._closing.set()
        for task in self._tasks:
            if task is not self._store_task or self._may_abandon_store_open():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._services is not None:
            self._services.ingest.close()
        await self.ml.stop()
        if self.chat is not None:
            await self.chat.aclose()
        self.ready.clear()

    def _may_abandon_store_open(self) -> bool:
        """Stopping while a remote database is still being reached: cancel rather than wait out its timeout.

        An embedded Postgres that is starting is waited for instead, so it is stopped and never orphaned.
        """
        return not self.ready.is_set() and self.settings.store_backend != "embedded"

    @property
    def store(self) -> Store:
        """The open store; Unavailable (503) while it is still starting."""
        if not self.ready.is_set() or self._store is None:
            raise Unavailable(f"database not ready: {self.database.reason}")
        return self._store

    @property
    def services(self) -> Services:
        """The services; Unavailable (503) while the database, which every service needs, is starting."""
        if not self.ready.is_set() or self._services is None:
            raise Unavailable(f"database not ready: {self.database.reason}")
        return self._services

    async def _run_ml(self) -> None:
        try:
            await self.ml.start()
        finally:
            self.ml_started.set()

    async def _hold_store(self) -> None:
        """Open the store (retrying while the database is unreachable) and keep it open until stop."""
        delay = RETRY_FIRST_S
        while not self._closing.is_set():
            try:
                async with open_store(self.settings) as store:
                    await self._on_store_open(store)
                    await self._closing.wait()
                return
            except asyncio.CancelledError:
                raise
            except SchemaMismatch as exc:
                self._fail(exc)
                raise
            except Exception as exc:
                self.database = DatabaseState("error", self._redact(_one_line(exc)))
                if self.ready.is_set() or not self.server:
                    raise Unavailable(f"database: {self.database.reason}") from exc
                log.error("database not available, retrying in %.0f s: %s", delay, self.database.reason)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), timeout=delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _fail(self, exc: RagServerError) -> None:
        """Record an error no retry can fix: /health shows it, `failed` tells the server to exit."""
        self.database = DatabaseState("error", self._redact(_one_line(exc)))
        self.failure = exc
        self.failed.set()
        if self.server:  # a CLI command prints the error itself
            log.error("cannot start: %s", self.database.reason)

    async def _on_store_open(self, store: Store) -> None:
        self.migrations = store.migration_report.changes
        recovered = await store.recover_interrupted_runs()
        if recovered:
            log.warning("marked %d interrupted ingest runs as failed", recovered)
        if await store.operations.recover_interrupted():
            log.warning("marked the operations of stopped replicas as failed")
        self._store = store
        # a server shares its operations with the other replicas of the database (the CLI keeps its own)
        self.replica = ReplicaWorker(self.tracker, store, self.settings.replica_max_jobs) if self.server else None
        if self.replica is not None:
            self._replica_task = asyncio.create_task(self.replica.run(), name="ragserver-replica")
            self._tasks.append(self._replica_task)
        self._services = build_services(store, self.ml, self.settings, self.tracker, self.chat, replica=self.replica)
        self.database = DatabaseState("ready")
        self.ready.set()

    async def _after_start(self) -> None:
        """Once store and models are up: freeze the start-up heap, then (a server) embed the
        chunks stored without vectors."""
        await self.wait_ready()
        freeze_startup_heap()
        if self.server:  # a remote embedding server may answer only later: embed then
            await self.ml.embedder_serving()
            await self.services.ingest.schedule_reembed()

    def _redact(self, text: str) -> str:
        """Remove configured secrets (DSN, its password, keys) from a message shown in /health."""
        for secret in configured_secrets(self.settings):
            text = text.replace(secret, MASK)
        return text


def freeze_startup_heap() -> None:
    """Take what start-up allocated (torch, transformers, the models, crawl4ai) out of the cyclic
    garbage collector's sight.

    A full collection walks every tracked object and stops the event loop meanwhile; with the
    models loaded that pause showed as event-loop lag spikes under load (measured in
    RELIABILITY.md). Frozen objects are never scanned by the collector again; reference counting
    still frees them, only a reference cycle among them would stay (what start-up made lives as
    long as the process).
    """
    gc.collect()
    gc.freeze()


def build_services(
    store: Store,
    ml: MLService,
    settings: Settings,
    tracker: ProgressTracker,
    chat: ChatClient | None,
    *,
    replica: ReplicaWorker | None = None,
) -> Services:
    """The services of the server on one store and one ML service (crawl ingests through ingest, answers
    search through search)."""
    ingest = IngestService(store, ml, settings, tracker, replica)
    search = SearchService(store, ml, settings)
    return Services(
        ingest=ingest,
        search=search,
        crawl=CrawlService(store, ingest, settings, tracker, replica),
        catalog=CatalogService(store),
        answer=AnswerService(search, chat, settings),
    )


def _one_line(exc: BaseException) -> str:
    """An exception as one line for /health and logs (no traceback).

    Our own errors keep their first line whole (a refusal explains itself and names the file), up to
    OWN_LINE_MAX; foreign ones are prefixed with their type and cut at FOREIGN_LINE_MAX.
    """
    if isinstance(exc, RagServerError):
        return exc.message.splitlines()[0][:OWN_LINE_MAX] if exc.message else type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:FOREIGN_LINE_MAX]
