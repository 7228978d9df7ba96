"""The lock files agree with pyproject.toml, carry hashes, keep CUDA out, and the image filter keeps the server.

Why: the image and ./run-tests.sh install the locks with --no-deps, so a dependency added to pyproject.toml but
not locked (lock.sh not run) would surface only as an ImportError in a container; these tests say so first.
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PYTHON_DIR = Path(__file__).resolve().parents[1]
REQUIREMENTS = PYTHON_DIR / "requirements"
PYPROJECT = tomllib.loads((PYTHON_DIR / "pyproject.toml").read_text())


def _filter_module() -> ModuleType:
    """docker/slim_requirements.py, the filter Dockerfile.server runs (a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("slim_requirements", PYTHON_DIR / "docker" / "slim_requirements.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


SLIM = _filter_module()


def _lock(name: str) -> dict[str, Any]:
    """The lock's packages by name (slim_requirements.Locked values: lines and parents)."""
    return SLIM.parse_lock((REQUIREMENTS / name).read_text())  # type: ignore[no-any-return]


def _pins(name: str) -> dict[str, Version]:
    return {package: Version(locked.lines[0].split("==")[1].split()[0]) for package, locked in _lock(name).items()}


def _requirements(*groups: list[str]) -> list[Requirement]:
    return [Requirement(text) for group in groups for text in group]


SERVER_REQUIREMENTS = _requirements(PYPROJECT["project"]["dependencies"], PYPROJECT["build-system"]["requires"])
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
DEV_REQUIREMENTS = [req for req in _requirements(EXTRAS["ml"], EXTRAS["dev"]) if req.name != "torch"]


@pytest.mark.parametrize(
    ("lock", "requirement"),
    [("server.lock", r) for r in SERVER_REQUIREMENTS] + [("dev.lock", r) for r in DEV_REQUIREMENTS],
    ids=str,
)
def test_each_lock_pins_its_dependencies_within_their_ranges(lock: str, requirement: Requirement) -> None:
    """server.lock: the server's dependencies; dev.lock: the ml and dev extras (torch apart)."""
    pins = _pins(lock)
    name = canonicalize_name(requirement.name)
    assert name in pins, f"{requirement} is not in requirements/{lock}: run python/lock.sh"
    assert requirement.specifier.contains(pins[name]), f"{lock} pins {name}=={pins[name]}, outside {requirement}"


def test_dev_lock_has_the_server_lock_versions() -> None:
    server, dev = _pins("server.lock"), _pins("dev.lock")
    assert {name: version for name, version in server.items() if dev.get(name) != version} == {}


def test_dev_lock_holds_no_torch_and_no_cuda_package() -> None:
    cuda = [name for name in _pins("dev.lock") if name in {"torch", "triton"} or name.startswith("nvidia-")]
    assert cuda == [], "torch comes from requirements/torch.txt (CPU build); its CUDA packages must never be locked"
    (pin,) = [line for line in (REQUIREMENTS / "torch.txt").read_text().splitlines() if not line.startswith("#")]
    assert Version(pin.removeprefix("torch==")).local == "cpu"


@pytest.mark.parametrize("lock", ["server.lock", "dev.lock"])
def test_every_pin_carries_hashes(lock: str) -> None:
    packages = _lock(lock)
    assert len(packages) > 50
    unhashed = [name for name, locked in packages.items() if not any("--hash=sha256:" in x for x in locked.lines)]
    assert unhashed == []


def test_image_filter_leaves_out_what_only_crawl4ai_extras_need() -> None:
    packages = _lock("server.lock")
    kept = set(SLIM.slim(packages))
    # The skipped packages go, and so does what only they pulled in (litellm's openai, alphashape's scipy).
    assert kept.isdisjoint(SLIM.SKIP | {"openai", "scipy"})
    assert {"openai", "scipy"} <= packages.keys()
    # Everything the server asks for stays, with what it needs, and crawl4ai's module-level imports.
    assert {canonicalize_name(req.name) for req in SERVER_REQUIREMENTS} <= kept
    assert {"tiktoken", "playwright", "pydantic", "uvloop"} <= kept
