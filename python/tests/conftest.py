"""Shared pytest fixtures, split by room into tests/support/*_fixtures.py."""

pytest_plugins = [
    "support.store_fixtures",
    "support.model_fixtures",
    "support.api_fixtures",
    "support.mcp_fixtures",
    "support.remote_fixtures",
]
