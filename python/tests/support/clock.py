"""A Clock (ragserver.clock) that moves only when a test moves it, for code whose behaviour time decides."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class SteppedClock:
    """Time starts at 1000 s and passes only through `advance` or `sleep`; due timers run as it passes.

    `sleep` passes the time at once (and yields to the loop), recording each request in `slept`,
    so a test sees exactly which waits the code asked for, without waiting them.
    """

    def __init__(self) -> None:
        self.time = 1000.0
        self.slept: list[float] = []
        self._timers: list[tuple[float, Callable[[], None]]] = []

    def now(self) -> float:
        return self.time

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self._timers.append((self.time + delay, callback))

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.time += max(0.0, seconds)
        due = sorted((timer for timer in self._timers if timer[0] <= self.time), key=lambda timer: timer[0])
        self._timers = [timer for timer in self._timers if timer[0] > self.time]
        for _, callback in due:
            callback()
