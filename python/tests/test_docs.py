"""Docs asserted by tests: every setting is documented, with its default, where users look."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ragserver.config import Settings, settings_docs
from ragserver.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _env_example() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]+)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2).strip()
    return values


def _readme_table() -> dict[str, str]:
    rows = {}
    for line in (REPO / "README.md").read_text().splitlines():
        match = re.match(r"^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|\s*`?([^|`]*)`?\s*\|", line)
        if match:
            rows[match.group(1)] = match.group(2).strip()
    return rows


@pytest.mark.parametrize(("name", "default", "doc"), settings_docs())
def test_every_setting_is_in_env_example_with_its_default(name: str, default: str, doc: str) -> None:
    assert _env_example().get(name) == default, f"{name} missing or with another default in .env.example"


@pytest.mark.parametrize(("name", "default", "doc"), settings_docs())
def test_every_setting_is_in_the_readme_table_with_its_default(name: str, default: str, doc: str) -> None:
    assert _readme_table().get(name) == default, f"{name} missing or with another default in README.md"


def test_documented_settings_all_exist() -> None:
    known = {name for name, _, _ in settings_docs()}
    assert set(_readme_table()) <= known
    assert set(_env_example()) - {"ML_ENV_DIR", "MODELS_DIR"} <= known | {"RAGSERVER_IMAGE"}


def test_env_values_are_typed_and_bad_values_name_the_variable() -> None:
    settings = Settings.from_env({"PORT": "9000", "USE_RERANKING": "no", "DATA_DIR": "/tmp/x"})
    assert settings.port == 9000
    assert settings.use_reranking is False
    assert settings.data_dir == Path("/tmp/x")
    with pytest.raises(ConfigError, match="PORT"):
        Settings.from_env({"PORT": "eighty"})
    with pytest.raises(ConfigError, match="USE_RERANKING"):
        Settings.from_env({"USE_RERANKING": "maybe"})


def test_store_backend_follows_the_configuration() -> None:
    assert Settings().store_backend == "embedded"
    assert Settings(database_url="postgresql://x/y").store_backend == "postgres"
    assert Settings(supabase_url="http://s", supabase_service_key="k").store_backend == "supabase"
