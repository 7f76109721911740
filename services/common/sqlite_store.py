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

Queries are short (one row by its key). Reads run on the event loop, on a connection of their own (WAL
readers never wait for the writer), which costs less than handing each one to a thread (~0.15 ms, more
when the GIL is contended). Durable writes under ``FULL`` run in a thread, so an fsync never blocks the
event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from services.common.settings import StoreSettings

T = TypeVar("T")
SYNCHRONOUS_MODES = ("NORMAL", "FULL", "EXTRA")


def synchronous_from_env() -> str:
    return StoreSettings().sqlite_synchronous


class SqliteStore:
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
        self._lock = threading.Lock()
        self._fsyncs = self.synchronous != "NORMAL"

    def _in_transaction(self, work: Callable[[sqlite3.Connection], T], synchronous: str) -> T:
        with self._lock:
            if synchronous != self.synchronous:
                self._db.execute(f"PRAGMA synchronous={synchronous}")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return result
            finally:
                if synchronous != self.synchronous:
                    self._db.execute(f"PRAGMA synchronous={self.synchronous}")

    async def transaction(self, work: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``work`` in one write transaction; ``durable=False``: no fsync of its own (see above)."""
        if durable and self._fsyncs:
            return await asyncio.to_thread(self._in_transaction, work, self.synchronous)
        synchronous = "NORMAL" if self._fsyncs else self.synchronous
        if self._lock.locked():  # a durable commit holds the writer: wait for it in a thread, not on the loop
            return await asyncio.to_thread(self._in_transaction, work, synchronous)
        return self._in_transaction(work, synchronous)

    async def execute(self, sql: str, params: Iterable[Any] = (), *, durable: bool = True) -> None:
        await self.transaction(lambda db: db.execute(sql, tuple(params)), durable=durable)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self._reader.execute(sql, tuple(params)).fetchall()

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    def close(self) -> None:
        self._reader.close()
        with self._lock:
            self._db.close()
