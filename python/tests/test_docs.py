"""Docs asserted by tests: every setting is documented, with its default, where users look; the README's
run and test commands are the ones the repository provides."""

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


def _readme_commands() -> list[str]:
    """The lines inside the README's ```bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.DOTALL)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]


def test_readme_runs_with_one_line_and_tests_with_one_line() -> None:
    commands = _readme_commands()
    assert "./bootstrap-ml-env.sh && docker compose up -d" in commands
    assert "./run-tests.sh" in commands
    assert all((REPO / script).stat().st_mode & 0o111 for script in ("bootstrap-ml-env.sh", "run-tests.sh"))


def test_ci_calls_the_readme_test_command_and_installs_nothing_itself() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^export RAGSERVER_REQUIRE_DOCKER=1$", ci, flags=re.MULTILINE)
    assert re.search(r"^\./run-tests\.sh$", ci, flags=re.MULTILINE)
    assert "pip install" not in ci and "venv" not in ci  # run-tests.sh owns the environment


@pytest.mark.parametrize("doc", ["README.md", "DOCKER_ML_CLEANUP_IMPLEMENTATION.md"])
def test_the_lock_refresh_command_is_documented_and_exists(doc: str) -> None:
    assert "python/lock.sh" in (REPO / doc).read_text()
    assert (REPO / "python" / "lock.sh").stat().st_mode & 0o111


def test_env_values_are_typed_and_bad_values_name_the_variable() -> None:
    settings = Settings.from_env({"PORT": "9000", "USE_RERANKING": "no", "DATA_DIR": "/tmp/x"})
    assert settings.port == 9000
    assert settings.use_reranking is False
    assert settings.data_dir == Path("/tmp/x")
    with pytest.raises(ConfigError, match="PORT"):
        Settings.from_env({"PORT": "eighty"})
    with pytest.raises(ConfigError, match="USE_RERANKING"):
        Settings.from_env({"USE_RERANKING": "maybe"})


def test_a_negative_replica_max_jobs_is_refused_at_start() -> None:
    assert Settings.from_env({"REPLICA_MAX_JOBS": "0"}).replica_max_jobs == 0  # a replica that only queues
    with pytest.raises(ConfigError, match=r"REPLICA_MAX_JOBS must be 0 or more"):
        Settings.from_env({"REPLICA_MAX_JOBS": "-1"})


def test_store_backend_follows_the_configuration() -> None:
    assert Settings().store_backend == "embedded"
    assert Settings(database_url="postgresql://x/y").store_backend == "postgres"
    assert Settings(supabase_url="http://s", supabase_service_key="k").store_backend == "supabase"
