"""``POST /executions`` (synchronous, or asynchronous with 202) and ``GET /executions/{id}``."""

from __future__ import annotations

import re
import urllib.parse
import uuid

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from services.code_execution import ExecutionRecord, ExecutionSpec, Executor
from services.code_execution.models import ASYNCHRONOUS
from services.dynamic_sessions.errors import AzureError
from services.dynamic_sessions.models import CodeExecutionRequest, ExecutionProperties, execution_resource
from services.dynamic_sessions.params import SessionCall, executions_api, require_bearer

router = APIRouter(dependencies=[Depends(require_bearer)])
OPERATION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def execution_spec(executor: Executor, body: ExecutionProperties, execution_type: str) -> ExecutionSpec:
    """The executor's spec for a request of either api-version family; the pool's defaults fill gaps."""
    config = executor.config
    return ExecutionSpec(
        code=body.source(),
        timeout_s=float(body.timeout_in_seconds or config.default_timeout_s),
        max_output=config.output_max_length if body.output_streams_max_length is None
        else body.output_streams_max_length,
        execution_type=execution_type,
    )


def operation_location(request: Request, call: SessionCall, execution_id: str) -> str:
    query = urllib.parse.urlencode({"api-version": call.api_version, "identifier": call.identifier})
    return f"{str(request.base_url).rstrip('/')}/executions/{urllib.parse.quote(execution_id)}?{query}"


def _answer(request: Request, call: SessionCall, record: ExecutionRecord) -> JSONResponse:
    headers = {"operation-id": record.id, "Operation-Location": operation_location(request, call, record.id)}
    status = 202 if record.execution_type == ASYNCHRONOUS else 200
    return JSONResponse(execution_resource(record), status_code=status, headers=headers)


@router.post("/executions", summary="Execute code in a session")
async def execute(
    request: Request,
    body: CodeExecutionRequest,
    call: SessionCall = Depends(executions_api),
    operation_id: str | None = Header(None, alias="operation-id"),
) -> JSONResponse:
    if operation_id is not None and not OPERATION_ID.fullmatch(operation_id):
        raise AzureError(400, "InvalidParameter", "The operation-id header must be 1-128 of [A-Za-z0-9._-].",
                         "operation-id")
    session = call.session()
    executor = call.executor
    execution_id = operation_id or str(uuid.uuid4())
    existing = executor.find_execution(session, execution_id)
    if existing is not None:  # a retried request with the same operation-id: no second execution
        return _answer(request, call, existing)
    spec = execution_spec(executor, body, body.execution_type)
    if body.execution_type == ASYNCHRONOUS:
        record = executor.submit(session, spec, execution_id)
    else:
        record = await executor.run(session, spec, execution_id)
    return _answer(request, call, record)


@router.get("/executions/{execution_id}", summary="Get a code execution")
async def get_execution(execution_id: str, call: SessionCall = Depends(executions_api)) -> JSONResponse:
    session = call.session()
    record = call.executor.find_execution(session, execution_id)
    if record is None:
        raise AzureError(404, "ExecutionNotFound", "The session has no execution with this id.", "executionId")
    return JSONResponse(execution_resource(record))
