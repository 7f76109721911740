"""Core API routes: start an async completion (always 202 with the operation) and poll its status."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from services.auth.entry import caller
from services.common.auth import check_operation_id
from services.common.models import CompletionRequest, UnifiedUserIdentity
from services.core_api.completions import CoreService
from services.core_api.instance import core_instance
from telemetry import conventions as c
from telemetry.context import annotate

# Authentication first (a 401 tells nothing about instances), then the instance check, as the original.
router = APIRouter(prefix="/instances/{instanceId}/async-completions",
                   dependencies=[Depends(caller), Depends(core_instance)])
Caller = Annotated[UnifiedUserIdentity, Depends(caller)]


def _core(request: Request) -> CoreService:
    return request.app.state.core


@router.post("", status_code=202)
async def start_completion(request: Request, body: CompletionRequest, identity: Caller) -> JSONResponse:
    # The prompt's size and hash only; its text with the explicit opt-in FLLM_CAPTURE_PROMPTS=true.
    prompt = body.user_prompt.encode()
    annotate({c.ATTR_PROMPT_SIZE: len(prompt), c.ATTR_PROMPT_SHA256: hashlib.sha256(prompt).hexdigest(),
              c.ATTR_PROMPT_TEXT: body.user_prompt if request.app.state.settings.capture_prompts else None})
    return JSONResponse(await _core(request).start(body, identity), status_code=202)


@router.get("/{operationId}/status")
async def completion_status(
    request: Request,
    operationId: str,  # noqa: N803
    identity: Caller,
    wait: float = Query(0.0, ge=0.0, le=30.0, description="Long-poll: answer as soon as the operation ends"),
) -> dict:
    check_operation_id(operationId)
    return await _core(request).status(operationId, identity, wait)
