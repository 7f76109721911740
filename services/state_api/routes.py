"""State API routes (FoundationaLLM's StateAPI), plus ``?wait=`` long-polling on an operation."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.common.auth import check_operation_id, internal_hop
from services.common.errors import ServiceError
from services.common.models import LongRunningOperation, OperationStatus
from services.state_api.store import OperationStore
from services.state_api.waiters import Waiters
from telemetry import conventions as c
from telemetry.context import annotate, current_traceparent, trace_id_of


async def _operation_id(request: Request) -> None:
    """Every operation id in a route follows the rule Core gives them (services/common/auth.py): 400 naming it."""
    operation_id = request.path_params.get("operationId")
    if operation_id is not None:
        check_operation_id(operation_id)


router = APIRouter(prefix="/instances/{instanceId}/operations",
                   dependencies=[Depends(internal_hop("state_api")), Depends(_operation_id)])
MAX_WAIT_S = 60.0
RECHECK_S = 5.0


def _store(request: Request) -> OperationStore:
    return request.app.state.store


def _waiters(request: Request) -> Waiters:
    return request.app.state.waiters


def to_operation(row: dict[str, Any], result: dict[str, Any] | None = None) -> dict[str, Any]:
    return LongRunningOperation(
        operation_id=row["operation_id"],
        status=row["status"],
        status_message=row["status_message"],
        upn=row["upn"],
        last_updated=row["last_updated"],
        result=result,
        trace_id=trace_id_of(row["traceparent"]) or None,
        failed_hop=row.get("failed_hop"),
    ).to_wire()


def _not_found(operation_id: str) -> ServiceError:
    return ServiceError(404, f"An operation with the id '{operation_id}' does not exist.", "operationId")


@router.get("")
async def list_operations(request: Request, instanceId: str) -> list[dict[str, Any]]:  # noqa: N803
    return [to_operation(row) for row in await _store(request).list(instanceId)]


@router.get("/{operationId}")
async def get_operation(
    request: Request,
    operationId: str,  # noqa: N803
    wait: float = Query(0.0, ge=0.0, le=MAX_WAIT_S, description="Long-poll: answer once the operation ends"),
) -> dict[str, Any]:
    annotate({c.ATTR_OPERATION_ID: operationId})
    store = _store(request)
    with _waiters(request).watching(operationId) as ended:
        row, result = await store.get_with_result(operationId)
        if row is None:
            raise _not_found(operationId)
        deadline = asyncio.get_running_loop().time() + wait
        while not OperationStatus(row["status"]).is_terminal:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            # Woken by the end (this replica's write, or another's NOTIFY); the re-read every few seconds
            # covers an end whose notification was lost (a dropped LISTEN connection).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), min(left, RECHECK_S))
            ended.clear()
            again, again_result = await store.get_with_result(operationId)
            if again is not None:
                row, result = again, again_result
    annotate({c.ATTR_OPERATION_STATUS: row["status"]})
    return to_operation(row, result)


@router.post("/{operationId}")
async def create_operation(
    request: Request,
    instanceId: str,  # noqa: N803
    operationId: str,  # noqa: N803
    body: dict[str, Any] = Body(...),
) -> dict[str, Any]:
    annotate({c.ATTR_OPERATION_ID: operationId})
    upn = body.get("upn")
    if upn is not None and not isinstance(upn, str):
        raise ServiceError(400, "upn must be a string.", "upn")
    row = await _store(request).create(instanceId, operationId, upn, current_traceparent())
    return to_operation(row)


@router.put("/{operationId}")
async def update_operation(
    request: Request,
    instanceId: str,  # noqa: N803
    operationId: str,  # noqa: N803
    operation: LongRunningOperation,
) -> JSONResponse:
    """Upsert the status (409: the operation had ended, nothing written). A ``result`` object (the original's
    clients send null) is stored as the operation's latest result document in the same transaction, so a
    reader sees the status and its result together; the reply then carries that result (on a 409, the one
    stored), else null as before."""
    annotate({c.ATTR_OPERATION_ID: operationId, c.ATTR_OPERATION_STATUS: operation.status.value})
    if operation.operation_id != operationId:
        raise ServiceError(400, "operation_id does not match the operation in the route.", "operation_id")
    if operation.result is not None:
        _check_result(operation.result, operationId, "result.operation_id")
    row, changed, result = await _store(request).update_with_result(
        instanceId, operation.model_dump(mode="json", exclude={"result"}), operation.result, current_traceparent())
    if changed and operation.status.is_terminal:
        _waiters(request).ended(operationId)
    return JSONResponse(to_operation(row, result), status_code=200 if changed else 409)


def _check_result(document: dict[str, Any], operation_id: str, field: str) -> None:
    if document.get("operation_id") != operation_id:
        raise ServiceError(400, f"{field} must be a string equal to the operation in the route.", field)


class ClaimRequest(BaseModel):
    """A worker replica's claim to run an operation, with the InProgress status it writes as it starts."""

    model_config = ConfigDict(extra="forbid")

    claimant: str = Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")  # printable, no spaces
    status_message: str | None = Field(None, max_length=4096)
    upn: str | None = Field(None, max_length=320)


@router.post("/{operationId}/claim")
async def claim_operation(
    request: Request,
    instanceId: str,  # noqa: N803
    operationId: str,  # noqa: N803
    claim: ClaimRequest,
) -> JSONResponse:
    """200 when this call acquired the run (the caller runs it), 409 when another claimant holds it or the
    operation has ended: either way the operation as stored, and who holds the claim."""
    annotate({c.ATTR_OPERATION_ID: operationId})
    operation = {"operation_id": operationId, "status": OperationStatus.IN_PROGRESS.value,
                 "status_message": claim.status_message, "upn": claim.upn}
    row, holder, acquired = await _store(request).claim(instanceId, operation, claim.claimant,
                                                        current_traceparent())
    annotate({c.ATTR_OPERATION_CLAIMANT: holder, c.ATTR_OPERATION_STATUS: row.get("status", "")})
    body = {"acquired": acquired, "claimant": holder, "operation": to_operation(row) if row else None}
    return JSONResponse(body, status_code=200 if acquired else 409)


@router.get("/{operationId}/logs")
async def get_logs(request: Request, operationId: str) -> list[dict[str, Any]]:  # noqa: N803
    return await _store(request).logs(operationId)


@router.get("/{operationId}/result")
async def get_result(request: Request, operationId: str) -> dict[str, Any]:  # noqa: N803
    result = await _store(request).latest_result(operationId)
    if result is None:
        raise ServiceError(404, f"The operation '{operationId}' has no result.", "operationId")
    return result


@router.post("/{operationId}/result")
async def add_result(
    request: Request,
    operationId: str,  # noqa: N803
    document: dict[str, Any] = Body(...),
) -> dict[str, Any]:
    annotate({c.ATTR_OPERATION_ID: operationId})
    _check_result(document, operationId, "operation_id")
    if await _store(request).get(operationId) is None:
        raise _not_found(operationId)
    return await _store(request).add_result(operationId, document)
