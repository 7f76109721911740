"""Wire models of the code-session routes and the records the Context API keeps, in FoundationaLLM's names."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.common.models import utc_now

MAX_CODE_LENGTH = 4 * 1024 * 1024
# Characters of conversation ids and tool names that stay valid in a session identifier and a URL path.
ID_PART = re.compile(r"^[A-Za-z0-9._~@:+=|-]+$")


class EndpointProviderOverride(BaseModel):
    upn: str = Field(min_length=1, max_length=320)
    endpoint: str = Field(min_length=1, max_length=2048)
    enabled: bool = False

    @field_validator("endpoint")
    @classmethod
    def _absolute_http(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("must be an absolute http(s) URL")
        return value.rstrip("/")


class CreateCodeSessionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    agent_name: str = Field(min_length=1, max_length=256)
    conversation_id: str = Field(min_length=1, max_length=256, pattern=ID_PART.pattern)
    context: str = Field(min_length=1, max_length=128, pattern=ID_PART.pattern)
    endpoint_provider: Literal["AzureContainerAppsCodeInterpreter", "AzureContainerAppsCustomContainer"]
    language: Literal["Python", "CSharp"]
    endpoint_provider_override: EndpointProviderOverride | None = None


class CreateCodeSessionResponse(BaseModel):
    session_id: str
    endpoint: str


class DeleteCodeSessionResponse(BaseModel):
    session_id: str
    deleted: bool  # the pool's session was deleted (per-request sessions); False: kept for the conversation
    detail: str


class UploadFilesRequest(BaseModel):
    file_names: list[str] = Field(max_length=100)

    @field_validator("file_names")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name or len(name) > 255 or any(ch in name for ch in "/\\\0") or name in {".", ".."}:
                raise ValueError(f"'{name[:100]}' is not a file name")
        return names


class UploadFilesResponse(BaseModel):
    operation_id: str
    file_upload_success: dict[str, bool]
    all_files_uploaded: bool


class DownloadFilesRequest(BaseModel):
    operation_id: str = Field(min_length=1, max_length=128)


class ExecuteCodeRequest(BaseModel):
    code_to_execute: str = Field(min_length=1, max_length=MAX_CODE_LENGTH)


class CodeExecutionResult(BaseModel):
    status: str  # Succeeded | Failed (the code interpreter's status passed through)
    execution_result: str = ""
    standard_output: str = ""
    error_output: str = ""


class _Record(BaseModel):
    id: str
    type: str
    instance_id: str
    upn: str
    origin: str = ""
    created_at: datetime = Field(default_factory=utc_now)
    created_by: str | None = None
    updated_at: datetime = Field(default_factory=utc_now)
    updated_by: str | None = None
    deleted: bool = False
    metadata: dict[str, str] = Field(default_factory=dict)


class ContextCodeSessionRecord(_Record):
    type: str = "code-session-record"
    conversation_id: str
    endpoint_provider: str
    endpoint: str
    language: str
    endpoint_provider_override: EndpointProviderOverride | None = None
    # Not in the original: the pool's session certainly holds no files (a code-interpreter session this API
    # created under a new identifier, nothing uploaded or executed in it since), so an upload need not list
    # it to empty it. False whenever in doubt (and for records written before the field existed).
    known_empty: bool = False


class ContextCodeSessionFileUploadRecord(_Record):
    type: str = "code-session-file-upload-record"
    code_session_id: str
    file_upload_success: dict[str, bool] = Field(default_factory=dict)


class ContextFileRecord(_Record):
    type: str = "file-record"
    conversation_id: str
    agent_name: str = "N/A"
    file_object_id: str
    file_name: str
    content_type: str
    file_path: str
    file_size_bytes: int
    file_processing_type: Literal["none", "data_pipeline", "completion_request_context"] = "none"


class DownloadFilesResponse(BaseModel):
    file_records: dict[str, ContextFileRecord]
    errors: list[str]


class DiscardFilesResponse(BaseModel):
    discarded: list[str]  # the ids of the file records removed


def wire(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
