"""The polling helper every waiting test goes through: it returns what it waited for, fails at its
deadline naming the last value, and stops at once when a probe raises or an operation ends early."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.api_fixtures import RunningApp
from support.polling import PollTimeout, apoll_state, apoll_until, poll_until, wait_operation


def counter() -> Iterator[int]:
    yield from range(1, 1000)


def test_returns_the_first_accepted_value() -> None:
    values = counter()
    assert poll_until(lambda: next(values), lambda n: n >= 3, what="three", interval=0) == 3
    assert next(values) == 4  # probed exactly three times


def test_fails_at_the_deadline_naming_what_and_the_last_value() -> None:
    with pytest.raises(PollTimeout) as caught:
        poll_until(lambda: {"status": "running", "step": "chunking"}, lambda s: False, what="the upload", timeout=0)
    message = str(caught.value)
    assert message.startswith("the upload: not reached within 0 s") and "'step': 'chunking'" in message, message


def test_a_probe_that_raises_ends_the_wait_at_once() -> None:
    def probe() -> int:
        raise AssertionError("the server exited with 1")

    with pytest.raises(AssertionError, match="exited with 1"):
        poll_until(probe, lambda n: n > 0, what="never", timeout=3600)


async def test_async_variants_wait_the_same_way() -> None:
    values = counter()

    async def probe() -> int:
        return next(values)

    assert await apoll_until(probe, lambda n: n >= 2, what="two", interval=0) == 2
    assert await apoll_state(lambda: next(values), lambda n: n >= 5, what="five", interval=0) == 5
    with pytest.raises(PollTimeout, match="last seen: 6"):
        await apoll_state(lambda: next(values), lambda n: False, what="nothing", timeout=0)


@pytest.mark.slow
async def test_an_operation_that_ends_before_the_awaited_state_fails_at_once(api: RunningApp) -> None:
    op = api.runtime.tracker.start("test")
    op.update(counts={"pages_crawled": 1})
    op.finish()
    state = await wait_operation(api.client, op.id)
    assert state["status"] == "completed" and state["counts"] == {"pages_crawled": 1}, state
    with pytest.raises(AssertionError, match="ended before the awaited state"):
        await wait_operation(api.client, op.id, lambda s: s["counts"]["pages_crawled"] >= 2, timeout=3600)
