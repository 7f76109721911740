"""A throwaway PostgreSQL server for the tests: Debian's ``postgresql`` binaries, a cluster in a temporary
directory, reachable only through a unix socket there (no TCP at all), run as the ``postgres`` user when
the tests run as root (initdb refuses root). Each test gets a database of its own."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg


def bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    def __init__(self, root: Path, binaries: Path) -> None:
        self.root, self.binaries = root, binaries
        self.data, self.sockets = root / "data", root / "sockets"
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        done = subprocess.run([str(self.binaries / args[0]), *args[1:]], user=self.user, capture_output=True,
                              text=True, timeout=120, cwd=self.root)
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> PostgresServer:
        self.sockets.mkdir(parents=True)
        if self.user:
            entry = pwd.getpwnam(self.user)
            for path in (self.root, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "fllm", "-E", "UTF8", "--locale=C",
                  "--no-sync")
        options = (f"-k {self.sockets} -c listen_addresses='' -c fsync=off -c max_connections=300"
                   " -c shared_buffers=32MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w",
                  "-t", "60", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://fllm@/{database}?host={self.sockets}"

    def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[PostgresServer | None]:
    """A running server, or None where Debian's postgresql is not installed (.ci/run installs it)."""
    binaries = bindir()
    if binaries is None:
        yield None
        return
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="fllm-pg-")), binaries)
    try:
        yield server.start()
    finally:
        server.stop()
