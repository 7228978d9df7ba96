"""One typed Settings object, the only place that reads the environment.

Read once through the cached `get_settings()`, never at import time, so tests can build
their own `Settings(...)` and hand it to `create_app`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from ragserver.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _setting(default: Any, doc: str) -> Any:
    """Declare a setting with its default and the line that documents it (.env.example, README)."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    """Every setting of the server; the env var is the field name in upper case."""

    database_url: str = _setting("", "Postgres DSN with pgvector. Empty: SUPABASE_URL if set, else embedded Postgres.")
    supabase_url: str = _setting("", "Supabase project URL; with SUPABASE_SERVICE_KEY the store talks RPC to it.")
    supabase_service_key: str = _setting("", "Supabase service-role key (secret, never logged).")
    data_dir: Path = _setting(Path("./data"), "Where the embedded Postgres keeps its data (DATA_DIR/postgres).")
    host: str = _setting("0.0.0.0", "Address the HTTP server binds to.")
    port: int = _setting(8181, "HTTP + Socket.IO port.")
    ragserver_api_key: str = _setting(
        "", "When set, /api routes, /mcp and Socket.IO need 'Authorization: Bearer <key>'."
    )
    embedding_model: str = _setting(
        "sentence-transformers/all-MiniLM-L6-v2", "Embedding model: HF id (from the local cache) or a local folder."
    )
    reranker_model: str = _setting(
        "Qwen/Qwen3-Reranker-0.6B", "Reranker: Qwen3-Reranker or a classic cross-encoder; HF id or local folder."
    )
    use_reranking: bool = _setting(True, "Rerank search results when a reranker is available.")
    embedding_backend: str = _setting(
        "local", "local | openai: openai = an OpenAI-compatible /v1/embeddings server (EMBEDDING_MODEL its model)."
    )
    embedding_url: str = _setting("", "Base URL of the embedding server, /v1 included (e.g. http://gpu-box:7997/v1).")
    embedding_api_key: str = _setting("", "Bearer key of the embedding server (secret, never logged).")
    rerank_backend: str = _setting(
        "local", "local | cohere | tei: cohere = the /rerank of Cohere, Jina, Infinity, vLLM; tei = TEI's /rerank."
    )
    rerank_url: str = _setting("", "Base URL of the rerank server; /rerank is appended (e.g. http://gpu-box:7997).")
    rerank_api_key: str = _setting("", "Bearer key of the rerank server (secret, never logged).")
    remote_timeout_s: float = _setting(
        30.0, "Time budget of one ingest or start-up request to a remote model server, in seconds."
    )
    remote_retries: int = _setting(3, "Retries (with backoff) of a remote model request after a 429/5xx or no answer.")
    remote_query_timeout_s: float = _setting(
        3.0, "Time budget of a search's remote query embed or rerank, in seconds (one try, then full text)."
    )
    remote_cooldown_s: float = _setting(
        10.0, "Seconds a failed remote model server is not asked (requests fail at once; ingest's: after its retries)."
    )
    embedding_batch_size: int = _setting(64, "Texts per request to a remote embedding server (halved on a 413).")
    rerank_batch_size: int = _setting(64, "Documents per request to a remote reranker (halved on a 413).")
    rerank_top_n: int = _setting(20, "How many fused candidates go to the reranker.")
    rerank_load_wait_s: int = _setting(
        30, "Seconds a search waits for a reranker that is still loading before it answers unreranked."
    )
    rerank_budget_ms: int = _setting(
        0, "Time budget of a search's reranking, in ms: 0 = auto (10000 on CPU, 2000 on CUDA), -1 = none, max 600000."
    )
    rrf_k: int = _setting(60, "Reciprocal rank fusion constant k.")
    search_candidates: int = _setting(50, "Candidates taken from each of vector and full-text search before fusion.")
    max_upload_mb: int = _setting(50, "Largest accepted upload, in MiB.")
    chunk_max_tokens: int = _setting(0, "Chunk size in tokens; 0 = the embedding model's max sequence length.")
    code_example_min_chars: int = _setting(300, "Code blocks at least this long are also stored as code examples.")
    ingest_batch_size: int = _setting(32, "Documents per ingest batch (memory stays bounded by this).")
    ingest_flush_s: float = _setting(
        2.0, "Seconds a first crawl's batch waits for more pages before it is stored (searchable as it goes)."
    )
    ml_device: str = _setting("auto", "auto | cpu | cuda: where the models run.")
    ml_max_batch_tokens: int = _setting(16384, "Tokens per inference batch (at most 2048 on CPU, for cache).")
    ml_queue_size: int = _setting(256, "Pending ML requests before the API answers 429.")
    ml_threads: int = _setting(0, "CPU threads of a search's forward pass; 0 = half the cores. Bulk embedding: all.")
    bulk_nice: int = _setting(10, "Nice value added to bulk work (parsing, chunking, ingest embedding); 0 = off.")
    ml_user_base: Path = _setting(
        Path.home() / ".local", "ML env root in the server (pip --user base, /root/.local in Docker); has ml-env.json."
    )
    crawl_allow_private: bool = _setting(
        False, "Let crawls reach loopback/private/link-local addresses (SSRF guard off). Local sites only."
    )
    crawl_allowed_hosts: str = _setting("", "Comma-separated hosts or CIDR networks the SSRF guard lets through.")
    crawl_respect_robots: bool = _setting(True, "Obey robots.txt (Disallow and Crawl-delay) when crawling.")
    crawl_concurrency: int = _setting(8, "Pages fetched at the same time by one crawl.")
    crawl_per_host_delay_ms: int = _setting(100, "Pause between two requests to the same host, in ms.")
    crawl_timeout_s: int = _setting(30, "Time budget of one HTTP request of the crawler, in seconds.")
    crawl_max_page_bytes: int = _setting(10485760, "Largest page a crawl reads (after decompression); larger: skipped.")
    crawl_max_retries: int = _setting(2, "Retries (with backoff) after a 429/5xx answer or a connection error.")
    crawl_convert_workers: int = _setting(0, "Processes converting HTML to markdown; 0 = one per core, 1 = a thread.")
    crawl_max_pages: int = _setting(1000, "Default page budget of a crawl when the request gives none.")
    crawl_user_agent: str = _setting("ragserver-crawler/0.1", "User-Agent of the crawler (robots.txt rules match it).")
    browser_cdp_url: str = _setting("", "CDP endpoint of a Chromium for JavaScript sites (e.g. http://chromium:9222).")
    mcp_read_only: bool = _setting(False, "MCP: offer only the tools that read (crawl, refresh and stop are hidden).")
    mcp_allowed_hosts: str = _setting(
        "localhost:*,127.0.0.1:*,[::1]:*,server:*,ragserver:*",
        "MCP DNS-rebinding guard: Host headers /mcp accepts (comma-separated; host:* = any port).",
    )
    mcp_allowed_origins: str = _setting(
        "", "MCP DNS-rebinding guard: Origin headers /mcp accepts; empty = http(s):// + each MCP_ALLOWED_HOSTS entry."
    )
    ragserver_url: str = _setting(
        "http://127.0.0.1:8181", "The running server `ragserver mcp` (stdio) forwards to, with RAGSERVER_API_KEY."
    )
    llm_url: str = _setting(
        "", "OpenAI-compatible chat API base URL incl. /v1 (Ollama, vLLM, LM Studio, OpenAI); empty: /api/rag/ask off."
    )
    llm_model: str = _setting("", "Chat model /api/rag/ask asks, as the LLM server names it (e.g. qwen3:8b).")
    llm_api_key: str = _setting(
        "", "Bearer key of the LLM server (secret, never logged or returned); empty: none sent."
    )
    llm_timeout_s: float = _setting(
        120.0, "Seconds the LLM may stay silent (connecting: at most 10) before an ask answers 504."
    )
    llm_max_tokens: int = _setting(1024, "Most tokens of one answer (max_tokens); 0 = the LLM server's default.")
    llm_temperature: float = _setting(0.1, "Sampling temperature of answers (low keeps them close to the sources).")
    ask_min_rerank_score: float = _setting(
        0.1, "Reranked chunks below this score are not given to the LLM; none left: 'nothing relevant', LLM not asked."
    )
    ask_max_context_chars: int = _setting(
        24000, "Most characters of retrieved chunk text one ask's prompt carries (best chunks first)."
    )
    redis_url: str = _setting(
        "", "Redis carrying Socket.IO events across replicas (redis://[:password@]host:6379/0, a secret); empty: none."
    )
    replica_max_jobs: int = _setting(
        4, "Queued crawls and refreshes one replica runs at once; more wait in the database for any replica with room."
    )
    log_level: str = _setting("info", "Logging level.")

    def __post_init__(self) -> None:
        check_remote_models(self)
        if self.replica_max_jobs < 0:
            raise ConfigError("REPLICA_MAX_JOBS must be 0 or more (0: this replica only queues jobs for the others)")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Build settings from environment variables, converting types; bad values raise ConfigError."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None:
                continue
            values[f.name] = _convert(f.name, raw, type(f.default))
        return cls(**values)

    @property
    def store_backend(self) -> str:
        """Which store this configuration selects: postgres, supabase or embedded."""
        if self.database_url:
            return "postgres"
        if self.supabase_url and self.supabase_service_key:
            return "supabase"
        return "embedded"


EMBEDDING_BACKENDS = ("local", "openai")
RERANK_BACKENDS = ("local", "cohere", "tei")


def check_remote_models(settings: Settings) -> None:
    """Refuse, at start, a remote model backend that cannot work (unknown name, no URL, no budget)."""
    remote = (
        ("EMBEDDING", settings.embedding_backend, EMBEDDING_BACKENDS, settings.embedding_url),
        ("RERANK", settings.rerank_backend, RERANK_BACKENDS, settings.rerank_url),
    )
    for prefix, backend, allowed, url in remote:
        if backend not in allowed:
            raise ConfigError(f"{prefix}_BACKEND must be one of {' | '.join(allowed)}, got {backend!r}")
        if backend != "local" and not url.startswith(("http://", "https://")):
            raise ConfigError(f"{prefix}_BACKEND={backend} needs {prefix}_URL, the server's http(s):// base URL")
    if min(settings.remote_timeout_s, settings.remote_query_timeout_s) <= 0:
        raise ConfigError("REMOTE_TIMEOUT_S and REMOTE_QUERY_TIMEOUT_S must be more than 0")
    if settings.remote_retries < 0 or settings.remote_cooldown_s < 0:
        raise ConfigError("REMOTE_RETRIES and REMOTE_COOLDOWN_S must be 0 or more")
    if min(settings.embedding_batch_size, settings.rerank_batch_size) < 1:
        raise ConfigError("EMBEDDING_BATCH_SIZE and RERANK_BATCH_SIZE must be at least 1")


def _convert(name: str, raw: str, kind: type) -> Any:
    """Turn one env string into the field's type, with an error that names the variable."""
    raw = raw.strip()
    try:
        if kind is bool:
            low = raw.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(f"expected true/false, got {raw!r}")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if issubclass(kind, Path):
            return Path(raw).expanduser()
        return raw
    except ValueError as exc:
        raise ConfigError(f"{name.upper()}: {exc}") from exc


def settings_docs() -> list[tuple[str, str, str]]:
    """(ENV_NAME, default, description) for every setting; docs tests compare these to README and .env.example."""
    rows = []
    for f in fields(Settings):
        default = f.default
        if f.name == "ml_user_base":
            default = "~/.local"
        if isinstance(default, bool):
            default = str(default).lower()
        rows.append((f.name.upper(), str(default), f.metadata["doc"]))
    return rows


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings.from_env()
