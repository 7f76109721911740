"""Conversation files: a ContextFileRecord in the store and its bytes under ``<data dir>/context_files``."""

from __future__ import annotations

import base64
import mimetypes
import os
import re
import uuid
from pathlib import Path

from services.common.models import utc_now
from services.context_api.models import ContextCodeSessionFileUploadRecord, ContextFileRecord
from services.context_api.store import ContextStore
from telemetry.context import run_in_thread


def normalised_upn(upn: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", upn.lower())


def new_file_id() -> str:
    """``file-{yyyyMMdd-HHmmss}-{url-safe base64 guid}``, the original's format."""
    guid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return f"file-{utc_now():%Y%m%d-%H%M%S}-{guid}"


def extension(file_name: str) -> str:
    ext = os.path.splitext(file_name)[1]
    return ext if re.fullmatch(r"\.[A-Za-z0-9]{1,16}", ext) else ""


def content_type_of(file_name: str, reported: str | None = None) -> str:
    if reported and reported != "application/octet-stream":
        return reported
    return mimetypes.guess_type(file_name)[0] or "application/octet-stream"


class ConversationFiles:
    def __init__(self, root: Path, store: ContextStore) -> None:
        self.root = root
        self.store = store

    def _blob(self, record: ContextFileRecord) -> Path:
        # Only generated, safe components: never a path built from a conversation id or file name.
        return self.root / normalised_upn(record.upn) / f"{record.id}{extension(record.file_name)}"

    async def create(
        self,
        *,
        instance_id: str,
        upn: str,
        conversation_id: str,
        file_name: str,
        content: bytes,
        origin: str,
        agent_name: str | None = None,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ContextFileRecord:
        file_id = new_file_id()
        record = ContextFileRecord(
            id=file_id,
            instance_id=instance_id,
            upn=upn,
            origin=origin,
            conversation_id=conversation_id,
            agent_name=agent_name or "N/A",
            file_object_id=f"/instances/{instance_id}/providers/FoundationaLLM.Context/files/{file_id}",
            file_name=file_name,
            content_type=content_type_of(file_name, content_type),
            file_path=f"file/users/{normalised_upn(upn)}/{conversation_id}/{file_id}{extension(file_name)}",
            file_size_bytes=len(content),
            created_by=upn,
            updated_by=upn,
            metadata=metadata or {},
        )
        await run_in_thread(self._write, self._blob(record), content)
        try:
            await self.store.add_file(record)
        except BaseException:  # no bytes without a record
            await run_in_thread(self._unlink, [self._blob(record)])
            raise
        return record

    @staticmethod
    def _write(path: Path, content: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(path.suffix + ".part")
        try:
            temp.write_bytes(content)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    async def read(self, record: ContextFileRecord) -> bytes:
        return await run_in_thread(self._blob(record).read_bytes)

    async def delete(self, records: list[ContextFileRecord]) -> None:
        """Records first, then bytes: a record never outlives its bytes for a reader to trip on."""
        for instance_id, upn in {(record.instance_id, record.upn) for record in records}:
            await self.store.delete_files(instance_id, upn, [r.id for r in records
                                                             if (r.instance_id, r.upn) == (instance_id, upn)])
        await run_in_thread(self._unlink, [self._blob(record) for record in records])

    async def delete_downloaded(self, instance_id: str, upn: str,
                                upload: ContextCodeSessionFileUploadRecord) -> list[str]:
        """Every file the downloads of ``upload`` copied out of its session; their ids."""
        since = await self.store.files_since(instance_id, upn, upload.created_at.isoformat())
        records = [record for record in since
                   if record.metadata.get("code_session_file_upload_record_id") == upload.id]
        await self.delete(records)
        return [record.id for record in records]

    @staticmethod
    def _unlink(paths: list[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)
            path.with_suffix(path.suffix + ".part").unlink(missing_ok=True)
