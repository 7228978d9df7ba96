"""Docker end-to-end fixtures: the real slim image, the real bootstrap, compose, docker exec.

Nothing is mocked: the server image is built with `docker compose build`, the ML env is
installed by ./bootstrap-ml-env.sh (torch from the wheelhouse RAGSERVER_E2E_WHEELS, default
/opt/wheels, else the PyTorch index), and the models are local test models (the tiny Qwen3
reranker and all-MiniLM-L6-v2 from python/tests/support/models.py) laid out in an HF cache under
the real ids and imported with --model-dir. Everything runs under its own compose project,
container names, port and temp folders, so a developer's own ragserver is left alone. The
server runs with an API key (RAGSERVER_API_KEY in its .env), as a deployment reachable by
coding assistants would: the HTTP and MCP clients here send it.

When no Docker engine answers the whole tier is skipped with the command that starts one
(../shared/docker-sandbox/up); RAGSERVER_REQUIRE_DOCKER=1 (CI) turns that skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.polling import poll_until, wait_http

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ["-f", str(REPO / "docker-compose.yml"), "-f", str(REPO / "tests/e2e/compose.hostnet.yml")]
# RAGSERVER_E2E_PROJECT: another name for the compose project and its containers (two runs on one engine)
PROJECT = os.environ.get("RAGSERVER_E2E_PROJECT", "rse2e")
IMAGE = "ragserver:e2e"
CONTAINER = f"{PROJECT}-server"
WHEELS = Path(os.environ.get("RAGSERVER_E2E_WHEELS", "/opt/wheels"))
HEALTHY_TIMEOUT_S = 180
API_KEY = f"e2e-{uuid.uuid4().hex}"
AUTH = {"Authorization": f"Bearer {API_KEY}"}

# Measured durations, printed at the end of the run (see DOCKER_ML_CLEANUP_IMPLEMENTATION.md).
TIMINGS: dict[str, float] = {}


def run(cmd: list[str], *, env: dict[str, str] | None = None, check: bool = True, timeout: float = 900):
    """Run a command, capturing output; on failure the assertion shows its output."""
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], check=False, capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip (or, with RAGSERVER_REQUIRE_DOCKER=1, fail) the tier when Docker is not running."""
    if not items or _docker_works():
        return
    reason = "no Docker engine answers `docker info`; start one with ../shared/docker-sandbox/up"
    if os.environ.get("RAGSERVER_REQUIRE_DOCKER") == "1":
        raise pytest.UsageError(f"RAGSERVER_REQUIRE_DOCKER=1 but {reason}")
    for item in items:
        item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.section("docker e2e timings (seconds)")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name:<40} {seconds:8.1f}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    """The compose project under test: its settings, and the commands that drive it."""

    workdir: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ml_env_dir(self) -> Path:
        return self.workdir / "ml-env"

    @property
    def models_dir(self) -> Path:
        return self.workdir / "models"

    def compose(self, *args: str, check: bool = True, timeout: float = 900):
        command = ["docker", "compose", "-p", PROJECT, *COMPOSE_FILES, *args]
        return run(command, env=self.env, check=check, timeout=timeout)

    def bootstrap(self, *args: str, extra_env: dict[str, str] | None = None, check: bool = True):
        return run([str(REPO / "bootstrap-ml-env.sh"), *args], env={**self.env, **(extra_env or {})}, check=check)

    def exec(self, *args: str, check: bool = True):
        return run(["docker", "exec", CONTAINER, *args], check=check, timeout=300)

    def health_status(self, container: str = CONTAINER) -> str:
        proc = run(["docker", "inspect", "-f", "{{.State.Health.Status}}", container], check=False)
        return proc.stdout.strip()

    def wait_healthy(self, container: str = CONTAINER) -> float:
        """Seconds until Docker reports the container healthy (its HEALTHCHECK on /health passed)."""
        started = time.monotonic()

        def status() -> str:
            current = self.health_status(container)
            if current == "unhealthy" or not current:
                logs = run(["docker", "logs", "--tail", "60", container], check=False)
                raise AssertionError(f"{container} is {current or 'gone'}:\n{logs.stdout}\n{logs.stderr}")
            return current

        poll_until(status, lambda current: current == "healthy", what=f"{container} healthy", timeout=HEALTHY_TIMEOUT_S)
        return time.monotonic() - started


def wait_http_ok(url: str, timeout: float = HEALTHY_TIMEOUT_S) -> float:
    """Seconds until GET url answers 200."""
    started = time.monotonic()
    wait_http(url, lambda response: response.status_code == 200, timeout=timeout)
    return time.monotonic() - started


def wait_ml_ready(base: str, timeout: float = HEALTHY_TIMEOUT_S) -> dict:
    """/health once it says 'ok': database up and both models loaded (they load after the port opens)."""
    response = wait_http(f"{base}/health", lambda answer: answer.json().get("status") == "ok", timeout=timeout)
    health: dict = response.json()
    return health


def env_file_with_key(example: Path, api_key: str) -> str:
    """.env.example with RAGSERVER_API_KEY set: the one edit a user makes to protect /api and /mcp."""
    text = example.read_text()
    line = "RAGSERVER_API_KEY=\n"
    assert line in text, f"{example} no longer has an empty {line.strip()} line"
    return text.replace(line, f"RAGSERVER_API_KEY={api_key}\n", 1)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A clean compose project: its own port, container, image tag and ML folders; torn down after."""
    workdir = tmp_path_factory.mktemp("docker-e2e")
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "RAGSERVER_IMAGE": IMAGE,
        "RAGSERVER_CONTAINER": CONTAINER,
        "ML_ENV_DIR": str(workdir / "ml-env"),
        "MODELS_DIR": str(workdir / "models"),
        "KNOWLEDGE_BASE_DIR": str(workdir / "knowledge_base"),
        "BOOTSTRAP_IMAGE": "ragserver-bootstrap:e2e",
        # The quick start's `cp .env.example .env` (plus the key), without touching the developer's own .env.
        "RAGSERVER_ENV_FILE": str(workdir / ".env"),
    }
    (workdir / ".env").write_text(env_file_with_key(REPO / ".env.example", API_KEY))
    stack = Stack(workdir=workdir, port=port, env=env)
    stack.compose("--profile", "verify", "--profile", "ingest", "down", "-v", "--remove-orphans", check=False)
    yield stack
    stack.compose("--profile", "verify", "--profile", "ingest", "down", "-v", "--remove-orphans", check=False)
    # The ML env is written by root in a container: delete it the same way.
    bootstrap_image = env["BOOTSTRAP_IMAGE"]
    run(["docker", "run", "--rm", "--network", "none", "-v", f"{workdir}:/w", "--entrypoint", "sh",
         bootstrap_image, "-c", "rm -rf /w/ml-env /w/models /w/test-models"], check=False)  # fmt: skip


@pytest.fixture(scope="session")
def server_image(stack: Stack) -> str:
    """The slim server image, built the way users build it (compose, BuildKit)."""
    started = time.monotonic()
    stack.compose("build", "server")
    TIMINGS["server image build"] = time.monotonic() - started
    return IMAGE


@pytest.fixture(scope="session")
def test_models(stack: Stack) -> Path:
    """An HF cache holding the tiny Qwen3 reranker and MiniLM under the real model ids."""
    models = stack.workdir / "test-models"
    cli = [sys.executable, str(REPO / "python/tests/support/models.py")]
    steps = [
        ["tiny-reranker", str(models / "src/reranker")],
        ["minilm", str(models / "src/minilm")],
        ["hf-cache", str(models / "src/reranker"), str(models / "hf"), "Qwen/Qwen3-Reranker-0.6B"],
        ["hf-cache", str(models / "src/minilm"), str(models / "hf"), "sentence-transformers/all-MiniLM-L6-v2"],
    ]
    for step in steps:
        run([*cli, *step], timeout=600)
    return models / "hf"


def bootstrap_args(test_models: Path) -> list[str]:
    """The e2e bootstrap: local models, the wheelhouse when there is one, host networking."""
    args = ["--model-dir", str(test_models), "--network", "host"]
    if WHEELS.is_dir():
        args += ["--find-links", str(WHEELS)]
    return args


@pytest.fixture(scope="session")
def bootstrapped(stack: Stack, test_models: Path) -> Path:
    """The ML env installed by ./bootstrap-ml-env.sh; returns the ML env folder."""
    started = time.monotonic()
    stack.bootstrap(*bootstrap_args(test_models))
    TIMINGS["bootstrap (first run)"] = time.monotonic() - started
    manifest = json.loads((stack.ml_env_dir / "ml-env.json").read_text())
    assert manifest["torch"]["variant"] == "cpu"
    return stack.ml_env_dir


@pytest.fixture(scope="session")
def server(stack: Stack, server_image: str, bootstrapped: Path) -> str:
    """The compose `server` service, up and healthy; returns its base URL."""
    started = time.monotonic()
    stack.compose("up", "-d", "--no-build", "server")
    wait_http_ok(f"{stack.url}/health")
    TIMINGS["compose up -> /health 200"] = time.monotonic() - started
    stack.wait_healthy()
    TIMINGS["compose up -> docker healthy"] = time.monotonic() - started
    wait_ml_ready(stack.url)
    TIMINGS["compose up -> models loaded (health ok)"] = time.monotonic() - started
    return stack.url
