"""A throwaway PostgreSQL 15 cluster for tests: initdb in a temp dir, a free port on 127.0.0.1, removed after.

Debian's `postgresql` package (in the Makefile's DEB_TOOLS) provides the binaries; a missing install fails the
test loudly, never skips it. Running as root, initdb and the server run as the `postgres` user (the server
refuses root), in a temp dir that user owns, with its unix socket there too, so nothing touches the system
cluster. Durability is off (fsync, synchronous_commit): the data dies with the test anyway.

    with postgres_cluster() as pg:           # or the `postgres_dsn` fixture: a str
        dsn = pg.dsn                          # postgresql://postgres@127.0.0.1:PORT/ivr
        other = pg.create_database("node2")  # a fresh database on the same cluster

With `password=...`, TCP connections need it (scram-sha-256) and the DSN carries none: pass it through
`PGPASSWORD` (libpq) or `IVR_CDR_PASSWORD`, as the bridge does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_VERSION = 15
PG_BIN = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
SUPERUSER = "postgres"
_START_TIMEOUT = 30  # seconds; pg_ctl -w waits for the server to accept connections


@dataclass(frozen=True)
class PostgresCluster:
    """A running throwaway cluster: where it listens and how to reach it."""

    port: int
    socket_dir: Path
    data_dir: Path
    dbname: str
    password: str | None = None
    host: str = "127.0.0.1"
    user: str = SUPERUSER

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.dbname)

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create database `name` (over the unix socket, always trusted) and return its DSN."""
        _run(_as_postgres([str(PG_BIN / "createdb"), "-h", str(self.socket_dir), "-p", str(self.port), name]))
        return self.dsn_for(name)

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """The server stopped (an outage) for the block, then started again on the same port."""
        _run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]))
        try:
            yield
        finally:
            _run(_as_postgres(_start_command(self.socket_dir, self.data_dir, self.port)))

    def psql(self, sql: str, dbname: str | None = None) -> str:
        """Run `sql` through psql over the unix socket; returns its unaligned, tuples-only output."""
        argv = [str(PG_BIN / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-d"]
        argv += [dbname or self.dbname, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]
        return _run(_as_postgres(argv)).stdout


def _as_postgres(argv: list[str]) -> list[str]:
    # The server refuses to run as root; as another user (a developer's machine), run as that user.
    if os.geteuid() == 0:
        return ["runuser", "-u", SUPERUSER, "--", *argv]
    return argv


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return done


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _require_postgres() -> None:
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        raise RuntimeError(
            f"PostgreSQL {PG_VERSION} is not installed ({PG_BIN}/initdb missing): `make test` installs it "
            "(Debian package postgresql)"
        )


@contextlib.contextmanager
def postgres_cluster(dbname: str = "ivr", password: str | None = None) -> Iterator[PostgresCluster]:
    """Start a fresh cluster with database `dbname`; stop it and remove its files on exit."""
    _require_postgres()
    root = Path(tempfile.mkdtemp(prefix="ivr-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(root, SUPERUSER, SUPERUSER)
        root.chmod(0o700)
        data = root / "data"
        initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-U", SUPERUSER, "-E", "UTF8", "--locale=C"]
        initdb += ["--no-sync", "--auth-local=trust"]
        if password is None:
            initdb.append("--auth-host=trust")
        else:
            pwfile = root / "pwfile"
            pwfile.write_text(password + "\n", encoding="utf-8")
            if os.geteuid() == 0:
                shutil.chown(pwfile, SUPERUSER, SUPERUSER)
            initdb += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        _run(_as_postgres(initdb))
        cluster = _start(root, data, dbname, password)
        try:
            cluster.create_database(dbname)
            yield cluster
        finally:
            stop = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            with contextlib.suppress(Exception):
                _run(_as_postgres(stop))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start(root: Path, data: Path, dbname: str, password: str | None) -> PostgresCluster:
    # A port picked by binding 0 can be taken before the server binds it: try a few.
    error: Exception | None = None
    for _ in range(3):
        port = _free_port()
        try:
            _run(_as_postgres(_start_command(root, data, port)))
        except RuntimeError as exc:
            log = root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            error = RuntimeError(f"{exc}\n{tail}")
            continue
        return PostgresCluster(port, root, data, dbname, password)
    assert error is not None
    raise error


def _start_command(root: Path, data: Path, port: int) -> list[str]:
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off"
    options += " -c full_page_writes=off -c max_connections=50"
    start = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w"]
    return [*start, "-t", str(_START_TIMEOUT), "-o", options, "start"]


@pytest.fixture(scope="module")
def postgres_dsn() -> Iterator[str]:
    """A throwaway cluster for the module's tests (trust auth on 127.0.0.1); yields its DSN."""
    with postgres_cluster() as cluster:
        yield cluster.dsn
