"""ASGI guards that run before any route reads a body: the API key and the request size cap.

Both are plain ASGI middlewares so they hold for every /api route, present and future, and so a
refused request is answered before a byte of its body is read.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragserver.api.handlers import error_response
from ragserver.errors import PayloadTooLarge, Unauthorized

PROTECTED_PREFIXES = ("/api",)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an 'Authorization: Bearer <token>' header value, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def key_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison of an API key; an unset key on the server accepts everything."""
    if not expected:
        return True
    if given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


class ApiKeyMiddleware:
    """Refuses requests under `prefixes` (/api, and what the app adds) without the configured bearer key (401 JSON)."""

    def __init__(self, app: ASGIApp, api_key: str, prefixes: tuple[str, ...] = PROTECTED_PREFIXES) -> None:
        self.app = app
        self.api_key = api_key
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.api_key
            and scope["type"] == "http"
            and any(_under(scope["path"], prefix) for prefix in self.prefixes)
            and not key_matches(self.api_key, bearer_token(Headers(scope=scope).get("authorization")))
        ):
            await error_response(Unauthorized("missing or wrong API key (Authorization: Bearer <key>)"))(
                scope, receive, send
            )
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Caps the request body: by Content-Length up front, and by counting while it streams in.

    This is not the upload size rule (MAX_UPLOAD_MB per file, checked where the ingest service
    reads the file): it bounds what any route's body parsing may buffer or spool to disk before
    a route runs at all, so its cap is the largest legitimate body (an upload plus its multipart
    envelope) and it guards every route, JSON ones included.

    When a body without (or with a lying) Content-Length crosses the cap, the 413 is sent from
    here, the route sees a disconnect, and whatever it answers afterwards is dropped.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLarge(f"request body is larger than {self.max_bytes} bytes")
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(too_large)(scope, receive, send)
            return
        received = 0
        refused = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await error_response(too_large)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:
                raise


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")
