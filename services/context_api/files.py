"""Conversation files: a ContextFileRecord in the store and its bytes under ``<data dir>/context_files``."""

from __future__ import annotations

import base64
import mimetypes
import os
import re
import uuid
from pathlib import Path

from services.common.models import utc_now
from services.context_api.models import ContextFileRecord
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
        await self.store.add_file(record)
        return record

    @staticmethod
    def _write(path: Path, content: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(path.suffix + ".part")
        temp.write_bytes(content)
        os.replace(temp, path)

    async def read(self, record: ContextFileRecord) -> bytes:
        return await run_in_thread(self._blob(record).read_bytes)
