"""One batching worker per model: concurrent requests share forward passes, off the event loop.

Requests from the event loop land in a bounded queue (full -> Busy, the API's 429). One
asyncio task takes everything pending into a backlog and runs it in rounds of at most
ROUND_ITEMS items in priority order: small interactive requests (a search's query) first, then
other interactive ones (rerank candidates), then bulk requests (ingest), first come first
served within each class. One inference thread measures a round's items, sorts them by length
and cuts token-budgeted batches (rows x longest row <= max_batch_tokens), so short queries are
not padded to the length of long chunks. A round never mixes bulk and interactive requests; a
bulk round runs in the bulk executor when the owner gives one (the embedder's: a thread of lower
OS priority, lowpriority.py) and stops between two batches as soon as an interactive request
arrives; its remaining items go back to the backlog, behind the newcomer.

Each batch's results are handed to the loop as soon as the batch is done; a request's future
resolves when all of its items have a result. A failed batch fails exactly the requests that
had items in it (set_exception with MLError) instead of leaving them hanging, and stop() fails
whatever is still pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeAlias, TypeVar

from ragserver.errors import Busy, MLError, RagServerError, Unavailable

log = logging.getLogger(__name__)

# Items per inference round. A request arriving during a round waits for that round only, so a
# search's one query text is not stuck behind the hundreds of texts of a bulk ingest (queries
# during a crawl + upload: RELIABILITY.md, "Load", measured with python/reliability/load.py).
ROUND_ITEMS = 64
SMALL_REQUEST_ITEMS = 4  # requests this small go ahead of the waiting items

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(eq=False)
class _Request(Generic[Item, Result]):
    """One caller's items and the loop future that gets all their results, in order."""

    items: Sequence[Item]
    future: asyncio.Future[list[Result]]
    bulk: bool = False
    results: dict[int, Result] = field(default_factory=dict)  # by item index, filled batch by batch

    @property
    def rank(self) -> int:
        """Scheduling class: 0 small interactive, 1 other interactive, 2 bulk."""
        if self.bulk:
            return 2
        return 0 if len(self.items) <= SMALL_REQUEST_ITEMS else 1


_Ref: TypeAlias = tuple[_Request[Item, Result], int]  # one item of a request: (request, item index)


def plan_batches(lengths: Sequence[int], max_batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches: sorted by length, each batch's rows x longest row within budget.

    An item longer than the whole budget still gets a batch of its own (it must run somehow).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # Sorted ascending, so the newest item is the longest of the batch.
        if current and lengths[index] * (len(current) + 1) > max_batch_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class BatchWorker(Generic[Item, Result]):
    """Batches items of concurrent requests for one model.

    `run_batch(items) -> results` runs one forward pass; `measure(items) -> token counts` sizes
    them. Both are blocking and called from one inference thread at a time: rounds never
    overlap, bulk rounds just run in `bulk_executor` (a low-priority thread) when one is given.
    `thread_setup` runs once in the interactive inference thread when it starts.
    """

    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[Item]], list[Result]],
        measure: Callable[[list[Item]], list[int]],
        *,
        max_batch_tokens: int,
        queue_size: int,
        thread_setup: Callable[[], None] | None = None,
        bulk_executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.name = name
        self._run_batch = run_batch
        self._measure = measure
        self._max_batch_tokens = max(1, max_batch_tokens)
        self._queue: asyncio.Queue[_Request[Item, Result]] = asyncio.Queue(maxsize=max(1, queue_size))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ml-{name}", initializer=thread_setup)
        self._bulk_executor = bulk_executor or self._executor
        self._interactive_waiting = threading.Event()  # tells a running bulk round to step aside
        self._task: asyncio.Task[None] | None = None
        self._in_flight: list[_Request[Item, Result]] = []
        self.batches_run = 0  # forward passes so far (observability and tests)
        self.tokens_run = 0  # measured tokens of those passes (tests charge simulated time by the work done)

    def start(self) -> None:
        """Start the worker task on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve(), name=f"ml-worker-{self.name}")

    async def submit(self, items: Sequence[Item], *, bulk: bool = False) -> list[Result]:
        """Results for `items`, in order, computed in shared batches. Busy when the queue is full.

        `bulk` work (ingest) yields to everything else and runs at low priority.
        """
        if self._task is None or self._task.done():
            raise Unavailable(f"the {self.name} worker is not running")
        if not items:
            return []
        request: _Request[Item, Result] = _Request(items, asyncio.get_running_loop().create_future(), bulk)
        try:
            self._queue.put_nowait(request)
        except asyncio.QueueFull:
            raise Busy(f"the {self.name} queue is full; retry later") from None
        if not bulk:
            self._interactive_waiting.set()
        return await request.future

    async def stop(self) -> None:
        """Stop taking work and fail everything still pending or in flight (nothing hangs)."""
        self._interactive_waiting.set()  # a bulk round in progress ends at its next batch
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        stopped = Unavailable(f"the {self.name} worker stopped")
        while not self._queue.empty():
            _fail(self._queue.get_nowait(), stopped)
        for request in self._in_flight:
            _fail(request, stopped)
        self._in_flight = []
        for executor in {self._executor, self._bulk_executor}:
            executor.shutdown(wait=False, cancel_futures=True)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        backlog: list[_Ref[Item, Result]] = []  # items taken from the queue, not yet run
        while True:
            fresh = [] if backlog else [await self._queue.get()]
            self._interactive_waiting.clear()  # set again by any interactive request from here on
            while not self._queue.empty():
                fresh.append(self._queue.get_nowait())
            backlog = _admit(fresh, backlog)
            refs, backlog = _next_round(backlog)
            self._in_flight = list(dict.fromkeys(request for request, _ in refs + backlog))
            if not refs:
                continue
            bulk = refs[0][0].bulk
            try:
                executor = self._bulk_executor if bulk else self._executor
                unrun = await loop.run_in_executor(executor, self._run_round, loop, refs, bulk)
            except Exception as exc:  # measuring failed: no batch ran, so fail the whole round
                for request in dict.fromkeys(request for request, _ in refs):
                    _fail(request, _as_ml_error(self.name, exc))
            else:
                backlog = unrun + backlog
            # Deliveries were queued on the loop before the round's own completion, so every
            # request with no items left in the backlog is settled by now; this is the guarantee
            # that none can hang regardless.
            waiting = {request for request, _ in backlog}
            for request in dict.fromkeys(request for request, _ in refs):
                if request not in waiting:
                    _fail(request, MLError(f"{self.name}: no result was produced for this request"))
            self._in_flight = list(dict.fromkeys(request for request, _ in backlog))

    def _run_round(
        self, loop: asyncio.AbstractEventLoop, refs: list[_Ref[Item, Result]], yielding: bool
    ) -> list[_Ref[Item, Result]]:
        """Inference thread: size, sort, batch, run; each batch's outcome goes back to the loop.

        A `yielding` (bulk) round stops before its next batch once an interactive request is
        waiting and returns the items it did not run.
        """
        items = [request.items[i] for request, i in refs]
        lengths = self._measure(items)
        batches = plan_batches(lengths, self._max_batch_tokens)
        for number, batch in enumerate(batches):
            if yielding and self._interactive_waiting.is_set():
                return [refs[i] for rest in batches[number:] for i in rest]
            batch_refs = [refs[i] for i in batch]
            if all(request.future.done() for request, _ in batch_refs):
                continue  # every owner already failed or gave up
            outcome: list[Result] | RagServerError
            try:
                outcome = self._run_batch([items[i] for i in batch])
                if len(outcome) != len(batch):
                    raise MLError(f"{self.name}: model returned {len(outcome)} results for {len(batch)} inputs")
            except Exception as exc:
                outcome = _as_ml_error(self.name, exc)
            self.batches_run += 1
            self.tokens_run += sum(lengths[i] for i in batch)
            try:
                loop.call_soon_threadsafe(_deliver, batch_refs, outcome)
            except RuntimeError:  # the loop closed under us (shutdown): nobody is waiting any more
                return []
        return []


def _admit(fresh: list[_Request[Item, Result]], backlog: list[_Ref[Item, Result]]) -> list[_Ref[Item, Result]]:
    """The backlog with the new requests' items merged in by rank (Request.rank), first come
    first served within a rank; callers that gave up are dropped. The backlog is kept in rank
    order, so this is a linear merge."""
    arrived = sorted(((r, i) for r in fresh for i in range(len(r.items))), key=lambda ref: ref[0].rank)
    merged = heapq.merge(backlog, arrived, key=lambda ref: ref[0].rank)  # ties: the backlog first
    return [(r, i) for r, i in merged if not r.future.done()]


def _next_round(backlog: list[_Ref[Item, Result]]) -> tuple[list[_Ref[Item, Result]], list[_Ref[Item, Result]]]:
    """(this round, the rest): up to ROUND_ITEMS items from the head, all interactive or all bulk
    (bulk items form the tail of the backlog, so a round never carries both)."""
    size = 0
    while size < min(len(backlog), ROUND_ITEMS) and backlog[size][0].bulk == backlog[0][0].bulk:
        size += 1
    return backlog[:size], backlog[size:]


def _deliver(batch_refs: list[_Ref[Item, Result]], outcome: list[Result] | RagServerError) -> None:
    """On the loop: store a batch's results, resolve completed requests, or fail the batch's requests."""
    for position, (request, index) in enumerate(batch_refs):
        if request.future.done():
            continue
        if isinstance(outcome, BaseException):
            request.future.set_exception(outcome)
            continue
        request.results[index] = outcome[position]
        if len(request.results) == len(request.items):
            request.future.set_result([request.results[i] for i in range(len(request.items))])


def _fail(request: _Request[Item, Result], error: Exception) -> None:
    if not request.future.done():
        request.future.set_exception(error)


def _as_ml_error(name: str, exc: Exception) -> RagServerError:
    """Our own errors pass through; foreign ones (torch, tokenizers) become MLError at this boundary."""
    if isinstance(exc, RagServerError):
        return exc
    log.exception("%s inference failed", name)
    error = MLError(f"{name} inference failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
