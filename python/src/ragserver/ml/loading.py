"""Where a model comes from and where it runs: offline resolution, device and dtype.

Models are never downloaded at run time: HF_HUB_OFFLINE=1 is set before the first import of
huggingface_hub / transformers, and a model setting is either a local folder or an HF id that
must already sit in the local HF cache (filled once by ./bootstrap-ml-env.sh).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ragserver.errors import Unavailable

if TYPE_CHECKING:
    import torch

FIX_MODELS = "./bootstrap-ml-env.sh (downloads the models into the HF cache once)"
# Tokens per forward pass on CPU: GEMMs over this many token rows already run near the torch.mm
# peak, and bigger batches only add activations that spill out of the caches, so the elementwise
# work between the GEMMs runs at memory speed and fewer texts are encoded per CPU-second
# (measured in BENCHMARKS.md, "Reranker efficiency" and "Ingest throughput").
CPU_BATCH_TOKENS = 2048
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # "<quota> <period>" or "max <period>"


def force_offline() -> None:
    """Forbid Hub downloads for this process; must run before huggingface_hub is first imported."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def hf_hub_cache() -> Path:
    """The HF hub cache folder in effect (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    force_offline()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve_model_path(name: str) -> Path:
    """A local folder for `name`: the folder itself, or the cached snapshot of an HF id.

    Raises Unavailable with the fix when the id is not in the cache (we never download).
    """
    candidate = Path(name).expanduser()
    if candidate.is_dir():
        return candidate
    force_offline()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=name, local_files_only=True))
    except Exception as exc:  # huggingface_hub raises several types for "not cached" / bad id
        raise Unavailable(
            f"model {name!r} is neither a local folder nor in the HF cache at {hf_hub_cache()}",
            details={"fix": FIX_MODELS, "error": str(exc)},
        ) from exc


def cached_models() -> list[dict[str, object]]:
    """The model entries of the HF cache (repo id, revisions, size), for check-ml."""
    cache = hf_hub_cache()
    if not cache.is_dir():
        return []
    rows = []
    for entry in sorted(cache.glob("models--*")):
        snapshots = entry / "snapshots"
        revisions = sorted(p.name for p in snapshots.iterdir()) if snapshots.is_dir() else []
        size = sum(p.stat().st_size for p in (entry / "blobs").glob("*") if p.is_file())
        repo_id = entry.name.removeprefix("models--").replace("--", "/", 1)
        rows.append({"repo_id": repo_id, "revisions": revisions, "size_mb": round(size / 2**20, 1)})
    return rows


@dataclass(frozen=True)
class Placement:
    """Where a model runs and in which floating point type."""

    device: str
    dtype: str  # "float32" | "bfloat16" | "float16"

    def torch_dtype(self) -> torch.dtype:
        """The torch dtype object (torch imported lazily)."""
        import torch

        dtype: torch.dtype = getattr(torch, self.dtype)
        return dtype

    def batch_tokens(self, configured: int) -> int:
        """Token budget of one forward pass: ML_MAX_BATCH_TOKENS, capped at CPU_BATCH_TOKENS on CPU."""
        return min(configured, CPU_BATCH_TOKENS) if self.device == "cpu" else configured


def usable_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPU cores this process may use: its affinity mask (docker --cpuset-cpus), capped by its
    cgroup v2 CPU quota (docker --cpus), which the affinity mask does not show."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 here, or a format we do not know
        pass
    return cores


def search_cpu_threads(setting: int) -> int:
    """Torch threads of a search-time forward pass: ML_THREADS, or half the usable cores when 0.

    The embedder and the reranker each run forward passes in a thread of their own, and torch
    gives each of them a team of this many threads: with one per core, the two models together
    run twice as many busy threads as there are cores and the event loop waits its turn behind
    them (RELIABILITY.md, "Load"). Bulk embedding (ingest) keeps every core: it runs at a lower
    priority, so it takes the cores only when searches leave them.
    """
    return setting if setting > 0 else max(1, usable_cores() // 2)


def use_cpu_threads(threads: int) -> None:
    """Set torch's intra-op threads for the calling thread (call it once, when the thread starts).

    With torch's OpenMP backend the count is kept per calling thread, but a thread's first
    parallel operation first copies in the count last set by any thread (torch's lazy per-thread
    init): so run one small parallel operation, then set this thread's own count.
    """
    import torch

    torch.ones(100_000).exp_()  # the per-thread init happens here, not later over our setting
    torch.set_num_threads(threads)


def choose_placement(setting: str) -> Placement:
    """Resolve ML_DEVICE (auto|cpu|cuda): CPU runs float32; CUDA runs bf16 where supported, else fp16."""
    import torch

    setting = setting.strip().lower()
    if setting not in {"auto", "cpu", "cuda"}:
        raise Unavailable(f"ML_DEVICE must be auto, cpu or cuda, not {setting!r}")
    use_cuda = setting == "cuda" or (setting == "auto" and torch.cuda.is_available())
    if not use_cuda:
        return Placement("cpu", "float32")
    if not torch.cuda.is_available():
        raise Unavailable("ML_DEVICE=cuda but torch sees no CUDA device", details={"torch": torch.__version__})
    return Placement("cuda", "bfloat16" if torch.cuda.is_bf16_supported() else "float16")
