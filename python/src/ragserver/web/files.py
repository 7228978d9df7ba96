"""The page's static files, served by Starlette's StaticFiles with the headers the page relies on.

Every answer is revalidated (Cache-Control: no-cache with the ETag / Last-Modified FileResponse
gives it, so an unchanged file costs a 304) because the files carry no version in their names: a
new image must never run with yesterday's cached JavaScript. The Content-Security-Policy is the
second wall behind the page's own escaping: crawled markdown is shown in this page, and no script
or inline handler it carries may run.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.responses import JSONResponse, Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Receive, Scope, Send

from ragserver.errors import Unavailable

#: Where the page lives in the package (index.html, css/, js/, and vendor/ fetched at build time).
STATIC_DIR = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: http: https:",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    )
)
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}
# Browsers load ES modules only with a JavaScript type, under nosniff strictly so; Python's
# mimetypes answers application/javascript or nothing for .mjs where the system has no mime.types.
JAVASCRIPT_SUFFIXES = frozenset({".js", ".mjs"})
JAVASCRIPT_TYPE = "text/javascript; charset=utf-8"


class PageMissing(Unavailable):
    """The package was built without its page folder: the API works, the page cannot be served."""

    code = "web_page_missing"


class PageFiles(StaticFiles):
    """StaticFiles whose answers (304s included) carry the page's headers and JavaScript's type.

    A missing folder answers a JSON 503 saying how to get the page back, where StaticFiles would fail
    every request with a 500."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.directory is not None and not os.path.isdir(self.directory):
            missing = PageMissing(
                f"the web page's files are not installed ({self.directory} is missing): reinstall ragserver "
                "with its package data (pip install ./python from a checkout, or the Docker image); the API and "
                "/docs still work"
            )
            await JSONResponse(missing.to_json(), status_code=missing.status_code)(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(PAGE_HEADERS)
        if "content-type" in response.headers and Path(full_path).suffix in JAVASCRIPT_SUFFIXES:
            response.headers["content-type"] = JAVASCRIPT_TYPE
        return response


class PageIndex(PageFiles):
    """index.html for the one path it is served at (`/`), whatever that path is."""

    def get_path(self, scope: Scope) -> str:
        return "index.html"
