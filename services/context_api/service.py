"""CodeSessionService: create sessions, upload conversation files into them, download what code
generated, execute code; records keyed by instance and UPN, so one user never reaches another's."""

from __future__ import annotations

import base64
import uuid

from services.common.errors import ServiceError
from services.common.models import UnifiedUserIdentity, utc_now
from services.context_api.config import CODE_INTERPRETER, LOCAL_CUSTOM_CONTAINER, ContextApiConfig
from services.context_api.files import ConversationFiles
from services.context_api.models import (
    CodeExecutionResult,
    ContextCodeSessionFileUploadRecord,
    ContextCodeSessionRecord,
    ContextFileRecord,
    CreateCodeSessionRequest,
    CreateCodeSessionResponse,
    DownloadFilesResponse,
    UploadFilesResponse,
)
from services.context_api.providers import PoolClient, SessionTarget
from services.context_api.store import ContextStore
from telemetry import conventions as c
from telemetry.context import AttributeValue, annotate, hashed

MAX_SESSION_ID = 128
FILE_ORIGIN = "code-session"
USER_IDENTITY = "X-USER-IDENTITY"


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
        await provider.delete_files(target)  # as the original: the session starts from the uploaded files
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
        record = await self.session(instance_id, identity, session_id)
        upload = await self.store.upload(instance_id, record.upn, record.id, operation_id)
        if upload is None:
            raise ServiceError(404, "The file upload operation was not found for this code session.",
                               "operation_id")
        provider, target = self._provider(record)
        file_records: dict[str, ContextFileRecord] = {}
        errors: list[str] = []
        annotate(session_attributes(record))
        for entry in await provider.list_files(target):
            if entry.is_directory or (entry.parent_path == "/" and upload.file_upload_success.get(entry.name)):
                continue  # what was uploaded is not a result of the code
            content = await provider.download_file(target, entry)
            if content is None:
                errors.append(entry.path)
                continue
            file = await self.files.create(
                instance_id=instance_id, upn=record.upn, conversation_id=record.conversation_id,
                file_name=entry.name, content=content, origin=FILE_ORIGIN, content_type=entry.content_type,
                metadata={"code_session_file_upload_record_id": upload.id,
                          "code_session_file_path": entry.path},
            )
            file_records[file.id] = file
        annotate({"foundationallm.code_session.files_downloaded": len(file_records),
                  "foundationallm.code_session.download_errors": len(errors)})
        return DownloadFilesResponse(file_records=file_records, errors=errors)

    async def execute_code(self, instance_id: str, identity: UnifiedUserIdentity, session_id: str,
                           code: str) -> CodeExecutionResult:
        record = await self.session(instance_id, identity, session_id)
        provider, target = self._provider(record)
        attributes = {**session_attributes(record), c.ATTR_CODE_SIZE: len(code.encode())}
        annotate(attributes)
        result = await provider.execute(target, code, self.config.execution_timeout_s)
        annotate({
            c.ATTR_CODE_STATUS: result.status,
            c.ATTR_CODE_STDOUT_SIZE: len(result.standard_output.encode()),
            c.ATTR_CODE_STDERR_SIZE: len(result.error_output.encode()),
        })
        return result
