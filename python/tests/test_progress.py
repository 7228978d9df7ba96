"""ProgressTracker pushes: status changes at once, counter updates coalesced, the latest state last."""

from __future__ import annotations

import asyncio
from typing import Any

from ragserver.progress import PUBLISH_INTERVAL_S, ProgressTracker


def recording_tracker() -> tuple[ProgressTracker, list[dict[str, Any]]]:
    """A tracker and the list its one listener appends every pushed snapshot to."""
    tracker = ProgressTracker()
    pushed: list[dict[str, Any]] = []

    async def listener(snapshot: dict[str, Any]) -> None:
        pushed.append(snapshot)

    tracker.add_listener(listener)
    return tracker, pushed


async def test_updates_are_coalesced_and_the_latest_state_is_pushed_last() -> None:
    tracker, pushed = recording_tracker()
    op = tracker.start("upload")
    for _ in range(1000):  # an ingest counting documents as fast as it can
        op.increment(documents=1)
    await asyncio.sleep(PUBLISH_INTERVAL_S * 2)
    await tracker.drain()
    assert [s["status"] for s in pushed[:2]] == ["starting", "running"]  # each new status at once
    assert len(pushed) <= 4, [s["counts"] for s in pushed]
    assert pushed[-1]["counts"] == {"documents": 1000}  # the held update went out with the latest counts

    op.increment(documents=1)
    op.finish("done")
    await tracker.drain()
    assert pushed[-1]["status"] == "completed" and pushed[-1]["counts"] == {"documents": 1001}
    count = len(pushed)
    await asyncio.sleep(PUBLISH_INTERVAL_S * 2)
    await tracker.drain()
    assert len(pushed) == count  # nothing stale follows the final state


async def test_each_operation_has_its_own_interval() -> None:
    """Updates of two operations held in the same interval both go out, each with its latest state."""
    tracker, pushed = recording_tracker()
    first, second = tracker.start("crawl"), tracker.start("upload")
    first.update(step="fetching")  # a new status: pushed at once
    second.update(step="parsing")
    first.increment(pages=1)  # held: within the interval of the first's last push
    second.increment(documents=1)
    second.increment(documents=1)
    held = len(pushed)
    await asyncio.sleep(PUBLISH_INTERVAL_S * 2)
    await tracker.drain()
    latest = {s["progressId"]: s["counts"] for s in pushed[held:]}
    assert latest == {first.id: {"pages": 1}, second.id: {"documents": 2}}
