"""The batching worker on its own: batching, failures, back-pressure, shutdown.

BatchWorker is generic over its model function, so these tests drive it with small plain
functions whose failures and timing the test controls (a real model cannot be made to fail
on cue); batching with the real models is covered in test_ml_service.py. Orderings are set up
with events: a model call that holds its thread until the test releases it, and requests that
are known to be queued (`enqueued`) before the release, so no sleep decides an outcome.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

import pytest

from ragserver.errors import Busy, MLError, Unavailable
from ragserver.lowpriority import bulk_executor
from ragserver.ml.worker import ROUND_ITEMS, BatchWorker, plan_batches


def lengths_of(items: list[str]) -> list[int]:
    return [len(item) for item in items]


async def enqueued(submission: Coroutine[Any, Any, list[str]]) -> asyncio.Task[list[str]]:
    """Start a submit and return once its request is in the worker's queue.

    submit() enqueues in its first step, before its first await; a task's first step runs on the
    next turn of the loop, which `sleep(0)` yields to (a scheduling step, not a wait for time).
    """
    task = asyncio.ensure_future(submission)
    await asyncio.sleep(0)
    return task


def resolution_order(**futures: asyncio.Future[list[str]]) -> list[str]:
    """Names of `futures`, appended as each one resolves (filled in by done callbacks)."""
    order: list[str] = []
    for name, future in futures.items():
        future.add_done_callback(lambda _, name=name: order.append(name))
    return order


def upper_batch(calls: list[list[str]]):
    def run(items: list[str]) -> list[str]:
        calls.append(list(items))
        if any("boom" in item for item in items):
            raise ValueError("model exploded on purpose")
        return [item.upper() for item in items]

    return run


def test_plan_batches_sorts_and_respects_the_token_budget() -> None:
    lengths = [5, 1, 9, 3, 3, 30]
    batches = plan_batches(lengths, max_batch_tokens=10)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert longest * len(batch) <= 10 or len(batch) == 1
    assert [5] in batches  # the 30-token item is alone: over budget, but it still runs
    assert plan_batches([], 10) == []


async def test_concurrent_requests_share_batches_and_keep_order() -> None:
    calls: list[list[str]] = []
    worker = BatchWorker("t", upper_batch(calls), lengths_of, max_batch_tokens=1000, queue_size=16)
    worker.start()
    try:
        requests = [[f"r{i}-a", f"r{i}-bb", f"r{i}-c"] for i in range(6)]
        results = await asyncio.wait_for(asyncio.gather(*[worker.submit(r) for r in requests]), 10)
        assert results == [[item.upper() for item in r] for r in requests]
        assert len(calls) == 1 and worker.batches_run == 1  # 6 requests, one forward pass
        assert lengths_of(calls[0]) == sorted(lengths_of(calls[0]))
    finally:
        await worker.stop()


async def test_a_failed_batch_fails_only_its_requests() -> None:
    calls: list[list[str]] = []
    worker = BatchWorker("t", upper_batch(calls), lengths_of, max_batch_tokens=4, queue_size=16)
    worker.start()
    try:
        good = worker.submit(["ok", "fine"])
        bad = worker.submit(["boom"])
        outcomes = await asyncio.wait_for(asyncio.gather(good, bad, return_exceptions=True), 10)
        assert outcomes[0] == ["OK", "FINE"]
        assert isinstance(outcomes[1], MLError)
        assert "ValueError: model exploded on purpose" in outcomes[1].message
        assert isinstance(outcomes[1].__cause__, ValueError)
        # The worker survives a failed batch.
        assert await asyncio.wait_for(worker.submit(["again"]), 10) == ["AGAIN"]
    finally:
        await worker.stop()


async def test_a_failure_while_measuring_fails_the_round_without_hanging() -> None:
    def measure(items: list[str]) -> list[int]:
        if "unmeasurable" in items:
            raise RuntimeError("tokenizer failed")
        return lengths_of(items)

    worker = BatchWorker("t", upper_batch([]), measure, max_batch_tokens=100, queue_size=4)
    worker.start()
    try:
        with pytest.raises(MLError, match="tokenizer failed"):
            await asyncio.wait_for(worker.submit(["unmeasurable"]), 10)
        assert await asyncio.wait_for(worker.submit(["x"]), 10) == ["X"]
    finally:
        await worker.stop()


async def test_full_queue_answers_busy_and_stop_fails_pending_requests() -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(items: list[str]) -> list[str]:
        started.set()
        release.wait(10)
        return items

    worker = BatchWorker("t", slow, lengths_of, max_batch_tokens=100, queue_size=1)
    worker.start()
    in_flight = asyncio.ensure_future(worker.submit(["first"]))
    await asyncio.to_thread(started.wait, 10)  # the worker holds "first" in its thread: the queue is empty
    queued = await enqueued(worker.submit(["second"]))  # fills the one queue slot
    with pytest.raises(Busy):
        await worker.submit(["third"])
    assert not queued.done()
    await worker.stop()
    release.set()
    for future in (in_flight, queued):
        with pytest.raises(Unavailable, match="stopped"):
            await asyncio.wait_for(future, 10)
    with pytest.raises(Unavailable, match="not running"):
        await worker.submit(["after stop"])


async def test_a_caller_that_gives_up_does_not_break_the_worker() -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(items: list[str]) -> list[str]:
        started.set()
        release.wait(10)
        return items

    worker = BatchWorker("t", slow, lengths_of, max_batch_tokens=100, queue_size=8)
    worker.start()
    try:
        gives_up = asyncio.ensure_future(worker.submit(["gives up"]))
        await asyncio.to_thread(started.wait, 10)  # its item is in the model
        gives_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gives_up
        release.set()
        assert await asyncio.wait_for(worker.submit(["stays"]), 10) == ["stays"]
    finally:
        await worker.stop()


async def test_empty_request_needs_no_model_call() -> None:
    calls: list[list[str]] = []
    worker = BatchWorker("t", upper_batch(calls), lengths_of, max_batch_tokens=10, queue_size=1)
    worker.start()
    try:
        assert await worker.submit([]) == []
        assert calls == []
    finally:
        await worker.stop()


async def test_a_small_request_overtakes_a_bulk_backlog() -> None:
    """A search's one text waits for the round in progress, not for a bulk job's remaining rounds."""
    calls: list[list[str]] = []
    upper = upper_batch(calls)
    started, release = threading.Event(), threading.Event()

    def held_first(items: list[str]) -> list[str]:
        if not calls:  # the first round holds the thread until the query is queued
            started.set()
            release.wait(10)
        return upper(items)

    worker = BatchWorker("t", held_first, lengths_of, max_batch_tokens=10_000, queue_size=16)
    worker.start()
    try:
        texts = [f"bulk-{i:04d}" for i in range(ROUND_ITEMS * 8)]  # eight rounds
        bulk = asyncio.ensure_future(worker.submit(texts))
        await asyncio.to_thread(started.wait, 10)
        query = await enqueued(worker.submit(["q"]))
        order = resolution_order(query=query, bulk=bulk)
        release.set()
        assert await asyncio.wait_for(query, 10) == ["Q"]
        assert await asyncio.wait_for(bulk, 10) == [text.upper() for text in texts]
        assert order == ["query", "bulk"]
        assert "q" in calls[1], calls[1]  # in the round right after the one that was running
    finally:
        await worker.stop()


async def test_bulk_rounds_run_at_low_priority_and_step_aside_mid_round() -> None:
    """A bulk round runs in the low-priority thread and stops between batches for a query."""
    calls: list[tuple[str, list[str]]] = []
    started, query_arrived = threading.Event(), threading.Event()

    def run(items: list[str]) -> list[str]:
        calls.append((threading.current_thread().name, list(items)))
        if len(calls) == 1:
            started.set()
            query_arrived.wait(10)  # hold the first bulk batch until the query is queued
        return [item.upper() for item in items]

    # one item per batch: a bulk round of ROUND_ITEMS items has ROUND_ITEMS batches
    worker = BatchWorker(
        "t", run, lengths_of, max_batch_tokens=8, queue_size=16, bulk_executor=bulk_executor("t-bulk", nice=5)
    )
    worker.start()
    try:
        texts = [f"b{i:06d}" for i in range(ROUND_ITEMS)]
        bulk = asyncio.ensure_future(worker.submit(texts, bulk=True))
        await asyncio.to_thread(started.wait, 10)
        query = await enqueued(worker.submit(["q"]))
        order = resolution_order(query=query, bulk=bulk)
        query_arrived.set()
        assert await asyncio.wait_for(query, 10) == ["Q"]
        assert await asyncio.wait_for(bulk, 10) == [text.upper() for text in texts]
        assert order == ["query", "bulk"]  # the bulk round stepped aside after its first batch
        query_at = next(i for i, (_, items) in enumerate(calls) if items == ["q"])
        assert query_at == 1, [items for _, items in calls]
        bulk_threads = {name for name, items in calls if items != ["q"]}
        assert {name.split("_")[0] for name in bulk_threads} == {"t-bulk"}
        assert calls[query_at][0].startswith("ml-t")  # the query ran in the normal thread
    finally:
        await worker.stop()


async def test_interactive_requests_go_before_queued_bulk_work() -> None:
    """Rerank-sized interactive requests are not small, yet they still go ahead of bulk ones."""
    calls: list[list[str]] = []
    started, gate = threading.Event(), threading.Event()

    def run(items: list[str]) -> list[str]:
        started.set()
        gate.wait(10)
        calls.append(list(items))
        return [item.upper() for item in items]

    worker = BatchWorker("t", run, lengths_of, max_batch_tokens=10_000, queue_size=16)
    worker.start()
    try:
        first = asyncio.ensure_future(worker.submit(["first"], bulk=True))
        await asyncio.to_thread(started.wait, 10)  # the worker is inside the first round, waiting on the gate
        bulk = await enqueued(worker.submit([f"bulk{i}" for i in range(10)], bulk=True))
        rerank = await enqueued(worker.submit([f"cand{i}" for i in range(10)]))
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, bulk, rerank), 10)
        order = [item for batch in calls for item in batch]
        assert order.index("cand0") < order.index("bulk0")
    finally:
        await worker.stop()
