"""Bulk work runs at a lower OS priority (worker threads, conversion processes); torch thread counts per thread."""

from __future__ import annotations

import ctypes
import os
import threading
from functools import partial
from pathlib import Path

import psutil
import pytest

from ragserver.crawl.markdown import Converter
from ragserver.lowpriority import bulk_executor, lower_current_thread
from ragserver.ml.loading import search_cpu_threads, usable_cores, use_cpu_threads


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


def openmp_threads_after_work() -> int:
    """omp_get_max_threads() of the calling thread after a parallel torch operation, read from the
    OpenMP runtime torch ships (other packages, scikit-learn say, may load a libgomp of their own)."""
    import torch

    torch.ones(100_000).exp_()  # a thread's first parallel op is where torch could override the count
    maps = Path("/proc/self/maps").read_text().splitlines()
    torch_lib = str(Path(torch.__file__).parent / "lib")
    library = next(line.split()[-1] for line in maps if "libgomp" in line and torch_lib in line)
    return ctypes.CDLL(library).omp_get_max_threads()


def test_search_threads_are_ml_threads_or_half_the_cores() -> None:
    assert search_cpu_threads(3) == 3
    assert search_cpu_threads(0) == max(1, usable_cores() // 2)


def test_each_inference_thread_keeps_its_own_torch_thread_count() -> None:
    """Search threads and the bulk thread set different counts; neither changes the other's."""
    search = bulk_executor("test-search", nice=0, setup=partial(use_cpu_threads, 1))
    bulk = bulk_executor("test-bulk", nice=0, setup=partial(use_cpu_threads, 3))
    try:
        # both threads start (and set their counts) before either runs a model
        search.submit(int).result(10)
        bulk.submit(int).result(10)
        assert search.submit(openmp_threads_after_work).result(10) == 1
        assert bulk.submit(openmp_threads_after_work).result(10) == 3
        assert search.submit(openmp_threads_after_work).result(10) == 1
    finally:
        search.shutdown()
        bulk.shutdown()


@pytest.mark.parametrize(
    ("cpu_max", "cap"),
    [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1), ("garbage", None)],
)
def test_usable_cores_honours_a_cgroup_cpu_quota(tmp_path: Path, cpu_max: str, cap: int | None) -> None:
    """docker --cpus=1.5 writes '150000 100000' to cpu.max: two threads, not one per host core."""
    (tmp_path / "cpu.max").write_text(cpu_max)
    affinity = len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path / "cpu.max") == (affinity if cap is None else min(affinity, cap))
    assert usable_cores(tmp_path / "missing") == affinity
