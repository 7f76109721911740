"""LangChain API routes: start a completion operation (exactly 202) and the health routes."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from services.common.auth import internal_hop, user_identity
from services.common.errors import HopError
from services.common.models import LongRunningOperation, OperationStatus
from services.langchain_api.models import LLMCompletionRequest
from services.langchain_api.workflow import AgentWorkflow, WorkflowContext
from services.state_api.client import StateClient
from telemetry import conventions as c
from telemetry.context import annotate, spawn

log = logging.getLogger("foundationallm.langchain_api")
router = APIRouter()
IN_PROGRESS_MESSAGE = "The operation is being processed by LangChain API."


@router.post(
    "/instances/{instanceId}/async-completions",
    status_code=202,
    dependencies=[Depends(internal_hop("langchain_api"))],
)
async def start_completion(request: Request, instanceId: str, body: LLMCompletionRequest) -> JSONResponse:  # noqa: N803
    identity = user_identity(request)
    operation_id = body.operation_id
    annotate({c.ATTR_OPERATION_ID: operation_id, c.ATTR_AGENT_NAME: body.agent.name})
    state: StateClient = request.app.state.state_client
    running: set[str] = request.app.state.running
    operation = LongRunningOperation(operation_id=operation_id, status=OperationStatus.IN_PROGRESS,
                                     status_message=IN_PROGRESS_MESSAGE, upn=identity.upn if identity else None)
    if operation_id in running:  # a retried submission: the workflow already runs here
        return JSONResponse(await state.get(instanceId, operation_id) or operation.to_wire(), status_code=202)
    stored = await state.update(instanceId, operation)
    if stored["status"] != OperationStatus.IN_PROGRESS:  # already ended: never run the code twice
        return JSONResponse(stored, status_code=202)
    running.add(operation_id)
    workflow: AgentWorkflow = request.app.state.workflow
    ctx = WorkflowContext(instanceId, body, identity, operation.upn)  # type: ignore[arg-type]
    spawn(_run_workflow(workflow, ctx, running))
    return JSONResponse(stored, status_code=202)


async def _run_workflow(workflow: AgentWorkflow, ctx: WorkflowContext, running: set[str]) -> None:
    try:
        await workflow.run(ctx)
    except HopError as error:  # the final writes failed: State API's sweeper will end the operation
        log.error("operation %s: could not write its end: %s", ctx.request.operation_id, error)
    finally:
        running.discard(ctx.request.operation_id)


@router.get("/status")
@router.get("/instances/{instanceId}/status")
async def status(request: Request, instanceId: str | None = None) -> dict[str, Any]:  # noqa: N803
    body = {"name": "LangChainAPI", "instance_name": "fllm-callstack", "version": "0.1.0", "status": "ready"}
    return {**body, "instance_id": instanceId} if instanceId else body
