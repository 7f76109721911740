"""Core's operation contexts (the original's Cosmos ``Operations`` container) in SQLite, or PostgreSQL when
``FLLM_DATABASE_URL`` is set: a poll may reach another Core replica than the one that started it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.database import Tx, open_store
from telemetry import conventions as c

SCHEMA = """
CREATE TABLE IF NOT EXISTS operation_contexts (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    agent_name TEXT NOT NULL,
    session_id TEXT NOT NULL,
    upn TEXT,
    route TEXT NOT NULL,
    start_time DOUBLE PRECISION NOT NULL,
    traceparent TEXT NOT NULL,
    final TEXT
);
CREATE TABLE IF NOT EXISTS poll_failures (
    id TEXT PRIMARY KEY,
    since DOUBLE PRECISION NOT NULL
);
"""


@dataclass(frozen=True)
class OperationContext:
    id: str
    instance_id: str
    agent_name: str
    session_id: str
    upn: str | None
    route: str  # the hop Core called at start: GatekeeperAPI | OrchestrationAPI
    start_time: float
    traceparent: str
    final: dict[str, Any] | None = None
    poll_failed_since: float | None = None  # the polls have failed to read the status since (epoch s)


class OperationContexts:
    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        self._db = open_store(data_dir, "core_api", SCHEMA, database_url=database_url)

    def close(self) -> None:
        self._db.close()

    async def insert(self, ctx: OperationContext) -> tuple[OperationContext, bool]:
        """Store a new context; an existing one with the same id wins (a retried submission)."""

        async def work(db: Tx) -> tuple[OperationContext, bool]:
            await db.lock(f"operation_contexts/{ctx.id}")
            row = await db.fetchone("SELECT * FROM operation_contexts WHERE id = ?", (ctx.id,))
            if row is not None:
                return _context(row), False
            await db.execute(
                "INSERT INTO operation_contexts VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (ctx.id, ctx.instance_id, ctx.agent_name, ctx.session_id, ctx.upn, ctx.route, ctx.start_time,
                 ctx.traceparent),
            )
            return ctx, True

        return await self._db.transaction(work)

    async def get(self, operation_id: str) -> OperationContext | None:
        row = await self._db.fetchone(
            "SELECT operation_contexts.*, poll_failures.since AS poll_failed_since FROM operation_contexts"
            " LEFT JOIN poll_failures ON poll_failures.id = operation_contexts.id WHERE operation_contexts.id = ?",
            (operation_id,))
        return _context(row) if row is not None else None

    async def poll_failed(self, operation_id: str, now: float) -> float:
        """Since when the polls of the operation fail (``now`` for the first), on any Core replica."""

        async def work(db: Tx) -> float:
            await db.execute("INSERT INTO poll_failures VALUES (?, ?) ON CONFLICT (id) DO NOTHING", (operation_id, now))
            row = await db.fetchone("SELECT since FROM poll_failures WHERE id = ?", (operation_id,))
            return float(row["since"]) if row else now

        return await self._db.transaction(work, durable=False)

    async def poll_succeeded(self, operation_id: str) -> None:
        await self._db.execute("DELETE FROM poll_failures WHERE id = ?", (operation_id,), durable=False)

    async def finish(self, operation_id: str, final: dict[str, Any]) -> bool:
        """Keep the operation's end; False when it had already been kept."""

        changed = await self._db.execute("UPDATE operation_contexts SET final = ? WHERE id = ? AND final IS NULL",
                                         (json.dumps(final), operation_id),
                                         durable=False)  # State API keeps the end durably; this is a copy
        return changed == 1


def _context(row: dict[str, Any]) -> OperationContext:
    values = dict(row)
    values["final"] = json.loads(values["final"]) if values["final"] else None
    values["route"] = c.service_name_now(values["route"])  # stored as "orchestration-api" before
    return OperationContext(**values)
