"""GET /api/sources/{id}/code-examples over real ingests: every example of the active generation, in page
order, in windows with next_offset; a re-upload replaces the list; unknown sources and bad windows are 4xx."""

from __future__ import annotations

import uuid

import pytest
from support.api_fixtures import RunningApp
from support.polling import wait_operation

pytestmark = pytest.mark.slow


def code_block(name: str, language: str) -> str:
    """A fenced block long enough (over the 300 characters ingest asks of a code example) to be kept as one."""
    body = "\n".join(f"    step_{name}_{i} = compute_{name}(value={i}, retries=3, timeout_s=30)" for i in range(6))
    return f"```{language}\ndef run_{name}() -> None:\n{body}\n```"


def guide(marker: str, blocks: list[tuple[str, str]]) -> bytes:
    sections = "\n\n".join(
        f"## Using {name}\n\nThe {name} helper of {marker} runs every step.\n\n{code_block(name, language)}"
        for name, language in blocks
    )
    return f"# {marker} guide\n\nHow {marker} runs.\n\n{sections}\n".encode()


async def upload(api: RunningApp, name: str, data: bytes) -> str:
    response = await api.client.post("/api/documents/upload", files={"file": (name, data)})
    assert response.status_code == 200, response.text
    state = await wait_operation(api.client, response.json()["progressId"])
    assert state["status"] == "completed", state
    return str(state["result"]["source_id"])


async def listing(api: RunningApp, source_id: str, **params: int) -> dict:
    response = await api.client.get(f"/api/sources/{source_id}/code-examples", params=params)
    assert response.status_code == 200, response.text
    body: dict = response.json()
    return body


async def test_code_examples_of_a_source_in_page_order_with_windows(api: RunningApp) -> None:
    marker = f"ex{uuid.uuid4().hex[:8]}"
    blocks = [("alpha", "python"), ("beta", "bash"), ("gamma", "")]
    source_id = await upload(api, f"{marker}.md", guide(marker, blocks))
    other = await upload(api, f"{marker}-other.md", guide(f"{marker}other", [("delta", "python")]))

    whole = await listing(api, source_id)
    assert whole["success"] is True
    assert (whole["source_id"], whole["total"], whole["offset"], whole["limit"]) == (source_id, 3, 0, 50)
    assert whole["next_offset"] is None
    examples = whole["examples"]
    assert [e["language"] for e in examples] == ["python", "bash", ""]
    for example, (name, _) in zip(examples, blocks, strict=True):
        assert example["content"].startswith(f"def run_{name}() -> None:"), example
        assert f"step_{name}_5" in example["content"]
        assert example["heading_path"][-1] == f"Using {name}"
        assert f"The {name} helper" in example["context"]
        assert example["url"] == f"{marker}.md", example["url"]
        assert example["title"]
    assert len({e["page_id"] for e in examples}) == 1
    assert len({e["id"] for e in examples}) == 3
    assert "delta" not in str(examples) and (await listing(api, other))["total"] == 1

    first = await listing(api, source_id, limit=2)
    assert [e["id"] for e in first["examples"]] == [e["id"] for e in examples[:2]]
    assert first["next_offset"] == 2
    rest = await listing(api, source_id, offset=first["next_offset"], limit=2)
    assert [e["id"] for e in rest["examples"]] == [examples[2]["id"]] and rest["next_offset"] is None
    past = await listing(api, source_id, offset=10)
    assert past["examples"] == [] and past["total"] == 3 and past["next_offset"] is None

    # the same file again with one example: only the new (active) generation is listed
    await upload(api, f"{marker}.md", guide(marker, [("omega", "rust")]))
    replaced = await listing(api, source_id)
    assert replaced["total"] == 1
    assert [e["language"] for e in replaced["examples"]] == ["rust"]
    assert "run_omega" in replaced["examples"][0]["content"]


async def test_a_source_without_code_examples_lists_none(api: RunningApp) -> None:
    source_id = await upload(api, f"plain-{uuid.uuid4().hex[:8]}.md", b"# Plain\n\nNo code here, only words.\n")
    body = await listing(api, source_id)
    assert (body["examples"], body["total"], body["next_offset"]) == ([], 0, None)


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/api/sources/no-such-source/code-examples", 404, "not_found"),
        ("/api/sources/x/code-examples?limit=0", 422, "validation_error"),
        ("/api/sources/x/code-examples?limit=201", 422, "validation_error"),
        ("/api/sources/x/code-examples?offset=-1", 422, "validation_error"),
        ("/api/sources/x/code-examples?offset=abc", 422, "validation_error"),
        ("/api/sources/x/code-examples?offset=99999999999", 422, "validation_error"),
        (f"/api/sources/{'x' * 501}/code-examples", 422, "validation_error"),
    ],
)
async def test_bad_requests_are_clear_4xx(api: RunningApp, path: str, status: int, error: str) -> None:
    response = await api.client.get(path)
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["success"], body["error"]) == (False, error)
    assert body["message"]
