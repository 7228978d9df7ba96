"""Which models are remote (EMBEDDING_BACKEND, RERANK_BACKEND), built from the settings.

MLService asks here whether it needs the local ML env at all: with both models remote the slim
image runs without one, and /health says so (env state `not_needed`) instead of calling it missing.
"""

from __future__ import annotations

from ragserver.config import Settings
from ragserver.ml.probe import EnvStatus
from ragserver.ml.remote_embedder import OpenAIEmbedder
from ragserver.ml.remote_http import RemoteServer
from ragserver.ml.remote_reranker import RemoteReranker

NOT_NEEDED = EnvStatus(
    "not_needed",
    "both models are served remotely (EMBEDDING_BACKEND, RERANK_BACKEND): no ML environment needed",
    None,
    None,
)


def local_env_needed(settings: Settings) -> bool:
    """True when a model runs in this process (and so needs torch from the ML env)."""
    local_reranker = settings.use_reranking and settings.rerank_backend == "local"
    return settings.embedding_backend == "local" or local_reranker


def remote_embedder(settings: Settings) -> OpenAIEmbedder | None:
    """The OpenAI-compatible embedder the settings name, not yet probed; None when it is local."""
    if settings.embedding_backend == "local":
        return None
    server = _server(settings, "embedding", settings.embedding_url, settings.embedding_api_key)
    return OpenAIEmbedder(server, settings.embedding_model, batch_size=settings.embedding_batch_size)


def remote_reranker(settings: Settings) -> RemoteReranker | None:
    """The /rerank client the settings name; None when it is local."""
    if settings.rerank_backend == "local":
        return None
    server = _server(settings, "rerank", settings.rerank_url, settings.rerank_api_key)
    return RemoteReranker(
        server, settings.reranker_model, settings.rerank_backend, batch_size=settings.rerank_batch_size
    )


def _server(settings: Settings, role: str, url: str, api_key: str) -> RemoteServer:
    return RemoteServer(
        role,
        url,
        api_key,
        timeout_s=settings.remote_timeout_s,
        retries=settings.remote_retries,
        cooldown_s=settings.remote_cooldown_s,
        query_timeout_s=settings.remote_query_timeout_s,
    )


def describe(backend: str, server: RemoteServer | None) -> dict[str, object]:
    """What /health shows of where a model runs: the backend and, when remote, its URL (no credentials)."""
    return {"backend": backend, "url": server.url if server else None}
