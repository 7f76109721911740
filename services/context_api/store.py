"""The Context API's records in SQLite (``<data dir>/context_api.db``) or PostgreSQL (``FLLM_DATABASE_URL``),
each keyed by instance and UPN as the original partitions its Cosmos container by the user's UPN."""

from __future__ import annotations

from pathlib import Path

from services.common.database import Tx, open_store
from services.common.models import utc_now
from services.context_api.models import (
    ContextCodeSessionFileUploadRecord,
    ContextCodeSessionRecord,
    ContextFileRecord,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS code_sessions (
    instance_id TEXT NOT NULL, upn TEXT NOT NULL, id TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    record TEXT NOT NULL, PRIMARY KEY (instance_id, upn, id));
CREATE TABLE IF NOT EXISTS code_session_uploads (
    instance_id TEXT NOT NULL, upn TEXT NOT NULL, code_session_id TEXT NOT NULL, id TEXT NOT NULL,
    record TEXT NOT NULL, PRIMARY KEY (instance_id, upn, code_session_id, id));
CREATE TABLE IF NOT EXISTS files (
    instance_id TEXT NOT NULL, upn TEXT NOT NULL, id TEXT NOT NULL, conversation_id TEXT NOT NULL,
    file_name TEXT NOT NULL, created_at TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    record TEXT NOT NULL, PRIMARY KEY (instance_id, upn, id));
CREATE INDEX IF NOT EXISTS files_by_name ON files (instance_id, upn, conversation_id, file_name, created_at);
CREATE INDEX IF NOT EXISTS code_sessions_by_id ON code_sessions (id);
"""
# PostgreSQL has no implicit rowid: the same column, explicit (the tie-break of files made at one instant).
POSTGRES_SCHEMA = SCHEMA.replace("record TEXT NOT NULL, PRIMARY KEY (instance_id, upn, id));\nCREATE INDEX",
                                 "record TEXT NOT NULL, rowid BIGSERIAL, PRIMARY KEY (instance_id, upn, id));\n"
                                 "CREATE INDEX")


class ContextStore:
    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        self._db = open_store(data_dir, "context_api", SCHEMA, POSTGRES_SCHEMA, database_url)

    async def upsert_session(self, record: ContextCodeSessionRecord) -> ContextCodeSessionRecord:
        """Insert, or update a stable (custom-container) session keeping its creation audit fields. A
        record's ``known_empty`` stays only when no record of any user or instance ever had its id (the
        pool's identifier): a session made again may hold what the earlier one put in it."""

        async def work(db: Tx) -> ContextCodeSessionRecord:
            await db.lock(_session_lock(record.id))
            rows = await db.fetchall("SELECT instance_id, upn, record FROM code_sessions WHERE id=?", (record.id,))
            row = next((r for r in rows if (r["instance_id"], r["upn"]) == (record.instance_id, record.upn)), None)
            stored = record.model_copy(update={"known_empty": False}) if rows else record
            if row is not None:
                previous = ContextCodeSessionRecord.model_validate_json(row["record"])
                stored = stored.model_copy(update={"created_at": previous.created_at,
                                                   "created_by": previous.created_by})
            await db.execute(
                "INSERT INTO code_sessions (instance_id, upn, id, deleted, record) VALUES (?,?,?,?,?)"
                " ON CONFLICT (instance_id, upn, id) DO UPDATE SET deleted = excluded.deleted,"
                " record = excluded.record",
                (stored.instance_id, stored.upn, stored.id, int(stored.deleted), stored.model_dump_json()),
            )
            return stored

        return await self._db.transaction(work)

    async def session(self, instance_id: str, upn: str, session_id: str) -> ContextCodeSessionRecord | None:
        row = await self._db.fetchone(
            "SELECT record FROM code_sessions WHERE instance_id=? AND upn=? AND id=? AND deleted=0",
            (instance_id, upn, session_id),
        )
        return ContextCodeSessionRecord.model_validate_json(row["record"]) if row else None

    async def claim_empty(self, instance_id: str, upn: str, session_id: str) -> bool:
        """Whether the session was still known to be empty; it is not from now on (the caller is about to
        put files or run code in it). Durable before the caller touches the pool, and exactly one caller
        (of any replica) gets True."""

        async def work(db: Tx) -> bool:
            await db.lock(_session_lock(session_id))
            row = await db.fetchone(
                "SELECT record FROM code_sessions WHERE instance_id=? AND upn=? AND id=? AND deleted=0",
                (instance_id, upn, session_id),
            )
            if row is None:
                return False
            record = ContextCodeSessionRecord.model_validate_json(row["record"])
            if not record.known_empty:
                return False
            used = record.model_copy(update={"known_empty": False, "updated_at": utc_now()})
            await db.execute("UPDATE code_sessions SET record=? WHERE instance_id=? AND upn=? AND id=?",
                             (used.model_dump_json(), instance_id, upn, session_id))
            return True

        return await self._db.transaction(work)

    async def add_upload(self, record: ContextCodeSessionFileUploadRecord) -> None:
        await self._db.execute(
            "INSERT INTO code_session_uploads (instance_id, upn, code_session_id, id, record) VALUES (?,?,?,?,?)",
            (record.instance_id, record.upn, record.code_session_id, record.id, record.model_dump_json()),
            durable=False,  # bookkeeping for the download that follows: without it the tool just fails
        )

    async def upload(
        self, instance_id: str, upn: str, session_id: str, upload_id: str
    ) -> ContextCodeSessionFileUploadRecord | None:
        row = await self._db.fetchone(
            "SELECT record FROM code_session_uploads WHERE instance_id=? AND upn=? AND code_session_id=? AND id=?",
            (instance_id, upn, session_id, upload_id),
        )
        return ContextCodeSessionFileUploadRecord.model_validate_json(row["record"]) if row else None

    async def add_file(self, record: ContextFileRecord) -> None:
        await self._db.execute(
            "INSERT INTO files (instance_id, upn, id, conversation_id, file_name, created_at, deleted, record)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (record.instance_id, record.upn, record.id, record.conversation_id, record.file_name,
             record.created_at.isoformat(), int(record.deleted), record.model_dump_json()),
        )

    async def file(self, instance_id: str, upn: str, file_id: str) -> ContextFileRecord | None:
        row = await self._db.fetchone(
            "SELECT record FROM files WHERE instance_id=? AND upn=? AND id=? AND deleted=0",
            (instance_id, upn, file_id),
        )
        return ContextFileRecord.model_validate_json(row["record"]) if row else None

    async def conversation_file(
        self, instance_id: str, upn: str, conversation_id: str, file_name: str
    ) -> ContextFileRecord | None:
        """The newest file of the conversation with this name."""
        row = await self._db.fetchone(
            "SELECT record FROM files WHERE instance_id=? AND upn=? AND conversation_id=? AND file_name=?"
            " AND deleted=0 ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (instance_id, upn, conversation_id, file_name),
        )
        return ContextFileRecord.model_validate_json(row["record"]) if row else None

    async def files_since(self, instance_id: str, upn: str, since: str) -> list[ContextFileRecord]:
        """The user's files created at ``since`` (ISO-8601) or later."""
        rows = await self._db.fetchall(
            "SELECT record FROM files WHERE instance_id=? AND upn=? AND created_at>=? AND deleted=0",
            (instance_id, upn, since),
        )
        return [ContextFileRecord.model_validate_json(row["record"]) for row in rows]

    async def delete_files(self, instance_id: str, upn: str, file_ids: list[str]) -> None:
        for file_id in file_ids:
            await self._db.execute("DELETE FROM files WHERE instance_id=? AND upn=? AND id=?",
                                   (instance_id, upn, file_id))

    def close(self) -> None:
        self._db.close()


def _session_lock(session_id: str) -> str:
    """By the pool's identifier alone: the records of every user and instance that share it."""
    return f"code_sessions/{session_id}"
