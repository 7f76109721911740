"""The 2024-02-02-preview / 2024-08-02-preview contract: ``POST /code/execute`` with ``properties``,
``POST /files/upload``, ``GET /files/content/{name}`` (``GET /files`` answers the legacy list shape
for these versions from the shared route in files.py)."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response

from services.code_execution.models import SYNCHRONOUS
from services.dynamic_sessions.errors import AzureError
from services.dynamic_sessions.executions import OPERATION_ID, execution_spec
from services.dynamic_sessions.files import stream_content, upload_into
from services.dynamic_sessions.models import LegacyExecutionRequest, legacy_execution, legacy_file_list
from services.dynamic_sessions.params import SessionCall, legacy_api, require_bearer

router = APIRouter(dependencies=[Depends(require_bearer)])


@router.post("/code/execute", summary="Execute code (2024-08-02-preview and before)")
async def execute(
    body: LegacyExecutionRequest,
    call: SessionCall = Depends(legacy_api),
    operation_id: str | None = Header(None, alias="operation-id"),
) -> JSONResponse:
    properties = body.properties
    if properties.execution_type != SYNCHRONOUS:
        raise AzureError(400, "InvalidRequestBody", "This api-version only executes synchronously.",
                         "properties.executionType")
    session = call.session()
    executor = call.executor
    started = time.perf_counter()
    spec = execution_spec(executor, properties, SYNCHRONOUS)
    valid_id = operation_id if operation_id and OPERATION_ID.fullmatch(operation_id) else None
    record = await executor.run(session, spec, valid_id or str(uuid.uuid4()))
    assert record.outcome is not None
    overall_ms = (time.perf_counter() - started) * 1000
    headers = {
        "Operation-Id": record.id,
        "X-Ms-Container-Execution-Duration": str(record.outcome.time_ms),
        "X-Ms-Execution-Request-Time": f"{overall_ms:.6f}",
        "X-Ms-Overall-Execution-Time": f"{overall_ms / 1000:.6f}s",
        "X-Ms-Session-Guid": session.etag,
    }
    return JSONResponse(legacy_execution(record), headers=headers)


@router.post("/files/upload", summary="Upload a file (2024-08-02-preview and before)")
async def upload(request: Request, call: SessionCall = Depends(legacy_api)) -> JSONResponse:
    return JSONResponse(legacy_file_list([await upload_into(request, call, None)]))


@router.get("/files/content/{name:path}", summary="Download a file (2024-08-02-preview and before)")
async def content(name: str, call: SessionCall = Depends(legacy_api)) -> Response:
    return await stream_content(call, None, name)

