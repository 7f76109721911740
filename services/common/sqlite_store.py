"""SQLite, the embedded store: WAL journal, and by default an fsync on every commit.

``synchronous`` (``FLLM_SQLITE_SYNCHRONOUS``, default ``FULL``): ``FULL`` fsyncs every commit (~1.5 ms
median, 5 ms p95 here), so an accepted operation or result survives a power loss too. ``NORMAL``
(~0.05 ms) writes each commit to the WAL before it returns, so it survives the process crashing or
being killed, but fsyncs only at checkpoints: a power loss or an OS crash may roll back the last
commits (never corrupting the database).

Not every write is a record to protect: ``transaction(..., durable=False)`` marks one that a later
write supersedes (a progress status, an interim result, bookkeeping that can be rebuilt). It commits
to the WAL without an fsync, on the event loop: it survives the process being killed or restarted at
once, and a power loss from the next durable commit on, whose fsync flushes the whole WAL, the frames
before it included. So a final result written non-durably and then its Completed status durably are
both on disk before anyone can read that status.

Queries are short (one row by its key) and run on the event loop; reads on a connection of their own
(WAL readers never wait for the writer). A durable ``COMMIT`` under ``FULL`` runs in a thread, so an
fsync never blocks the event loop. One process per database file: replicas use PostgreSQL
(services/common/postgres_store.py, the same ``Store`` interface, services/common/database.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from services.common.settings import StoreSettings

T = TypeVar("T")
SYNCHRONOUS_MODES = ("NORMAL", "FULL", "EXTRA")


def synchronous_from_env() -> str:
    return StoreSettings().sqlite_synchronous


class SqliteTx:
    """The statements of one write transaction (``?`` parameters, rows as dicts)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._db.execute(sql, tuple(params)).rowcount

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        row = self._db.execute(sql, tuple(params)).fetchone()
        return dict(row) if row is not None else None

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self._db.execute(sql, tuple(params)).fetchall()]

    async def lock(self, key: str) -> None:
        """Transactions are already serial here (``BEGIN IMMEDIATE``)."""

    async def notify(self, channel: str, payload: str) -> None:
        """One process: its callers wake their own waiters."""


async def _finish(work: asyncio.Future[T]) -> T:
    """Await ``work`` to its end even when cancelled (a COMMIT in a thread must end before the lock is free)."""
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await work
        raise


class SqliteStore:
    dialect = "sqlite"

    def __init__(self, path: Path, schema: str, synchronous: str | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous or synchronous_from_env()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={self.synchronous}")
        self._db.executescript(schema)
        self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._reader.row_factory = sqlite3.Row
        self._lock = asyncio.Lock()
        self._fsyncs = self.synchronous != "NORMAL"

    async def transaction(self, work: Callable[[SqliteTx], Awaitable[T]], *, durable: bool = True) -> T:
        """Run ``work`` in one write transaction; ``durable=False``: no fsync of its own (see above)."""
        synchronous = self.synchronous if durable or not self._fsyncs else "NORMAL"
        async with self._lock:
            if synchronous != self.synchronous:
                self._db.execute(f"PRAGMA synchronous={synchronous}")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = await work(SqliteTx(self._db))
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                if durable and self._fsyncs:
                    # Submitted now (not when a task gets to it), so the commit never waits on this loop.
                    await _finish(asyncio.get_running_loop().run_in_executor(None, self._db.execute, "COMMIT"))
                else:
                    self._db.execute("COMMIT")
                return result
            finally:
                if synchronous != self.synchronous:
                    self._db.execute(f"PRAGMA synchronous={self.synchronous}")

    async def execute(self, sql: str, params: Iterable[Any] = (), *, durable: bool = True) -> int:
        values = tuple(params)

        async def work(tx: SqliteTx) -> int:
            return await tx.execute(sql, values)

        return await self.transaction(work, durable=durable)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self._reader.execute(sql, tuple(params)).fetchall()]

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def listen(self, channel: str, callback: Callable[[str | None], None]) -> None:
        """Nothing to listen to: one process writes this file (see ``SqliteTx.notify``)."""

    def close(self) -> None:
        self._reader.close()
        self._db.close()
