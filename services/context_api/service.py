"""CodeSessionService: create sessions, upload conversation files into them, download what code
generated, execute code; records keyed by instance and UPN, so one user never reaches another's."""

from __future__ import annotations

import base64
import logging
import uuid

from services.common.errors import ServiceError
from services.common.models import UnifiedUserIdentity, utc_now
from services.context_api.config import CODE_INTERPRETER, LOCAL_CUSTOM_CONTAINER, MIB, ContextApiConfig
from services.context_api.files import ConversationFiles
from services.context_api.models import (
    CodeExecutionResult,
    ContextCodeSessionFileUploadRecord,
    ContextCodeSessionRecord,
    ContextFileRecord,
    CreateCodeSessionRequest,
    CreateCodeSessionResponse,
    DeleteCodeSessionResponse,
    DiscardFilesResponse,
    DownloadFilesResponse,
    UploadFilesResponse,
)
from services.context_api.providers import (
    CodeInterpreterProvider,
    DownloadTooLargeError,
    PoolClient,
    ProviderError,
    SessionTarget,
)
from services.context_api.store import ContextStore
from telemetry import conventions as c
from telemetry.context import AttributeValue, annotate, hashed

MAX_SESSION_ID = 128
FILE_ORIGIN = "code-session"
USER_IDENTITY = "X-USER-IDENTITY"
SPAN_DELETE_SESSION = f"DELETE {c.ROUTE_CODE_SESSION}"  # the Context API's server span of a release
ATTR_SESSION_DELETED = "foundationallm.code_session.deleted"
# On an upload's server span: the session was known to be empty, so it was not listed and emptied first.
ATTR_SESSION_KNOWN_EMPTY = "foundationallm.code_session.known_empty"
log = logging.getLogger("foundationallm.context_api")


def upn_of(identity: UnifiedUserIdentity) -> str:
    if not identity.upn:
        raise ServiceError(400, "The X-USER-IDENTITY header has no upn.", USER_IDENTITY)
    return identity.upn


def session_id_for(request: CreateCodeSessionRequest) -> str:
    """The original's rules: truncated to 128 characters, then lowercased."""
    if request.endpoint_provider == CODE_INTERPRETER:
        now = utc_now()
        raw = f"{request.conversation_id}-{request.context}-{now:%H%M%S}{now.microsecond // 1000:03d}"
    else:
        raw = f"code-{request.conversation_id}-{request.context}"
    return raw[:MAX_SESSION_ID].lower()


def session_attributes(record: ContextCodeSessionRecord) -> dict[str, AttributeValue | None]:
    return {
        c.ATTR_CODE_SESSION_ID_HASH: hashed(record.id),
        c.ATTR_CODE_SESSION_PROVIDER: record.endpoint_provider,
        c.ATTR_CODE_SESSION_LANGUAGE: record.language,
    }


class DownloadBound:
    """What one download may still copy: ``max_files`` files, ``max_bytes`` bytes in all."""

    def __init__(self, max_files: int, max_bytes: int) -> None:
        self.max_files, self.max_bytes = max_files, max_bytes
        self.files_taken = self.bytes_taken = 0

    @property
    def bytes_left(self) -> int:
        return self.max_bytes - self.bytes_taken

    def refusal(self, size: int) -> str | None:
        """Why a file of ``size`` bytes cannot be copied, or None."""
        if self.files_taken >= self.max_files:
            return f"not copied: the download bound of {self.max_files} files per operation was reached"
        if size > self.bytes_left:
            return (f"not copied: {size} bytes is over what the download bound of {self.max_bytes // MIB} MB"
                    f" per operation leaves ({self.bytes_left} bytes)")
        return None

    def take(self, size: int) -> None:
        self.files_taken += 1
        self.bytes_taken += size


class CodeSessionService:
    def __init__(self, config: ContextApiConfig, store: ContextStore, files: ConversationFiles,
                 providers: dict[str, PoolClient]) -> None:
        self.config = config
        self.store = store
        self.files = files
        self.providers = providers

    async def create(self, instance_id: str, identity: UnifiedUserIdentity,
                     request: CreateCodeSessionRequest) -> CreateCodeSessionResponse:
        upn = upn_of(identity)
        provider, override = request.endpoint_provider, request.endpoint_provider_override
        if override is not None:
            if not override.enabled:
                raise ServiceError(400, "The endpoint provider override is not enabled.",
                                   "endpoint_provider_override.enabled")
            if override.upn.casefold() != upn.casefold():
                raise ServiceError(400, "The endpoint provider override is for another user.",
                                   "endpoint_provider_override.upn")
            guid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            provider, endpoint, session_id = LOCAL_CUSTOM_CONTAINER, override.endpoint, f"__local_code_session_{guid}__"
        else:
            endpoint = self.config.endpoint_for(provider, request.language)
            session_id = session_id_for(request)
        record = ContextCodeSessionRecord(
            id=session_id, instance_id=instance_id, upn=upn, conversation_id=request.conversation_id,
            endpoint_provider=provider, endpoint=endpoint, language=request.language,
            endpoint_provider_override=override, created_by=upn, updated_by=upn,
            metadata={"agent_name": request.agent_name, "context": request.context},
            # A code-interpreter session is a new identifier in its pool (the store keeps this only when no
            # record ever had it); a custom container's is per conversation, reused, or a developer's own.
            known_empty=provider == CODE_INTERPRETER,
        )
        record = await self.store.upsert_session(record)
        self._annotate(record)
        return CreateCodeSessionResponse(session_id=record.id, endpoint=record.endpoint)

    async def session(self, instance_id: str, identity: UnifiedUserIdentity,
                      session_id: str) -> ContextCodeSessionRecord:
        record = await self.store.session(instance_id, upn_of(identity), session_id)
        if record is None:
            raise ServiceError(404, "The code session was not found.", "sessionId")
        self._annotate(record)
        return record

    @staticmethod
    def _annotate(record: ContextCodeSessionRecord) -> None:
        annotate({
            c.ATTR_INSTANCE_ID: record.instance_id,
            c.ATTR_CONVERSATION_ID: record.conversation_id,
            c.ATTR_AGENT_NAME: record.metadata.get("agent_name"),
            c.ATTR_TOOL_NAME: record.metadata.get("context"),
            **session_attributes(record),
        })

    def _provider(self, record: ContextCodeSessionRecord) -> tuple[PoolClient, SessionTarget]:
        return self.providers[record.endpoint_provider], SessionTarget(record.endpoint, record.id)

    async def upload_files(self, instance_id: str, identity: UnifiedUserIdentity, session_id: str,
                           file_names: list[str]) -> UploadFilesResponse:
        record = await self.session(instance_id, identity, session_id)
        provider, target = self._provider(record)
        success: dict[str, bool] = {}
        annotate(session_attributes(record))
        known_empty = record.known_empty and await self.store.claim_empty(instance_id, record.upn, record.id)
        annotate({ATTR_SESSION_KNOWN_EMPTY: known_empty})
        if not known_empty:  # as the original: the session starts from the uploaded files
            await provider.delete_files(target)
        for name in dict.fromkeys(file_names):
            file = await self.store.conversation_file(instance_id, record.upn, record.conversation_id, name)
            if file is None:
                success[name] = False
                continue
            try:
                content = await self.files.read(file)
            except OSError:  # the record outlived its bytes: that file cannot be uploaded
                success[name] = False
                continue
            success[name] = await provider.upload_file(target, name, content, file.content_type)
        upload = ContextCodeSessionFileUploadRecord(
            id=str(uuid.uuid4()).lower(), instance_id=instance_id, upn=record.upn, code_session_id=record.id,
            file_upload_success=success, created_by=record.upn, updated_by=record.upn,
        )
        await self.store.add_upload(upload)
        return UploadFilesResponse(operation_id=upload.id, file_upload_success=success,
                                   all_files_uploaded=all(success.values()))

    async def download_files(self, instance_id: str, identity: UnifiedUserIdentity, session_id: str,
                             operation_id: str) -> DownloadFilesResponse:
        """What the code made, bounded per call (files and bytes); all or nothing: a call that fails
        half-way keeps none of the files it copied."""
        record = await self.session(instance_id, identity, session_id)
        upload = await self.store.upload(instance_id, record.upn, record.id, operation_id)
        if upload is None:
            raise ServiceError(404, "The file upload operation was not found for this code session.",
                               "operation_id")
        provider, target = self._provider(record)
        file_records: dict[str, ContextFileRecord] = {}
        errors: list[str] = []
        bound = DownloadBound(self.config.max_download_files, self.config.max_download_bytes)
        annotate(session_attributes(record))
        try:
            for entry in await provider.list_files(target):
                if entry.is_directory or (entry.parent_path == "/" and upload.file_upload_success.get(entry.name)):
                    continue  # what was uploaded is not a result of the code
                if refusal := bound.refusal(entry.size):
                    errors.append(f"{entry.path}: {refusal}")
                    continue
                try:
                    content = await provider.download_file(target, entry, bound.bytes_left)
                except DownloadTooLargeError as error:
                    errors.append(f"{entry.path}: {bound.refusal(error.size)}")
                    continue
                if content is None:
                    errors.append(entry.path)
                    continue
                bound.take(len(content))
                file = await self.files.create(
                    instance_id=instance_id, upn=record.upn, conversation_id=record.conversation_id,
                    file_name=entry.name, content=content, origin=FILE_ORIGIN, content_type=entry.content_type,
                    metadata={"code_session_file_upload_record_id": upload.id,
                              "code_session_file_path": entry.path},
                )
                file_records[file.id] = file
        except BaseException:
            await self.files.delete(list(file_records.values()))
            raise
        annotate({"foundationallm.code_session.files_downloaded": len(file_records),
                  "foundationallm.code_session.download_bytes": bound.bytes_taken,
                  "foundationallm.code_session.download_errors": len(errors)})
        return DownloadFilesResponse(file_records=file_records, errors=errors)

    async def discard_files(self, instance_id: str, identity: UnifiedUserIdentity, session_id: str,
                            operation_id: str) -> DiscardFilesResponse:
        """Remove what the downloads of an upload operation copied: its completion failed, nothing stays."""
        upn = upn_of(identity)
        upload = await self.store.upload(instance_id, upn, session_id, operation_id)
        if upload is None:
            raise ServiceError(404, "The file upload operation was not found for this code session.",
                               "operation_id")
        discarded = await self.files.delete_downloaded(instance_id, upn, upload)
        annotate({"foundationallm.code_session.files_discarded": len(discarded)})
        return DiscardFilesResponse(discarded=discarded)

    async def delete_session(self, instance_id: str, identity: UnifiedUserIdentity,
                             session_id: str) -> DeleteCodeSessionResponse:
        """The completion is done with the session. A per-request session (the code interpreter's: a new
        identifier per completion) is deleted from its pool at once instead of idling out its cooldown; a
        per-conversation session (the custom container's) stays for the conversation's next completion.
        A pool that fails the delete is logged and answered 502 naming its hop: the caller's completion
        does not depend on it (the pool's cooldown still ends the session)."""
        record = await self.session(instance_id, identity, session_id)
        provider, target = self._provider(record)
        annotate(session_attributes(record))  # on the DELETE server span: the delete's own span
        if not isinstance(provider, CodeInterpreterProvider):
            annotate({ATTR_SESSION_DELETED: False})
            return DeleteCodeSessionResponse(session_id=record.id, deleted=False,
                                             detail="A per-conversation session stays for the conversation.")
        try:
            await provider.delete_session(target)
        except ProviderError as error:  # recorded on the server span by the app's error handler
            log.warning("could not delete a code session from its pool: %s", error)
            raise
        annotate({ATTR_SESSION_DELETED: True})
        return DeleteCodeSessionResponse(session_id=record.id, deleted=True,
                                         detail="The session was deleted from its pool.")

    async def execute_code(self, instance_id: str, identity: UnifiedUserIdentity, session_id: str,
                           code: str) -> CodeExecutionResult:
        record = await self.session(instance_id, identity, session_id)
        provider, target = self._provider(record)
        attributes = {**session_attributes(record), c.ATTR_CODE_SIZE: len(code.encode())}
        annotate(attributes)
        if record.known_empty:  # the code may write files: the session is no longer known to be empty
            await self.store.claim_empty(instance_id, record.upn, record.id)
        result = await provider.execute(target, code, self.config.execution_timeout_s)
        annotate({
            c.ATTR_CODE_STATUS: result.status,
            c.ATTR_CODE_STDOUT_SIZE: len(result.standard_output.encode()),
            c.ATTR_CODE_STDERR_SIZE: len(result.error_output.encode()),
        })
        return result
