"""The built-in web page: a face like api/ and mcp/, made of static files the browser runs.

The page talks to the server only through /api, /health and Socket.IO, so this package serves
files and nothing else. Its files need no API key: the page has to load before it can ask for one.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route

from ragserver.web.files import STATIC_DIR, PageFiles, PageIndex

ASSETS_PATH = "/assets"


def web_routes(directory: Path = STATIC_DIR) -> list[BaseRoute]:
    """`/` (index.html) and `/assets/<path>` (every file of `directory`).

    Only these two paths, so an unknown /api path still reaches the API's JSON 404. The directory is
    checked on the first request, not here: a package built without its page still serves the API.
    """
    return [
        Route("/", PageIndex(directory=directory, check_dir=False), methods=["GET", "HEAD"], name="web_index"),
        Mount(ASSETS_PATH, PageFiles(directory=directory, check_dir=False), name="web_assets"),
    ]


__all__ = ["ASSETS_PATH", "STATIC_DIR", "web_routes"]
