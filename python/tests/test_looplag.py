"""The event-loop lag monitor sees a blocked loop, and /health reports it."""

from __future__ import annotations

import asyncio
import time

from ragserver.looplag import LoopLagMonitor


async def test_a_blocked_loop_shows_up_as_lag() -> None:
    monitor = LoopLagMonitor(interval_s=0.01)
    task = asyncio.create_task(monitor.run())
    try:
        await asyncio.sleep(0.05)
        assert monitor.snapshot()["lag_over_100ms"] == 0
        time.sleep(0.25)  # what a parser or a model call on the loop would do
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
    snapshot = monitor.snapshot()
    assert snapshot["lag_over_100ms"] == 1 and snapshot["samples"] >= 3
    assert 200 <= snapshot["lag_max_ms"] < 1000 and snapshot["lag_recent_max_ms"] == snapshot["lag_max_ms"]
