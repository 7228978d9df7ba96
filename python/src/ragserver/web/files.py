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

from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

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


class PageFiles(StaticFiles):
    """StaticFiles whose answers (304s included) carry the page's headers and JavaScript's type."""

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
