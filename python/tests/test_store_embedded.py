"""The embedded Postgres default: start, reuse of a data dir after a crash, stale pid files, adoption.

Each test inits its own data dir (about a second of initdb). Data dirs live in /tmp directly, not
under pytest's tmp_path: see the `pg_server` fixture for why.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from support.polling import apoll_until
from support.store_fixtures import FAST_OPTIONS

from ragserver.config import Settings
from ragserver.domain import Chunk, Document, SourceInfo
from ragserver.store import open_store
from ragserver.store.embedded import EmbeddedPostgres


@pytest.fixture
def data_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="ragserver-embedded-test-"))
    yield folder
    _stop_leftover(folder / "postgres")
    shutil.rmtree(folder, ignore_errors=True)


def _stop_leftover(pgdata: Path) -> None:
    """Kill a server a failed test left running (never one outside this data dir)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        proc = psutil.Process(pid)
        if Path(proc.cwd()) == pgdata.resolve():
            proc.kill()
    except (OSError, ValueError, IndexError, psutil.Error):
        pass


def postmaster(pgdata: Path) -> psutil.Process:
    return psutil.Process(int((pgdata / "postmaster.pid").read_text().splitlines()[0]))


async def test_default_backend_runs_embedded_and_stops_on_close(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir)
    assert settings.store_backend == "embedded"
    async with open_store(settings) as store:
        health = await store.health()
        assert health["backend"] == "embedded" and health["schema_ready"]
        run = await store.begin_run(SourceInfo("s", "s", "x"), "upload")
        await store.write_document("s", run, Document("u", "t", "m"), [Chunk(0, "persisted words")], [], None)
        await store.commit_run("s", run)
        server = postmaster(data_dir / "postgres")
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    assert not (data_dir / "postgres" / "postmaster.pid").exists()

    async with open_store(settings) as store:  # same data dir again: content kept, nothing re-applied
        assert store.migration_report.changes == []
        hits = await store.hybrid_search("persisted", None, None, match_count=1, source_id=None, rrf_k=60, candidates=5)
        assert hits[0].content == "persisted words"


async def test_restart_after_kill(data_dir: Path) -> None:
    pgdata = data_dir / "postgres"
    first = EmbeddedPostgres(pgdata, options=FAST_OPTIONS)
    first.start()
    killed = postmaster(pgdata)
    backends = killed.children()
    killed.send_signal(signal.SIGKILL)
    # the restart is about a data dir whose server is gone: wait for its processes to exit
    _, alive = await asyncio.to_thread(psutil.wait_procs, [killed, *backends], timeout=30)
    assert not alive, alive
    second = EmbeddedPostgres(pgdata, options=FAST_OPTIONS)
    try:
        uri = second.start()
        assert second.owned
        async with await psycopg.AsyncConnection.connect(uri) as conn:
            assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)
    finally:
        second.stop()


async def test_stale_pid_file_of_a_live_foreign_process(data_dir: Path) -> None:
    """postmaster.pid naming a live process that is not our postgres (pid reuse) is stale."""
    pgdata = data_dir / "postgres"
    server = EmbeddedPostgres(pgdata, options=FAST_OPTIONS)
    server.start()
    server.stop()
    with subprocess.Popen(["sleep", "30"]) as stranger:
        try:
            (pgdata / "postmaster.pid").write_text(f"{stranger.pid}\n{pgdata}\n0\n5432\n{pgdata}\n\n0 0\nready\n")
            uri = server.start()
            assert server.owned
            async with await psycopg.AsyncConnection.connect(uri) as conn:
                await conn.execute("SELECT 1")
        finally:
            server.stop()
            stranger.kill()


async def test_server_of_a_dead_owner_is_taken_over(data_dir: Path) -> None:
    """After the owning process was killed, its server is reused and stopped by the next owner."""
    pgdata = data_dir / "postgres"
    first = EmbeddedPostgres(pgdata, options=FAST_OPTIONS)
    first.start()
    (data_dir / ".postgres.owner").write_text("999999999 1.0\n")  # the owner process is gone
    second = EmbeddedPostgres(pgdata, options=FAST_OPTIONS)
    assert second.start() == first.uri() and second.owned
    server = postmaster(pgdata)
    second.stop()
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE


async def test_second_process_adopts_a_running_server(data_dir: Path) -> None:
    pgdata = data_dir / "postgres"
    owner = EmbeddedPostgres(pgdata, options=FAST_OPTIONS)
    owner.start()
    try:
        guest = EmbeddedPostgres(pgdata, options=FAST_OPTIONS)
        assert guest.start() == owner.uri()
        assert not guest.owned
        guest.stop()  # leaves the owner's server running
        assert postmaster(pgdata).is_running()
    finally:
        owner.stop()
    assert not (pgdata / "postmaster.pid").exists()


def test_long_data_dir_uses_short_socket_dir(data_dir: Path) -> None:
    deep = data_dir / ("d" * 60) / ("e" * 40) / "postgres"
    deep.parent.mkdir(parents=True)
    server = EmbeddedPostgres(deep, options=FAST_OPTIONS)
    try:
        server.start()
        assert server.socket_dir is not None and server.socket_dir != deep
        assert len(str(server.socket_dir)) < 60
    finally:
        server.stop()
    assert os.path.isdir(deep)


async def test_health_names_the_reason_when_postgres_died(data_dir: Path) -> None:
    """/health's store check answers from the process's own session at once, with libpq's
    reason, instead of waiting for the pool to time out (it said only 'TimeoutError' before)."""
    async with open_store(Settings(data_dir=data_dir)) as store:
        assert (await store.health())["state"] == "ready"
        server = postmaster(data_dir / "postgres")
        backends = server.children()
        server.send_signal(signal.SIGKILL)
        # Until its backend has exited, this process's session still answers while the pool waits
        # for a connection; the check is about the state after Postgres is gone.
        psutil.wait_procs([server, *backends], timeout=10)
        health = await apoll_until(
            lambda: asyncio.wait_for(store.health(), 10), lambda h: h["state"] == "error", what="/health", timeout=30
        )
        assert health["reason"].startswith("database unavailable:"), health["reason"]
