"""The HTTP API through the ASGI app: real Postgres, real tiny models, the app's own lifespan."""

from __future__ import annotations

import json
import uuid

import pytest
from support.api_fixtures import RunningApp
from support.polling import wait_operation

pytestmark = pytest.mark.slow


def unique_markdown(topic: str) -> tuple[str, bytes]:
    """A small markdown document whose words are unique to this test run."""
    marker = f"zq{uuid.uuid4().hex[:10]}"
    text = f"""# {topic} {marker}

The {marker} gadget converts {topic} into reliable answers. It stores vectors in Postgres.

## Usage

Call the {marker} gadget with a question about {topic}; it returns ranked passages.

```python
def use_{marker}(question: str) -> list[str]:
    return gadget_{marker}.ask(question)
```
"""
    return marker, text.encode()


async def upload(client, filename: str, data: bytes, **form: str) -> dict:
    response = await client.post("/api/documents/upload", files={"file": (filename, data)}, data=form)
    assert response.status_code == 200, response.text
    return response.json()


async def source_of(client, marker: str) -> dict:
    """The listed source whose title or origin carries the marker."""
    sources = (await client.get("/api/rag/sources")).json()["sources"]
    found = [s for s in sources if marker in json.dumps(s)]
    assert len(found) == 1, sources
    return found[0]


async def test_health_reports_database_and_models(api: RunningApp) -> None:
    response = await api.client.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok", body
    assert body["database"]["state"] == "ready"
    assert body["database"]["functions_current"] is True and body["database"]["schema_mismatch"] is False
    assert body["ml"]["env"]["state"] == "ready"
    assert body["ml"]["embedder"]["state"] == "ready"
    assert body["ml"]["reranker"]["state"] == "ready"
    assert body["issues"] == []


async def test_upload_query_delete_round_trip(api: RunningApp) -> None:
    client = api.client
    marker, data = unique_markdown("hybrid retrieval")
    started = await upload(client, f"{marker}.md", data, tags='["guide", "api"]', knowledge_type="technical")
    assert started["success"] is True and started["filename"] == f"{marker}.md"
    state = await wait_operation(client, started["progressId"])
    assert state["status"] == "completed" and state["name"] == f"{marker}.md", state

    source = await source_of(client, marker)
    assert source["chunk_count"] >= 1 and source["tags"] == ["guide", "api"]

    response = await client.post("/api/rag/query", json={"query": f"{marker} gadget", "match_count": 3})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"] is True
    assert answer["search_mode"] == "hybrid"
    assert answer["reranking_applied"] is True
    assert 1 <= len(answer["results"]) <= 3

    # the tiny test reranker has random weights, so content is checked within the source
    mine = await client.post("/api/rag/query", json={"query": f"{marker} gadget", "source": source["source_id"]})
    assert mine.status_code == 200, mine.text
    assert mine.json()["results"] and all(marker in r["content"] for r in mine.json()["results"])

    pages = await client.post(
        "/api/rag/query",
        json={"query": f"{marker} gadget", "source": source["source_id"], "return_mode": "pages"},
    )
    assert pages.status_code == 200, pages.text
    assert pages.json()["results"] and all(r["source_id"] == source["source_id"] for r in pages.json()["results"])

    code = await client.post("/api/rag/code-examples", json={"query": f"use_{marker}", "source": source["source_id"]})
    assert code.status_code == 200, code.text

    items = (await client.get("/api/knowledge-items", params={"page": 1, "per_page": 200})).json()
    assert any(i["source_id"] == source["source_id"] for i in items["items"])
    assert items["page"] == 1 and items["total"] >= 1

    deleted = await client.delete(f"/api/sources/{source['source_id']}")
    assert deleted.status_code == 200, deleted.text
    again = await client.delete(f"/api/sources/{source['source_id']}")
    assert again.status_code == 404 and again.json()["error"] == "not_found"


async def test_progress_etag_and_listing(api: RunningApp) -> None:
    op = api.runtime.tracker.start("test", message="etag check")
    first = await api.client.get(f"/api/progress/{op.id}")
    assert first.status_code == 200 and first.json()["progressId"] == op.id
    etag = first.headers["etag"]

    unchanged = await api.client.get(f"/api/progress/{op.id}", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.headers["etag"] == etag

    listing = (await api.client.get("/api/progress/")).json()
    assert op.id in [o["progressId"] for o in listing["operations"]]

    op.update(step="working", progress=40)
    changed = await api.client.get(f"/api/progress/{op.id}", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json()["progress"] == 40

    stopped = await api.client.post(f"/api/knowledge-items/stop/{op.id}")
    assert stopped.status_code == 200 and stopped.json()["cancelled"] is True
    assert op.cancelled
    op.mark_cancelled()
    assert op.id not in [o["progressId"] for o in (await api.client.get("/api/progress/")).json()["operations"]]


async def test_stop_cancels_a_running_upload(api: RunningApp) -> None:
    rows = "\n".join(
        json.dumps({"_id": str(i), "title": f"doc {i}", "text": f"document number {i} about cancellation " * 40})
        for i in range(400)
    )
    started = await upload(api.client, "many.jsonl", rows.encode())
    stop = await api.client.post(f"/api/knowledge-items/stop/{started['progressId']}")
    assert stop.status_code == 200, stop.text
    state = await wait_operation(api.client, started["progressId"])
    assert state["status"] in {"cancelled", "completed"}, state
    if stop.json()["cancelled"]:
        assert state["status"] == "cancelled", state


async def test_ml_embed_and_rerank(api: RunningApp) -> None:
    response = await api.client.post("/api/ml/embed", json={"texts": ["hello world", "postgres vectors"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["embeddings"]) == 2 and body["dimension"] == 384 == len(body["embeddings"][0])

    docs = ["Python is a programming language.", "The fox jumps.", "Rust is a systems language."]
    response = await api.client.post("/api/ml/rerank", json={"query": "programming", "documents": docs, "top_n": 2})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 2
    assert results[0]["score"] >= results[1]["score"]
    assert all(docs[r["index"]] == r["document"] and 0.0 <= r["score"] <= 1.0 for r in results)


@pytest.mark.parametrize(
    ("method", "path", "payload", "status"),
    [
        ("post", "/api/rag/query", {"query": ""}, 422),
        ("post", "/api/rag/query", {"query": "   "}, 400),
        ("post", "/api/rag/query", {"query": "x", "match_count": 100000}, 422),
        ("post", "/api/rag/query", {"query": "x", "match_count": 0}, 422),
        ("post", "/api/rag/query", {"query": "x" * 5000}, 422),
        ("post", "/api/rag/query", {"query": "x", "return_mode": "books"}, 422),
        ("post", "/api/rag/code-examples", {"match_count": 3}, 422),
        ("post", "/api/ml/embed", {"texts": []}, 422),
        ("post", "/api/ml/embed", {"texts": ["a"] * 1000}, 422),
        ("post", "/api/ml/rerank", {"query": "q", "documents": []}, 422),
        ("delete", "/api/sources/no-such-source", None, 404),
        ("get", "/api/progress/no-such-id", None, 404),
        ("post", "/api/knowledge-items/stop/no-such-id", None, 404),
        ("get", "/api/knowledge-items?per_page=100000", None, 422),
        ("get", "/api/no-such-route", None, 404),
    ],
)
async def test_bad_input_is_a_json_4xx(api: RunningApp, method: str, path: str, payload, status: int) -> None:
    kwargs = {"json": payload} if payload is not None else {}
    response = await api.client.request(method.upper(), path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["message"]


async def test_invalid_json_body_is_422(api: RunningApp) -> None:
    response = await api.client.post(
        "/api/rag/query", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["error"] == "validation_error"


async def test_upload_of_unsupported_type_is_415(api: RunningApp) -> None:
    response = await api.client.post("/api/documents/upload", files={"file": ("tool.exe", b"MZ\x90\x00binary")})
    assert response.status_code == 415, response.text
    assert response.json()["error"] == "unsupported_media_type"


async def test_upload_with_bad_tags_is_400(api: RunningApp) -> None:
    response = await api.client.post(
        "/api/documents/upload", files={"file": ("a.md", b"# a")}, data={"tags": '["unclosed'}
    )
    assert response.status_code == 400 and "tags" in response.json()["message"]


async def test_upload_over_the_limit_is_413(api: RunningApp) -> None:
    limit = api.runtime.settings.max_upload_mb * 1024 * 1024
    just_over = b"a" * (limit + 1)
    response = await api.client.post("/api/documents/upload", files={"file": ("big.txt", just_over)})
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "payload_too_large"


async def test_oversized_body_is_refused_by_content_length(api: RunningApp) -> None:
    limit = api.runtime.settings.max_upload_mb * 1024 * 1024
    response = await api.client.post(
        "/api/documents/upload",
        content=b"x" * (limit * 3),
        headers={"content-type": "multipart/form-data; boundary=zzz"},
    )
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


async def test_oversized_stream_without_length_is_cut_off(api: RunningApp) -> None:
    """A chunked body with no Content-Length is counted while it streams and refused past the cap."""
    limit = api.runtime.settings.max_upload_mb * 1024 * 1024
    sent = 0

    async def body():
        nonlocal sent
        head = b'--zzz\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n'
        yield head
        chunk = b"y" * 65536
        while sent < limit * 4:
            sent += len(chunk)
            yield chunk

    response = await api.client.post(
        "/api/documents/upload", content=body(), headers={"content-type": "multipart/form-data; boundary=zzz"}
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "payload_too_large"


async def test_openapi_documents_the_routes(api: RunningApp) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    for path in ("/api/rag/query", "/api/documents/upload", "/api/progress/{progress_id}", "/api/ml/rerank"):
        assert path in schema["paths"], path
    query = schema["components"]["schemas"]["QueryRequest"]["properties"]
    assert query["match_count"]["maximum"] == 100
    assert (await api.client.get("/docs")).status_code == 200
