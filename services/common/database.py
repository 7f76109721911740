"""Which store a service keeps its records in: SQLite under the data dir (the embedded default, one
process per file), or PostgreSQL when ``FLLM_DATABASE_URL`` is set (any number of replicas)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from services.common.settings import StoreSettings

T = TypeVar("T")


class Tx(Protocol):
    """One write transaction: ``?`` parameters, rows as dicts."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None: ...
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...
    async def lock(self, key: str) -> None: ...
    async def notify(self, channel: str, payload: str) -> None: ...


class Store(Protocol):
    dialect: str

    async def transaction(self, work: Callable[[Any], Awaitable[T]], *, durable: bool = True) -> T: ...
    async def execute(self, sql: str, params: Iterable[Any] = (), *, durable: bool = True) -> int: ...
    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]: ...
    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None: ...
    async def listen(self, channel: str, callback: Callable[[str | None], None]) -> None: ...
    def close(self) -> None: ...


def open_store(data_dir: Path, name: str, schema: str, postgres_schema: str | None = None,
               database_url: str | None = None) -> Store:
    """``<data dir>/<name>.db``, or the database of ``database_url`` (default ``FLLM_DATABASE_URL``)."""
    url = database_url or StoreSettings().database_url
    if url:
        from services.common.postgres_store import PostgresStore

        return PostgresStore(url, postgres_schema or schema)
    from services.common.sqlite_store import SqliteStore

    return SqliteStore(data_dir / f"{name}.db", schema)
