"""The resources of one server process and the order in which they come up and go down.

The HTTP server must answer /health while the database migrates and the models load, so nothing
slow happens inside the ASGI lifespan itself: `start()` launches background tasks and returns.
The store is held open by one task (entered and exited in the same task, as async context
managers want); the ML service starts in another; once both are up a server starts the re-embed
job (an operation like any other) that fills the vectors missing under the current model. The CLI uses the same
object with `server=False`: it fails fast when the database is unreachable instead of retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import Any

from ragserver.config import Settings
from ragserver.crawl.service import CrawlService
from ragserver.errors import RagServerError, Unavailable
from ragserver.ingest.service import IngestService
from ragserver.logredact import MASK, configured_secrets
from ragserver.looplag import LoopLagMonitor
from ragserver.ml.service import MLService
from ragserver.progress import ProgressTracker
from ragserver.search.service import SearchService
from ragserver.store import open_store

log = logging.getLogger(__name__)

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


class Runtime:
    """Store, ML service, progress tracker and the services built on them, for one process."""

    def __init__(self, settings: Settings, *, server: bool = True) -> None:
        self.settings = settings
        self.server = server
        self.tracker = ProgressTracker()
        self.loop_lag = LoopLagMonitor()
        self.ml = MLService(settings)
        self.store: Any = None
        # Services by name ("ingest", "search", "crawl"), built once the database is open.
        self.services: dict[str, Any] = {}
        self.database: dict[str, Any] = {"state": "starting", "reason": "opening the database"}
        self.migrations: list[str] = []
        self.ready = asyncio.Event()
        self.ml_started = asyncio.Event()
        self._closing = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._store_task: asyncio.Task | None = None

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

        Raises the store's error when it could not be opened (only without retries, server=False).
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
        await self.tracker.cancel_all()
        if "crawl" in self.services:
            await self.services["crawl"].stop_all()
        self._closing.set()
        for task in self._tasks:
            if task is not self._store_task or self._may_abandon_store_open():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if "ingest" in self.services:
            self.services["ingest"].close()
        await self.ml.stop()
        self.ready.clear()

    def _may_abandon_store_open(self) -> bool:
        """Stopping while a remote database is still being reached: cancel rather than wait out its timeout.

        An embedded Postgres that is starting is waited for instead, so it is stopped and never orphaned.
        """
        return not self.ready.is_set() and self.settings.store_backend != "embedded"

    def require_store(self) -> Any:
        """The open store, or 503 while it is still starting."""
        if not self.ready.is_set():
            raise Unavailable(f"database not ready: {self.database['reason']}")
        return self.store

    def require_service(self, name: str) -> Any:
        """A service by name, or 503 while the database (which every service needs) is starting."""
        self.require_store()
        try:
            return self.services[name]
        except KeyError:
            raise Unavailable(f"the {name} service is not available in this server") from None

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
            except Exception as exc:
                self.database = {"state": "error", "reason": self._redact(_one_line(exc))}
                if self.ready.is_set() or not self.server:
                    raise Unavailable(f"database: {self.database['reason']}") from exc
                log.error("database not available, retrying in %.0f s: %s", delay, self.database["reason"])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), timeout=delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _on_store_open(self, store: Any) -> None:
        self.migrations = await store.migrate()
        recovered = await store.recover_interrupted_runs()
        if recovered:
            log.warning("marked %d interrupted ingest runs as failed", recovered)
        self.store = store
        self.services = build_services(store, self.ml, self.settings, self.tracker)
        self.database = {"state": "ready", "reason": "", "backend": self.settings.store_backend}
        self.ready.set()

    async def _after_start(self) -> None:
        """Once store and models are up: freeze the start-up heap, then (a server) embed the
        chunks stored without vectors."""
        await self.wait_ready()
        freeze_startup_heap()
        if self.server and self.ml.embedder_ready:
            self.services["ingest"].schedule_reembed()

    def _redact(self, text: str) -> str:
        """Remove configured secrets (DSN, its password, keys) from a message shown in /health."""
        for secret in configured_secrets(self.settings):
            text = text.replace(secret, MASK)
        return text


def freeze_startup_heap() -> None:
    """Take what start-up allocated (torch, transformers, the models, crawl4ai: ~560k objects) out
    of the cyclic garbage collector's sight.

    A full collection walks every tracked object and stops the event loop meanwhile: 270 ms with
    the models loaded, which showed as event-loop lag spikes of ~300 ms under load. Frozen
    objects are never scanned by the collector again; reference counting still frees them, only
    a reference cycle among them would stay (what start-up made lives as long as the process).
    """
    gc.collect()
    gc.freeze()


def build_services(store: Any, ml: MLService, settings: Settings, tracker: ProgressTracker) -> dict[str, Any]:
    """The services of the server, keyed by the names the API dependencies use."""
    ingest = IngestService(store, ml, settings, tracker)
    return {
        "ingest": ingest,
        "search": SearchService(store, ml, settings),
        "crawl": CrawlService(store, ingest, settings, tracker),
    }


def _one_line(exc: BaseException) -> str:
    """An exception as one short line for /health and logs (no traceback); our own errors keep their message."""
    if isinstance(exc, RagServerError):
        return exc.message.splitlines()[0][:300] if exc.message else type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300]
