"""A real PostgreSQL server started by the test suite (``postgres_url``), and per-test databases.

The server runs from Debian's ``postgresql`` package binaries (initdb, pg_ctl) in a private
temporary directory, as the ``postgres`` OS user when the tests run as root (initdb refuses
root), listening on 127.0.0.1 on a free port plus a unix socket inside that directory. It is
stopped (``pg_ctl stop -m fast``) and removed at the end of the session, also when tests
fail. Without the binaries the PostgreSQL tests skip, except under CI (``CI`` set): fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.orm import Session, sessionmaker

from controller.db import migrate
from controller.db.session import make_engine, make_session_factory

PG_USER = "postgres"
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install the `postgresql` package "
    "(Debian: apt-get install postgresql)"
)


def find_pg_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding initdb and pg_ctl, else from PATH."""

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True):
        bindir = Path(initdb).parent
        if (bindir / "pg_ctl").exists():
            return bindir
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(args: list[str]) -> list[str]:
    """``args`` run as the postgres user when we are root (initdb and postgres refuse root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *args]
    return args


def _run(args: list[str], cwd: Path) -> None:
    result = subprocess.run(
        _as_server_user(args), cwd=cwd, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


class PostgresServer:
    """A throwaway PostgreSQL server in a private directory that a test may stop and start
    again (same port, same data): ``url`` names an empty database made at the first start."""

    def __init__(self, bindir: Path, options: str = "") -> None:
        self.bindir = bindir
        self.options = options  # more ``-c name=value`` for the server (benchmarks)
        self.base = Path(tempfile.mkdtemp(prefix="vxplane-pg-"))
        self.data, self.sockets = self.base / "data", self.base / "sock"
        self.logfile = self.base / "server.log"
        self.port = 0
        self.running = False
        self.url = ""

    def create(self) -> None:
        """initdb, start on a free port (a few tries), create the database ``vxplane_test``."""
        self.sockets.mkdir()
        if os.geteuid() == 0:
            account = pwd.getpwnam(PG_USER)
            for path in (self.base, self.sockets):
                os.chown(path, account.pw_uid, account.pw_gid)
        _run(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-U", PG_USER, "-A", "trust"]
            + ["-E", "UTF8", "--no-sync"],
            cwd=self.base,
        )
        for attempt in range(5):
            self.port = _free_port()
            try:
                self.start()
            except RuntimeError:
                if attempt == 4:
                    raise RuntimeError(self.logfile.read_text(errors="replace")) from None
                continue
            break
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute("CREATE DATABASE vxplane_test")
        self.url = f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/vxplane_test"

    def start(self) -> None:
        """Start the server (again) on its port; waits until it accepts connections."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            + (f" {self.options}" if self.options else "")
        )
        _run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-w"]
            + ["-t", "60", "-o", options, "start"],
            cwd=self.base,
        )
        self.running = True

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: every connection is closed, new ones are refused."""
        _run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
            cwd=self.base,
        )
        self.running = False

    def pid(self) -> int:
        """The postmaster's process id (first line of ``postmaster.pid``)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def remove(self) -> None:
        """Stop it if it runs and delete its directory."""
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def postgres_server(bindir: Path) -> Iterator[str]:
    """Run a throwaway PostgreSQL server; yields the URL of an empty database on it."""
    with private_postgres(bindir) as server:
        yield server.url


@contextmanager
def private_postgres(bindir: Path, options: str = "") -> Iterator[PostgresServer]:
    """A ``PostgresServer`` of one's own (removed afterwards, also on failure)."""
    server = PostgresServer(bindir, options)
    try:
        server.create()
        yield server
    finally:
        server.remove()


def require_pg_bindir() -> Path:
    """The PostgreSQL binaries, else skip (fail under CI)."""
    bindir = find_pg_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail(INSTALL_HINT + " (CI is set: not skipping)")
        pytest.skip(INSTALL_HINT)
    return bindir


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL (``postgresql+psycopg://``) of a database on a PostgreSQL server run for this session."""
    with postgres_server(require_pg_bindir()) as url:
        yield url


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A fresh, empty database on the server of ``server_url``, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_db_url(postgres_url: str) -> Iterator[str]:
    """An empty PostgreSQL database for one test."""
    with scratch_database(postgres_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database for one test, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/db/vxplane.db"
    return str(request.getfixturevalue("pg_db_url"))


@pytest.fixture
def migrated_url(db_url: str) -> str:
    """``db_url`` migrated to the latest schema."""
    migrate.upgrade(db_url)
    return db_url


@pytest.fixture
def factory(migrated_url: str) -> Iterator[sessionmaker[Session]]:
    """A session factory on a migrated database (SQLite and PostgreSQL)."""
    engine = make_engine(migrated_url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()
