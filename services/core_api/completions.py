"""CoreService: start a completion operation through Gatekeeper or Orchestration, and answer its polls.

Core answers 202 with a LongRunningOperation whose ``result`` is the agent Message; the status polls
are their own traces and carry a span link to the operation's trace. An operation that ended is kept
in Core's context, so later polls do not go downstream.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Span

from services.common.agents import Agent
from services.common.errors import HopError, ServiceError
from services.common.models import (
    CompletionRequest,
    LongRunningOperation,
    OperationStatus,
    UnifiedUserIdentity,
)
from services.core_api.activities import start_completion_tags
from services.core_api.messages import agent_message
from services.core_api.store import OperationContext, OperationContexts
from services.orchestration_api.client import AsyncCompletionsClient
from telemetry import conventions as c
from telemetry.context import (
    activity,
    annotate,
    current_traceparent,
    hop_span,
    link_to,
    operation_baggage,
    trace_id_of,
)

OPERATION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
MAX_OPERATION_S = 30 * 60
START_FAILED = "An error occured while attempting to start the completion operation."  # sic, as the original
POLL_FAILED = "An error occured while attempting to get the completion operation status."


class CoreService:
    def __init__(self, instance_id: str, agents: dict[str, Agent], contexts: OperationContexts,
                 downstream: dict[str, AsyncCompletionsClient], gatekeeper: str, base_url: str,
                 poll_failure_limit_s: float = 20.0) -> None:
        self._instance_id = instance_id
        self._poll_failure_limit_s = poll_failure_limit_s
        self._base_url = base_url  # what {{fllm_base_url}} in file URLs becomes: Core's own URL
        self._agents, self._contexts, self._downstream = agents, contexts, downstream
        self._gatekeeper = gatekeeper
        meter = metrics.get_meter("fllm-callstack.core_api")
        self._durations = meter.create_histogram(
            c.METRIC_OPERATION_DURATION, unit="s", description="From submission to the end Core first saw"
        )
        self._operations = meter.create_counter(
            c.METRIC_OPERATIONS, unit="{operation}", description="Ended operations by status and failed hop"
        )

    def _route(self, agent: Agent) -> str:
        settings = agent.gatekeeper_settings
        if not settings.use_system_setting:
            return c.GATEKEEPER_API if settings.options else c.ORCHESTRATION_API
        return c.GATEKEEPER_API if self._gatekeeper == "required" else c.ORCHESTRATION_API

    async def start(self, request: CompletionRequest, identity: UnifiedUserIdentity) -> dict[str, Any]:
        operation_id = (request.operation_id or str(uuid.uuid4())).lower()
        if not OPERATION_ID.fullmatch(operation_id):
            raise ServiceError(400, "operation_id must be 1-128 of [A-Za-z0-9._-].", "operation_id")
        server_span, traceparent = trace.get_current_span(), current_traceparent()  # the link target of polls
        tags = start_completion_tags(self._instance_id, operation_id, request.session_id, identity)
        with activity(c.SPAN_FLLM_CORE_START_COMPLETION, tags) as span:
            return await self._start(request, identity, operation_id, traceparent, (server_span, span))

    async def _start(self, request: CompletionRequest, identity: UnifiedUserIdentity, operation_id: str,
                     traceparent: str, spans: tuple[Span, Span]) -> dict[str, Any]:
        agent = self._agents.get(request.agent_name)
        if agent is None:
            raise ServiceError(404, f"The agent '{request.agent_name}' was not found.", "agent_name")
        if not request.session_id:
            raise ServiceError(400, "session_id is required.", "session_id")
        route = self._route(agent)
        for span in spans:  # ours on the server span (as before) and on FoundationaLLM's activity
            annotate({c.ATTR_OPERATION_ID: operation_id, c.ATTR_AGENT_NAME: agent.name,
                      c.ATTR_CONVERSATION_ID: request.session_id, c.ATTR_USER_ID: identity.user_id,
                      c.ATTR_GATEKEEPER_DECISION: "required" if route == c.GATEKEEPER_API else "bypassed"}, span)
        ctx, created = await self._contexts.insert(OperationContext(
            id=operation_id, instance_id=self._instance_id, agent_name=agent.name, session_id=request.session_id,
            upn=identity.upn, route=route, start_time=time.time(), traceparent=traceparent,
        ))
        if not created:  # a retried submission: report, never start twice
            return await self.status(operation_id, identity)
        downstream_request = request.model_copy(update={"operation_id": operation_id, "long_running_operation": True})
        with operation_baggage(self._instance_id, operation_id):
            try:
                operation = await self._downstream[route].start(
                    self._instance_id, downstream_request.model_dump(mode="json"), identity
                )
            except HopError as error:
                operation = LongRunningOperation(
                    operation_id=operation_id, status=OperationStatus.FAILED, failed_hop=error.hop,
                    status_message=f"{START_FAILED} {error}",
                ).to_wire()
        return await self._answer(ctx, operation, poll=False)

    async def status(self, operation_id: str, identity: UnifiedUserIdentity, wait_s: float = 0.0) -> dict[str, Any]:
        ctx = await self._contexts.get(operation_id)
        if ctx is None or not _same_user(ctx.upn, identity.upn):  # another user's operation is not found
            raise ServiceError(404, f"The operation '{operation_id}' was not found.", "operationId")
        annotate({c.ATTR_OPERATION_ID: operation_id, c.ATTR_AGENT_NAME: ctx.agent_name})
        # The poll is its own trace; the link leads to the operation's. A status that cannot be read is
        # answered InProgress and marks this span, not the route's server span, which the alerts count.
        with hop_span(c.SPAN_CORE_POLL, {c.ATTR_OPERATION_ID: operation_id}, links=link_to(ctx.traceparent)):
            if ctx.final is not None:
                return ctx.final
            if time.time() - ctx.start_time > MAX_OPERATION_S:
                operation = LongRunningOperation(
                    operation_id=operation_id, status=OperationStatus.FAILED, failed_hop=ctx.route,
                    status_message="The completion operation has exceeded the maximum time allowed.",
                ).to_wire()
                return await self._answer(ctx, operation)
            try:
                operation = await self._downstream[ctx.route].status(self._instance_id, operation_id, identity, wait_s)
            except HopError as error:
                return await self._failed_poll(ctx, error)
            if ctx.poll_failed_since is not None:  # the status can be read again
                await self._contexts.poll_succeeded(operation_id)
            return await self._answer(ctx, operation)

    async def _failed_poll(self, ctx: OperationContext, error: HopError) -> dict[str, Any]:
        """A poll that could not read the status (a hop down or restarting) does not end the operation: it
        is answered InProgress, so the client polls again, until the status has been unreadable for
        ``poll_failure_limit_s`` (counted across Core replicas); then it ends Failed, naming that hop."""
        now = time.time()
        unreadable_s = now - await self._contexts.poll_failed(ctx.id, now)
        message = f"{POLL_FAILED} {error}"
        if unreadable_s < self._poll_failure_limit_s:
            return self._shape(ctx, LongRunningOperation(
                operation_id=ctx.id, status=OperationStatus.IN_PROGRESS,
                status_message=f"{message} Trying again on the next poll.").to_wire())
        return await self._answer(ctx, LongRunningOperation(
            operation_id=ctx.id, status=OperationStatus.FAILED, failed_hop=error.hop,
            status_message=f"{message} The status could not be read for {unreadable_s:.0f} s.").to_wire())

    def _shape(self, ctx: OperationContext, operation: dict[str, Any], poll: bool = True) -> dict[str, Any]:
        answer = LongRunningOperation.model_validate({**operation, "operation_id": ctx.id}).to_wire()
        answer["trace_id"] = trace_id_of(ctx.traceparent) or answer.get("trace_id")
        status = OperationStatus(answer["status"])
        annotate({c.ATTR_OPERATION_STATUS: status.value, c.ATTR_FAILED_HOP: answer.get("failed_hop")})
        if poll:  # ProcessLongRunningOperation: every poll answers a Message
            answer["result"] = agent_message(operation, ctx, self._base_url)
            result = operation.get("result")
            if isinstance(result, dict) and isinstance(result.get("prompt_tokens"), int):
                answer["prompt_tokens"] = result["prompt_tokens"]  # as the original, from the completion
        elif status is OperationStatus.IN_PROGRESS:  # a started operation is answered unchanged
            answer["result"] = None
        else:  # a start that ended at once: Failed as its status message, Completed as its completion
            answer["result"] = agent_message(operation, ctx, self._base_url,
                                             use_result=status is OperationStatus.COMPLETED)
        return answer

    async def _answer(self, ctx: OperationContext, operation: dict[str, Any], poll: bool = True) -> dict[str, Any]:
        answer = self._shape(ctx, operation, poll)
        if OperationStatus(answer["status"]).is_terminal and await self._contexts.finish(ctx.id, answer):
            self._measure(ctx, answer)
        return answer

    def _measure(self, ctx: OperationContext, answer: dict[str, Any]) -> None:
        """Once per operation, when Core first sees its end: the chain's end-to-end outcome."""
        attributes = {c.METRIC_ATTR_AGENT: ctx.agent_name, c.METRIC_ATTR_STATUS: answer["status"]}
        self._durations.record(max(0.0, time.time() - ctx.start_time), attributes)
        self._operations.add(1, {**attributes, c.METRIC_ATTR_FAILED_HOP: answer.get("failed_hop") or "none"})


def _same_user(owner: str | None, caller: str | None) -> bool:
    return owner is None or (caller is not None and owner.casefold() == caller.casefold())
