"""GET /health: is the server usable, and if only partly, what is missing and how to fix it.

Never behind the API key (orchestrators probe it). 503 while the database migrates or is
unreachable; 200 with status 'ok' or 'degraded' once queries can be answered.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from ragserver import __version__
from ragserver.api.deps import RuntimeDep

router = APIRouter(tags=["health"])

STORE_HEALTH_TIMEOUT_S = 5.0


class HealthResponse(BaseModel):
    """State of the server and of each part it depends on."""

    model_config = ConfigDict(extra="allow")

    status: str
    version: str
    database: dict[str, Any]
    ml: dict[str, Any]
    issues: list[str]
    event_loop: dict[str, float | int] | None = None


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Starting, or the database is unavailable"}},
)
async def health(runtime: RuntimeDep) -> JSONResponse:
    """Database, ML environment and model states; `issues` says what is missing and the fix."""
    ml = runtime.ml.status()
    issues = _ml_issues(ml)
    database = dict(runtime.database)
    if not runtime.ready.is_set():
        status, code = "starting", 503
    else:
        database.update(await _store_report(runtime.store))
        if database["state"] == "ready":
            status, code = ("ok" if not issues else "degraded"), 200
        else:
            status, code = "error", 503
    if database.get("state") == "error":
        issues.insert(0, f"database: {database.get('reason', 'unavailable')}")
    body = {
        "status": status,
        "version": __version__,
        "database": database,
        "ml": ml,
        "issues": issues,
        "event_loop": runtime.loop_lag.snapshot(),
    }
    return JSONResponse(body, status_code=code)


async def _store_report(store: Any) -> dict[str, Any]:
    """The store's own health (`state` ready|error with a `reason`), bounded in time."""
    try:
        return await asyncio.wait_for(store.health(), STORE_HEALTH_TIMEOUT_S)
    except TimeoutError:  # e.g. the pool waiting for a connection to a Postgres that died
        return {"state": "error", "reason": f"the database did not answer within {STORE_HEALTH_TIMEOUT_S:.0f} s"}
    except Exception as exc:
        return {"state": "error", "reason": f"health check failed: {type(exc).__name__}: {exc}"[:300]}


def _ml_issues(ml: dict[str, Any]) -> list[str]:
    """One line per ML part that is not ready, with its reason and fix; a missing env explains both models."""
    env = ml.get("env", {})
    if env.get("state") != "ready":
        parts = [("ML environment", env)]
    else:
        parts = [("embedder", ml.get("embedder", {})), ("reranker", ml.get("reranker", {}))]
    issues = []
    for label, state in parts:
        if state.get("state") in ("ready", "disabled"):
            continue
        line = f"{label} {state.get('state', 'unknown')}"
        if state.get("reason"):
            line += f": {state['reason']}"
        if state.get("fix"):
            line += f"; fix: run {state['fix']}"
        issues.append(line)
    return issues
