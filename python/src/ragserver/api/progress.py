"""Polling of long operations (ETag + 304 so idle pollers cost nothing) and stop requests.

Any replica answers for the operations of every replica of the database and stops them.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Path, Response
from pydantic import BaseModel

from ragserver.api.deps import ProgressDep
from ragserver.api.handlers import error_responses
from ragserver.progress import ProgressSnapshot, etag_of

router = APIRouter(prefix="/api", tags=["progress"])

ProgressId = Annotated[str, Path(min_length=1, max_length=100)]


class ProgressListResponse(BaseModel):
    operations: list[ProgressSnapshot]
    count: int
    timestamp: float


class StopResponse(BaseModel):
    success: bool
    progressId: str
    cancelled: bool
    message: str


@router.get("/progress/", response_model=ProgressListResponse)
async def list_progress(tracker: ProgressDep) -> ProgressListResponse:
    """Operations still running, on any replica."""
    snapshots = await tracker.overview(active_only=True)
    operations = [ProgressSnapshot.model_validate(snapshot) for snapshot in snapshots]
    return ProgressListResponse(operations=operations, count=len(operations), timestamp=time.time())


@router.get(
    "/progress/{progress_id}",
    response_model=ProgressSnapshot,
    responses={304: {"description": "Unchanged since the ETag in If-None-Match"}, **error_responses(404)},
)
async def get_progress(
    progress_id: ProgressId,
    tracker: ProgressDep,
    response: Response,
    if_none_match: Annotated[str | None, Header()] = None,
) -> ProgressSnapshot | Response:
    """The operation's current state; 404 for an unknown id."""
    snapshot = await tracker.find(progress_id)
    etag = etag_of(snapshot)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if if_none_match and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return ProgressSnapshot.model_validate(snapshot)


@router.post("/knowledge-items/stop/{progress_id}", response_model=StopResponse, responses=error_responses(404))
async def stop_operation(progress_id: ProgressId, tracker: ProgressDep) -> StopResponse:
    """Ask an operation to stop; it ends as 'cancelled' once it reaches a safe point."""
    cancelled = await tracker.stop(progress_id)
    message = "stop requested" if cancelled else "operation had already finished"
    return StopResponse(success=True, progressId=progress_id, cancelled=cancelled, message=message)
