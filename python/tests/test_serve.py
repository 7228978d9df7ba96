"""`ragserver serve` as a real process on 127.0.0.1: health, upload, query, auth, clean Ctrl-C exit."""

from __future__ import annotations

import dataclasses
import uuid

import httpx
import pytest
from support.api_fixtures import API_KEY, serve_subprocess, wait_for_health
from support.polling import wait_operation_sync

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def test_serve_answers_over_http(api_settings) -> None:
    marker = f"srv{uuid.uuid4().hex[:10]}"
    settings = dataclasses.replace(api_settings, ragserver_api_key=API_KEY)
    with serve_subprocess(settings) as base_url:
        health = wait_for_health(base_url, lambda r: r.status_code == 200 and r.json()["status"] == "ok")
        assert health["database"]["state"] == "ready"

        with httpx.Client(base_url=base_url, timeout=60) as client:
            assert client.get("/api/rag/sources").status_code == 401
            document = f"# {marker} manual\n\nThe {marker} valve regulates steam pressure in old engines.\n"
            response = client.post(
                "/api/documents/upload", files={"file": (f"{marker}.md", document.encode())}, headers=AUTH
            )
            assert response.status_code == 200, response.text
            progress_id = response.json()["progressId"]
            state = wait_operation_sync(client, progress_id, headers=AUTH)
            assert state["status"] == "completed", state

            source_id = state["result"]["source_id"]
            query = {"query": f"{marker} valve", "source": source_id}
            answer = client.post("/api/rag/query", json=query, headers=AUTH).json()
            assert answer["search_mode"] == "hybrid" and answer["reranking_applied"] is True, answer
            assert marker in answer["results"][0]["content"]
