"""The slim server image and the external ML env, end to end in a real Docker engine.

bootstrap (local test models, wheelhouse torch) -> compose up -> docker exec import checks ->
upload + reranked query over HTTP -> MCP over the container's port and over `docker exec -i
... ragserver mcp` -> restart keeps the data -> verify and ingest profiles ->
the image without the ML mounts is healthy but degraded with the fix -> a bootstrap that fails
midway leaves the previous ML env as it was. Tests run in file order and share one stack.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import (
    API_KEY,
    AUTH,
    CONTAINER,
    REPO,
    TIMINGS,
    Stack,
    bootstrap_args,
    free_port,
    run,
    wait_http_ok,
    wait_ml_ready,
)
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from support.mcp_client import call, http_session
from support.polling import wait_operation_sync

NO_ML_STACK = """
import importlib.util, os, shutil, site, sys
present = [m for m in ("torch", "transformers", "sentence_transformers") if importlib.util.find_spec(m)]
assert not present, f"ML packages baked into the server image: {present}"
assert site.ENABLE_USER_SITE and "PYTHONNOUSERSITE" not in os.environ, "the user site must stay enabled"
assert site.getusersitepackages() == "/root/.local/lib/python3.11/site-packages", site.getusersitepackages()
compilers = [c for c in ("gcc", "cc", "g++", "clang") if shutil.which(c)]
assert not compilers, f"compilers left in the image: {compilers}"
assert not os.path.exists("/root/.cache/pip"), "pip cache left in the image"
print("ok")
"""


def _report(stdout: str) -> dict:
    """The JSON report `ragserver check-ml` prints (it starts at the first brace)."""
    return json.loads(stdout[stdout.index("{") :])


def upload(base: str, filename: str, text: str) -> dict:
    """Upload one document and wait until its ingest operation ends; returns the final snapshot."""
    answer = httpx.post(
        f"{base}/api/documents/upload", files={"file": (filename, text.encode())}, headers=AUTH, timeout=30
    )
    assert answer.status_code == 200, answer.text
    with httpx.Client(base_url=base, headers=AUTH, timeout=10) as client:
        snapshot = wait_operation_sync(client, answer.json()["progressId"])
    assert snapshot["status"] == "completed", snapshot
    return snapshot


def query(base: str, text: str) -> dict:
    answer = httpx.post(f"{base}/api/rag/query", json={"query": text, "match_count": 5}, headers=AUTH, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def ml_env_listing(folder: Path) -> dict[str, int]:
    """Relative path -> size of every file: what a failed bootstrap must not change."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


PHRASE = f"zebracorn-{uuid.uuid4().hex[:8]}"
DOC = f"""# Postgres vectors

pgvector adds a vector column type and HNSW indexes to Postgres. The code word is {PHRASE}.

## Unrelated

Bananas are yellow and grow in bunches.
"""


def test_server_image_is_slim(stack: Stack, server_image: str) -> None:
    """No torch/transformers/sentence-transformers, no compilers or pip cache; user site stays on."""
    command = ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", server_image]
    proc = run([*command, "-c", NO_ML_STACK])
    assert proc.stdout.strip() == "ok"
    size = run(["docker", "image", "inspect", "-f", "{{.Size}}", server_image]).stdout.strip()
    TIMINGS["server image size (MB)"] = int(size) / 1e6


# The crawl tests that need neither a database nor models: they exercise crawl4ai's HTTP path,
# markdown generation and our fetcher, i.e. exactly what the slim crawl4ai install must keep working.
# --noconftest: the shared fixture plugins may import dev-only packages the image does not have.
CRAWL_TESTS = ["tests/test_crawl_units.py", "tests/test_crawl_site.py"]
IN_IMAGE_PYTEST = """
set -e
pip install -q --target /tmp/testdeps pytest pytest-asyncio pytest-timeout hypothesis 2>/dev/null
cd /src && python -m pytest -q -p no:cacheprovider --noconftest "$@"
"""


def test_crawl_tests_pass_inside_the_image(server_image: str) -> None:
    """crawl4ai is installed without litellm, patchright, nltk, alphashape: its crawl path still works."""
    tests = [t for t in CRAWL_TESTS if (REPO / "python" / t).is_file()]
    assert tests, "the crawl test files moved: update CRAWL_TESTS"
    proc = run(["docker", "run", "--rm", "--network", "host", "-v", f"{REPO / 'python'}:/src:ro",
                "-e", "PYTHONDONTWRITEBYTECODE=1", "-e", "PYTHONPATH=/tmp/testdeps", "--entrypoint", "sh",
                server_image, "-c", IN_IMAGE_PYTEST, "sh", *tests])  # fmt: skip
    assert " passed" in proc.stdout and "failed" not in proc.stdout, proc.stdout[-3000:]


def test_bootstrap_again_is_a_quick_noop(stack: Stack, bootstrapped: Path, test_models: Path) -> None:
    started = time.monotonic()
    proc = stack.bootstrap(*bootstrap_args(test_models))
    TIMINGS["bootstrap (second run, no-op)"] = time.monotonic() - started
    assert "nothing to do" in proc.stdout


def test_import_checks_in_the_container(server: str, stack: Stack) -> None:
    report = _report(stack.exec("ragserver", "check-ml").stdout)
    assert report["ok"] is True, report
    assert report["env"]["state"] == "ready"
    assert report["reranker"]["model"] == "Qwen/Qwen3-Reranker-0.6B"
    assert 0.0 <= report["reranker"]["score"] <= 1.0
    torch_version = stack.exec("python", "-c", "import torch; print(torch.__version__)").stdout.strip()
    assert torch_version.startswith("2.")
    stack.exec("python", "-c", "from sentence_transformers import CrossEncoder")
    listing = stack.exec("sh", "-c", "ls /root/.cache/huggingface/hub | grep Qwen3-Reranker").stdout
    assert "models--Qwen--Qwen3-Reranker-0.6B" in listing
    health = httpx.get(f"{server}/health", timeout=10).json()
    assert health["status"] == "ok", health


def test_upload_and_reranked_query(server: str) -> None:
    upload(server, "vectors.md", DOC)
    answer = query(server, f"Which extension adds vector indexes? {PHRASE}")
    assert answer["reranking_applied"] is True, answer
    assert answer["search_mode"] == "hybrid"
    assert any(PHRASE in hit["content"] for hit in answer["results"]), answer


def test_the_api_key_guards_api_and_mcp(server: str) -> None:
    """The tier's server has RAGSERVER_API_KEY set: without it /api and /mcp answer 401."""
    for path in ("/api/rag/query", "/mcp"):
        refused = httpx.post(f"{server}{path}", json={}, timeout=10)
        assert refused.status_code == 401, (path, refused.text)
        assert refused.json()["error"] == "unauthorized", refused.text


def test_the_image_serves_the_web_page(server: str) -> None:
    """The page and its pinned browser libraries are package data of the image (fetched when it was built),
    served without the key."""
    page = httpx.get(f"{server}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8", page.text
    assert '<script type="module" src="/assets/js/main.js">' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert httpx.get(f"{server}/assets/js/main.js", timeout=10).status_code == 200
    pins = json.loads((REPO / "python/src/ragserver/web/vendor.json").read_text())["files"]
    for entry in pins:
        served = httpx.get(f"{server}/assets/vendor/{entry['serve_as']}", timeout=10)
        assert served.status_code == 200, entry["serve_as"]
        assert served.headers["content-type"] == "text/javascript; charset=utf-8"
        assert hashlib.sha256(served.content).hexdigest() == entry["sha256"], entry["serve_as"]


@pytest.mark.asyncio
async def test_mcp_search_through_the_containers_port(server: str) -> None:
    """The SDK's client over streamable HTTP finds the uploaded document, with what a model cites it by."""
    async with http_session(server, API_KEY) as client:
        answer = await call(client, "rag_search_knowledge_base", {"query": f"vector indexes {PHRASE}"})
        # the page's matched chunks, not only its preview: the tiny test reranker may put the other section first
        hits = [hit for hit in answer["results"] if any(PHRASE in chunk["content"] for chunk in hit["matched_chunks"])]
        assert len(hits) == 1, answer
        hit = hits[0]
        assert hit["url"] and hit["title"] and isinstance(hit["page_id"], int) and hit["preview"], hit
        stages = answer["stages"]
        assert stages["search_mode"] == "hybrid" and stages["reranking_applied"] is True, stages
        assert stages["reranked_count"] >= 1, stages
        page = (await call(client, "rag_read_full_page", {"page_id": hit["page_id"]}))["page"]
        assert PHRASE in page["full_content"] and page["url"] == hit["url"], page


@pytest.mark.asyncio
async def test_mcp_over_stdio_through_docker_exec(server: str) -> None:
    """`docker exec -i <container> ragserver mcp` as a client spawns it; the key comes from the container's env.

    RAGSERVER_URL in the container points at the default port; the tier's server listens on another.
    """
    bridge = ["exec", "-i", "-e", f"RAGSERVER_URL={server}", CONTAINER, "ragserver", "mcp"]
    async with Client(StdioServerParameters(command="docker", args=bridge, env=dict(os.environ))) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"rag_search_knowledge_base", "rag_read_full_page", "crawl_url"} <= names, names
        args = {"query": PHRASE, "match_count": 5, "return_mode": "chunks"}
        answer = await call(client, "rag_search_knowledge_base", args)
        assert any(PHRASE in hit["content"] for hit in answer["results"]), answer


def test_restart_keeps_the_data(server: str, stack: Stack) -> None:
    started = time.monotonic()
    run(["docker", "restart", CONTAINER])
    wait_http_ok(f"{server}/health")
    TIMINGS["docker restart -> /health 200"] = time.monotonic() - started
    stack.wait_healthy()
    wait_ml_ready(server)
    TIMINGS["docker restart -> models loaded (health ok)"] = time.monotonic() - started
    answer = query(server, PHRASE)
    assert any(PHRASE in hit["content"] for hit in answer["results"]), answer
    assert answer["reranking_applied"] is True


def test_verify_profile(server: str, stack: Stack) -> None:
    proc = stack.compose("--profile", "verify", "run", "--rm", "verify")
    assert "smoke query" in proc.stdout and "'reranking_applied': True" in proc.stdout, proc.stdout[-2000:]


def test_ingest_profile_uses_the_servers_database(server: str, stack: Stack) -> None:
    """The one-shot ingest container adopts the server's embedded Postgres (shared pid namespace)."""
    phrase = f"quokkafish-{uuid.uuid4().hex[:8]}"
    folder = Path(stack.env["KNOWLEDGE_BASE_DIR"])
    folder.mkdir(exist_ok=True)
    (folder / "notes.md").write_text(f"# Notes\n\nThe ingest profile stored the word {phrase}.\n")
    stack.compose("--profile", "ingest", "run", "--rm", "ingest")
    answer = query(server, phrase)
    assert any(phrase in hit["content"] for hit in answer["results"]), answer


def test_without_ml_mounts_healthy_but_degraded(stack: Stack, server_image: str) -> None:
    name, port = f"{CONTAINER}-degraded", free_port()
    run(["docker", "rm", "-fv", name], check=False)
    started = time.monotonic()
    run(["docker", "run", "-d", "--name", name, "--network", "host", "-e", f"PORT={port}",
         "--health-interval", "1s", server_image])  # fmt: skip
    try:
        stack.wait_healthy(name)
        TIMINGS["docker run (no ML) -> healthy"] = time.monotonic() - started
        base = f"http://127.0.0.1:{port}"
        health = httpx.get(f"{base}/health", timeout=10).json()
        assert health["status"] == "degraded", health
        assert health["ml"]["env"]["state"] == "missing"
        assert any("./bootstrap-ml-env.sh" in issue for issue in health["issues"]), health["issues"]
        upload(base, "vectors.md", DOC)
        answer = query(base, PHRASE)
        assert answer["search_mode"] == "full_text" and answer["reranking_applied"] is False, answer
        assert any(PHRASE in hit["content"] for hit in answer["results"]), answer
    finally:
        run(["docker", "rm", "-fv", name], check=False)


def test_failed_bootstrap_leaves_the_previous_env(
    server: str, stack: Stack, bootstrapped: Path, test_models: Path
) -> None:
    """torch installs into staging, then a package pin that cannot resolve fails the run midway."""
    before = ml_env_listing(stack.ml_env_dir)
    manifest = (stack.ml_env_dir / "ml-env.json").read_text()
    bad = {"ML_PACKAGES": "sentence-transformers>=5.4 transformers>=4.51 ragserver-e2e-no-such-package==1.0"}
    proc = stack.bootstrap(*bootstrap_args(test_models), extra_env=bad, check=False)
    assert proc.returncode != 0
    assert "installing torch" in proc.stdout, proc.stdout[-2000:]  # it got past the first install
    assert "are unchanged" in proc.stderr, proc.stderr[-2000:]
    assert (stack.ml_env_dir / "ml-env.json").read_text() == manifest
    assert ml_env_listing(stack.ml_env_dir) == before
    assert not Path(f"{stack.ml_env_dir}.staging").exists()
    # and the server still has its ML stack
    stack.exec("python", "-c", "import torch, sentence_transformers")
