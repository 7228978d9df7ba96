"""Filling a live server through its HTTP API, so a browser test starts from known sources.

The browser tests check what the page shows; what they put in goes through the same API the
page uses, never through the store, so both ends of each test are the real server.
"""

from __future__ import annotations

from typing import Any

import httpx
from support.polling import State, wait_operation_sync


def api_client(base_url: str, api_key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=60)


def finished(client: httpx.Client, response: httpx.Response) -> State:
    """Wait for the operation a POST started; it must complete."""
    assert response.status_code == 200, response.text
    state = wait_operation_sync(client, response.json()["progressId"])
    assert state["status"] == "completed", state
    return state


def upload_markdown(client: httpx.Client, filename: str, text: str) -> dict[str, Any]:
    """Ingest one markdown file; returns its knowledge item (source_id, title, counts)."""
    state = finished(client, client.post("/api/documents/upload", files={"file": (filename, text.encode())}))
    return knowledge_item(client, state["result"]["source_id"])


def crawl(client: httpx.Client, url: str, **options: Any) -> dict[str, Any]:
    """Crawl a fixture site to the end; returns its knowledge item."""
    state = finished(client, client.post("/api/knowledge-items/crawl", json={"url": url, **options}))
    return knowledge_item(client, state["result"]["source_id"])


def knowledge_items(client: httpx.Client) -> dict[str, dict[str, Any]]:
    """Every source the server lists, by source_id."""
    response = client.get("/api/knowledge-items", params={"per_page": 200})
    assert response.status_code == 200, response.text
    return {item["source_id"]: item for item in response.json()["items"]}


def knowledge_item(client: httpx.Client, source_id: str) -> dict[str, Any]:
    return knowledge_items(client)[source_id]
