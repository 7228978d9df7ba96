"""Bulk CPU work at a lower OS priority than the event loop and searches.

On a small machine the event loop, the search path (embed the query, rerank) and bulk work
(parsing and chunking documents, embedding them, converting crawled pages) share a couple of
cores. Without priorities the loop thread waits its turn behind them (the event-loop lag
measured during a crawl + upload is in RELIABILITY.md, python/reliability/load.py). Bulk work
therefore runs in threads and processes with a higher nice value, so the scheduler runs the
loop and the searches first and bulk work takes the cores they leave.

Linux lets a thread raise its own nice value (lower its priority) but not lower it back without
CAP_SYS_NICE, which containers usually lack: a thread is lowered once, when it starts, and
stays a bulk thread for life. On Linux a nice value belongs to a thread (its native id), so
lowering a worker thread leaves the rest of the process alone; threads and processes it starts
later (torch's OpenMP team, say) inherit it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


def lower_current_thread(step: int) -> None:
    """Raise the calling thread's nice value by `step` (BULK_NICE), up to 19; 0 leaves it alone.

    Best effort, Linux only: elsewhere, and where the call is refused, this does nothing.
    """
    if step <= 0 or not sys.platform.startswith("linux"):
        return  # elsewhere a thread id is no process id: setpriority would renice another process
    try:
        thread_id = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread_id)
        os.setpriority(os.PRIO_PROCESS, thread_id, min(19, current + step))
    except (AttributeError, OSError) as exc:
        log.debug("could not lower the priority of a bulk thread: %s", exc)


def bulk_executor(
    name: str, nice: int, workers: int = 1, setup: Callable[[], None] | None = None
) -> ThreadPoolExecutor:
    """A thread pool whose threads run `nice` steps below the server (lowered when each starts),
    then run `setup` (e.g. their torch thread count)."""

    def start() -> None:
        lower_current_thread(nice)
        if setup is not None:
            setup()

    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name, initializer=start)
