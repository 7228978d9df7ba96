"""Time as the services see it: a monotonic reading, timers and sleeps behind one small contract.

Progress coalescing and the crawler's politeness delay are decided by time; they take a Clock
(the event loop's by default) so tests step time instead of sleeping through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    """A monotonic clock with timers and sleeps on the same scale."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run `callback` once `delay` seconds have passed on this clock."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once `seconds` have passed on this clock."""
        ...


class LoopClock:
    """The running event loop's clock, timers and sleeps (the default)."""

    def now(self) -> float:
        """The loop's monotonic time."""
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """A loop timer."""
        asyncio.get_running_loop().call_later(delay, callback)

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep."""
        await asyncio.sleep(seconds)
