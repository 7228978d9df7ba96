"""Event-loop lag, measured inside the server: how late a short periodic sleep wakes up.

Every request, Socket.IO event and progress update shares one event loop; parsing, chunking and
inference must run in threads. When something blocks the loop anyway, every client waits that
long, and this is the number that shows it (in /health under `event_loop`). It costs one timer
wake-up per interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

INTERVAL_S = 0.05
WINDOW_S = 10.0
SLOW_MS = 100.0


class LoopLagMonitor:
    """Max lag since start, max over the last ~10 s, and how many wake-ups were later than 100 ms."""

    def __init__(self, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock  # injectable, so tests can move the window deterministically
        self.samples = 0
        self.max_ms = 0.0
        self.slow = 0
        # two alternating windows, so "recent" always covers between WINDOW_S/2 and WINDOW_S seconds
        self._windows = [0.0, 0.0]
        self._window_started = clock()

    async def run(self) -> None:
        """Sleep, measure the oversleep, repeat until cancelled."""
        while True:
            before = self._clock()
            await asyncio.sleep(self.interval_s)
            self.record((self._clock() - before - self.interval_s) * 1000)

    def record(self, lag_ms: float) -> None:
        lag_ms = max(lag_ms, 0.0)
        now = self._clock()
        if now - self._window_started >= WINDOW_S / 2:
            self._windows = [self._windows[1], 0.0]
            self._window_started = now
        self._windows[1] = max(self._windows[1], lag_ms)
        self.samples += 1
        self.max_ms = max(self.max_ms, lag_ms)
        self.slow += lag_ms > SLOW_MS

    def snapshot(self) -> dict[str, float | int]:
        return {
            "lag_max_ms": round(self.max_ms, 1),
            "lag_recent_max_ms": round(max(self._windows), 1),
            "lag_over_100ms": self.slow,
            "samples": self.samples,
        }
