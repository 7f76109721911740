"""Request bodies and response resources of the data plane, with the service's field names."""

from __future__ import annotations

import base64
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.code_execution.config import MAX_TIMEOUT_S
from services.code_execution.files import FileEntry
from services.code_execution.models import SUCCEEDED, ExecutionFailure, ExecutionRecord
from services.dynamic_sessions.errors import AzureError, error_object

MAX_CODE_LENGTH = 4 * 1024 * 1024
MAX_OUTPUT_LENGTH = 1024 * 1024


def _canonical(value: Any, choices: tuple[str, ...]) -> Any:
    """The service accepts enum values in any case (the samples send ``inline`` and ``synchronous``)."""
    if isinstance(value, str):
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
    return value


class ExecutionProperties(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    code_input_type: Literal["Inline", "InlineBase64", "InlineText"] = Field(alias="codeInputType")
    execution_type: Literal["Synchronous", "Asynchronous"] = Field(alias="executionType")
    code: str = Field(max_length=MAX_CODE_LENGTH)
    # Required by the spec, but FoundationaLLM never sends it and the service accepts that.
    timeout_in_seconds: int | None = Field(None, alias="timeoutInSeconds", ge=1, le=MAX_TIMEOUT_S)
    output_streams_max_length: int | None = Field(None, alias="outputStreamsMaxLength", ge=0, le=MAX_OUTPUT_LENGTH)
    use_empty_kernel: bool | None = Field(None, alias="useEmptyKernel")  # accepted; every kernel starts empty

    @field_validator("code_input_type", mode="before")
    @classmethod
    def _input_type(cls, value: Any) -> Any:
        return _canonical(value, ("Inline", "InlineBase64", "InlineText"))

    @field_validator("execution_type", mode="before")
    @classmethod
    def _execution_type(cls, value: Any) -> Any:
        return _canonical(value, ("Synchronous", "Asynchronous"))

    def source(self) -> str:
        if self.code_input_type != "InlineBase64":
            return self.code
        try:
            return base64.b64decode(self.code, validate=True).decode("utf-8")
        except ValueError as error:  # binascii.Error, UnicodeDecodeError, and non-ASCII text in the base64
            raise AzureError(400, "InvalidRequestBody", "'code' is not valid base64-encoded UTF-8.", "code") from error


class CodeExecutionRequest(ExecutionProperties):
    """``POST /executions`` (2024-10-02-preview and later)."""


class LegacyExecutionRequest(BaseModel):
    """``POST /code/execute`` (2024-02-02-preview, 2024-08-02-preview): the ``properties`` wrapper."""

    model_config = ConfigDict(extra="ignore")

    properties: ExecutionProperties


def failure_error(failure: ExecutionFailure) -> dict[str, Any]:
    return error_object(failure.code, f"{failure.name}: {failure.message}".rstrip(": "), "code",
                        inner={"code": failure.name})


def execution_resource(record: ExecutionRecord) -> dict[str, Any]:
    """``SessionCodeExecutionResource`` plus ``sessionId`` and ``rawResult`` as the service returns them."""
    body: dict[str, Any] = {
        "id": record.id,
        "identifier": record.identifier,
        "sessionId": record.identifier,
        "executionType": record.execution_type,
        "status": record.status,
    }
    outcome = record.outcome
    if outcome is not None:
        body["result"] = {
            "stdout": outcome.stdout,
            "stderr": outcome.stderr,
            "executionResult": outcome.result,
            "executionTimeInMilliseconds": outcome.time_ms,
        }
        if outcome.failure is not None:
            body["error"] = {"error": failure_error(outcome.failure)}
    failure = outcome.failure if outcome is not None else None
    body["rawResult"] = {
        "hresult": 0 if failure is None else 1,
        "result": outcome.result if outcome is not None else None,
        "error_name": failure.name if failure else "",
        "error_message": failure.message if failure else "",
        "error_stack_trace": failure.traceback if failure else "",
        "stdout": outcome.stdout if outcome is not None else "",
        "stderr": outcome.stderr if outcome is not None else "",
        "diagnosticInfo": {
            "executionRequestTimeInMilliSeconds": outcome.time_ms if outcome is not None else 0,
            "executionProcessResponseTimeInMilliSeconds": 0,
            "executionDuration": outcome.time_ms if outcome is not None else 0,
            "identifier": record.identifier,
        },
        "operationId": record.id,
    }
    return body


def legacy_execution(record: ExecutionRecord) -> dict[str, Any]:
    outcome = record.outcome
    assert outcome is not None
    return {
        "properties": {
            "$id": record.id,
            "status": "Success" if outcome.status == SUCCEEDED else "Failed",
            "stdout": outcome.stdout,
            "stderr": outcome.stderr,
            "executionResult": outcome.result,
            "result": outcome.result,
            "executionTimeInMilliseconds": outcome.time_ms,
        }
    }


def file_resource(entry: FileEntry) -> dict[str, Any]:
    """``SessionResourceFile``; ``type`` is ``file`` or ``directory`` (what FoundationaLLM compares with)."""
    return {
        "name": entry.name,
        "type": entry.type,
        "contentType": entry.content_type,
        "sizeInBytes": entry.size,
        "lastModifiedAt": entry.last_modified,
        "directory": entry.directory,
    }


def legacy_file_list(entries: list[FileEntry]) -> dict[str, Any]:
    """The 2024-08-02-preview shape: ``$id``-numbered items with ``properties{filename,size,...}``."""
    value = []
    for index, entry in enumerate(entries):
        filename = f"{entry.directory}/{entry.name}" if entry.directory else entry.name
        properties = {"$id": str(2 * index + 3), "filename": filename, "size": entry.size,
                      "lastModifiedTime": entry.last_modified}
        value.append({"$id": str(2 * index + 2), "properties": properties})
    return {"$id": "1", "value": value}
