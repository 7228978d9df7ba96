"""The HTTP contract as OpenAPI publishes it: routes, request and response models (a compact snapshot).

A route added, removed or reshaped shows up here first, so the change is deliberate (and the
README / Archon-compatible clients can follow). Built from create_app without starting anything.
"""

from __future__ import annotations

from ragserver.app import create_app
from ragserver.config import Settings

# "METHOD path": (request body model, 200 response model)
CONTRACT = {
    "GET /health": (None, "HealthResponse"),
    "POST /api/documents/upload": ("Body_upload_document_api_documents_upload_post", "UploadResponse"),
    "GET /api/rag/sources": (None, "SourcesResponse"),
    "GET /api/knowledge-items": (None, "KnowledgeItemsResponse"),
    "DELETE /api/sources/{source_id}": (None, "DeleteResponse"),
    "POST /api/knowledge-items/crawl": ("CrawlBody", "CrawlStarted"),
    "POST /api/knowledge-items/{source_id}/refresh": (None, "CrawlStarted"),
    "POST /api/rag/query": ("QueryRequest", "QueryResponse"),
    "POST /api/rag/code-examples": ("CodeExamplesRequest", "SearchResponse"),
    "GET /api/progress/": (None, "ProgressListResponse"),
    "GET /api/progress/{progress_id}": (None, "ProgressResponse"),
    "POST /api/knowledge-items/stop/{progress_id}": (None, "StopResponse"),
    "POST /api/ml/embed": ("EmbedRequest", "EmbedResponse"),
    "POST /api/ml/rerank": ("RerankRequest", "RerankResponse"),
}


def _model(content: dict) -> str | None:
    schemas = [media["schema"].get("$ref", "").rsplit("/", 1)[-1] for media in content.values()]
    return schemas[0] if schemas else None


def test_openapi_matches_the_contract() -> None:
    schema = create_app(Settings()).other_asgi_app.openapi()
    published = {}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            request = _model(operation.get("requestBody", {}).get("content", {}))
            response = _model(operation["responses"]["200"].get("content", {}))
            published[f"{method.upper()} {path}"] = (request, response)
    assert published == CONTRACT


def test_api_routes_document_their_errors() -> None:
    schema = create_app(Settings()).other_asgi_app.openapi()
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            assert {"401", "422", "503"} <= set(operation["responses"]), (method, path)


def test_query_bounds_are_published() -> None:
    components = create_app(Settings()).other_asgi_app.openapi()["components"]["schemas"]
    query = components["QueryRequest"]["properties"]
    assert (query["match_count"]["minimum"], query["match_count"]["maximum"]) == (1, 100)
    assert query["query"]["minLength"] == 1 and query["query"]["maxLength"] == 4000
    assert components["EmbedRequest"]["properties"]["texts"]["maxItems"] == 256
