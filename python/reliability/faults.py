"""Faults: SIGKILL the server mid-ingest, mid-crawl, mid-re-embed; kill -9 the embedded Postgres
mid-ingest; start with the database unreachable. After each, restart and check the data.

    python python/reliability/faults.py            # all scenarios, ~5-10 minutes on 2 cores
    python python/reliability/faults.py crawl      # only scenarios whose name contains "crawl"

One data dir (embedded Postgres) under /tmp/ragserver-reliability, one `ragserver serve` at a
time on 127.0.0.1, a documentation site served by the crawl tests' FixtureSite on 127.0.0.1.
Invariants checked straight in Postgres after every restart:
  - committed content unchanged: (url, chunk_index, md5(content)) of every active chunk of the
    sources committed before the fault are the same set as before;
  - 0 duplicate chunks (page_id, chunk_index), 0 duplicate pages (source, url) in active generations,
    0 rows left from runs that are not active (staged rows of the killed run removed);
  - the killed run is 'failed' (never 'running'), and running the same operation again completes.
Prints one line per check and a JSON summary; exit code 1 when any check failed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
from harness import ServerProcess, free_port, model_env, new_data_dir, wait_operation

RESULTS: list[dict] = []
BIG_DOCS = 600  # documents of the upload that gets interrupted (MiniLM on CPU: tens per second)


def check(name: str, ok: bool, detail: object = "") -> bool:
    RESULTS.append({"check": name, "ok": bool(ok), "detail": detail})
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    return bool(ok)


def corpus(name: str, count: int, words: int = 90) -> bytes:
    """A JSONL corpus: `count` documents of ~`words` words, distinct per name and id."""
    vocab = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "valve",
        "engine",
        "pressure",
        "steam",
        "piston",
        "boiler",
        "gauge",
        "flange",
    ]
    lines = []
    for i in range(count):
        text = " ".join(vocab[(i * 7 + k * 3) % len(vocab)] + str((i + k) % 97) for k in range(words))
        lines.append(json.dumps({"_id": f"{name}-{i}", "title": f"{name} {i}", "text": f"{name} doc {i}. {text}"}))
    return ("\n".join(lines) + "\n").encode()


class Database:
    """SQL access to the embedded Postgres of a data dir, over its unix socket."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir / "postgres"
        self.uri = f"postgresql://postgres@/postgres?host={quote(str(self.pgdata), safe='')}&port=5432"

    def rows(self, sql: str, *args: object) -> list[tuple]:
        with psycopg.connect(self.uri, autocommit=True, connect_timeout=10) as conn:
            return conn.execute(sql, args).fetchall()

    def postmaster_pid(self) -> int:
        return int((self.pgdata / "postmaster.pid").read_text().split()[0])

    def content(self, source_id: str) -> set[tuple]:
        """(url, chunk_index, md5) of the active generation's chunks of a source."""
        return set(
            self.rows(
                "SELECT p.url, c.chunk_index, md5(c.content) FROM rag_chunks c JOIN rag_pages p USING (page_id) "
                "JOIN rag_sources s ON s.source_id = c.source_id AND s.active_run_id = c.run_id WHERE c.source_id = %s",
                source_id,
            )
        )

    def invariants(self, label: str) -> None:
        dup_chunks = self.rows(
            "SELECT count(*) FROM (SELECT 1 FROM rag_chunks GROUP BY page_id, chunk_index HAVING count(*) > 1) d"
        )[0][0]
        dup_pages = self.rows(
            "SELECT count(*) FROM (SELECT 1 FROM rag_pages p JOIN rag_sources s ON s.active_run_id = p.run_id "
            "GROUP BY p.source_id, p.url HAVING count(*) > 1) d"
        )[0][0]
        stale = self.rows(
            "SELECT count(*) FROM rag_pages p JOIN rag_runs r USING (run_id) JOIN rag_sources s "
            "ON s.source_id = p.source_id WHERE p.run_id IS DISTINCT FROM s.active_run_id AND r.status <> 'running'"
        )[0][0]
        running = self.rows("SELECT count(*) FROM rag_runs WHERE status = 'running'")[0][0]
        check(f"{label}: 0 duplicate chunks", dup_chunks == 0, dup_chunks)
        check(f"{label}: 0 duplicate pages in active generations", dup_pages == 0, dup_pages)
        check(f"{label}: 0 rows left from inactive runs", stale == 0, stale)
        check(f"{label}: no run left 'running'", running == 0, running)

    def last_run(self, source_id: str) -> tuple:
        found = self.rows(
            "SELECT status, coalesce(error, '') FROM rag_runs WHERE source_id = %s ORDER BY run_id DESC LIMIT 1",
            source_id,
        )
        return found[0] if found else ("none", "")

    def missing_vectors_or(self, model: str, default: int) -> int:
        """missing_vectors, or `default` while the database is not reachable (a server starting)."""
        try:
            return self.missing_vectors(model)
        except psycopg.Error:
            return default

    def missing_vectors(self, model: str) -> int:
        return self.rows(
            "SELECT count(*) FROM rag_chunks c JOIN rag_sources s ON s.active_run_id = c.run_id "
            "WHERE NOT EXISTS (SELECT 1 FROM rag_chunk_embeddings e WHERE e.chunk_id = c.chunk_id AND e.model = %s)",
            model,
        )[0][0]


class Rig:
    """The data dir, its database and the server process currently running on it."""

    def __init__(self) -> None:
        self.data_dir = new_data_dir("faults-")
        self.db = Database(self.data_dir)
        self.port = free_port()
        self.env = {**model_env(), "DATA_DIR": str(self.data_dir), "CRAWL_ALLOWED_HOSTS": "127.0.0.1"}
        self.server: ServerProcess | None = None

    def start(self, ready: bool = True, **env: str) -> ServerProcess:
        self.server = ServerProcess({**self.env, **env}, self.data_dir / "server.log", port=self.port).start()
        if ready:
            self.server.wait_ready() if "EMBEDDING_MODEL" not in env else self.server.wait_health(_up)
        return self.server

    def upload(self, name: str, data: bytes) -> str:
        with self.server.client() as client:
            response = client.post("/api/documents/upload", files={"file": (name, data)})
            response.raise_for_status()
            return response.json()["progressId"]

    def wait(self, progress_id: str) -> dict:
        with self.server.client() as client:
            return wait_operation(client, progress_id, timeout=900)

    def kill_when(self, progress_id: str, ready: Callable[[dict], bool], timeout: float = 300) -> dict:
        """SIGKILL the server as soon as the operation's state satisfies `ready`; returns that state."""
        deadline = time.monotonic() + timeout
        with self.server.client() as client:
            while time.monotonic() < deadline:
                state = client.get(f"/api/progress/{progress_id}").json()
                if state.get("status") != "running" and state.get("status") != "pending":
                    raise RuntimeError(f"operation ended before the kill: {state}")
                if ready(state):
                    self.server.kill(signal.SIGKILL)
                    return state
                time.sleep(0.05)
        raise TimeoutError("kill point not reached")

    def restart(self) -> float:
        started = time.monotonic()
        self.start()
        return round(time.monotonic() - started, 1)

    def source_ids(self) -> dict[str, str]:
        """title -> source_id of every source."""
        return {title: sid for sid, title in self.db.rows("SELECT source_id, title FROM rag_sources")}


def _up(response: httpx.Response) -> bool:
    return response.status_code == 200 and response.json()["database"]["state"] == "ready"


def _docs_at_least(n: int) -> Callable[[dict], bool]:
    return lambda state: state.get("counts", {}).get("documents", 0) >= n


def scenario_ingest(rig: Rig) -> None:
    base = rig.wait(rig.upload("base.jsonl", corpus("base", 150)))
    check("ingest: baseline upload completed", base["status"] == "completed", base["counts"])
    base_id = rig.source_ids()["base.jsonl"]
    before = rig.db.content(base_id)
    big = corpus("big", BIG_DOCS)
    at = rig.kill_when(rig.upload("big.jsonl", big), _docs_at_least(BIG_DOCS // 6))
    print(f"     killed at {at['counts']} step={at['step']}", flush=True)
    check("ingest: server restarted after SIGKILL", True, f"{rig.restart()} s to ready")
    check("ingest: committed source unchanged", rig.db.content(base_id) == before, f"{len(before)} chunks")
    status, error = rig.db.last_run(rig.source_ids()["big.jsonl"])
    check("ingest: killed run marked failed", status == "failed", error[:100])
    rig.db.invariants("ingest after kill")
    again = rig.wait(rig.upload("big.jsonl", big))
    check("ingest: the same upload re-run completes", again["status"] == "completed", again["counts"])
    check("ingest: re-run stored every document", again["counts"].get("documents") == BIG_DOCS, again["counts"])
    rig.db.invariants("ingest after re-run")


def _site(pages: int):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.site_fixtures import FixtureSite, Route, page

    text = " ".join(f"Section text about valves and boilers number {k}." for k in range(40))
    routes = {
        "/docs/": page("Docs home", f"<p>{text}</p>", [f"/docs/p{i}.html" for i in range(pages)]),
        "/robots.txt": Route("User-agent: *\nAllow: /\n", content_type="text/plain"),
    }
    for i in range(pages):
        routes[f"/docs/p{i}.html"] = page(f"Page {i}", f"<p>Page {i}. {text}</p>", [f"/docs/p{(i + 1) % pages}.html"])
    return FixtureSite(routes)


def scenario_crawl(rig: Rig) -> None:
    with _site(80) as site, rig.server.client() as client:
        body = {"url": site.url("/docs/"), "max_depth": 2, "max_pages": 100}
        first = client.post("/api/knowledge-items/crawl", json=body).json()
        done = rig.wait(first["progressId"])
        check("crawl: first crawl completed", done["status"] == "completed", done["counts"])
        source_id = first["source_id"]
        before = rig.db.content(source_id)
        refresh = client.post(f"/api/knowledge-items/{source_id}/refresh").json()
        at = rig.kill_when(refresh["progressId"], lambda s: s.get("counts", {}).get("documents", 0) >= 10)
        print(f"     killed at {at['counts']} step={at['step']}", flush=True)
        check("crawl: server restarted after SIGKILL", True, f"{rig.restart()} s to ready")
        check("crawl: previous generation unchanged", rig.db.content(source_id) == before, f"{len(before)} chunks")
        status, error = rig.db.last_run(source_id)
        check("crawl: killed refresh marked failed", status == "failed", error[:100])
        rig.db.invariants("crawl after kill")
        with rig.server.client() as fresh:
            again = rig.wait(fresh.post(f"/api/knowledge-items/{source_id}/refresh").json()["progressId"])
        check("crawl: the refresh re-run completes", again["status"] == "completed", again["counts"])
        rig.db.invariants("crawl after re-run")


def scenario_reembed(rig: Rig) -> None:
    model = rig.env["EMBEDDING_MODEL"]
    rig.server.stop()
    rig.start(EMBEDDING_MODEL=str(rig.data_dir / "no-model"))  # ML not ready: chunks stored without vectors
    stored = rig.wait(rig.upload("novec.jsonl", corpus("novec", BIG_DOCS)))
    check("re-embed: upload without an embedder completed", stored["status"] == "completed", stored["counts"])
    missing = rig.db.missing_vectors(model)
    rig.server.stop()
    rig.start(ready=False)  # with the embedder: the re-embed job starts on its own
    deadline = time.monotonic() + 600
    while rig.db.missing_vectors_or(model, missing) > missing * 0.7 and time.monotonic() < deadline:
        time.sleep(0.2)
    left = rig.db.missing_vectors_or(model, missing)
    rig.server.kill(signal.SIGKILL)
    print(f"     killed with {left} of {missing} chunks still without vectors", flush=True)
    content = {sid: rig.db.content(sid) for sid in rig.source_ids().values()}
    check("re-embed: server restarted after SIGKILL", True, f"{rig.restart()} s to ready")
    check("re-embed: stored content unchanged", content == {s: rig.db.content(s) for s in content}, len(content))
    deadline = time.monotonic() + 900
    while rig.db.missing_vectors(model) and time.monotonic() < deadline:
        time.sleep(1)
    check("re-embed: resumed after restart, 0 chunks without vectors", rig.db.missing_vectors(model) == 0, missing)
    rig.db.invariants("re-embed after kill")


def scenario_postgres_kill(rig: Rig) -> None:
    rig.wait(rig.upload("pgbase.jsonl", corpus("pgbase", 50)))  # committed content that must survive
    committed = {sid: rig.db.content(sid) for sid in rig.source_ids().values()}
    progress_id = rig.upload("pgkill.jsonl", corpus("pgkill", BIG_DOCS))
    with rig.server.client() as client:
        deadline = time.monotonic() + 300
        while client.get(f"/api/progress/{progress_id}").json()["counts"].get("documents", 0) < BIG_DOCS // 6:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        pid = rig.db.postmaster_pid()
        signal_sent = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        state = wait_operation(client, progress_id, timeout=120)
        seconds = round(time.monotonic() - signal_sent, 1)
        check("postgres kill: the ingest ends as failed", state["status"] == "failed", f"{seconds} s: {state['error']}")
        health = httpx.get(f"{rig.server.base_url}/health", timeout=30)
        check(
            "postgres kill: /health reports the database",
            health.status_code == 503 and health.json()["database"]["state"] == "error",
            f"{health.status_code} {health.json()['issues'][:1]}",
        )
    check("postgres kill: server process still running", rig.server.process.poll() is None, "")
    code = rig.server.stop()
    check("postgres kill: server stops on Ctrl-C", code is not None, f"exit code {code}")
    check("postgres kill: restart (Postgres crash recovery)", True, f"{rig.restart()} s to ready")
    same = {sid: rig.db.content(sid) for sid in committed} == committed
    check("postgres kill: committed sources unchanged", same, f"{len(committed)} sources")
    status, error = rig.db.last_run(rig.source_ids()["pgkill.jsonl"])
    check("postgres kill: interrupted run marked failed", status == "failed", error[:100])
    rig.db.invariants("postgres kill")
    again = rig.wait(rig.upload("pgkill.jsonl", corpus("pgkill", BIG_DOCS)))
    check("postgres kill: re-run completes", again["status"] == "completed", again["counts"])


def scenario_database_unreachable(rig: Rig) -> None:
    """DATABASE_URL names a Postgres that is down: the server says so, retries, and comes up once it is."""
    from ragserver.store.embedded import EmbeddedPostgres

    rig.server.stop()  # also stops the embedded Postgres it owned
    log_mark = len(rig.server.log_text())
    rig.start(ready=False, DATABASE_URL=rig.db.uri)
    time.sleep(20)
    log = rig.server.log_text()[log_mark:]
    retries = [line for line in log.splitlines() if "database not available, retrying" in line]
    health = httpx.get(f"{rig.server.base_url}/health", timeout=10)
    check("unreachable: process alive after 20 s", rig.server.process.poll() is None, "")
    check("unreachable: /health 503 with the reason", health.status_code == 503, health.json()["issues"][:1])
    check(
        "unreachable: one log line per retry, backing off",
        3 <= len(retries) <= 8,
        retries[-1:] if retries else log[-300:],
    )
    postgres = EmbeddedPostgres(rig.db.pgdata)
    postgres.start()
    try:
        started = time.monotonic()
        rig.server.wait_health(_up, timeout=90)
        check("unreachable: ready once the database is up", True, f"{time.monotonic() - started:.1f} s")
    finally:
        rig.server.stop()
        postgres.stop()
    rig.start()


SCENARIOS = {
    "ingest": scenario_ingest,
    "crawl": scenario_crawl,
    "reembed": scenario_reembed,
    "postgres-kill": scenario_postgres_kill,
    "database-unreachable": scenario_database_unreachable,
}


def main() -> int:
    wanted = sys.argv[1:]
    rig = Rig()
    print(f"data dir {rig.data_dir}", flush=True)
    rig.start()
    try:
        for name, scenario in SCENARIOS.items():
            if wanted and not any(word in name for word in wanted):
                continue
            print(f"== {name}", flush=True)
            started = time.monotonic()
            try:
                scenario(rig)
            except Exception as exc:
                traceback.print_exc()
                check(f"{name}: scenario ran to the end", False, f"{type(exc).__name__}: {exc}"[:500])
                if rig.server is None or rig.server.process.poll() is not None:
                    rig.start()
            print(f"   {name}: {time.monotonic() - started:.0f} s", flush=True)
    finally:
        if rig.server is not None:
            rig.server.stop()
    failed = [r for r in RESULTS if not r["ok"]]
    print(json.dumps({"checks": len(RESULTS), "failed": len(failed), "data_dir": str(rig.data_dir)}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
