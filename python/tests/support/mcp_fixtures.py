"""MCP fixtures: a live server (uvicorn on 127.0.0.1, real store, tiny real models, RAGSERVER_API_KEY set)
with documents uploaded through the HTTP API, and an SDK client session with its /mcp."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest_asyncio
from mcp import Client

from ragserver.config import Settings
from support.api_fixtures import API_KEY, RunningApp, live_server
from support.mcp_client import http_session
from support.polling import wait_operation

AUTH = {"Authorization": f"Bearer {API_KEY}"}

CODE = "\n".join(
    f"index_{n} = connection.execute('CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)')" for n in range(6)
)
VECTORS_MD = f"""# pgvector guide

## HNSW indexes

An HNSW index answers nearest neighbour queries quickly; raise ef_search for better recall.

```python
{CODE}
```

## IVFFlat indexes

IVFFlat indexes cluster the vectors into lists before they are searched.
"""
RELEASE_MD = """# Release notes

## Version 2.0

The zebra migration tool moves tables between clusters without downtime.
"""
LONG_PARAGRAPH = "Quokkas live on Rottnest Island and are known for their friendly faces. " * 12
LONG_MD = "# Quokka almanac\n\n" + "\n\n".join(f"## Entry {n}\n\n{LONG_PARAGRAPH}" for n in range(40)) + "\n"

READ_TOOLS = {
    "rag_get_available_sources",
    "rag_search_knowledge_base",
    "rag_search_code_examples",
    "rag_list_pages_for_source",
    "rag_read_full_page",
    "get_progress",
}
WRITE_TOOLS = {"crawl_url", "refresh_source", "stop_operation"}


@dataclass
class Knowledge:
    """The running server and the sources uploaded to it."""

    server: RunningApp
    vectors: str
    release: str
    almanac: str

    def session(self) -> contextlib.AbstractAsyncContextManager[Client]:
        """An SDK client session with the server's /mcp (entered and left in the test's own task,
        as the SDK's task groups want: a fixture's set-up and tear-down run in different tasks)."""
        return http_session(self.server.base_url, API_KEY)


async def upload(server: RunningApp, name: str, text: str, **form: str) -> str:
    """Upload a markdown file through the HTTP API and wait until it is stored; its source_id."""
    reply = await server.client.post(
        "/api/documents/upload",
        files={"file": (name, text.encode(), "text/markdown")},
        data=form,
        headers=AUTH,
    )
    assert reply.status_code == 200, reply.text
    snap = await wait_operation(server.client, reply.json()["progressId"], headers=AUTH)
    assert snap["status"] == "completed", snap
    source_id: str = snap["result"]["source_id"]
    return source_id


def mcp_settings(api_settings: Settings, **overrides: object) -> Settings:
    """The API tests' settings with the key set and the fixture site's host allowed."""
    return dataclasses.replace(
        api_settings,
        ragserver_api_key=API_KEY,
        crawl_allowed_hosts="127.0.0.1",
        crawl_per_host_delay_ms=0,
        crawl_timeout_s=2,
        crawl_max_retries=1,
        crawl_max_page_bytes=100_000,
        **overrides,  # type: ignore[arg-type]
    )


async def uploaded(server: RunningApp) -> Knowledge:
    """The standard documents of the MCP tests, uploaded to `server`."""
    return Knowledge(
        server=server,
        vectors=await upload(server, "pgvector-guide.md", VECTORS_MD, library="pgvector", version="0.8"),
        release=await upload(server, "release-notes.md", RELEASE_MD, library="zebra", version="2.0"),
        almanac=await upload(server, "quokka-almanac.md", LONG_MD),
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def knowledge(api_settings: Settings) -> AsyncIterator[Knowledge]:
    """A live server with the key, holding the standard documents (one per test module)."""
    async with live_server(mcp_settings(api_settings)) as server:
        yield await uploaded(server)
