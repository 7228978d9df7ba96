"""Is the external ML env usable? One answer at start: ready | missing | incompatible | broken.

The server image has no torch; it comes from a host folder mounted as the user site
(ML_USER_BASE, /root/.local in Docker) and filled once by ./bootstrap-ml-env.sh. This probe reads
that folder's ml-env.json, checks the Python minor version (compiled wheels are per minor),
and imports the ML stack in a guarded way: a broken shared library raises OSError, not
ImportError, and must become a `broken` state with the error text, never a crash.
"""

from __future__ import annotations

import importlib
import site
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragserver.ml.loading import force_offline
from ragserver.ml.manifest import FILENAME, ManifestError, python_minor, read_manifest, torch_version

FIX = "./bootstrap-ml-env.sh"
FIX_FORCE = "./bootstrap-ml-env.sh --force"
STACK = ("torch", "transformers", "sentence_transformers")


@dataclass(frozen=True)
class EnvStatus:
    """The probe's verdict, as /health and check-ml show it."""

    state: str  # ready | missing | incompatible | broken
    reason: str
    fix: str | None
    manifest: dict[str, Any] | None
    torch: str | None = None  # the imported torch version, when ready

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _our_minor() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def add_env_to_path(env_dir: Path) -> Path | None:
    """Put the ML env's user-site packages on sys.path (Python adds ~/.local itself only outside venvs)."""
    packages = Path(env_dir) / "lib" / f"python{_our_minor()}" / "site-packages"
    if not packages.is_dir():
        return None
    if str(packages) not in sys.path:
        site.addsitedir(str(packages))
    return packages


def _import_stack() -> str:
    """Import torch and the libraries the models need; returns torch's version."""
    force_offline()  # before transformers/huggingface_hub read their environment
    modules = [importlib.import_module(name) for name in STACK]
    return str(modules[0].__version__)


def probe_env(env_dir: Path) -> EnvStatus:
    """Probe the ML env under `env_dir`; never raises."""
    env_dir = Path(env_dir)
    try:
        manifest = read_manifest(env_dir)
    except ManifestError as exc:
        return EnvStatus("broken", f"{FILENAME} is unreadable: {exc}", FIX_FORCE, None)
    if manifest is not None:
        theirs = python_minor(manifest)
        if theirs != _our_minor():
            return EnvStatus(
                "incompatible",
                f"the ML env was built for Python {theirs or 'unknown'}, the server runs Python {_our_minor()}",
                FIX_FORCE,
                manifest,
            )
    add_env_to_path(env_dir)
    try:
        version = _import_stack()
    except ModuleNotFoundError as exc:
        if manifest is None and exc.name in STACK:
            reason = f"no ML env: {env_dir / FILENAME} not found and {exc.name} is not importable"
            return EnvStatus("missing", reason, FIX, None)
        return EnvStatus("broken", f"cannot import the ML stack: {exc}", FIX_FORCE, manifest)
    except Exception as exc:  # OSError from a broken .so, anything raised by a half-installed package
        return EnvStatus("broken", f"importing the ML stack failed: {type(exc).__name__}: {exc}", FIX_FORCE, manifest)
    if manifest is None:
        reason = f"no {FILENAME} in {env_dir}; using torch {version} found on sys.path (dev environment)"
        return EnvStatus("ready", reason, None, None, version)
    recorded = torch_version(manifest)
    reason = f"{FILENAME} ok (Python {_our_minor()}, torch {version})"
    if recorded and recorded != version:
        reason += f"; note: manifest lists torch {recorded}, another torch was imported first"
    return EnvStatus("ready", reason, None, manifest, version)
