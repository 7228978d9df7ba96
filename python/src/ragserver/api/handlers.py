"""The one place that turns exceptions into JSON error responses.

Every body has the shape of `RagServerError.to_json()`: {success: false, error, message[, details]}.
Unexpected exceptions become a 500 without a traceback in the body; the log line names the route,
never headers or bodies (they may carry keys).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, JsonValue
from starlette.exceptions import HTTPException

from ragserver.errors import RagServerError, Unauthorized

log = logging.getLogger(__name__)

MAX_VALIDATION_ERRORS = 10

ERROR_DESCRIPTIONS = {
    400: "Bad input: unparsable body, a field value the service refuses (e.g. a refused crawl target)",
    401: "Missing or wrong API key (Authorization: Bearer <key>)",
    404: "No such id",
    409: "The feature needs settings that are not set (the message names them)",
    413: "Request body larger than MAX_UPLOAD_MB",
    415: "File type that cannot be parsed",
    422: "Request does not match the schema",
    429: "A queue is full; retry later",
    500: "Unexpected failure (logged by the server; the body has no details)",
    502: "An upstream server (the LLM) is down or answered an error",
    503: "A dependency (database, ML environment) is not ready",
    504: "An upstream server (the LLM) did not answer in time",
}


class ErrorBody(BaseModel):
    """The body of every error answer (RagServerError.to_json and the validation handler)."""

    success: bool
    error: str
    message: str
    details: dict[str, JsonValue] | None = None


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error status codes, so clients (and schemathesis) know them.

    The value type is FastAPI's own (`responses=` of a route or router).
    """
    return {code: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[code]} for code in codes}


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on the FastAPI app."""
    app.add_exception_handler(RagServerError, _ragserver_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


def error_response(exc: RagServerError) -> JSONResponse:
    """The JSON response of one RagServerError (also used by the ASGI middlewares)."""
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(exc.to_json(), status_code=exc.status_code, headers=headers)


async def _ragserver_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RagServerError)
    if exc.status_code >= 500:
        log.error("%s %s -> %s: %s", request.method, request.url.path, exc.code, exc.message)
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(part) for part in err.get("loc", ())], "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()[:MAX_VALIDATION_ERRORS]
    ]
    message = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
    body = {"success": False, "error": "validation_error", "message": message, "details": {"errors": errors}}
    return JSONResponse(body, status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    body = {"success": False, "error": code, "message": str(exc.detail)}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s -> unexpected %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
    body = {"success": False, "error": "internal_error", "message": "internal server error"}
    return JSONResponse(body, status_code=500)
