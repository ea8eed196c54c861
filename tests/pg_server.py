"""A throwaway PostgreSQL server for tests, started from the machine's own binaries.

    from pg_server import postgres_server  # noqa: F401  (in a conftest: the fixture)
    def test_x(postgres_server): url = postgres_server.create_database()

or, outside pytest, `with running_postgres() as server: ...`. The cluster lives in a temporary
folder (data, unix socket, log), listens on a free loopback port, trusts local connections and
is deleted at the end. initdb refuses to run as root, so as root the server runs as the
`postgres` system user (created if missing). Missing binaries: the tests are skipped with the
package to install, or fail when the environment variable `CI` is set.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from defectlens.inference.store import Database

INSTALL_HINT = "apt-get install postgresql (Debian/Ubuntu), or put initdb and pg_ctl on PATH"
SERVER_USER = "postgres"
SUPERUSER = "defectlens"


def find_pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: $PG_BIN, the newest /usr/lib/postgresql/*/bin,
    or PATH."""
    candidates = [os.environ.get("PG_BIN", "")]
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    candidates.append(str(Path(on_path).parent) if on_path else "")
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_user() -> str | None:
    """The user to run the server as: None (this one) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ],
            check=True,
            capture_output=True,
        )
    return SERVER_USER


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int
    user: str | None
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its SQLAlchemy URL."""
        import psycopg  # only needed once a server runs

        name = name or f"test_{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(
            host=self.host, port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def set_reachable(self, name: str, reachable: bool) -> None:
        """Open or close a database to connections; closing also ends the open ones, as an
        outage of the server would for its clients (the data stays)."""
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(
                f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if reachable else "false"}'
            )
            if not reachable:
                connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        record = pwd.getpwnam(self.user) if self.user is not None else None
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            check=False,
            capture_output=True,
            text=True,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            user=record.pw_uid if record else None,
            group=record.pw_gid if record else None,
            extra_groups=[] if record else None,
        )

    def start(self) -> None:
        data = self.root / "data"
        done = self._run(
            "initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust", "--no-sync",
            "--encoding=UTF8", "--no-locale", "--no-instructions",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        options = (
            f"-h {self.host} -p {self.port} -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        done = self._run(
            "pg_ctl", "-D", str(data), "-l", str(self.root / "server.log"), "-o", options,
            "-w", "-t", "30", "start",
        )  # fmt: skip
        if done.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}\n{done.stderr}\n{log}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a throwaway server; stop it and delete its folder on exit. RuntimeError if the
    binaries are missing or the server does not start."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise RuntimeError(f"PostgreSQL binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")
    user = _server_user()
    # Not pytest's tmp_path: its parents are private to root, the server user must reach this.
    root = Path(tempfile.mkdtemp(prefix="dl-pg-", dir="/tmp"))
    if user is not None:
        record = pwd.getpwnam(user)
        os.chown(root, record.pw_uid, record.pw_gid)
    try:
        server = _start(bin_dir, root, user)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start(bin_dir: Path, root: Path, user: str | None) -> PostgresServer:
    for attempt in range(3):  # the free port may be taken between probe and start
        server = PostgresServer(bin_dir, root, _free_port(), user)
        try:
            server.start()
            return server
        except RuntimeError:
            shutil.rmtree(root / "data", ignore_errors=True)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session; `create_database()` per test."""
    if find_pg_bin() is None:
        message = f"PostgreSQL binaries (initdb, pg_ctl) not found: {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}. CI must install them.", pytrace=False)
        pytest.skip(message)
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_store_url(postgres_server: PostgresServer) -> str:
    """One migrated PostgreSQL database for the session (CREATE DATABASE costs ~0.4 s)."""
    from defectlens.inference.store import upgrade

    url = postgres_server.create_database("store_tests")
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An open, migrated and empty store database, once per backend."""
    from sqlalchemy import text

    from defectlens.inference.store import open_database
    from defectlens.inference.store.tables import Base

    if request.param == "sqlite":
        database = open_database(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        database = open_database(request.getfixturevalue("postgres_store_url"))
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        with database.write() as session:  # empty it: earlier tests share the database
            session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield database
    database.close()
