"""Bulk work runs at a lower OS priority: worker threads, conversion processes, torch threads."""

from __future__ import annotations

import os
import threading

import psutil

from ragserver.crawl.markdown import Converter
from ragserver.lowpriority import bulk_executor, lower_current_thread
from ragserver.ml.loading import limit_cpu_threads, usable_cores


def thread_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_bulk_threads_are_lowered_and_the_rest_of_the_process_is_not() -> None:
    before = thread_nice()
    executor = bulk_executor("test-bulk", nice=4)
    try:
        assert executor.submit(thread_nice).result(10) == min(19, before + 4)
    finally:
        executor.shutdown()
    assert thread_nice() == before  # the calling thread and the process keep their priority
    assert os.getpriority(os.PRIO_PROCESS, 0) == before


def test_lowering_by_zero_changes_nothing_and_the_value_stops_at_19() -> None:
    def lowered(step: int) -> int:
        lower_current_thread(step)
        return thread_nice()

    executor = bulk_executor("test-plain", nice=0)
    try:
        assert executor.submit(thread_nice).result(10) == thread_nice()
        assert executor.submit(lowered, 0).result(10) == thread_nice()
        assert executor.submit(lowered, 50).result(10) == 19
    finally:
        executor.shutdown()


async def test_conversion_processes_run_at_bulk_priority(tmp_path) -> None:
    converter = Converter(tmp_path, workers=2, nice=6)
    try:
        page = await converter.convert("http://example.test/", "<html><title>T</title><body><p>Hi</p></body></html>")
        assert page.title == "T"
        # the pool's workers (not multiprocessing's resource tracker); the one that converted
        # the page has run the initializer, a second one may still be starting
        workers = [child for child in psutil.Process().children() if "spawn_main" in " ".join(child.cmdline())]
        assert workers, "the converter started no processes"
        assert min(19, os.getpriority(os.PRIO_PROCESS, 0) + 6) in {worker.nice() for worker in workers}
    finally:
        converter.close()


def test_torch_threads_follow_ml_threads_or_half_the_cores() -> None:
    import torch

    previous = torch.get_num_threads()
    try:
        assert limit_cpu_threads(3) == 3 == torch.get_num_threads()
        assert limit_cpu_threads(0) == max(1, usable_cores() // 2) == torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
