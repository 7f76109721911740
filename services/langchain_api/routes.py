"""LangChain API routes: start a completion operation (exactly 202) and the health routes."""

from __future__ import annotations

import logging
import os
import platform
import secrets
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from services.common.auth import internal_hop, user_identity
from services.common.errors import HopError
from services.common.models import LongRunningOperation, OperationStatus
from services.langchain_api.activities import request_tags
from services.langchain_api.models import LLMCompletionRequest
from services.langchain_api.workflow import AgentWorkflow, WorkflowContext
from services.state_api.client import StateClient
from telemetry import conventions as c
from telemetry.context import activity, annotate, spawn

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
    operation = LongRunningOperation(operation_id=operation_id, status=OperationStatus.IN_PROGRESS,
                                     status_message=IN_PROGRESS_MESSAGE, upn=identity.upn if identity else None)
    # The original's activity of the submission; the background workflow is its child.
    with activity(c.SPAN_FLLM_LANGCHAIN_SUBMIT, request_tags(instanceId, operation_id, identity)):
        # One atomic claim in State API decides which replica runs the operation: a retried submission, on this
        # replica or another, or one that arrives after the end, gets the stored operation and runs nothing.
        claim = await state.claim(instanceId, operation, request.app.state.claimant)
        annotate({c.ATTR_OPERATION_CLAIMANT: claim["claimant"]})
        stored = claim["operation"] or operation.to_wire()
        if not claim["acquired"]:
            return JSONResponse(stored, status_code=202)
        workflow: AgentWorkflow = request.app.state.workflow
        ctx = WorkflowContext(instanceId, body, identity, operation.upn)  # type: ignore[arg-type]
        spawn(_run_workflow(workflow, ctx))
        return JSONResponse(stored, status_code=202)


def claimant_id() -> str:
    """This replica's name in its claims: its host and process, as service.instance.id, and a nonce (a
    restarted container may get the same host name and pid)."""
    return f"{c.LANGCHAIN_API}@{platform.node()}-{os.getpid()}-{secrets.token_hex(3)}"


async def _run_workflow(workflow: AgentWorkflow, ctx: WorkflowContext) -> None:
    try:
        await workflow.run(ctx)
    except HopError as error:  # the final writes failed: State API's sweeper will end the operation
        log.error("operation %s: could not write its end: %s", ctx.request.operation_id, error)


@router.get("/status")
@router.get("/instances/{instanceId}/status")
async def status(request: Request, instanceId: str | None = None) -> dict[str, Any]:  # noqa: N803
    """The original's bodies: {name, instance_name, version, status}; the instance route adds instance_id
    after the name. instance_name is the host's name (the original reads HOSTNAME), version FLLM_VERSION."""
    version = request.app.state.version
    if instanceId is None:
        return {"name": c.LANGCHAIN_API, "instance_name": platform.node(), "version": version, "status": "ready"}
    return {"name": c.LANGCHAIN_API, "instance_id": instanceId, "instance_name": platform.node(),
            "version": version, "status": "ready"}
