"""A real `ragserver serve` process for the reliability scripts: start, wait, kill, restart, read its log.

The scripts (schemathesis run, faults, load) all need the same thing: the console script on a
free 127.0.0.1 port, with the embedded Postgres in a data dir of its own (or a DATABASE_URL),
the packaged MiniLM as embedder and a tiny random-weight Qwen3 reranker built once, so that
every stage of the server (embed, rerank) really runs. Nothing here talks beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

PYTHON_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PYTHON_DIR / "tests"))  # support.models builds the tiny reranker

WORK_DIR = Path(os.environ.get("RELIABILITY_WORK_DIR", "/tmp/ragserver-reliability"))
API_KEY = "reliability-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
READY_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def model_env() -> dict[str, str]:
    """EMBEDDING_MODEL / RERANKER_MODEL / ML_USER_BASE for real, small local models (built once)."""
    from support.models import build_tiny_qwen3_reranker, minilm_path

    reranker = WORK_DIR / "models" / "tiny-qwen3-reranker"
    if not (reranker / "config.json").exists():
        build_tiny_qwen3_reranker(reranker)
    ml_base = WORK_DIR / "ml-env"
    ml_base.mkdir(parents=True, exist_ok=True)
    return {
        "EMBEDDING_MODEL": str(minilm_path()),
        "RERANKER_MODEL": str(reranker),
        "ML_DEVICE": "cpu",
        "ML_USER_BASE": str(ml_base),
    }


def new_data_dir(prefix: str) -> Path:
    """A fresh DATA_DIR for an embedded Postgres (not under pytest's 0700 tmp folders)."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=WORK_DIR))


class ServerProcess:
    """`ragserver serve` as a child process whose output goes to a log file we can read back."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "RAGSERVER_API_KEY": API_KEY,
            **env,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
        }
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        command = [str(Path(sys.executable).parent / "ragserver"), "serve"]
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(command, env=self.env, stdout=log_file, stderr=subprocess.STDOUT)
        return self

    def wait_health(self, accept: Callable[[httpx.Response], bool], timeout: float = READY_TIMEOUT_S) -> dict:
        """Poll /health until `accept` says yes; raises with the log tail when the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                response = httpx.get(f"{self.base_url}/health", timeout=5)
                if accept(response):
                    return response.json()
                last = response.text
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise TimeoutError(f"health not accepted after {timeout} s: {last}\n{self.log_tail()}")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> dict:
        """Until the database is up and the models have settled (status ok)."""
        return self.wait_health(lambda r: r.status_code == 200 and r.json()["status"] == "ok", timeout)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)

    def stop(self) -> int:
        """Ctrl-C, as an operator would; SIGKILL after 60 s."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            return self.kill()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=AUTH, timeout=timeout)


def wait_operation(client: httpx.Client, progress_id: str, timeout: float = 300) -> dict:
    """Poll an operation until it is completed, failed or cancelled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/api/progress/{progress_id}").json()
        if state.get("status") in {"completed", "failed", "cancelled"}:
            return state
        time.sleep(0.2)
    raise TimeoutError(f"operation {progress_id} still running after {timeout} s")
