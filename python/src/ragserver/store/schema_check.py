"""Can this code run on that database? One verdict for start-up, `ragserver migrate` and /health.

A database is judged by what it recorded: the migrations (rag_schema_migrations) and the
repeatable function files (rag_schema_functions), each with a checksum. Two findings are fatal
(SchemaMismatch): a recorded checksum that this release does not accept for that migration
(someone edited a released migration and applied it), and a migration name no release known to
this code had (a newer release made the database). The others only need `ragserver migrate`: migrations not
applied yet, and function files whose recorded checksum differs from the shipped one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ragserver.errors import SchemaMismatch
from ragserver.store.schema_files import released, shipped_functions, shipped_migrations
from ragserver.store.transport import NOT_MIGRATED


@dataclass(frozen=True)
class SchemaState:
    """The verdict on one database's recorded schema."""

    #: why this code cannot run on the database at all ("" when it can)
    mismatch: str = ""
    #: versioned migrations not applied yet
    pending: tuple[str, ...] = ()
    #: function files whose recorded checksum differs from the shipped one (or that are new or gone)
    stale_functions: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return not (self.mismatch or self.pending or self.stale_functions)

    @property
    def reason(self) -> str:
        """One line for /health: what is wrong and what to do ("" when ready)."""
        if self.mismatch:
            return self.mismatch
        if self.pending:
            return f"{NOT_MIGRATED} (pending: {', '.join(self.pending)})"
        if self.stale_functions:
            return f"the SQL functions are out of date ({', '.join(self.stale_functions)}): run `ragserver migrate`"
        return ""

    def raise_if_mismatch(self) -> None:
        if self.mismatch:
            raise SchemaMismatch(self.mismatch)


def mismatch(applied: Mapping[str, str]) -> str:
    """Why the recorded migrations rule this database out ("" when every one is a known release).

    A shipped migration must be recorded at the checksum of the file as it ships (it is released
    once and never edited); a retired one at any checksum a release had.
    """
    manifest = released()
    shipped = {m.name: m.checksum for m in shipped_migrations()}
    for name, checksum in sorted(applied.items()):
        release = manifest.get(name)
        if release is None:
            return (
                f"the database has migration {name}, which this release of ragserver does not know: a newer "
                "release made it; run that release or a newer one, or use another database"
            )
        known = (shipped[name],) if name in shipped else release.checksums
        if checksum not in known:
            return (
                f"the database recorded migration {name}.sql with checksum {checksum[:12]}, which this release "
                f"does not ship: store/migrations/{name}.sql was edited after it was released and applied; use "
                "a database made by a released ragserver (schema changes go in a new migration, function "
                "changes in store/functions/)"
            )
    return ""


def stale_functions(recorded: Mapping[str, str]) -> tuple[str, ...]:
    """Function files whose recorded checksum differs from the shipped one, plus recorded files now gone."""
    shipped = {f.name: f.checksum for f in shipped_functions()}
    names = sorted(shipped.keys() | recorded.keys())
    return tuple(name for name in names if shipped.get(name) != recorded.get(name))


def assess(applied: Mapping[str, str], functions: Mapping[str, str]) -> SchemaState:
    """The verdict from the recorded migrations and function files (name -> checksum)."""
    return SchemaState(
        mismatch=mismatch(applied),
        pending=tuple(m.name for m in shipped_migrations() if m.name not in applied),
        stale_functions=stale_functions(functions),
    )


def assess_info(info: Mapping[str, Any]) -> SchemaState:
    """The verdict from a rag_schema_info row, over either transport.

    A database whose rag_schema_info predates the recorded checksums reports only its newest
    migration: what comes after it is pending, and its functions are out of date.
    """
    if "applied" not in info:
        version = str(info.get("version") or "")
        return SchemaState(
            pending=tuple(m.name for m in shipped_migrations() if m.name > version),
            stale_functions=tuple(f.name for f in shipped_functions()),
        )
    return assess(info["applied"], info["functions"])
