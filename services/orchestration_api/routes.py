"""Orchestration API routes: start a completion operation (202) and read its status."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from services.common.auth import check_operation_id, internal_hop, user_identity
from services.common.errors import ServiceError
from services.common.models import CompletionRequest
from services.orchestration_api.orchestration import AgentOrchestration
from telemetry import conventions as c
from telemetry.context import annotate

router = APIRouter(
    prefix="/instances/{instanceId}/async-completions", dependencies=[Depends(internal_hop("orchestration_api"))]
)


def _orchestration(request: Request) -> AgentOrchestration:
    return request.app.state.orchestration


@router.post("", status_code=202)
async def start_completion(request: Request, instanceId: str, body: CompletionRequest) -> JSONResponse:  # noqa: N803
    identity = user_identity(request)
    if not body.operation_id:
        raise ServiceError(400, "operation_id is required.", "operation_id")
    annotate({c.ATTR_OPERATION_ID: body.operation_id, c.ATTR_AGENT_NAME: body.agent_name})
    answer = await _orchestration(request).start(instanceId, body, identity)  # type: ignore[arg-type]
    return JSONResponse(answer, status_code=202)


@router.get("/{operationId}/status")
async def completion_status(
    request: Request,
    instanceId: str,  # noqa: N803
    operationId: str,  # noqa: N803
    wait: float = Query(0.0, ge=0.0, le=60.0),
) -> dict:
    user_identity(request)
    check_operation_id(operationId)
    annotate({c.ATTR_OPERATION_ID: operationId})
    return await _orchestration(request).status(instanceId, operationId, wait)
