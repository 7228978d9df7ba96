"""The event-loop lag monitor: a blocked loop shows up with at least the time it was blocked, and
the recent maximum forgets what is older than its window.

How often the timer wakes up late on a busy machine is not asserted: only lower bounds that
blocking guarantees, and the bookkeeping under an injected clock.
"""

from __future__ import annotations

import asyncio
import time

from support.polling import apoll_state

from ragserver.looplag import SLOW_MS, WINDOW_S, LoopLagMonitor

BLOCK_S = 0.3  # what a parser or a model call on the loop would do
IDLE_BOUND_MS = 2000.0  # an idle loop on a loaded CI machine is late by tens of ms, never by seconds


async def test_a_blocking_call_shows_up_with_at_least_its_length() -> None:
    monitor = LoopLagMonitor(interval_s=0.01)
    task = asyncio.create_task(monitor.run())
    try:
        # once it has sampled, the monitor only ever waits inside its sleep: the block below starts after it
        await apoll_state(lambda: monitor.samples, lambda n: n >= 3, what="a few idle samples")
        idle = monitor.snapshot()
        seen = monitor.samples
        time.sleep(BLOCK_S)
        await apoll_state(lambda: monitor.samples, lambda n: n > seen, what="the sample after the block")
    finally:
        task.cancel()
    snapshot = monitor.snapshot()
    assert idle["lag_max_ms"] < IDLE_BOUND_MS, idle
    assert snapshot["lag_max_ms"] >= BLOCK_S * 1000 - monitor.interval_s * 1000, snapshot
    assert snapshot["lag_over_100ms"] >= 1, snapshot


class Clock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_slow_wakeups_are_counted_and_the_recent_max_forgets_old_lag() -> None:
    clock = Clock()
    monitor = LoopLagMonitor(clock=clock)
    for lag_ms in (3.0, SLOW_MS + 150, SLOW_MS - 1, -2.0):  # a negative lag (early wake-up) counts as none
        monitor.record(lag_ms)
    assert monitor.snapshot() == {
        "lag_max_ms": SLOW_MS + 150,
        "lag_recent_max_ms": SLOW_MS + 150,
        "lag_over_100ms": 1,
        "samples": 4,
    }

    clock.now += WINDOW_S / 2  # the window turns: the last half still counts as recent
    monitor.record(20.0)
    assert monitor.snapshot()["lag_recent_max_ms"] == SLOW_MS + 150

    clock.now += WINDOW_S / 2  # a whole window later the old stall is no longer recent, but stays the max
    monitor.record(5.0)
    snapshot = monitor.snapshot()
    assert snapshot["lag_recent_max_ms"] == 20.0 and snapshot["lag_max_ms"] == SLOW_MS + 150, snapshot
