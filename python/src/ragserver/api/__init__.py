"""The HTTP face: thin routes over the runtime's services (validate, call a service, shape typed JSON).

app.py composes it: the routers, the guards that run before any route reads a body, the one
error renderer, and Socket.IO for progress pushes. Nothing below the faces imports this package.
"""

from ragserver.api import ask, code_examples, crawl, health, knowledge, ml, pages, progress, rag
from ragserver.api.guards import ApiKeyMiddleware, BodyLimitMiddleware
from ragserver.api.handlers import error_responses, install_error_handlers
from ragserver.api.realtime import build_socketio, listen_to_other_replicas, stop_socketio

HEALTH_ROUTER = health.router
# The /api routers: behind the API key when one is set.
API_ROUTERS = (
    knowledge.router,
    pages.router,
    code_examples.router,
    crawl.router,
    rag.router,
    ask.router,
    progress.router,
    ml.router,
)

__all__ = [
    "API_ROUTERS",
    "HEALTH_ROUTER",
    "ApiKeyMiddleware",
    "BodyLimitMiddleware",
    "build_socketio",
    "error_responses",
    "install_error_handlers",
    "listen_to_other_replicas",
    "stop_socketio",
]
