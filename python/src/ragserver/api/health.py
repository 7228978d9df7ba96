"""GET /health: is the server usable, and if only partly, what is missing and how to fix it.

Never behind the API key (orchestrators probe it). 503 while the database migrates or is
unreachable, and with status 'error' when start-up refused the database for good (a schema this
release cannot run on: the reason names the file); 200 with status 'ok' or 'degraded' once
queries can be answered.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ragserver import __version__
from ragserver.api.deps import RuntimeDep
from ragserver.store import Store

router = APIRouter(tags=["health"])

STORE_HEALTH_TIMEOUT_S = 5.0
HealthStatus = Literal["starting", "ok", "degraded", "error"]


class _Part(BaseModel):
    # the ML service and the store report plain mappings or objects; read either by attribute
    model_config = ConfigDict(from_attributes=True)


class EmbeddingSpace(_Part):
    model: str
    dimension: int


class DatabaseHealth(_Part):
    """The database: `state` starting|ready|error, and `reason` when it is not ready."""

    state: Literal["starting", "ready", "error"]
    reason: str = ""
    backend: str = Field(description="postgres | supabase | embedded")
    expected_schema_version: str | None = None
    schema_version: str | None = None
    schema_ready: bool | None = None
    schema_mismatch: bool | None = Field(
        default=None, description="The database has a migration no release of this code had (edited, or newer)"
    )
    functions_current: bool | None = Field(default=None, description="The SQL functions are the ones this code ships")
    migrations: int | None = Field(default=None, description="Migrations recorded in the database")
    embedding_spaces: list[EmbeddingSpace] = Field(default_factory=list)


class MLEnvHealth(_Part):
    """The external ML environment: ready | missing | incompatible | broken | not_needed (both models
    remote) (or not_started)."""

    state: str
    reason: str | None = None
    fix: str | None = Field(default=None, description="The command that fixes it")
    manifest: dict[str, JsonValue] | None = Field(default=None, description="ml-env.json as the bootstrap wrote it")
    torch: str | None = None


class ModelHealth(_Part):
    """One model: not_started | loading | ready | failed | unavailable | disabled, or `error` while its
    remote server fails."""

    state: str
    reason: str | None = None
    fix: str | None = None
    error: str | None = Field(default=None, description="The underlying error, when loading failed")
    model: str
    device: str | None = None
    backend: str = Field(default="local", description="local, or the remote shape: openai | cohere | tei")
    url: str | None = Field(default=None, description="The remote server's base URL, without credentials")


class EmbedderHealth(ModelHealth):
    dimension: int | None = None
    retry_in_s: float | None = Field(
        default=None, description="A remote embedding server that did not answer is probed again after this pause"
    )


class RerankerHealth(ModelHealth):
    kind: str | None = Field(default=None, description="How it scores: causal-lm-yes-no | cross-encoder")


class CpuThreads(_Part):
    search: int
    bulk: int


class MLHealth(_Part):
    env: MLEnvHealth
    cpu_threads: CpuThreads | None = Field(default=None, description="Torch threads of a search / a bulk forward pass")
    embedder: EmbedderHealth
    reranker: RerankerHealth


class EventLoopHealth(_Part):
    lag_max_ms: float
    lag_recent_max_ms: float
    lag_over_100ms: int
    samples: int


class HealthResponse(BaseModel):
    """State of the server and of each part it depends on; `issues` says what is missing and the fix."""

    status: HealthStatus
    version: str
    database: DatabaseHealth
    ml: MLHealth
    issues: list[str]
    event_loop: EventLoopHealth


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Starting, or the database is unavailable or refused"}},
)
async def health(runtime: RuntimeDep, response: Response) -> HealthResponse:
    """Database, ML environment and model states; `issues` says what is missing and the fix."""
    ml = MLHealth.model_validate(runtime.ml.status())
    issues = _ml_issues(ml)
    database = DatabaseHealth(
        state=runtime.database.state, reason=runtime.database.reason, backend=runtime.settings.store_backend
    )
    if runtime.failed.is_set():
        status: HealthStatus = "error"
    elif not runtime.ready.is_set():
        status = "starting"
    else:
        database = await _store_report(runtime.store)
        status = "error" if database.state != "ready" else "degraded" if issues else "ok"
    if database.state == "error":
        issues.insert(0, f"database: {database.reason or 'unavailable'}")
    response.status_code = 200 if status in ("ok", "degraded") else 503
    return HealthResponse(
        status=status,
        version=__version__,
        database=database,
        ml=ml,
        issues=issues,
        event_loop=EventLoopHealth.model_validate(runtime.loop_lag.snapshot()),
    )


async def _store_report(store: Store) -> DatabaseHealth:
    """The store's own health (`state` ready|error with a `reason`), bounded in time."""
    try:
        report = await asyncio.wait_for(store.health(), STORE_HEALTH_TIMEOUT_S)
    except TimeoutError:  # e.g. the pool waiting for a connection to a Postgres that died
        reason = f"the database did not answer within {STORE_HEALTH_TIMEOUT_S:.0f} s"
    except Exception as exc:
        reason = f"health check failed: {type(exc).__name__}: {exc}"[:300]
    else:
        return DatabaseHealth.model_validate(report)
    return DatabaseHealth(state="error", reason=reason, backend=store.backend)


def _ml_issues(ml: MLHealth) -> list[str]:
    """One line per ML part that is not ready, with its reason and fix; a missing env explains both models."""
    env_usable = ml.env.state in ("ready", "not_needed")
    parts: list[tuple[str, MLEnvHealth | ModelHealth]] = [] if env_usable else [("ML environment", ml.env)]
    for label, model in (("embedder", ml.embedder), ("reranker", ml.reranker)):
        if env_usable or model.backend != "local":  # a remote model does not depend on the ML env
            parts.append((label, model))
    issues = []
    for label, part in parts:
        if part.state in ("ready", "disabled"):
            continue
        line = f"{label} {part.state}"
        if part.reason:
            line += f": {part.reason}"
        if part.fix:
            line += f"; fix: run {part.fix}"
        issues.append(line)
    return issues
