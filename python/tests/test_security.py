"""Security checks of the whole server that no single room owns (issue 6).

Covered elsewhere and not repeated here: every /api route refusing requests without the key
(test_api_auth.py, from the app's own route list), Socket.IO refusing a connect without it
(test_socketio.py), the upload size limit (test_api.py: 413 by Content-Length and mid-stream),
folder ingest skipping symlinks that leave the folder and safe upload names (test_parse.py),
redirects to private/metadata addresses and DNS rebinding at connect time (test_crawl_site.py,
test_crawl_units.py).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from support.api_fixtures import API_KEY, RunningApp, free_port, settings_env
from support.polling import poll_until, wait_http, wait_operation

from ragserver.config import Settings
from ragserver.crawl.guard import Guard
from ragserver.errors import TargetRefused

REPO = Path(__file__).resolve().parents[2]
PYTHON_DIR = REPO / "python"
BIN = Path(sys.executable).parent
SUPABASE_SECRET = "sb-service-key-SECRET-7f3a9c"
DB_PASSWORD = "db-password-SECRET-41d2e8"
ML_MOUNTS = ("/root/.local", "/root/.cache/huggingface")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.1/",  # short IPv4 forms that inet_aton expands to 127.0.0.1
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://[::ffff:7f00:1]/",  # IPv4-mapped, hex spelling
        "http://[0:0:0:0:0:ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://[::]/",
        "http://0.0.0.0:8181/",
        "http://localhost./",  # trailing-dot name resolving to loopback
        "http://LOCALHOST:8181/api/rag/sources",
        "http://user:pass@127.0.0.1/",
        "http://[fe80::1%25eth0]/",  # zone id
        "http://[fc00::1]/",
    ],
)
async def test_ssrf_guard_refuses_other_spellings_of_private_addresses(url: str) -> None:
    with pytest.raises(TargetRefused) as caught:
        await Guard(Settings()).check_url(url)
    assert caught.value.status_code == 400


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sent", "kept"),
    [("../../etc/passwd-{m}.md", "passwd-{m}.md"), ("..\\..\\windows\\boot-{m}.txt", "boot-{m}.txt")],
)
async def test_upload_names_cannot_traverse(api: RunningApp, sent: str, kept: str) -> None:
    """Uploads never touch the file system, and the stored name is the base name alone."""
    marker = f"trav{os.urandom(4).hex()}"
    response = await api.client.post(
        "/api/documents/upload", files={"file": (sent.format(m=marker), f"# {marker}\n\nbody text\n".encode())}
    )
    assert response.status_code == 200, response.text
    assert (await wait_operation(api.client, response.json()["progressId"]))["status"] == "completed"
    sources = (await api.client.get("/api/rag/sources")).json()["sources"]
    titles = [s["title"] for s in sources if marker in s["title"]]
    assert titles == [kept.format(m=marker)]
    assert not any(Path(p).exists() for p in ("/etc/passwd-" + marker + ".md", "/windows"))


@pytest.mark.slow
async def test_dot_only_upload_name_is_400(api: RunningApp) -> None:
    response = await api.client.post("/api/documents/upload", files={"file": ("../..", b"# x\n\ntext\n")})
    assert response.status_code == 400 and response.json()["error"] == "bad_request", response.text


def test_compose_mounts_the_ml_env_and_models_read_only() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    checked = 0
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            parts = volume.rsplit(":", 2)  # the host side may hold ${VAR:-default}
            target, mode = (parts[1], parts[2]) if len(parts) == 3 else (parts[-1], "rw")
            if target in ML_MOUNTS or target == "/knowledge_base":
                assert mode == "ro", f"{name}: {volume} must be read-only"
                checked += 1
    assert checked >= 2 * 6, checked  # server, server-gpu, verify, ingest, replica-1, replica-2: both ML folders


REPLICA_DOCKERFILES = ["docker/Dockerfile.postgres", "docker/Dockerfile.redis", "docker/Dockerfile.proxy"]


@pytest.mark.parametrize("dockerfile", ["Dockerfile.server", "Dockerfile.server.bootstrap", *REPLICA_DOCKERFILES])
def test_hadolint_is_clean(dockerfile: str) -> None:
    """Warnings count (hadolint's default failure threshold is 'info'); ignores are inline, with a reason."""
    result = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", dockerfile], cwd=PYTHON_DIR, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _serve(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log_file:
        return subprocess.Popen([str(BIN / "ragserver"), "serve"], env=env, stdout=log_file, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_secrets_never_appear_in_the_logs(api_settings: Settings, tmp_path: Path) -> None:
    """Debug logging, a request cycle with right and wrong keys, errors, then a database that is down."""
    log_path = tmp_path / "server.log"

    def server_log() -> str:
        return log_path.read_text(errors="replace")

    dsn = api_settings.database_url.replace("postgresql://postgres@", f"postgresql://postgres:{DB_PASSWORD}@")
    assert DB_PASSWORD in dsn, api_settings.database_url
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **settings_env(dataclasses.replace(api_settings, database_url=dsn, ragserver_api_key=API_KEY)),
        "SUPABASE_SERVICE_KEY": SUPABASE_SECRET,
        "LOG_LEVEL": "debug",
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    process = _serve(env, log_path)
    try:
        wait_http(f"{base_url}/health", lambda r: r.status_code == 200, process=process, log=server_log)
        auth = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=base_url, timeout=60) as client:
            assert client.get("/api/rag/sources", headers={"Authorization": f"Bearer {API_KEY}x"}).status_code == 401
            assert client.get("/api/rag/sources", params={"key": API_KEY}).status_code == 401
            upload = client.post(
                "/api/documents/upload", files={"file": ("s.md", b"# s\n\nsecret test\n")}, headers=auth
            )
            assert upload.status_code == 200, upload.text
            assert client.post("/api/rag/query", json={"query": "secret test"}, headers=auth).status_code == 200
            assert client.post("/api/rag/query", json={"query": ""}, headers=auth).status_code == 422
            assert client.delete("/api/sources/nope", headers=auth).status_code == 404
            assert (
                client.post("/api/knowledge-items/crawl", json={"url": "http://127.0.0.1/"}, headers=auth).status_code
                == 400
            )
    finally:
        _stop(process)
    # the database unreachable: the retry loop logs the connection error (with the DSN's password?)
    env["DATABASE_URL"] = f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:{free_port()}/nodb?connect_timeout=2"
    env["EMBEDDING_MODEL"] = env["RERANKER_MODEL"] = str(tmp_path / "no-model")  # not needed for this part
    process = _serve(env, log_path)
    try:
        wait_http(f"{base_url}/health", lambda r: r.status_code == 503, process=process, log=server_log)
        poll_until(server_log, lambda text: "retrying" in text, what="the database retry in the log", timeout=30)
    finally:
        _stop(process)
    logs = log_path.read_text(errors="replace")
    assert "database not available, retrying" in logs and "GET /api/rag/sources" in logs, logs[-3000:]
    for secret in (API_KEY, SUPABASE_SECRET, DB_PASSWORD):
        assert secret not in logs, f"{secret} logged:\n" + "\n".join(x for x in logs.splitlines() if secret in x)
