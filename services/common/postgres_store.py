"""PostgreSQL, the store every replica of a hop shares (``FLLM_DATABASE_URL``), with psycopg 3.

The same interface as ``SqliteStore``: statements written with ``?`` parameters, rows as dicts, write
transactions as ``work(tx)``. What SQLite gets from its single writer, transactions here get from
``tx.lock(key)`` (a transaction-scoped advisory lock on the row's key). ``durable=False`` commits with
``synchronous_commit = off`` (a later durable commit flushes it). ``tx.notify`` sends a NOTIFY on
commit, and ``listen`` delivers them to every replica: how a long poll on one replica is woken by an
end written through another. A small pool of connections per process; a connection that broke (the
server restarted) is dropped and the statement tried once more on a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row

T = TypeVar("T")
log = logging.getLogger("foundationallm.store")
POOL_SIZE = 4
CONNECT_TIMEOUT_S = 5
SCHEMA_LOCK = 0x464C4C4D  # serialises CREATE TABLE IF NOT EXISTS of replicas starting together


def _sql(statement: str) -> str:
    return statement.replace("%", "%%").replace("?", "%s")


class PostgresTx:
    def __init__(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return (await self._conn.execute(_sql(sql), tuple(params))).rowcount

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        return await (await self._conn.execute(_sql(sql), tuple(params))).fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return await (await self._conn.execute(_sql(sql), tuple(params))).fetchall()

    async def lock(self, key: str) -> None:
        """Serialise the transactions on ``key`` (any replica) until this one ends."""
        await self._conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))

    async def notify(self, channel: str, payload: str) -> None:
        await self._conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


class PostgresStore:
    dialect = "postgresql"

    def __init__(self, url: str, schema: str, pool_size: int = POOL_SIZE) -> None:
        self._url, self._schema = url, schema
        self._idle: list[psycopg.AsyncConnection[dict[str, Any]]] = []
        self._slots = asyncio.Semaphore(pool_size)
        self._schema_ready = False
        self._listeners: list[asyncio.Task[None]] = []
        self._listening: list[psycopg.AsyncConnection[Any]] = []

    async def _connect(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True, row_factory=dict_row,
                                                     connect_timeout=CONNECT_TIMEOUT_S)
        if not self._schema_ready:
            # One statement per transaction (autocommit), under a session lock: a statement locks one table
            # at a time, so it cannot deadlock with another replica's writes taking several tables in turn.
            await conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
            try:
                for statement in filter(str.strip, self._schema.split(";")):
                    await conn.execute(statement)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
            self._schema_ready = True
        return conn

    @contextlib.asynccontextmanager
    async def _connection(self, fresh: bool = False) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        async with self._slots:
            conn = self._idle.pop() if self._idle and not fresh else await self._connect()
            try:
                yield conn
            finally:
                if conn.closed or conn.broken:
                    await conn.close()
                else:
                    self._idle.append(conn)

    async def _run(self, work: Callable[[PostgresTx], Awaitable[T]], durable: bool, transaction: bool) -> T:
        for attempt in range(2):
            try:
                async with self._connection(fresh=attempt > 0) as conn:
                    if not transaction:
                        return await work(PostgresTx(conn))
                    async with conn.transaction():
                        if not durable:
                            await conn.execute("SET LOCAL synchronous_commit = off")
                        return await work(PostgresTx(conn))
            except psycopg.OperationalError:
                if attempt:
                    raise
                log.warning("a database connection broke; trying once more on a new one")
        raise AssertionError("unreachable")

    async def transaction(self, work: Callable[[PostgresTx], Awaitable[T]], *, durable: bool = True) -> T:
        return await self._run(work, durable, transaction=True)

    async def execute(self, sql: str, params: Iterable[Any] = (), *, durable: bool = True) -> int:
        values = tuple(params)
        return await self._run(lambda tx: tx.execute(sql, values), durable, transaction=True)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        values = tuple(params)
        return await self._run(lambda tx: tx.fetchall(sql, values), True, transaction=False)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def listen(self, channel: str, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(payload)`` for each NOTIFY on ``channel`` (a fixed identifier), and
        ``callback(None)`` on every (re)connection, since notifications sent meanwhile are lost."""
        self._listeners.append(asyncio.get_running_loop().create_task(self._listen_forever(channel, callback)))

    async def _listen_forever(self, channel: str, callback: Callable[[str | None], None]) -> None:
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True,
                                                             connect_timeout=CONNECT_TIMEOUT_S)
                self._listening.append(conn)
                try:
                    await conn.execute(f"LISTEN {channel}")
                    callback(None)
                    delay = 0.1
                    async for notification in conn.notifies():
                        callback(notification.payload)
                finally:
                    self._listening.remove(conn)
                    await conn.close()
            except psycopg.OperationalError as error:
                log.warning("LISTEN %s: %s; reconnecting in %.1f s", channel, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def close(self) -> None:
        for task in self._listeners:
            task.cancel()
        # Synchronous, as SqliteStore.close: libpq closes the sockets without the event loop.
        for conn in [*self._idle, *self._listening]:
            conn.pgconn.finish()
        self._idle.clear()
