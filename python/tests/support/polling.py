"""Waiting, in tests, for what cannot be awaited directly: an operation behind /api/progress, a
server process coming up, state that another task or process changes.

Every wait goes through one core (`Poll`): it ends when the condition holds, or fails at its
deadline with the last value it saw, so a hang reads as a clear assertion rather than a
pytest-timeout traceback. The pause between probes only paces the polling; it never decides an
outcome. A probe may raise to stop the wait early (a server process that exited, say).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

import httpx

from ragserver.progress import FINAL

T = TypeVar("T")
State = dict[str, Any]

TIMEOUT_S = 120.0
INTERVAL_S = 0.1
SHOWN_CHARS = 4000  # of the last value, in a failure message


class PollTimeout(AssertionError):
    """The condition did not hold before the deadline."""


class Poll(Generic[T]):
    """One bounded wait: records each probed value and fails at the deadline, naming the last one."""

    def __init__(self, done: Callable[[T], bool], what: str, timeout: float, describe: Callable[[T], str]) -> None:
        self._done = done
        self._what = what
        self._timeout = timeout
        self._describe = describe
        self._deadline = time.monotonic() + timeout

    def settled(self, value: T) -> bool:
        """True when `value` is what we wait for; raises PollTimeout once the deadline has passed."""
        if self._done(value):
            return True
        if time.monotonic() >= self._deadline:
            shown = self._describe(value)[-SHOWN_CHARS:]
            raise PollTimeout(f"{self._what}: not reached within {self._timeout:g} s; last seen: {shown}")
        return False


def poll_until(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    what: str,
    timeout: float = TIMEOUT_S,
    interval: float = INTERVAL_S,
    describe: Callable[[T], str] = repr,
) -> T:
    """Call `probe` until `done` accepts its value, blocking the thread between calls (sync tests)."""
    poll = Poll(done, what, timeout, describe)
    while not poll.settled(value := probe()):
        time.sleep(interval)
    return value


async def apoll_until(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    what: str,
    timeout: float = TIMEOUT_S,
    interval: float = INTERVAL_S,
    describe: Callable[[T], str] = repr,
) -> T:
    """Await `probe` until `done` accepts its value (an async client, a store read)."""
    poll = Poll(done, what, timeout, describe)
    while not poll.settled(value := await probe()):
        await asyncio.sleep(interval)
    return value


async def apoll_state(
    read: Callable[[], T], done: Callable[[T], bool], *, what: str, timeout: float = TIMEOUT_S, interval: float = 0.02
) -> T:
    """Read in-process state with a plain call until `done` accepts it, yielding to the loop in between."""
    poll = Poll(done, what, timeout, repr)
    while not poll.settled(value := read()):
        await asyncio.sleep(interval)
    return value


def ended(state: State) -> bool:
    """The default wait of an operation: until it completed, failed or was cancelled."""
    return state["status"] in FINAL


async def wait_operation(
    client: httpx.AsyncClient,
    progress_id: str,
    until: Callable[[State], bool] = ended,
    *,
    timeout: float = TIMEOUT_S,
    headers: Mapping[str, str] | None = None,
) -> State:
    """Poll GET /api/progress/{id} until `until` holds; fails if the operation ends first."""

    async def probe() -> State:
        return _progress_state(await client.get(f"/api/progress/{progress_id}", headers=headers))

    state = await apoll_until(probe, _ended_or(until), what=f"operation {progress_id}", timeout=timeout)
    return _reached(progress_id, until, state)


def wait_operation_sync(
    client: httpx.Client,
    progress_id: str,
    until: Callable[[State], bool] = ended,
    *,
    timeout: float = TIMEOUT_S,
    headers: Mapping[str, str] | None = None,
) -> State:
    """`wait_operation` for a blocking client (a `ragserver serve` subprocess)."""

    def probe() -> State:
        return _progress_state(client.get(f"/api/progress/{progress_id}", headers=headers))

    state = poll_until(probe, _ended_or(until), what=f"operation {progress_id}", timeout=timeout)
    return _reached(progress_id, until, state)


def _progress_state(response: httpx.Response) -> State:
    assert response.status_code == 200, response.text
    state: State = response.json()
    return state


def _ended_or(until: Callable[[State], bool]) -> Callable[[State], bool]:
    """Stop waiting when the operation ends, so a condition that can no longer hold fails at once."""
    return lambda state: until(state) or ended(state)


def _reached(progress_id: str, until: Callable[[State], bool], state: State) -> State:
    assert until(state), f"operation {progress_id} ended before the awaited state: {state}"
    return state


def wait_http(
    url: str,
    accept: Callable[[httpx.Response], bool] = lambda response: True,
    *,
    process: subprocess.Popen[bytes] | None = None,
    log: Callable[[], str] = lambda: "",
    timeout: float = TIMEOUT_S,
) -> httpx.Response:
    """GET `url` until `accept` says yes (by default: until anything answers); returns that response.

    A refused connection counts as "not yet". When `process` is the server, its exit ends the wait
    at once with its log.
    """

    def probe() -> httpx.Response | None:
        if process is not None:
            assert process.poll() is None, f"the server exited with {process.returncode}: {log()[-SHOWN_CHARS:]}"
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            return None

    def describe(response: httpx.Response | None) -> str:
        answer = "no answer" if response is None else f"{response.status_code} {response.text}"
        return f"{answer}\n{log()}"

    def accepted(response: httpx.Response | None) -> bool:
        return response is not None and accept(response)

    response = poll_until(probe, accepted, what=f"GET {url}", timeout=timeout, interval=0.2, describe=describe)
    assert response is not None
    return response
