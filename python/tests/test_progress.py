"""ProgressTracker: pushes (status changes at once, counter updates coalesced on the injected clock,
the latest state last) and the operation runner (outcome -> final state, cancel -> task cancelled)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.clock import SteppedClock

from ragserver.errors import InputError
from ragserver.progress import PUBLISH_INTERVAL_S, OperationCancelled, ProgressTracker

pytestmark = pytest.mark.timeout(30)


def recording_tracker() -> tuple[ProgressTracker, SteppedClock, list[dict[str, Any]]]:
    """A tracker on a stepped clock and the list its one listener appends every pushed snapshot to."""
    clock = SteppedClock()
    tracker = ProgressTracker(clock)
    pushed: list[dict[str, Any]] = []

    async def listener(snapshot: dict[str, Any]) -> None:
        pushed.append(snapshot)

    tracker.add_listener(listener)
    return tracker, clock, pushed


async def test_updates_are_coalesced_and_the_latest_state_is_pushed_last() -> None:
    tracker, clock, pushed = recording_tracker()
    op = tracker.start("upload")
    for _ in range(1000):  # an ingest counting documents as fast as it can
        op.increment(documents=1)
    await tracker.drain()
    assert [s["status"] for s in pushed] == ["starting", "running"]  # each new status at once, the rest held
    assert pushed[-1]["counts"] == {"documents": 1}

    clock.advance(PUBLISH_INTERVAL_S / 2)
    await tracker.drain()
    assert len(pushed) == 2  # still within the interval

    clock.advance(PUBLISH_INTERVAL_S / 2)
    await tracker.drain()
    assert len(pushed) == 3 and pushed[-1]["counts"] == {"documents": 1000}  # one push with the latest counts

    op.increment(documents=1)
    op.finish("done")
    await tracker.drain()
    assert pushed[-1]["status"] == "completed" and pushed[-1]["counts"] == {"documents": 1001}
    count = len(pushed)
    clock.advance(PUBLISH_INTERVAL_S * 2)
    await tracker.drain()
    assert len(pushed) == count  # nothing stale follows the final state


async def test_each_operation_has_its_own_interval() -> None:
    """Updates of two operations held in the same interval both go out, each with its latest state."""
    tracker, clock, pushed = recording_tracker()
    first, second = tracker.start("crawl"), tracker.start("upload")
    first.update(step="fetching")  # a new status: pushed at once
    second.update(step="parsing")
    first.increment(pages=1)  # held: within the interval of the first's last push
    second.increment(documents=1)
    second.increment(documents=1)
    await tracker.drain()
    held = len(pushed)
    assert held == 4
    clock.advance(PUBLISH_INTERVAL_S)
    await tracker.drain()
    latest = {s["progressId"]: s["counts"] for s in pushed[held:]}
    assert latest == {first.id: {"pages": 1}, second.id: {"documents": 2}}
    assert len(pushed) == held + 2


async def test_run_completes_the_operation_with_the_result() -> None:
    tracker = ProgressTracker()
    done = tracker.start("ingest")

    async def counted() -> dict[str, Any]:
        return {"documents": 3}

    result = await tracker.run(done, counted(), done=lambda r: f"{r['documents']} documents", stopped="stopped")
    assert result == {"documents": 3}
    assert (done.status, done.message, done.result, done.progress) == ("completed", "3 documents", result, 100.0)


@pytest.mark.parametrize(
    ("error", "shown"),
    [(InputError("bad line 2"), "bad line 2"), (RuntimeError("disk gone"), "RuntimeError: disk gone")],
)
async def test_run_fails_the_operation_and_re_raises(error: Exception, shown: str) -> None:
    tracker = ProgressTracker()
    op = tracker.start("ingest")

    async def failing() -> dict[str, Any]:
        raise error

    with pytest.raises(type(error)):
        await tracker.run(op, failing(), done=str, stopped="stopped")
    assert (op.status, op.error) == ("failed", shown)


class Stuck:
    """Work that waits on something that never comes: only a cancel can end it."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.cleaned_up = False

    async def work(self) -> dict[str, Any]:
        self.entered.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.cleaned_up = True
        return {}


@pytest.mark.parametrize(
    ("stopper", "raised"), [("cancel request", OperationCancelled), ("caller cancelled", asyncio.CancelledError)]
)
async def test_a_stop_cancels_work_that_is_waiting(stopper: str, raised: type[BaseException]) -> None:
    """A cancel request (the stop route) or a cancelled caller (shutdown) both end waiting work at once."""
    tracker = ProgressTracker()
    op = tracker.start("crawl")
    stuck = Stuck()
    running = asyncio.create_task(tracker.run(op, stuck.work(), done=str, stopped="stopped; kept"))
    await stuck.entered.wait()
    if stopper == "cancel request":
        assert tracker.cancel(op.id)
    else:
        running.cancel()
    with pytest.raises(raised):
        await running
    assert (op.status, op.message, stuck.cleaned_up) == ("cancelled", "stopped; kept", True)
    assert not tracker.cancel(op.id)  # already ended


async def test_cancel_all_stops_spawned_and_foreground_operations() -> None:
    tracker = ProgressTracker()
    spawned, foreground = tracker.start("upload"), tracker.start("ingest")
    stuck = Stuck()
    tracker.spawn(spawned, stuck.work(), done=str, stopped="stopped")
    await stuck.entered.wait()

    async def cooperative() -> None:  # a caller that checks between units of work, as ingest does
        while True:
            await asyncio.sleep(0)
            if foreground.cancelled:
                foreground.mark_cancelled()
                return

    checker = asyncio.create_task(cooperative())
    await tracker.cancel_all(timeout=10)
    assert (spawned.status, foreground.status) == ("cancelled", "cancelled")  # it returned once both ended
    assert tracker.list(active_only=True) == []
    await checker
