"""`infinity_emb v2` on 127.0.0.1, for the Infinity tests and benchmarks/bench_remote.py.

Infinity lives in a venv of its own (tests/support/infinity_env.sh builds it; INFINITY_VENV, default
~/.cache/ragserver/infinity-venv). It serves local model folders under the names given, at /v1, on CPU,
offline and without its usage statistics.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from support.polling import poll_until

VENV = Path(os.environ.get("INFINITY_VENV", Path.home() / ".cache" / "ragserver" / "infinity-venv"))
START_TIMEOUT_S = 600


def binary(venv: Path = VENV) -> Path:
    return venv / "bin" / "infinity_emb"


@contextlib.contextmanager
def running_infinity(models: dict[str, Path], port: int, venv: Path = VENV) -> Iterator[str]:
    """Infinity serving `models` (served name -> folder); yields its /v1 base URL once it lists them all."""
    command = [str(binary(venv)), "v2", "--host", "127.0.0.1", "--port", str(port), "--url-prefix", "/v1"]
    command += ["--engine", "torch", "--device", "cpu", "--no-model-warmup"]
    for name, folder in models.items():
        command += ["--model-id", str(folder), "--served-model-name", name]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
    base_url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

        def served() -> set[str]:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"infinity_emb exited with {process.returncode}: {log.read()[-3000:].decode()}")
            try:
                return {model["id"] for model in httpx.get(f"{base_url}/models", timeout=5).json()["data"]}
            except httpx.HTTPError:
                return set()

        try:
            poll_until(
                served, lambda ids: ids == set(models), what="Infinity serving its models", timeout=START_TIMEOUT_S
            )
            yield base_url
        finally:
            process.terminate()
            process.wait(60)
