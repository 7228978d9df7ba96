"""Several server processes, one database: replicas answer for, stop, claim and recover each other's operations.

Two apps (two Runtimes, each with its own pool, owner lock and replica loop) on ONE embedded Postgres,
with the tiny real models; crawls go to a FixtureSite on 127.0.0.1 whose pages can be held open, so a
crawl is still running, deterministically, while the other replica looks at it. The replica that dies
is a real `ragserver serve` process killed with SIGKILL: no clean stop runs, its sessions just end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from support.api_fixtures import READY_TIMEOUT_S, RunningApp, free_port, running_app, settings_env
from support.polling import apoll_until, wait_http, wait_operation
from support.site_fixtures import FixtureSite, Route, page

from ragserver import progress
from ragserver.config import Settings
from ragserver.crawl.request import CrawlRequest
from ragserver.domain import SourceInfo
from ragserver.errors import RagServerError
from ragserver.progress import Operation, ProgressTracker
from ragserver.replicas import ReplicaWorker
from ragserver.store import Store, open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

HELD_PAGES = 6


@pytest.fixture
def crawl_ready(api_settings: Settings, tmp_path: Path) -> Settings:
    """The API tests' database and models, allowed to crawl 127.0.0.1 at full speed."""
    return dataclasses.replace(
        api_settings, crawl_allowed_hosts="127.0.0.1", crawl_per_host_delay_ms=0, data_dir=tmp_path / "a"
    )


@contextlib.asynccontextmanager
async def two_replicas(settings: Settings, **b_overrides: Any) -> AsyncIterator[tuple[RunningApp, RunningApp]]:
    """Replicas A and B of one database (B with `b_overrides`), each with a data folder of its own."""
    b_settings = dataclasses.replace(settings, data_dir=settings.data_dir.parent / "b", **b_overrides)
    async with running_app(settings) as a, running_app(b_settings) as b:
        yield a, b


@contextlib.contextmanager
def held_site() -> Iterator[tuple[FixtureSite, threading.Event]]:
    """A site whose start page answers at once and whose linked pages wait until the event is set."""
    release = threading.Event()
    links = [f"/held{i}.html" for i in range(HELD_PAGES)]
    routes = {"/": page("Start", "<p>" + "The start page of a held site. " * 40 + "</p>", links)}
    for path in links:
        routes[path] = Route(page("Held", "<p>" + "A page that takes its time. " * 40 + "</p>").body, hold=release)
    with FixtureSite(routes) as site:
        try:
            yield site, release
        finally:
            release.set()  # let the server threads answer and end


def local_ids(app: RunningApp) -> set[str]:
    """The operations this replica itself holds (runs or ran)."""
    return {snapshot["progressId"] for snapshot in app.runtime.tracker.list()}


async def test_a_crawl_on_a_is_followed_and_stopped_from_b(crawl_ready: Settings) -> None:
    # B only queues: with room, its loop may claim A's job between A queueing and claiming it
    async with two_replicas(crawl_ready, replica_max_jobs=0) as (a, b):
        with held_site() as (site, _release):
            started = await a.client.post("/api/knowledge-items/crawl", json={"url": site.url("/")})
            assert started.status_code == 200, started.text
            progress_id = started.json()["progressId"]

            seen = await wait_operation(b.client, progress_id, lambda s: s["counts"].get("pages_crawled", 0) >= 1)
            assert seen["status"] == "running" and seen["type"] == "crawl" and seen["name"] == site.url("/")
            assert progress_id in local_ids(a) and progress_id not in local_ids(b)  # B answered from the store
            listed = (await b.client.get("/api/progress/")).json()["operations"]
            assert progress_id in [o["progressId"] for o in listed]

            stop = await b.client.post(f"/api/knowledge-items/stop/{progress_id}")
            assert stop.status_code == 200 and stop.json()["cancelled"] is True, stop.text
            ended = await wait_operation(b.client, progress_id)
            assert ended["status"] == "cancelled", ended
            op = a.runtime.tracker.get(progress_id)
            await asyncio.wait_for(op.ended(), READY_TIMEOUT_S)
            assert op.status == "cancelled"  # A's own task was cancelled, not only the row

            again = await b.client.post(f"/api/knowledge-items/stop/{progress_id}")
            assert again.json()["cancelled"] is False


async def test_a_source_crawled_on_a_is_busy_on_b(crawl_ready: Settings) -> None:
    async with two_replicas(crawl_ready) as (a, b):
        with held_site() as (site, _release):
            first = (await a.client.post("/api/knowledge-items/crawl", json={"url": site.url("/")})).json()
            second = await b.client.post("/api/knowledge-items/crawl", json={"url": site.url("/")})
            assert second.status_code == 429 and second.json()["error"] == "busy", second.text
            assert second.json()["details"]["progressId"] == first["progressId"]
            await a.client.post(f"/api/knowledge-items/stop/{first['progressId']}")
            assert (await wait_operation(b.client, first["progressId"]))["status"] == "cancelled"


async def test_a_crawl_queued_on_a_replica_without_room_runs_on_one_with_room(crawl_ready: Settings) -> None:
    settings = dataclasses.replace(crawl_ready, replica_max_jobs=0)  # A only queues
    async with two_replicas(settings, replica_max_jobs=4) as (a, b):
        with FixtureSite({"/": page("One page", "<p>" + "A single page to crawl. " * 40 + "</p>")}) as site:
            started = (await a.client.post("/api/knowledge-items/crawl", json={"url": site.url("/")})).json()
            done = await wait_operation(a.client, started["progressId"])
            assert done["status"] == "completed" and done["counts"]["pages_crawled"] == 1, done
            assert started["progressId"] in local_ids(b) and started["progressId"] not in local_ids(a)


async def test_two_replicas_claiming_the_same_queued_jobs_each_job_goes_to_exactly_one(
    store: Store, pg_settings: Settings
) -> None:
    """Real workers on two stores (two pools, two owner locks) of one database, claiming at the same time."""
    claimed: dict[str, list[str]] = {"first": [], "second": []}

    def runner(name: str) -> Any:
        return lambda op, request: claimed[name].append(request["n"])

    async with open_store(pg_settings) as other:
        first = ReplicaWorker(ProgressTracker(), store, max_jobs=100)
        second = ReplicaWorker(ProgressTracker(), other, max_jobs=100)
        first.register("probe", runner("first"))
        second.register("probe", runner("second"))
        jobs = [str(n) for n in range(40)]
        for n in jobs:
            await store.operations.enqueue({"progressId": f"job-{n}", "type": "probe"}, job_key=None, request={"n": n})

        await asyncio.gather(*[worker.claim_queued() for _ in range(4) for worker in (first, second)])

        assert sorted(claimed["first"] + claimed["second"], key=int) == jobs  # every job claimed, none twice
        assert not set(claimed["first"]) & set(claimed["second"])
        assert await first.claim_queued() == [] and await second.claim_queued() == []


async def test_a_queued_job_of_a_full_replica_waits_and_one_with_room_takes_it(store: Store) -> None:
    full = ReplicaWorker(ProgressTracker(), store, max_jobs=0)
    started: list[Operation] = []
    full.register("probe", lambda op, request: started.append(op))
    queued = await full.submit("probe", name="probe 1", message="waits", job_key="probe-key", request={"n": 1})
    assert not isinstance(queued, Operation) and started == []
    waiting = await store.operations.get(queued.id)
    assert waiting["step"] == "queued" and waiting["name"] == "probe 1"

    roomy = ReplicaWorker(ProgressTracker(), store, max_jobs=1)
    roomy.register("probe", lambda op, request: started.append(op))
    assert [op.id for op in await roomy.claim_queued()] == [queued.id] == [op.id for op in started]
    assert started[0].name == "probe 1"  # the job keeps its name on the replica that claimed it


async def schedule_when_free(app: RunningApp) -> Operation:
    """A re-embed pass on `app`, once no pass (a replica's start-up one) holds the key."""
    async with asyncio.timeout(READY_TIMEOUT_S):
        while (op := await app.runtime.services.ingest.schedule_reembed()) is None:
            await asyncio.sleep(0.05)
    return op


async def test_a_reembed_pass_runs_on_one_replica_at_a_time(crawl_ready: Settings) -> None:
    """Every replica schedules a re-embed at start; the pass holds a job key, so while A's runs B starts none."""
    async with two_replicas(crawl_ready) as (a, b):
        op = await schedule_when_free(a)
        hold = a.runtime.services.ingest._reembed_lock
        await hold.acquire()  # a free lock is taken without a suspension: A's pass has not started, it waits here
        try:
            assert (await b.client.get(f"/api/progress/{op.id}")).json()["status"] in ("starting", "running")
            assert await b.runtime.services.ingest.schedule_reembed() is None
        finally:
            hold.release()
        await asyncio.wait_for(op.ended(), READY_TIMEOUT_S)
        assert op.status == "completed", op.snapshot()
        later = await schedule_when_free(b)  # the key is free again once A's pass ended
        await asyncio.wait_for(later.ended(), READY_TIMEOUT_S)
        assert later.status == "completed" and later.id in local_ids(b)

        # a pass left queued (its replica failed between queueing and claiming it) is run by a replica with room
        left = {"progressId": "left-queued", "type": "reembed", "message": "left queued"}
        await b.runtime.tracker.drain()  # B's pass has ended in the store too: the key is free
        await a.runtime.store.operations.enqueue(left, job_key="reembed", request={})
        assert (await wait_operation(b.client, "left-queued"))["status"] == "completed"


@contextlib.contextmanager
def killable_server(settings: Settings) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`ragserver serve` on a free port, ready (database and models); the test kills it. Its log shows on failure."""
    port = free_port()
    env = {**os.environ, **settings_env(settings), "HOST": "127.0.0.1", "PORT": str(port)}
    command = [str(Path(sys.executable).parent / "ragserver"), "serve"]
    with tempfile.TemporaryFile() as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)

        def log() -> str:
            log_file.seek(0)
            return log_file.read().decode(errors="replace")[-4000:]

        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_http(
                f"{base_url}/health",
                lambda r: r.status_code == 200 and r.json()["status"] == "ok",
                process=process,
                log=log,
                timeout=READY_TIMEOUT_S,
            )
            yield base_url, process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=60)


async def test_a_replica_killed_mid_crawl_has_its_operation_and_run_recovered_by_the_other(
    crawl_ready: Settings,
) -> None:
    async with running_app(dataclasses.replace(crawl_ready, data_dir=crawl_ready.data_dir.parent / "b")) as b:
        with held_site() as (site, _release):
            with killable_server(crawl_ready) as (a_url, a_process):
                async with httpx.AsyncClient(base_url=a_url, timeout=60) as a_client:
                    started = (await a_client.post("/api/knowledge-items/crawl", json={"url": site.url("/")})).json()
                    progress_id, source_id = started["progressId"], started["source_id"]
                    await wait_operation(b.client, progress_id, lambda s: s["counts"].get("pages_crawled", 0) >= 1)
                a_process.send_signal(signal.SIGKILL)
                a_process.wait(timeout=60)

            ended = await wait_operation(b.client, progress_id)
            assert ended["status"] == "failed" and "replica running it stopped" in ended["error"], ended

            async def source() -> dict[str, Any]:
                items = (await b.client.get("/api/knowledge-items", params={"per_page": 200})).json()["items"]
                return next(item for item in items if item["source_id"] == source_id)

            # B's replica loop ends the run A left (partial when it had stored pages, else failed)
            recovered = await apoll_until(
                source, lambda s: s.get("last_run_status") not in (None, "running"), what="the run to be recovered"
            )
            assert recovered["last_run_status"] in ("partial", "failed"), recovered
            assert "process running it stopped" in recovered["last_run_error"]


async def test_a_job_this_replica_cannot_read_ends_failed_and_the_next_still_runs(store: Store) -> None:
    worker = ReplicaWorker(ProgressTracker(), store, max_jobs=5)
    ran: list[str] = []

    def runner(op: Operation, request: dict[str, Any]) -> None:
        ran.append(CrawlRequest.model_validate(request).url)

    worker.register("crawl", runner)
    await store.operations.enqueue({"progressId": "unreadable", "type": "crawl"}, job_key=None, request={"url": 7})
    await store.operations.enqueue(
        {"progressId": "readable", "type": "crawl"}, job_key=None, request={"url": "https://example.org/"}
    )
    assert [op.id for op in await worker.claim_queued()] == ["readable"] and ran == ["https://example.org/"]
    await worker.tracker.drain()
    failed = await store.operations.get("unreadable")
    assert failed["status"] == "failed" and failed["error"] == "this replica cannot run this crawl job: ValidationError"


async def test_a_queued_job_stopped_before_any_replica_claimed_it_ends_cancelled_and_is_never_claimed(
    store: Store,
) -> None:
    worker = ReplicaWorker(ProgressTracker(), store, max_jobs=0)
    worker.register("probe", lambda op, request: None)
    queued = await worker.submit("probe", name="probe 2", message="never runs", job_key="probe-stop", request={"n": 1})
    assert not isinstance(queued, Operation)
    assert await worker.tracker.stop(queued.id) is True
    assert (await store.operations.get(queued.id))["status"] == "cancelled"
    worker.max_jobs = 1
    assert await worker.claim_queued() == []
    assert await worker.tracker.stop(queued.id) is False


async def test_an_operation_started_on_one_replica_shows_its_name_on_another(store: Store) -> None:
    a = ReplicaWorker(ProgressTracker(), store, max_jobs=1)
    b = ReplicaWorker(ProgressTracker(), store, max_jobs=1)
    op = a.tracker.start("upload", name="notes.md", message="ingesting notes.md")
    await a.tracker.drain()
    assert (await b.tracker.find(op.id))["name"] == "notes.md"
    assert [s["name"] for s in await b.tracker.overview() if s["progressId"] == op.id] == ["notes.md"]
    op.finish("done")
    await a.tracker.drain()


@contextlib.asynccontextmanager
async def ended_while_the_store_is_away(
    settings: Settings, store: Store
) -> AsyncIterator[tuple[ReplicaWorker, Operation]]:
    """A replica's operation, written as started, whose end the store refuses: every write of an operation's
    state fails meanwhile (its save function renamed), as in an outage that leaves the rest answering."""
    worker = ReplicaWorker(ProgressTracker(), store, max_jobs=1)
    op = worker.tracker.start("probe", message="ends while the store is away")
    await worker.tracker.drain()
    signature = "(jsonb, bigint, text, bigint)"
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as admin:
        await admin.execute(f"ALTER FUNCTION rag_save_operation{signature} RENAME TO rag_save_operation_away")
        try:
            op.finish("done")
            await worker.tracker.drain()
            yield worker, op
        finally:
            await admin.execute(f"ALTER FUNCTION rag_save_operation_away{signature} RENAME TO rag_save_operation")


async def test_a_state_whose_write_failed_is_written_at_the_next_beat(pg_settings: Settings, store: Store) -> None:
    """The store refuses the write of an operation's end (its save function is away, as in an outage): the
    next beat writes it, so other replicas do not show it running, nor its job key held, for good."""
    async with ended_while_the_store_is_away(pg_settings, store) as (worker, op):
        assert (await store.operations.get(op.id))["status"] == "starting"  # the end did not reach the store
        await worker.beat()
        await worker.tracker.drain()
        assert (await store.operations.get(op.id))["status"] == "starting"  # still away: kept for later
    await worker.beat()
    await worker.tracker.drain()
    assert (await store.operations.get(op.id))["status"] == "completed"


OWNER_LOCK_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND ((classid::bigint << 32) | objid::bigint) = %s"
)


async def test_a_replica_whose_session_dropped_is_not_taken_for_gone_and_takes_its_lock_again(
    pg_settings: Settings, store: Store
) -> None:
    """A's owner session is dropped (a proxy, an admin): its lock is free, yet B neither ends A's running
    operation nor its run while A beats, and A's next beats open the session and take the lock again."""
    async with (
        open_store(pg_settings) as a_store,
        await psycopg.AsyncConnection.connect(pg_settings.database_url, autocommit=True) as admin,
    ):
        a = ReplicaWorker(ProgressTracker(), a_store, max_jobs=1)
        op = a.tracker.start("probe", message="runs on A")
        op.update(step="working")
        run_id = await a_store.begin_run(SourceInfo(source_id="dropped", title="t", origin="o"), "upload")
        await a.tracker.drain()
        lock = a_store.transport.owner_lock

        async def lock_holders() -> int:
            row = await (await admin.execute(OWNER_LOCK_HELD, (lock,))).fetchone()
            return int(row[0]) if row else 0

        await admin.execute(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
            " AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
            (lock,),
        )
        await apoll_until(lock_holders, lambda n: n == 0, what="A's owner session to end")
        assert (await store.operations.get(op.id))["status"] == "running"  # B looks while A's lock is free
        assert await store.operations.recover_interrupted() == []
        assert await store.recover_interrupted_runs() == 0

        async def beat_a() -> int:
            with contextlib.suppress(RagServerError):  # the first beat finds the session gone, the next reopens it
                await a.beat()
            return await lock_holders()

        await apoll_until(beat_a, lambda n: n == 1, what="A to hold its owner lock again")
        op.finish("done")
        await a.tracker.drain()
        assert (await store.operations.get(op.id))["status"] == "completed"
        await a_store.fail_run("dropped", run_id, "cancelled", "test over")


async def test_a_stop_asked_for_an_operation_this_replica_forgot_is_skipped_and_beats_go_on(
    pg_settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An operation ends while its final write fails, then newer ones push it out of memory (KEEP_FINISHED), and
    a stop is asked for it in the store: the beat says so once and still stops the operations it does know."""
    monkeypatch.setattr(progress, "KEEP_FINISHED", 0)
    async with ended_while_the_store_is_away(pg_settings, store) as (worker, forgotten):
        pass
    running = worker.tracker.start("probe", message="still running here")  # pushes the ended one out
    await worker.tracker.drain()
    assert worker.tracker.known(forgotten.id) is None
    assert (await store.operations.request_cancel(forgotten.id)).stopping  # the store still has it active

    with caplog.at_level(logging.WARNING, logger="ragserver.replicas"):
        await worker.beat()
        await worker.beat()
    assert [r.getMessage() for r in caplog.records].count(
        f"replica {worker.replica}: a stop was asked for operation {forgotten.id}, which it no longer knows"
    ) == 1

    assert (await store.operations.request_cancel(running.id)).stopping
    await worker.beat()
    assert running.cancelled
    await worker.tracker.drain()


async def test_a_stopped_replica_loop_ends_even_while_its_store_is_closed(pg_settings: Settings) -> None:
    """The loop survives store errors by design (the database may come back); a stop must still end it,
    also where no cancellation reaches it (at shutdown the store closes while the loop beats)."""
    async with open_store(pg_settings) as closing:
        worker = ReplicaWorker(ProgressTracker(), closing, max_jobs=1)
        loop = asyncio.create_task(worker.run())
        await asyncio.sleep(0)  # the loop's first beat is under way
    worker.stop()
    await asyncio.wait_for(loop, READY_TIMEOUT_S)  # ends without a cancel
