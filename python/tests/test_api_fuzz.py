"""Schemathesis, short: ~190 generated requests against the live app, all < 500 and as documented.

The app runs under uvicorn on 127.0.0.1 (real Postgres database of its own, tiny real models, API
key set); the schemathesis CLI runs as a child process with every check enabled, so responses
outside the OpenAPI schema (undocumented status, body not matching the response model) fail
here. The 1,000+ request run is python/reliability/api_fuzz.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

import pytest
from support.api_fixtures import API_KEY, live_server
from support.store_fixtures import create_database, drop_database

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from api_fuzz import count_statuses, st_command

pytestmark = pytest.mark.slow

MIN_REQUESTS = 100


async def test_generated_requests_get_documented_answers_and_no_5xx(
    pg_server, pg_template, ml_settings, tmp_path: Path
) -> None:
    name = await create_database(pg_server, template=pg_template)
    settings = dataclasses.replace(
        ml_settings,
        database_url=pg_server.uri(name),
        data_dir=tmp_path / "data",
        ragserver_api_key=API_KEY,
        max_upload_mb=1,
    )
    try:
        async with live_server(settings) as server:
            command = st_command(
                server.base_url, API_KEY, tmp_path / "report", max_examples=10, phases="fuzzing,stateful", seed=1
            )
            process = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            output, _ = await asyncio.wait_for(process.communicate(), 240)
    finally:
        await drop_database(pg_server, name)
    text = output.decode(errors="replace")
    statuses = count_statuses(tmp_path / "report")
    assert process.returncode == 0, text[-4000:]
    assert sum(statuses.values()) >= MIN_REQUESTS, (statuses, text[-2000:])
    assert not [code for code in statuses if code >= 500], statuses
