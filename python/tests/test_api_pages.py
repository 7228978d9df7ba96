"""The catalog over HTTP: uploads labelled with a library and version, the source and search filters
by them, /api/pages listings and page reads (Archon v1 paths), and their 4xx answers."""

from __future__ import annotations

import uuid

import pytest
from support.api_fixtures import RunningApp
from support.polling import wait_operation

pytestmark = pytest.mark.slow


def guide(marker: str, version: str) -> bytes:
    return f"""# {marker} guide {version}

The {marker} toolkit version {version} reads settings from the environment.

## Installing

Install {marker} {version} with pip and import it.

```python
def start_{marker}(port: int, host: str = "127.0.0.1") -> None:
    # start the {marker} server and block until it stops
    server_{marker} = make_server_{marker}(host=host, port=port, workers=4, timeout_s=30)
    server_{marker}.install_signal_handlers()
    print("listening on", host, port)
    server_{marker}.listen(port)
    server_{marker}.wait_closed()
```
""".encode()


async def upload(api: RunningApp, name: str, data: bytes, **form: str) -> str:
    """Upload a file and wait for its ingest; returns its source id."""
    response = await api.client.post("/api/documents/upload", files={"file": (name, data)}, data=form)
    assert response.status_code == 200, response.text
    state = await wait_operation(api.client, response.json()["progressId"])
    assert state["status"] == "completed", state
    return str(state["result"]["source_id"])


async def test_library_and_version_label_uploads_and_filter_sources_and_search(api: RunningApp) -> None:
    marker = f"lib{uuid.uuid4().hex[:8]}"
    old = await upload(api, f"{marker}-1.md", guide(marker, "1.0"), library=marker.upper(), version="1.0")
    new = await upload(api, f"{marker}-2.md", guide(marker, "2.0"), library=marker, version="2.0")
    other = await upload(api, f"{marker}-x.md", guide(marker, "9.9"))

    async def listed(**params: str) -> list[str]:
        response = await api.client.get("/api/rag/sources", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True and body["count"] == len(body["sources"])
        return sorted(s["source_id"] for s in body["sources"])

    assert await listed(library=marker) == sorted([old, new])
    assert await listed(library=marker, version="2.0") == [new]
    assert other in await listed()
    sources = {s["source_id"]: s for s in (await api.client.get("/api/rag/sources")).json()["sources"]}
    assert (sources[old]["library"], sources[old]["version"]) == (marker.upper(), "1.0")
    assert (sources[other]["library"], sources[other]["version"]) == (None, None)

    query = {"query": f"{marker} toolkit settings environment", "match_count": 10}
    unfiltered = (await api.client.post("/api/rag/query", json=query)).json()
    assert {old, new, other} <= {r["source_id"] for r in unfiltered["results"]}
    for filters, expected in (({"library": marker}, {old, new}), ({"library": marker, "version": "1.0"}, {old})):
        for mode in ("chunks", "pages"):
            response = await api.client.post("/api/rag/query", json=query | filters | {"return_mode": mode})
            assert response.status_code == 200, response.text
            assert {r["source_id"] for r in response.json()["results"]} == expected, (filters, mode)
    code = await api.client.post(
        "/api/rag/code-examples", json={"query": f"start_{marker} listen port", "library": marker, "version": "2.0"}
    )
    assert code.status_code == 200, code.text
    assert {r["source_id"] for r in code.json()["results"]} == {new}
    nothing = await api.client.post("/api/rag/query", json=query | {"library": f"{marker}-none"})
    assert nothing.status_code == 200 and nothing.json()["results"] == []


async def test_list_and_read_pages(api: RunningApp) -> None:
    marker = f"pg{uuid.uuid4().hex[:8]}"
    source_id = await upload(api, f"{marker}.md", guide(marker, "3.1"))
    listing = await api.client.get("/api/pages", params={"source_id": source_id})
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert body["success"] is True and body["source_id"] == source_id
    assert (body["total"], body["offset"], body["limit"], body["next_offset"]) == (1, 0, 100, None)
    [page] = body["pages"]
    assert page["id"] == page["page_id"] and page["section_title"] == f"{marker} guide 3.1"
    assert page["char_count"] > 0 and page["word_count"] > 10 and page["chunk_count"] >= 1
    unmatched = await api.client.get("/api/pages", params={"source_id": source_id, "section": "nothing"})
    assert unmatched.status_code == 200 and unmatched.json()["total"] == 0

    whole = await api.client.get(f"/api/pages/{page['page_id']}")
    assert whole.status_code == 200, whole.text
    content = whole.json()
    assert content["success"] is True and content["url"] == page["url"] and content["source_id"] == source_id
    assert content["char_count"] == page["char_count"] == len(content["full_content"]) and not content["truncated"]
    assert f"def start_{marker}" in content["full_content"]

    pieces, offset = [], 0
    while offset is not None:
        part = await api.client.get(f"/api/pages/{page['page_id']}", params={"offset": offset, "max_chars": 60})
        assert part.status_code == 200, part.text
        pieces.append(part.json()["full_content"])
        offset = part.json()["next_offset"]
    assert len(pieces) > 2 and "".join(pieces) == content["full_content"]

    by_url = await api.client.get("/api/pages/by-url", params={"url": page["url"] + "#installing"})
    assert by_url.status_code == 200, by_url.text
    assert by_url.json()["page_id"] == page["page_id"]


@pytest.mark.parametrize(
    ("path", "params", "status", "error"),
    [
        ("/api/pages", {"source_id": "no-such-source"}, 404, "not_found"),
        ("/api/pages", {}, 422, "validation_error"),
        ("/api/pages", {"source_id": "x", "limit": 0}, 422, "validation_error"),
        ("/api/pages", {"source_id": "x", "limit": 501}, 422, "validation_error"),
        ("/api/pages", {"source_id": "x", "offset": -1}, 422, "validation_error"),
        ("/api/pages", {"source_id": "x", "offset": 2**40}, 422, "validation_error"),
        ("/api/pages/999999999", {}, 404, "not_found"),
        ("/api/pages/0", {}, 422, "validation_error"),
        ("/api/pages/abc", {}, 422, "validation_error"),
        ("/api/pages/99999999999999999999", {}, 422, "validation_error"),
        ("/api/pages/1", {"max_chars": 0}, 422, "validation_error"),
        ("/api/pages/1", {"max_chars": 100_001}, 422, "validation_error"),
        ("/api/pages/by-url", {"url": "https://nowhere.example/page"}, 404, "not_found"),
        ("/api/pages/by-url", {"url": "   "}, 400, "bad_request"),
        ("/api/pages/by-url", {}, 422, "validation_error"),
        ("/api/rag/sources", {"library": "x" * 201}, 422, "validation_error"),
        # Postgres text cannot hold NUL: the schema refuses it
        ("/api/pages", {"source_id": "a\x00b"}, 422, "validation_error"),
        ("/api/pages", {"source_id": "x", "section": "a\x00"}, 422, "validation_error"),
        ("/api/pages/by-url", {"url": "https://x.example/\x00"}, 422, "validation_error"),
        ("/api/rag/sources", {"version": "1\x00"}, 422, "validation_error"),
    ],
)
async def test_bad_page_requests_are_json_4xx(
    api: RunningApp, path: str, params: dict, status: int, error: str
) -> None:
    response = await api.client.get(path, params=params)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"] == error and body["message"]


async def test_read_past_the_end_of_a_page_is_400(api: RunningApp) -> None:
    marker = f"end{uuid.uuid4().hex[:8]}"
    source_id = await upload(api, f"{marker}.md", guide(marker, "0.1"))
    [page] = (await api.client.get("/api/pages", params={"source_id": source_id})).json()["pages"]
    response = await api.client.get(f"/api/pages/{page['page_id']}", params={"offset": page["char_count"] + 1})
    assert response.status_code == 400 and "past the end" in response.json()["message"]
