"""Gatekeeper API routes: the same two routes as Orchestration, with the prompt checks in front."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from services.common.auth import check_operation_id, internal_hop, user_identity
from services.common.models import CompletionRequest, LongRunningOperation, OperationStatus
from services.gatekeeper_api.checks import check_prompt
from services.orchestration_api.client import AsyncCompletionsClient
from telemetry import conventions as c
from telemetry.context import annotate, hop_span

router = APIRouter(
    prefix="/instances/{instanceId}/async-completions", dependencies=[Depends(internal_hop("gatekeeper_api"))]
)


def _orchestration(request: Request) -> AsyncCompletionsClient:
    return request.app.state.orchestration


@router.post("", status_code=202)
async def start_completion(request: Request, instanceId: str, body: CompletionRequest) -> JSONResponse:  # noqa: N803
    identity = user_identity(request)
    annotate({c.ATTR_OPERATION_ID: body.operation_id, c.ATTR_AGENT_NAME: body.agent_name})
    with hop_span(c.SPAN_GATEKEEPER_CHECK) as span:
        verdict = check_prompt(body.user_prompt)
        decision = "allowed" if verdict.allowed else "blocked"
        annotate({c.ATTR_GATEKEEPER_DECISION: decision, c.ATTR_GATEKEEPER_CHECKS: list(verdict.checks)}, span)
    annotate({c.ATTR_GATEKEEPER_DECISION: decision})
    if not verdict.allowed:
        blocked = LongRunningOperation(operation_id=body.operation_id or "", status=OperationStatus.FAILED,
                                       status_message=verdict.reason, upn=identity.upn if identity else None)
        return JSONResponse(blocked.to_wire(), status_code=202)
    answer = await _orchestration(request).start(instanceId, body.model_dump(mode="json"), identity)  # type: ignore[arg-type]
    return JSONResponse(answer, status_code=202)


@router.get("/{operationId}/status")
async def completion_status(
    request: Request,
    instanceId: str,  # noqa: N803
    operationId: str,  # noqa: N803
    wait: float = Query(0.0, ge=0.0, le=60.0),
) -> dict:
    identity = user_identity(request)
    check_operation_id(operationId)
    annotate({c.ATTR_OPERATION_ID: operationId})
    return await _orchestration(request).status(instanceId, operationId, identity, wait)  # type: ignore[arg-type]
