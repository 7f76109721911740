"""The agent workflow that runs after the 202: model turns, tool calls, progress and the final result.

Progress is written as the original does (a result document, then the status), but in the background,
off the critical path, and finished before the end is written; the final result is
written before the final status, with a deterministic id, so a poller never reads a stale answer.
While the workflow runs, a heartbeat keeps the status fresh so State API can tell a dead worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import HopError
from services.common.models import (
    CompletionResponse,
    LongRunningOperation,
    OperationStatus,
    TextContent,
    UnifiedUserIdentity,
)
from services.context_api.client import CodeSessionsClient
from services.langchain_api.chat_models import ChatModel, ModelTurn
from services.langchain_api.code_interpreter import CodeInterpreterTool, ToolResult
from services.langchain_api.models import LLMCompletionRequest
from services.state_api.client import StateClient
from telemetry import conventions as c
from telemetry.context import SpanKind, annotate, hop_span, record_failure, spawn

log = logging.getLogger("foundationallm.langchain_api")
MAX_TOOL_ROUNDS = 4
# The final writes are idempotent (deterministic result id, status PUT): retried while State API is
# unreachable or failing (a restart), each attempt its own CLIENT span; ~8 s in all.
FINAL_WRITE_ATTEMPTS = 6
FINAL_WRITE_BACKOFF_S = 0.25


@dataclass
class WorkflowContext:
    instance_id: str
    request: LLMCompletionRequest
    identity: UnifiedUserIdentity
    upn: str | None
    progress: asyncio.Task[None] | None = None  # the progress writes in flight, chained in order
    tools: dict[str, CodeInterpreterTool] = field(default_factory=dict)


class AgentWorkflow:
    def __init__(self, state: StateClient, code_sessions: CodeSessionsClient, model: ChatModel,
                 heartbeat_s: float) -> None:
        self._state, self._code_sessions, self._model = state, code_sessions, model
        self._heartbeat_s = heartbeat_s

    async def run(self, ctx: WorkflowContext) -> None:
        request = ctx.request
        attributes = {
            c.ATTR_OPERATION_ID: request.operation_id,
            c.ATTR_AGENT_NAME: request.agent.name,
            c.ATTR_CONVERSATION_ID: request.session_id,
        }
        with hop_span(c.SPAN_LANGCHAIN_WORKFLOW, attributes) as span:
            heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(ctx))
            try:
                response = await self._converse(ctx)
            except Exception as error:  # noqa: BLE001 - every failure must end the operation as Failed
                hop = error.hop if isinstance(error, HopError) else c.LANGCHAIN_API
                record_failure(error, span, hop)
                for tool in ctx.tools.values():  # nothing the failed operation copied out of a session stays
                    await tool.discard()
                self._release_sessions(ctx)
                message = str(error) if isinstance(error, HopError) else f"{c.LANGCHAIN_API}: {error}"
                response = CompletionResponse(
                    operation_id=request.operation_id, user_prompt=request.user_prompt, errors=[message],
                    is_error=True,
                )
                await self._finish(ctx, heartbeat, response, OperationStatus.FAILED, message, hop)
                return
            self._release_sessions(ctx)
            await self._finish(ctx, heartbeat, response, OperationStatus.COMPLETED,
                               "Operation completed successfully.", None)

    @staticmethod
    def _release_sessions(ctx: WorkflowContext) -> None:
        """The tools are done with their sessions: each is released in the background, a child of the
        workflow's span, while the answer is written (the answer never waits for a pool)."""
        for tool in ctx.tools.values():
            spawn(tool.release())

    async def _converse(self, ctx: WorkflowContext) -> CompletionResponse:
        request = ctx.request
        self._progress(ctx, "Running agent workflow.")
        tools = ctx.tools = self._tools(ctx)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": f"You are the FoundationaLLM agent {request.agent.name}."},
            {"role": "user", "content": request.user_prompt},
        ]
        prompt_tokens = completion_tokens = 0
        analysis: list[dict[str, Any]] = []
        artifacts: list[dict[str, Any]] = []
        images: list[dict[str, Any]] = []
        for _ in range(MAX_TOOL_ROUNDS):
            turn = await self._chat(messages, [tool.definition for tool in tools.values()])
            prompt_tokens += turn.prompt_tokens
            completion_tokens += turn.completion_tokens
            if not turn.tool_calls:
                break
            self._progress(ctx, "Running agent tools.")
            messages.append({"role": "assistant", "content": turn.text, "tool_calls": [
                {"id": call.id, "type": "function",
                 "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}
                for call in turn.tool_calls
            ]})
            for call in turn.tool_calls:
                result = await self._call_tool(tools, call.name, call.id, call.arguments)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result.text})
                analysis.append({"tool_name": call.name, "tool_input": call.arguments.get("code", ""),
                                 "tool_output": result.text,
                                 "agent_capability_category": "FoundationaLLM.KnowledgeManagement"})
                artifacts.extend(result.artifacts)
                images.extend(result.images)
        else:
            turn = ModelTurn(text="The agent stopped after too many tool calls.")
        await self._progress_written(ctx)  # a failed progress write fails the operation, as in line
        content = TextContent(text=turn.text, value=turn.text)
        return CompletionResponse(
            id=f"{request.operation_id}-final",
            operation_id=request.operation_id,
            user_prompt=request.user_prompt,
            completion=turn.text,
            content=[content.model_dump(), *images],  # image results as the data plane returns them
            analysis_results=analysis,
            content_artifacts=artifacts,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )

    def _tools(self, ctx: WorkflowContext) -> dict[str, CodeInterpreterTool]:
        tools: dict[str, CodeInterpreterTool] = {}
        for tool in ctx.request.agent.tools:
            parameters = ctx.request.objects.get(tool.get("name", ""), {})
            if tool.get("name") == CodeInterpreterTool.name and parameters.get("code_session_id"):
                tools[CodeInterpreterTool.name] = CodeInterpreterTool(
                    self._code_sessions, ctx.instance_id, parameters, ctx.identity
                )
        return tools

    async def _chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelTurn:
        attributes = {c.ATTR_GEN_AI_OPERATION: "chat", c.ATTR_GEN_AI_PROVIDER: self._model.provider,
                      c.ATTR_GEN_AI_MODEL: self._model.name}
        with hop_span(f"{c.SPAN_CHAT_PREFIX} {self._model.name}", attributes, kind=SpanKind.CLIENT) as span:
            turn = await self._model.complete(messages, tools)
            annotate({"gen_ai.usage.input_tokens": turn.prompt_tokens,
                      "gen_ai.usage.output_tokens": turn.completion_tokens}, span)
            return turn

    async def _call_tool(self, tools: dict[str, CodeInterpreterTool], name: str, call_id: str,
                         arguments: dict[str, Any]) -> ToolResult:
        attributes = {
            c.ATTR_GEN_AI_OPERATION: "execute_tool",
            c.ATTR_GEN_AI_TOOL_NAME: name,
            c.ATTR_GEN_AI_TOOL_CALL_ID: call_id,
            c.ATTR_GEN_AI_TOOL_TYPE: "function",
            c.ATTR_TOOL_NAME: name,
        }
        with hop_span(c.execute_tool_span(name), attributes):
            tool = tools.get(name)
            if tool is None:
                return ToolResult(f"The agent has no tool named {name!r}.", "Failed", [])
            return await tool.run(arguments)

    def _progress(self, ctx: WorkflowContext, message: str) -> None:
        """Progress goes to State API in the background, each write after the one before, off the
        critical path; the final result waits for it, so progress never lands after the end."""
        ctx.progress = asyncio.get_running_loop().create_task(self._write_progress(ctx, message, ctx.progress))

    @staticmethod
    async def _progress_written(ctx: WorkflowContext) -> None:
        if ctx.progress is not None:
            await ctx.progress

    async def _write_progress(self, ctx: WorkflowContext, message: str, before: asyncio.Task[None] | None) -> None:
        if before is not None:
            await before
        operation_id = ctx.request.operation_id
        await self._state.add_result(ctx.instance_id, operation_id, {
            "id": None, "operation_id": operation_id, "completion": message.replace(".", "..."),
        })
        await self._write_status(ctx, OperationStatus.IN_PROGRESS, message)

    async def _write_status(self, ctx: WorkflowContext, status: OperationStatus, message: str,
                            failed_hop: str | None = None) -> None:
        operation = LongRunningOperation(operation_id=ctx.request.operation_id, status=status,
                                         status_message=message, upn=ctx.upn, failed_hop=failed_hop)
        await self._state.update(ctx.instance_id, operation)

    async def _heartbeat(self, ctx: WorkflowContext) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            with contextlib.suppress(HopError):
                await self._write_status(ctx, OperationStatus.IN_PROGRESS, "The agent workflow is running.")

    async def _finish(self, ctx: WorkflowContext, heartbeat: asyncio.Task[None], response: CompletionResponse,
                      status: OperationStatus, message: str, failed_hop: str | None) -> None:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        with contextlib.suppress(Exception):  # a failed progress write was reported by _converse
            await self._progress_written(ctx)
        attributes = {c.ATTR_OPERATION_ID: ctx.request.operation_id, c.ATTR_OPERATION_STATUS: status.value}
        with hop_span(c.SPAN_LANGCHAIN_WRITE_RESULT, attributes):
            # The result first, then the status: a poller that sees the end also sees the answer.
            document = response.model_dump(mode="json")
            await _retrying(lambda: self._state.add_result(ctx.instance_id, ctx.request.operation_id, document))
            await _retrying(lambda: self._write_status(ctx, status, message, failed_hop))


async def _retrying(write: Callable[[], Awaitable[Any]]) -> Any:
    for attempt in range(FINAL_WRITE_ATTEMPTS):
        try:
            return await write()
        except HopError as error:
            refused = error.status_code is not None and error.status_code < 500  # a 4xx will not change
            if refused or attempt == FINAL_WRITE_ATTEMPTS - 1:
                raise
            log.warning("a final write failed (attempt %d), retrying: %s", attempt + 1, error)
            await asyncio.sleep(FINAL_WRITE_BACKOFF_S * 2**attempt)
