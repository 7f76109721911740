"""Starting a completion operation and reading its status (AgentOrchestration).

A failure anywhere in the start ends the operation as Failed, named after the hop that failed, and is
written to State API when it can be, so the status polls see the same answer as the start.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from services.common.errors import HopError
from services.common.hop_client import retrying
from services.common.models import (
    CompletionRequest,
    CompletionResponse,
    LongRunningOperation,
    OperationStatus,
    UnifiedUserIdentity,
)
from services.langchain_api.client import LangChainClient
from services.orchestration_api.builder import OrchestrationBuilder, OrchestrationError
from services.orchestration_api.content import completion_response
from services.orchestration_api.rewrite import RewriteConfigError, UserPromptRewriter
from services.state_api.client import StateClient
from telemetry import conventions as c
from telemetry.context import annotate, record_failure, spawn

log = logging.getLogger("foundationallm.orchestration_api")
APOLOGY = "A problem on my side prevented me from responding."
STATE_RETRY_ATTEMPTS = 4
STATE_RETRY_BACKOFF_S = 0.5


class AgentOrchestration:
    def __init__(self, builder: OrchestrationBuilder, state: StateClient, langchain: LangChainClient,
                 rewriter: UserPromptRewriter) -> None:
        self._builder, self._state, self._langchain = builder, state, langchain
        self._rewriter = rewriter

    async def start(self, instance_id: str, request: CompletionRequest, identity: UnifiedUserIdentity
                    ) -> dict[str, Any]:
        operation_id = request.operation_id or ""
        agent = self._builder.agent(request.agent_name)  # an unknown agent is refused before anything is created
        try:
            self._rewriter.settings_of(agent)  # an agent that cannot rewrite fails before anything is created
            # The operation's State record does not depend on the build: both go out at once.
            (agent, objects), _, rewrite = await asyncio.gather(
                self._builder.build(instance_id, request, identity),
                self._state.create(instance_id, operation_id, identity.upn),
                self._rewriter.rewrite(instance_id, agent, request),
            )
            llm_request = {
                "operation_id": operation_id,
                "session_id": request.session_id,
                "is_new_conversation": request.is_new_conversation,
                "user_prompt": request.user_prompt,
                **({"user_prompt_rewrite": rewrite} if rewrite is not None else {}),  # nulls omitted, as the original
                "message_history": request.message_history,
                "file_history": request.file_history,
                "attachments": [],
                "agent": agent.model_dump(),
                "objects": objects,
            }
            return await self._langchain.start(instance_id, llm_request, identity)
        except (HopError, OrchestrationError, RewriteConfigError) as error:
            hop = error.hop if isinstance(error, HopError) else c.ORCHESTRATION_API
            message = str(error) if isinstance(error, HopError) else f"{c.ORCHESTRATION_API}: {error}"
            record_failure(error, hop=hop)
            return await self._failed_start(instance_id, request, identity, message, hop)

    async def _failed_start(self, instance_id: str, request: CompletionRequest, identity: UnifiedUserIdentity,
                            message: str, hop: str) -> dict[str, Any]:
        operation = LongRunningOperation(
            operation_id=request.operation_id or "", status=OperationStatus.FAILED,
            status_message=f"The completion operation failed to start. {message}", upn=identity.upn,
            failed_hop=hop,
        )
        if hop == c.STATE_API:
            # State failed this start, yet may still take the late call (a create or LangChain's claim past
            # its timeout): ended now, its record cannot be swept later as abandoned by LangChain API. In
            # the background, so a slow State does not hold the answer past Core's own timeout.
            spawn(self._write_failure_after_state(instance_id, operation, identity.upn))
        else:
            try:
                await self._write_failure(instance_id, operation, identity.upn)
            except HopError as error:
                record_failure(error, hop=c.STATE_API)
        answer = operation.to_wire()
        answer["result"] = CompletionResponse(operation_id=operation.operation_id, user_prompt=request.user_prompt,
                                              completion=APOLOGY, errors=[message], is_error=True).model_dump()
        return answer

    async def _write_failure(self, instance_id: str, operation: LongRunningOperation, upn: str | None) -> None:
        await self._state.create(instance_id, operation.operation_id, upn)
        await self._state.update(instance_id, operation)

    async def _write_failure_after_state(self, instance_id: str, operation: LongRunningOperation,
                                         upn: str | None) -> None:
        try:
            await retrying(lambda: self._write_failure(instance_id, operation, upn), STATE_RETRY_ATTEMPTS,
                           STATE_RETRY_BACKOFF_S, "writing a failed start to State API")
        except HopError as error:
            log.warning("operation %s: its failed start could not be written to State API: %s",
                        operation.operation_id, error)

    async def status(self, instance_id: str, operation_id: str, wait_s: float) -> dict[str, Any]:
        """The operation as State API keeps it. State that cannot be read is this poll's failure (a 502 naming
        the State API), not the operation's: a 200 Failed here would end the operation in Core while its
        workflow may still complete; Core keeps it InProgress and tries again on the next poll."""
        operation = await self._state.get(instance_id, operation_id, wait_s)
        if operation is None:
            return LongRunningOperation(
                operation_id=operation_id, status=OperationStatus.FAILED,
                status_message=f"The operation was not found. The operation id was {operation_id}.",
            ).to_wire()
        annotate({c.ATTR_OPERATION_STATUS: operation["status"]})
        if operation.get("status") in (OperationStatus.COMPLETED, OperationStatus.FAILED) and isinstance(
                operation.get("result"), dict):  # an InProgress result passes through as State has it
            operation = {**operation, "result": completion_response(operation["result"], operation_id, instance_id)}
        return operation
