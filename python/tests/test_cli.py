"""The `ragserver` console script as a user runs it: exit codes, one-line errors, in-process work."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support.api_fixtures import free_port, settings_env

pytestmark = pytest.mark.slow

RAGSERVER = str(Path(sys.executable).parent / "ragserver")


def run_cli(settings, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings_env(settings), "LOG_LEVEL": "warning", **(extra_env or {})}
    return subprocess.run([RAGSERVER, *args], env=env, capture_output=True, text=True, timeout=300)


def test_migrate_reports_an_up_to_date_schema(pg_settings) -> None:
    result = run_cli(pg_settings, "migrate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_migrate_over_supabase_rpc_says_which_connection_it_needs(tmp_path: Path) -> None:
    """PostgREST cannot run DDL: the command names the setting that can, instead of "run ragserver migrate"."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(SUPABASE_URL="http://127.0.0.1:9", SUPABASE_SERVICE_KEY="not-a-real-key", DATA_DIR=str(tmp_path))
    result = subprocess.run([RAGSERVER, "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "DATABASE_URL" in result.stderr and "port 5432" in result.stderr


def test_ingest_then_query(api_settings, tmp_path: Path) -> None:
    marker = f"cli{uuid.uuid4().hex[:10]}"
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "one.md").write_text(f"# {marker} compass\n\nThe {marker} compass points to the nearest library.\n")
    (folder / "two.txt").write_text(f"Plain notes: the {marker} kettle whistles at dawn.\n")

    ingested = run_cli(api_settings, "ingest", str(folder), "--tags", "cli,test")
    assert ingested.returncode == 0, ingested.stderr
    assert "Traceback" not in ingested.stderr
    source_id = json.loads(ingested.stdout)["source_id"]

    # within the source: the tiny test reranker has random weights
    found = run_cli(api_settings, "query", f"{marker} compass", "--json", "--source", source_id)
    assert found.returncode == 0, found.stderr
    answer = json.loads(found.stdout)
    assert answer["search_mode"] == "hybrid" and answer["reranking_applied"] is True
    assert any("compass" in r["content"] for r in answer["results"])

    text = run_cli(api_settings, "query", f"{marker} kettle", "--mode", "pages", "--source", source_id)
    assert text.returncode == 0, text.stderr
    assert "results (hybrid" in text.stdout and marker in text.stdout


def test_check_ml_passes_with_the_test_models(ml_settings) -> None:
    result = run_cli(ml_settings, "check-ml")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["reranker"]["score"] >= 0


def test_check_ml_fails_without_torch(ml_settings, tmp_path: Path) -> None:
    blocker = tmp_path / "torch"
    blocker.mkdir()
    (blocker / "__init__.py").write_text('raise ModuleNotFoundError("blocked", name="torch")\n')
    settings = dataclasses.replace(ml_settings, ml_user_base=tmp_path / "empty")
    result = run_cli(settings, "check-ml", extra_env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 3, result.stdout + result.stderr
    assert json.loads(result.stdout)["env"]["fix"] == "./bootstrap-ml-env.sh"


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("ingest", "/no/such/folder"), 2, "no such file"),
        (("query", "   "), 2, "must not be empty"),
        (("query", "x", "--match-count", "0"), 2, "match_count"),
        (("crawl", "https://example.org", "--header", "Bearer s3cret"), 2, "--header must look like 'Name: value'"),
        (("crawl", "https://example.org", "--header", "Host: evil.example"), 2, "header 'Host' is set by the crawler"),
        (("crawl", "https://example.org", "--include", "/(/"), 2, "'/(/' is not a valid regular expression"),
        (("crawl", "https://example.org", "--scope", "planet"), 2, "scope: Input should be 'subpages'"),
        (("crawl", "https://example.org", "--exclude-selector", "div[["), 2, "exclude_selectors"),
    ],
)
def test_errors_are_one_line_with_a_meaningful_exit_code(api_settings, args, code: int, words: str) -> None:
    result = run_cli(api_settings, *args)
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr


def test_unreachable_database_exits_3(tmp_path: Path) -> None:
    from ragserver.config import Settings

    dead = f"postgresql://nobody:pw@127.0.0.1:{free_port()}/none?connect_timeout=2"
    settings = dataclasses.replace(Settings(), database_url=dead, data_dir=tmp_path, ml_user_base=tmp_path)
    result = run_cli(settings, "migrate")
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines() == [result.stderr.splitlines()[-1]], result.stderr
    assert result.stderr.startswith("error: database: cannot connect"), result.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = subprocess.run([RAGSERVER, "query"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2


def test_crawl_a_local_site_then_query(api_settings) -> None:
    from support.site_fixtures import FixtureSite, page

    marker = f"crawl{uuid.uuid4().hex[:8]}"
    routes = {
        "/": page("Home", f"<p>The {marker} observatory opens at night.</p>", ["guide.html"]),
        "/guide.html": page("Guide", f"<p>Point the {marker} telescope north to find the pole star.</p>"),
    }
    with FixtureSite(routes) as site:
        extra = {"CRAWL_ALLOWED_HOSTS": "127.0.0.1", "CRAWL_PER_HOST_DELAY_MS": "0"}
        crawled = run_cli(api_settings, "crawl", site.url("/"), "--max-depth", "1", extra_env=extra)
    assert crawled.returncode == 0, crawled.stderr
    result = json.loads(crawled.stdout)
    assert result["pages_crawled"] == 2

    found = run_cli(api_settings, "query", f"{marker} telescope", "--json", "--source", result["source_id"])
    assert found.returncode == 0, found.stderr
    # the tiny test reranker has random weights: the page is among the results, not necessarily first
    assert any("pole star" in r["content"] for r in json.loads(found.stdout)["results"])


def test_crawl_with_scope_patterns_headers_and_labels_then_query_by_label(api_settings) -> None:
    from support.site_fixtures import FixtureSite, page

    marker = f"lab{uuid.uuid4().hex[:8]}"
    token = f"Bearer {uuid.uuid4().hex}"
    routes = {
        "/docs/": page("Docs", f"<p>The {marker} manual starts here.</p>", ["a.html", "b.html", "../blog.html"]),
        "/docs/a.html": page("A", f"<p>The {marker} lever lifts the gate.</p>"),
        "/docs/b.html": page("B", f"<p>The {marker} bell is excluded.</p>"),
        "/blog.html": page("Blog", f"<p>The {marker} blog is out of scope.</p>"),
    }
    with FixtureSite(routes) as site:
        extra = {"CRAWL_ALLOWED_HOSTS": "127.0.0.1", "CRAWL_PER_HOST_DELAY_MS": "0", "LOG_LEVEL": "debug"}
        flags = ["--scope", "subpages", "--include", "*/docs*", "--exclude", "/b\\.html$/", "--keep-link-pages"]
        flags += ["--header", f"Authorization: {token}", "--library", f"{marker}lib", "--version", "2.1"]
        crawled = run_cli(api_settings, "crawl", site.url("/docs/"), "--max-depth", "1", *flags, extra_env=extra)
        requested = sorted(path for path, _ in site.requests if path.endswith(("/", ".html")))
        sent = {headers.get("Authorization") for _, headers in site.requests}
    assert crawled.returncode == 0, crawled.stderr
    assert requested == ["/docs/", "/docs/a.html"] and sent == {token}
    assert token not in crawled.stdout + crawled.stderr  # debug logging on, the summary printed
    assert json.loads(crawled.stdout)["pages_crawled"] == 2

    def urls(*label: str) -> list[str]:
        found = run_cli(api_settings, "query", f"{marker} lever", "--json", "--match-count", "20", *label)
        assert found.returncode == 0, found.stderr
        return [hit["url"] for hit in json.loads(found.stdout)["results"]]

    assert site.url("/docs/a.html") in urls("--library", f"{marker}lib", "--version", "2.1")
    assert urls("--library", f"{marker}lib", "--version", "9.9") == []
    assert urls("--library", f"{marker}other") == []


def test_crawl_of_a_refused_target_is_a_usage_error(api_settings) -> None:
    result = run_cli(api_settings, "crawl", "http://169.254.169.254/latest/")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "metadata" in last and "Traceback" not in result.stderr


def test_the_commands_do_not_import_the_http_face() -> None:
    """Only app.py composes the faces: the CLI and the runtime it drives reach services, never api/."""
    probe = (
        "import sys, ragserver.cli, ragserver.runtime; "
        "print(sorted(m for m in sys.modules if m == 'ragserver.api' or m.startswith('ragserver.api.')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
