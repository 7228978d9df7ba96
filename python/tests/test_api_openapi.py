"""The HTTP contract as OpenAPI publishes it, compared whole with a committed snapshot.

A route added, removed or reshaped (a field, a bound, an error answer) fails here first, so the
change is deliberate and the README / Archon-compatible clients can follow. Built from
create_app without starting anything. After a deliberate change, refresh the snapshot with

    RAGSERVER_UPDATE_SNAPSHOT=1 python -m pytest -q -p no:cacheprovider tests/test_api_openapi.py

and commit tests/snapshots/openapi.json with the change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ragserver.app import create_app
from ragserver.config import Settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "openapi.json"
REFRESH = "RAGSERVER_UPDATE_SNAPSHOT=1 python -m pytest -q -p no:cacheprovider tests/test_api_openapi.py"
MAX_CHANGES_SHOWN = 40


def published_schema() -> dict[str, Any]:
    """The app's OpenAPI document as JSON would carry it (tuples become lists)."""
    return json.loads(json.dumps(create_app(Settings()).other_asgi_app.openapi()))


def changes(old: object, new: object, where: str = "") -> list[str]:
    """Where two JSON documents differ, one line per place: `paths./api/x.post.responses.200: changed`."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = [f"{where}.{key}: removed".lstrip(".") for key in old if key not in new]
        found += [f"{where}.{key}: added".lstrip(".") for key in new if key not in old]
        for key in old.keys() & new.keys():
            found += changes(old[key], new[key], f"{where}.{key}")
        return sorted(found)
    if old != new:
        return [f"{where.lstrip('.') or '(root)'}: changed"]
    return []


def test_changes_name_the_places_that_differ() -> None:
    old = {"paths": {"/a": {"get": {"summary": "A"}}, "/b": {}}, "info": {"version": "1"}}
    new = {"paths": {"/a": {"get": {"summary": "A!"}}, "/c": {}}, "info": {"version": "1"}}
    assert changes(old, new) == ["paths./a.get.summary: changed", "paths./b: removed", "paths./c: added"]
    assert changes(old, json.loads(json.dumps(old))) == []


def test_openapi_matches_the_snapshot() -> None:
    schema = published_schema()
    if os.environ.get("RAGSERVER_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        pytest.skip(f"snapshot refreshed: {SNAPSHOT}")
    found = changes(json.loads(SNAPSHOT.read_text(encoding="utf-8")), schema)
    shown = found[:MAX_CHANGES_SHOWN] + (
        [f"... and {len(found) - MAX_CHANGES_SHOWN} more"] if found[MAX_CHANGES_SHOWN:] else []
    )
    assert not found, (
        "the OpenAPI schema changed; if deliberate, refresh it with\n    " + REFRESH + "\n" + "\n".join(shown)
    )


def test_every_route_answers_a_named_model() -> None:
    """Each 200 answer is a Pydantic model of its own (no bare dicts), and none accepts unknown fields."""
    schema = published_schema()
    routes = [(method, path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]
    assert len(routes) >= 14
    for method, path, operation in routes:
        assert "$ref" in operation["responses"]["200"]["content"]["application/json"]["schema"], (method, path)
    components = schema["components"]["schemas"]
    loose = [name for name, model in components.items() if model.get("additionalProperties") is True]
    assert loose == []


def test_api_routes_document_their_errors() -> None:
    api_routes = [
        (method, path, op)
        for path, ops in published_schema()["paths"].items()
        if path.startswith("/api/")
        for method, op in ops.items()
    ]
    assert api_routes
    for method, path, operation in api_routes:
        assert {"401", "422", "500", "503"} <= set(operation["responses"]), (method, path)


def test_query_bounds_are_published() -> None:
    components = create_app(Settings()).other_asgi_app.openapi()["components"]["schemas"]
    query = components["QueryRequest"]["properties"]
    assert (query["match_count"]["minimum"], query["match_count"]["maximum"]) == (1, 100)
    assert query["query"]["minLength"] == 1 and query["query"]["maxLength"] == 4000
    assert components["EmbedRequest"]["properties"]["texts"]["maxItems"] == 256
