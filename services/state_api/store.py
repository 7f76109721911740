"""Operations, log entries and result documents in SQLite.

Unlike the original (results ordered by a 1-second ``_ts``, final result and status written
concurrently), every result gets a sequence number, so "latest" is exact, and writers put the final
result before the final status.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.common.models import OPERATION_TTL_S, OperationStatus
from services.common.sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (
    operation_id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    upn TEXT,
    last_updated TEXT NOT NULL,
    traceparent TEXT NOT NULL DEFAULT '',
    failed_hop TEXT
);
CREATE TABLE IF NOT EXISTS log_entries (
    id TEXT PRIMARY KEY,
    operation_id TEXT NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    upn TEXT,
    time_stamp TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_entries_by_operation ON log_entries (operation_id, time_stamp);
CREATE TABLE IF NOT EXISTS results (
    operation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (operation_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS results_by_id ON results (operation_id, id);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


class OperationStore:
    def __init__(self, path: Path) -> None:
        self._db = SqliteStore(path, SCHEMA)

    def close(self) -> None:
        self._db.close()

    async def create(self, instance_id: str, operation_id: str, upn: str | None, traceparent: str) -> dict[str, Any]:
        """Start an operation; creating one that exists returns it unchanged (idempotent submission)."""

        def work(db: sqlite3.Connection) -> dict[str, Any]:
            existing = db.execute("SELECT * FROM operations WHERE operation_id = ?", (operation_id,)).fetchone()
            if existing is not None:
                return dict(existing)
            row = {
                "operation_id": operation_id,
                "instance_id": instance_id,
                "status": OperationStatus.IN_PROGRESS.value,
                "status_message": "Operation started.",
                "upn": upn,
                "last_updated": _now(),
                "traceparent": traceparent,
                "failed_hop": None,
            }
            db.execute(
                "INSERT INTO operations VALUES (:operation_id, :instance_id, :status, :status_message, :upn,"
                " :last_updated, :traceparent, :failed_hop)",
                row,
            )
            _log(db, row)
            return row

        return await self._db.transaction(work)

    async def update(
        self, instance_id: str, operation: dict[str, Any], traceparent: str
    ) -> tuple[dict[str, Any], bool]:
        """Upsert an operation's status (PUT); returns the row and whether it changed anything."""

        def work(db: sqlite3.Connection) -> tuple[dict[str, Any], bool]:
            existing = db.execute(
                "SELECT * FROM operations WHERE operation_id = ?", (operation["operation_id"],)
            ).fetchone()
            row = dict(existing) if existing is not None else {"traceparent": traceparent, "instance_id": instance_id}
            if existing is not None and OperationStatus(existing["status"]).is_terminal:
                return row, False  # an ended operation stays ended: a late write cannot revive it
            row.update(
                operation_id=operation["operation_id"],
                status=operation["status"],
                status_message=operation.get("status_message"),
                upn=operation.get("upn") or row.get("upn"),
                last_updated=_now(),
                failed_hop=operation.get("failed_hop"),
            )
            db.execute(
                "INSERT OR REPLACE INTO operations VALUES (:operation_id, :instance_id, :status, :status_message,"
                " :upn, :last_updated, :traceparent, :failed_hop)",
                row,
            )
            _log(db, row)
            return row, True

        # Only an end is fsynced on its own: an InProgress status is superseded by the next write, and the
        # end's fsync also flushes every write before it (the final result included).
        return await self._db.transaction(work, durable=OperationStatus(operation["status"]).is_terminal)

    async def get(self, operation_id: str) -> dict[str, Any] | None:
        row = await self._db.fetchone("SELECT * FROM operations WHERE operation_id = ?", (operation_id,))
        return dict(row) if row is not None else None

    async def list(self, instance_id: str) -> list[dict[str, Any]]:
        rows = await self._db.fetchall(
            "SELECT * FROM operations WHERE instance_id = ? ORDER BY last_updated DESC LIMIT 1000", (instance_id,)
        )
        return [dict(row) for row in rows]

    async def in_progress_since(self, before_iso: str) -> list[dict[str, Any]]:
        rows = await self._db.fetchall(
            "SELECT * FROM operations WHERE status = ? AND last_updated < ?",
            (OperationStatus.IN_PROGRESS.value, before_iso),
        )
        return [dict(row) for row in rows]

    async def logs(self, operation_id: str) -> list[dict[str, Any]]:
        rows = await self._db.fetchall(
            "SELECT * FROM log_entries WHERE operation_id = ? ORDER BY time_stamp", (operation_id,)
        )
        return [{**dict(row), "type": "LongRunningOperationLogEntry", "ttl": OPERATION_TTL_S} for row in rows]

    async def add_result(self, operation_id: str, document: dict[str, Any]) -> dict[str, Any]:
        """Store a result document; a given ``id`` makes the write idempotent, else one is assigned."""

        def work(db: sqlite3.Connection) -> dict[str, Any]:
            result_id = document.get("id") or ""
            if result_id:
                existing = db.execute(
                    "SELECT document FROM results WHERE operation_id = ? AND id = ?", (operation_id, result_id)
                ).fetchone()
                if existing is not None:
                    return json.loads(existing["document"])
            seq = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM results WHERE operation_id = ?", (operation_id,)
            ).fetchone()[0]
            stored = {
                **document,
                "id": result_id or f"{operation_id}-{seq}",
                "type": "LongRunningOperationResult",
                "sequence": seq,
            }
            db.execute(
                "INSERT INTO results VALUES (?, ?, ?, ?)", (operation_id, seq, stored["id"], json.dumps(stored))
            )
            return stored

        # Durable with the status that ends the operation (written after it, fsynced): see SqliteStore.
        return await self._db.transaction(work, durable=False)

    async def latest_result(self, operation_id: str) -> dict[str, Any] | None:
        row = await self._db.fetchone(
            "SELECT document FROM results WHERE operation_id = ? ORDER BY seq DESC LIMIT 1", (operation_id,)
        )
        return json.loads(row["document"]) if row is not None else None


def _log(db: sqlite3.Connection, row: dict[str, Any]) -> None:
    db.execute(
        "INSERT INTO log_entries VALUES (?, ?, ?, ?, ?, ?)",
        (str(uuid.uuid4()), row["operation_id"], row["status"], row["status_message"], row["upn"], row["last_updated"]),
    )
