"""The code-session routes (``/instances/{instanceId}/codeSessions``) and the conversation files they
produce (``/instances/{instanceId}/files``): X-API-KEY, instance check, X-USER-IDENTITY required."""

from __future__ import annotations

import urllib.parse
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile
from fastapi.responses import Response

from services.common.auth import check_api_key, check_instance, user_identity
from services.common.errors import ServiceError
from services.common.models import UnifiedUserIdentity
from services.context_api.files import ConversationFiles
from services.context_api.models import (
    ID_PART,
    CodeExecutionResult,
    ContextFileRecord,
    CreateCodeSessionRequest,
    CreateCodeSessionResponse,
    DeleteCodeSessionResponse,
    DiscardFilesResponse,
    DownloadFilesRequest,
    DownloadFilesResponse,
    ExecuteCodeRequest,
    UploadFilesRequest,
    UploadFilesResponse,
)
from services.context_api.service import CodeSessionService, upn_of
from telemetry import conventions as c
from telemetry.context import annotate

MAX_FILE_BYTES = 128 * 1024 * 1024
# A code session id as this service makes them (truncated to 128, of the conversation id's characters).
SessionId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PART.pattern)]


async def authorize(request: Request, instanceId: str) -> str:  # noqa: N803 - FoundationaLLM's route name
    settings = request.app.state.settings
    check_api_key(request, settings.api_keys["context_api"])
    check_instance(instanceId, settings.instance_id)
    annotate({c.ATTR_INSTANCE_ID: settings.instance_id})
    return settings.instance_id


async def identity(request: Request) -> UnifiedUserIdentity:
    found = user_identity(request)
    assert found is not None
    annotate({c.ATTR_USER_ID: found.user_id})
    return found


async def service(request: Request) -> CodeSessionService:
    return request.app.state.context.service


async def conversation_files(request: Request) -> ConversationFiles:
    return request.app.state.context.files


router = APIRouter(prefix="/instances/{instanceId}", tags=["code sessions"])


@router.post("/codeSessions", response_model=CreateCodeSessionResponse)
async def create_code_session(
    body: CreateCodeSessionRequest,
    instance_id: str = Depends(authorize),
    user: UnifiedUserIdentity = Depends(identity),
    sessions: CodeSessionService = Depends(service),
) -> CreateCodeSessionResponse:
    return await sessions.create(instance_id, user, body)


@router.post("/codeSessions/{sessionId}/uploadFiles", response_model=UploadFilesResponse)
async def upload_files(
    sessionId: SessionId,  # noqa: N803
    body: UploadFilesRequest,
    instance_id: str = Depends(authorize),
    user: UnifiedUserIdentity = Depends(identity),
    sessions: CodeSessionService = Depends(service),
) -> UploadFilesResponse:
    return await sessions.upload_files(instance_id, user, sessionId, body.file_names)


@router.post("/codeSessions/{sessionId}/downloadFiles", response_model=DownloadFilesResponse)
async def download_files(
    sessionId: SessionId,  # noqa: N803
    body: DownloadFilesRequest,
    instance_id: str = Depends(authorize),
    user: UnifiedUserIdentity = Depends(identity),
    sessions: CodeSessionService = Depends(service),
) -> DownloadFilesResponse:
    return await sessions.download_files(instance_id, user, sessionId, body.operation_id)


@router.post("/codeSessions/{sessionId}/discardFiles", response_model=DiscardFilesResponse)
async def discard_files(
    sessionId: SessionId,  # noqa: N803
    body: DownloadFilesRequest,
    instance_id: str = Depends(authorize),
    user: UnifiedUserIdentity = Depends(identity),
    sessions: CodeSessionService = Depends(service),
) -> DiscardFilesResponse:
    """Not in the original: removes what the downloads of an upload operation copied (its completion failed)."""
    return await sessions.discard_files(instance_id, user, sessionId, body.operation_id)


@router.delete("/codeSessions/{sessionId}", response_model=DeleteCodeSessionResponse)
async def delete_code_session(
    sessionId: SessionId,  # noqa: N803
    instance_id: str = Depends(authorize),
    user: UnifiedUserIdentity = Depends(identity),
    sessions: CodeSessionService = Depends(service),
) -> DeleteCodeSessionResponse:
    """Not in FoundationaLLM: the completion is done with the session (its downloads included)."""
    return await sessions.delete_session(instance_id, user, sessionId)


@router.post("/codeSessions/{sessionId}/executeCode", response_model=CodeExecutionResult)
async def execute_code(
    sessionId: SessionId,  # noqa: N803
    body: ExecuteCodeRequest,
    instance_id: str = Depends(authorize),
    user: UnifiedUserIdentity = Depends(identity),
    sessions: CodeSessionService = Depends(service),
) -> CodeExecutionResult:
    return await sessions.execute_code(instance_id, user, sessionId, body.code_to_execute)


@router.post("/files", response_model=ContextFileRecord, tags=["files"])
async def upload_conversation_file(
    file: UploadFile = File(...),
    conversation_id: str = Form(..., min_length=1, max_length=256, pattern=ID_PART.pattern),
    agent_name: str | None = Form(None, max_length=256),
    instance_id: str = Depends(authorize),
    user: UnifiedUserIdentity = Depends(identity),
    files: ConversationFiles = Depends(conversation_files),
) -> ContextFileRecord:
    """A user's attachment to a conversation: what uploadFiles later copies into a code session."""
    name = file.filename or ""
    if not name or len(name) > 255 or any(ch in name for ch in "/\\\0") or name in {".", ".."}:
        raise ServiceError(400, "The file needs a plain file name.", "file")
    content = await file.read(MAX_FILE_BYTES + 1)
    if len(content) > MAX_FILE_BYTES:
        raise ServiceError(413, "The file is larger than the 128 MB limit.", "file")
    annotate({c.ATTR_CONVERSATION_ID: conversation_id, c.ATTR_AGENT_NAME: agent_name})
    return await files.create(
        instance_id=instance_id, upn=upn_of(user), conversation_id=conversation_id, file_name=name,
        content=content, origin="user", agent_name=agent_name, content_type=file.content_type,
    )


@router.get("/files/{fileId}", tags=["files"])
async def download_conversation_file(
    fileId: str,  # noqa: N803
    instance_id: str = Depends(authorize),
    user: UnifiedUserIdentity = Depends(identity),
    files: ConversationFiles = Depends(conversation_files),
) -> Response:
    record = await files.store.file(instance_id, upn_of(user), fileId)
    if record is None:
        raise ServiceError(404, "The file was not found.", "fileId")
    annotate({c.ATTR_CONVERSATION_ID: record.conversation_id})
    content = await files.read(record)
    disposition = f"attachment; filename*=UTF-8''{urllib.parse.quote(record.file_name, safe='')}"
    return Response(content, media_type=record.content_type, headers={"Content-Disposition": disposition})
