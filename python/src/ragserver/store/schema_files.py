"""The SQL this package ships, and the manifest of what earlier releases shipped.

- store/migrations/NNNN_name.sql: versioned migrations (tables, indexes, data changes), applied
  once each and never edited once released.
- store/migrations/released.json: every migration name ever released, with each checksum it
  was released with (a shipped file has exactly one: the file as it is today; a retired name
  every version it had, oldest first),
  and `retired` for the names whose file no longer ships (their SQL moved to functions/), so a
  database made by any release is recognised.
- store/functions/NN_name.sql: repeatable SQL (the rag_* functions and their privileges),
  applied in name order as a whole whenever any checksum differs from the recorded one.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

MANIFEST = "released.json"


@dataclass(frozen=True)
class SqlFile:
    """One SQL file of the package, named without its `.sql`."""

    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class Release:
    """What the manifest says about one migration name."""

    checksums: tuple[str, ...]
    #: why the file no longer ships (None for a shipped migration)
    retired: str | None = None


def _folder(name: str) -> Traversable:
    return resources.files("ragserver.store") / name


def _sql_files(folder: str) -> tuple[SqlFile, ...]:
    files = sorted((f for f in _folder(folder).iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return tuple(SqlFile(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files)


@functools.cache
def shipped_migrations() -> tuple[SqlFile, ...]:
    """The versioned migrations of this version, in the order they apply."""
    return _sql_files("migrations")


@functools.cache
def shipped_functions() -> tuple[SqlFile, ...]:
    """The repeatable SQL files of this version, in the order they apply."""
    return _sql_files("functions")


@functools.cache
def released() -> dict[str, Release]:
    """The manifest: every migration name any release shipped, and its checksums."""
    raw = json.loads((_folder("migrations") / MANIFEST).read_text(encoding="utf-8"))
    return {name: Release(tuple(entry["checksums"]), entry.get("retired")) for name, entry in raw.items()}


def latest_version() -> str:
    """Name of the newest versioned migration: the schema version this code expects."""
    return shipped_migrations()[-1].name
