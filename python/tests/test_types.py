"""The type check is a test: mypy, strict on src/ragserver as pyproject's [tool.mypy] says, runs in the fast tier.

Why a test rather than a separate step: ./run-tests.sh and an editor's test runner then both catch a type error,
and the failure lists mypy's own messages. The cache lives in python/.mypy_cache, so only a first run is cold.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

PYTHON_DIR = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_package_type_checks_strictly() -> None:
    stdout, stderr, status = api.run(
        [
            "--config-file",
            str(PYTHON_DIR / "pyproject.toml"),
            "--cache-dir",
            str(PYTHON_DIR / ".mypy_cache"),
            str(PYTHON_DIR / "src" / "ragserver"),
        ]
    )
    assert status == 0, f"mypy (strict) found errors:\n{stdout}{stderr}"
    assert stdout.startswith("Success: no issues found"), stdout
