"""Stopping the app while an upload is being ingested: the operation is cancelled, the run rolled back."""

from __future__ import annotations

import dataclasses
import json

import pytest
from support.api_fixtures import running_app
from support.polling import apoll_state

from ragserver.store import open_store

pytestmark = pytest.mark.slow


async def test_shutdown_cancels_a_running_upload(pg_settings, ml_settings) -> None:
    settings = dataclasses.replace(ml_settings, database_url=pg_settings.database_url, data_dir=pg_settings.data_dir)
    rows = "\n".join(
        json.dumps({"_id": str(i), "title": f"doc {i}", "text": f"shutdown test document {i} " * 60})
        for i in range(500)
    )
    async with running_app(settings) as running:
        response = await running.client.post("/api/documents/upload", files={"file": ("big.jsonl", rows.encode())})
        assert response.status_code == 200, response.text
        op = running.runtime.tracker.get(response.json()["progressId"])
        status = await apoll_state(lambda: op.status, lambda s: s != "starting", what="the upload to start")
        assert status == "running", op.snapshot()
    assert op.status == "cancelled", op.snapshot()

    async with open_store(settings) as store:
        listing = await store.list_sources()
    [source] = listing["items"]  # this test's own database holds the one upload
    assert source["chunk_count"] == 0 and source["last_run_status"] == "cancelled", source
