"""Operations, log entries and result documents in SQLite, or PostgreSQL (services/common/database.py).

Unlike the original (results ordered by a 1-second ``_ts``, final result and status written
concurrently), every result gets a sequence number, so "latest" is exact, and a status write may carry
its result document: both are stored in one transaction, so no reader sees the end without its answer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.common.database import Store, Tx, open_store
from services.common.models import OPERATION_TTL_S, OperationStatus

ENDED_CHANNEL = "fllm_operation_ended"  # NOTIFY payload: the operation id (PostgreSQL)

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
CREATE TABLE IF NOT EXISTS claims (
    operation_id TEXT PRIMARY KEY,
    claimant TEXT NOT NULL,
    claimed_at TEXT NOT NULL
);
"""
LATEST_RESULT = "SELECT document FROM results WHERE operation_id = ? ORDER BY seq DESC LIMIT 1"
COLUMNS = ("operation_id", "instance_id", "status", "status_message", "upn", "last_updated", "traceparent",
           "failed_hop")


def _now() -> str:
    return datetime.now(UTC).isoformat()


class OperationStore:
    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        self._db = open_store(data_dir, "state_api", SCHEMA, database_url=database_url)

    @property
    def dialect(self) -> str:
        return self._db.dialect

    async def on_ended(self, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(operation_id)`` when any replica ends an operation (None: maybe missed some)."""
        await self._db.listen(ENDED_CHANNEL, callback)

    def close(self) -> None:
        self._db.close()

    async def create(self, instance_id: str, operation_id: str, upn: str | None, traceparent: str) -> dict[str, Any]:
        """Start an operation; creating one that exists returns it unchanged (idempotent submission)."""

        async def work(db: Tx) -> dict[str, Any]:
            await db.lock(operation_id)
            existing = await db.fetchone("SELECT * FROM operations WHERE operation_id = ?", (operation_id,))
            if existing is not None:
                return existing
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
            await db.execute("INSERT INTO operations VALUES (?, ?, ?, ?, ?, ?, ?, ?)", tuple(row.values()))
            await _log(db, row)
            return row

        return await self._db.transaction(work)

    async def update(
        self, instance_id: str, operation: dict[str, Any], traceparent: str
    ) -> tuple[dict[str, Any], bool]:
        """Upsert an operation's status (PUT); returns the row and whether it changed anything."""
        row, changed, _ = await self.update_with_result(instance_id, operation, None, traceparent)
        return row, changed

    async def update_with_result(
        self, instance_id: str, operation: dict[str, Any], result: dict[str, Any] | None, traceparent: str
    ) -> tuple[dict[str, Any], bool, dict[str, Any] | None]:
        """Upsert an operation's status and, when given, store ``result`` as its latest result document, in
        one transaction; returns the row, whether it changed anything, and the operation's latest result
        (None when no result was given: not read)."""
        operation_id = operation["operation_id"]

        async def work(db: Tx) -> tuple[dict[str, Any], bool, dict[str, Any] | None]:
            await db.lock(operation_id)
            existing = await db.fetchone("SELECT * FROM operations WHERE operation_id = ?", (operation_id,))
            if existing is not None and OperationStatus(existing["status"]).is_terminal:
                # An ended operation stays ended, its answer too: a late write, result and all, is refused.
                return dict(existing), False, await _latest(db, operation_id) if result is not None else None
            stored = await _add_result(db, operation_id, result) if result is not None else None
            return await _write(db, existing, instance_id, operation, traceparent), True, stored

        # Only an end is fsynced on its own: an InProgress status is superseded by the next write, and the
        # end's fsync also flushes every write before it (the final result included).
        return await self._db.transaction(work, durable=OperationStatus(operation["status"]).is_terminal)

    async def claim(self, instance_id: str, operation: dict[str, Any], claimant: str,
                    traceparent: str) -> tuple[dict[str, Any], str, bool]:
        """Claim the run of an in-progress operation for ``claimant`` (a worker replica), writing its status
        in the same transaction; returns the row, the claim's holder and whether this call acquired it.

        Exactly one claim of an operation ever succeeds: the insert into ``claims`` is the compare-and-set
        (its primary key, on any replica, either backend). A claim is never taken over: a holder that stops
        writing heartbeats has its operation failed by the sweep (``app.fail_abandoned``), since a worker
        that only lost State may still be running the code, and a second run would repeat it.
        """
        operation_id = operation["operation_id"]

        async def work(db: Tx) -> tuple[dict[str, Any], str, bool]:
            await db.lock(operation_id)
            existing = await db.fetchone("SELECT * FROM operations WHERE operation_id = ?", (operation_id,))
            ended = existing is not None and OperationStatus(existing["status"]).is_terminal
            if not ended and await db.execute(
                "INSERT INTO claims (operation_id, claimant, claimed_at) VALUES (?, ?, ?)"
                " ON CONFLICT (operation_id) DO NOTHING", (operation_id, claimant, _now()),
            ) == 1:
                return await _write(db, existing, instance_id, operation, traceparent), claimant, True
            holder = await db.fetchone("SELECT claimant FROM claims WHERE operation_id = ?", (operation_id,))
            return dict(existing or {}), holder["claimant"] if holder else "", False

        # As an InProgress status: superseded by the heartbeats and the end (see ``update``).
        return await self._db.transaction(work, durable=False)

    async def get(self, operation_id: str) -> dict[str, Any] | None:
        return await self._db.fetchone("SELECT * FROM operations WHERE operation_id = ?", (operation_id,))

    async def get_with_result(self, operation_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The operation and its latest result, read in one statement (one snapshot, on either backend): never
        a status with a result written after it, or before a result written with it."""
        row = await self._db.fetchone(
            "SELECT operations.*, (SELECT document FROM results WHERE results.operation_id = operations.operation_id"
            " ORDER BY seq DESC LIMIT 1) AS latest_document FROM operations WHERE operations.operation_id = ?",
            (operation_id,))
        if row is None:
            return None, None
        document = row.pop("latest_document")
        return row, json.loads(document) if document is not None else None

    async def list(self, instance_id: str) -> list[dict[str, Any]]:
        rows = await self._db.fetchall(
            "SELECT * FROM operations WHERE instance_id = ? ORDER BY last_updated DESC LIMIT 1000", (instance_id,)
        )
        return rows

    async def in_progress_since(self, before_iso: str) -> list[dict[str, Any]]:
        rows = await self._db.fetchall(
            "SELECT operations.*, claims.claimant FROM operations LEFT JOIN claims"
            " ON claims.operation_id = operations.operation_id WHERE status = ? AND last_updated < ?",
            (OperationStatus.IN_PROGRESS.value, before_iso),
        )
        return rows

    async def logs(self, operation_id: str) -> list[dict[str, Any]]:
        rows = await self._db.fetchall(
            "SELECT * FROM log_entries WHERE operation_id = ? ORDER BY time_stamp", (operation_id,)
        )
        return [{**row, "type": "LongRunningOperationLogEntry", "ttl": OPERATION_TTL_S} for row in rows]

    async def add_result(self, operation_id: str, document: dict[str, Any]) -> dict[str, Any]:
        """Store a result document; a given ``id`` makes the write idempotent, else one is assigned."""

        async def work(db: Tx) -> dict[str, Any]:
            return await _add_result(db, operation_id, document)

        # Durable with the status that ends the operation (written after it, fsynced): see SqliteStore.
        return await self._db.transaction(work, durable=False)

    async def latest_result(self, operation_id: str) -> dict[str, Any] | None:
        return await _latest(self._db, operation_id)


async def _add_result(db: Tx, operation_id: str, document: dict[str, Any]) -> dict[str, Any]:
    """Store a result document with the next sequence number; a document whose ``id`` is stored already
    is not stored again (the stored one is returned)."""
    await db.lock(f"{operation_id}/results")
    result_id = document.get("id") or ""
    if result_id:
        existing = await db.fetchone(
            "SELECT document FROM results WHERE operation_id = ? AND id = ?", (operation_id, result_id)
        )
        if existing is not None:
            return json.loads(existing["document"])
    seq = (await db.fetchone(
        "SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM results WHERE operation_id = ?", (operation_id,)
    ))["seq"]
    stored = {**document, "id": result_id or f"{operation_id}-{seq}", "type": "LongRunningOperationResult",
              "sequence": seq}
    await db.execute("INSERT INTO results VALUES (?, ?, ?, ?)", (operation_id, seq, stored["id"], json.dumps(stored)))
    return stored


async def _latest(db: Tx | Store, operation_id: str) -> dict[str, Any] | None:
    """The operation's latest result document, in a transaction or on its own."""
    row = await db.fetchone(LATEST_RESULT, (operation_id,))
    return json.loads(row["document"]) if row is not None else None


async def _write(db: Tx, existing: dict[str, Any] | None, instance_id: str, operation: dict[str, Any],
                 traceparent: str) -> dict[str, Any]:
    """Upsert an operation's status (the caller checked it has not ended), log it, notify an end."""
    row = dict(existing) if existing is not None else {"traceparent": traceparent, "instance_id": instance_id}
    row.update(
        operation_id=operation["operation_id"],
        status=operation["status"],
        status_message=operation.get("status_message"),
        upn=operation.get("upn") or row.get("upn"),
        last_updated=_now(),
        failed_hop=operation.get("failed_hop"),
    )
    await db.execute(
        f"INSERT INTO operations VALUES ({', '.join('?' * len(COLUMNS))}) ON CONFLICT (operation_id) DO UPDATE"
        " SET status = excluded.status, status_message = excluded.status_message, upn = excluded.upn,"
        " last_updated = excluded.last_updated, failed_hop = excluded.failed_hop",
        tuple(row[column] for column in COLUMNS),
    )
    await _log(db, row)
    if OperationStatus(row["status"]).is_terminal:
        await db.notify(ENDED_CHANNEL, row["operation_id"])
    return row


async def _log(db: Tx, row: dict[str, Any]) -> None:
    await db.execute(
        "INSERT INTO log_entries VALUES (?, ?, ?, ?, ?, ?)",
        (str(uuid.uuid4()), row["operation_id"], row["status"], row["status_message"], row["upn"], row["last_updated"]),
    )
