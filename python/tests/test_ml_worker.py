"""The batching worker on its own: batching, failures, back-pressure, shutdown.

BatchWorker is generic over its model function, so these tests drive it with small plain
functions whose failures and timing the test controls (a real model cannot be made to fail
on cue); batching with the real models is covered in test_ml_service.py.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from ragserver.errors import Busy, MLError, Unavailable
from ragserver.ml.worker import ROUND_ITEMS, BatchWorker, plan_batches


def lengths_of(items: list[str]) -> list[int]:
    return [len(item) for item in items]


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
    await asyncio.to_thread(started.wait, 10)  # the worker holds "first" in its thread
    queued = asyncio.ensure_future(worker.submit(["second"]))
    await asyncio.sleep(0)
    with pytest.raises(Busy):
        await worker.submit(["third"])
    await worker.stop()
    release.set()
    for future in (in_flight, queued):
        with pytest.raises(Unavailable, match="stopped"):
            await asyncio.wait_for(future, 10)
    with pytest.raises(Unavailable, match="not running"):
        await worker.submit(["after stop"])


async def test_a_caller_that_gives_up_does_not_break_the_worker() -> None:
    release = threading.Event()

    def slow(items: list[str]) -> list[str]:
        release.wait(10)
        return items

    worker = BatchWorker("t", slow, lengths_of, max_batch_tokens=100, queue_size=8)
    worker.start()
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(worker.submit(["gives up"]), 0.2)
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

    def slow(items: list[str]) -> list[str]:
        threading.Event().wait(0.02)  # a forward pass takes time
        return upper(items)

    worker = BatchWorker("t", slow, lengths_of, max_batch_tokens=10_000, queue_size=16)
    worker.start()
    try:
        bulk = asyncio.ensure_future(worker.submit([f"bulk-{i:04d}" for i in range(ROUND_ITEMS * 8)]))
        while not calls:
            await asyncio.sleep(0.005)
        assert await asyncio.wait_for(worker.submit(["q"]), 10) == ["Q"]
        assert not bulk.done()  # the query finished first
        assert len(calls) <= 3, len(calls)  # the round that was running, then the query's own
        assert await asyncio.wait_for(bulk, 10) == [f"BULK-{i:04d}" for i in range(ROUND_ITEMS * 8)]
    finally:
        await worker.stop()
