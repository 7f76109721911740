"""The agent workflow that runs after the 202: model turns, tool calls, progress and the final result.

Progress is written as the original's steps are (a result document and a status), but each step in one
State API write (the PUT carries its result: one transaction), in the background, off the critical path,
and finished before the end is written; the end is one write too, the final result (a deterministic id)
with the final status, so a poller never sees the end with a stale answer.
While the workflow runs, a heartbeat keeps the status fresh so State API can tell a dead worker.

Spans, in the original's places (its LangChain activities, beside the GenAI conventions' spans):
  langchainapi_create_completion_response      SERVER, this background task
    langchain_prepare_plugin_workflow          SERVER, the tools
    langchain_invoke_plugin_workflow           SERVER
      {workflow}_workflow
        {workflow}_workflow_llm_call > chat {model}
        {workflow}_tool_call > execute_tool code_interpreter     one per tool call
        {workflow}_final_llm_call > chat {model}                 after the tool results
        {workflow}_get_conversation_name > chat {model}          new conversations only
    langchain.write_result                     ours: the final result and status, one write
Unlike the original's single round, the model may ask for tools again after their results (up to
MAX_MODEL_CALLS calls): each later call is a ``{workflow}_final_llm_call``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Status, StatusCode

from services.common.errors import HopError
from services.common.hop_client import retrying
from services.common.models import (
    CompletionResponse,
    LongRunningOperation,
    OperationStatus,
    UnifiedUserIdentity,
)
from services.context_api.client import CodeSessionsClient
from services.langchain_api.activities import plugin_tags, request_tags, workflow_span
from services.langchain_api.chat_models import TITLE_INSTRUCTION, ChatModel, ModelTurn, ToolCall
from services.langchain_api.code_interpreter import CodeInterpreterTool, ToolResult
from services.langchain_api.content import (
    FAILURE_RESPONSE,
    answer_content,
    progress_document,
    workflow_execution_artifact,
)
from services.langchain_api.models import LLMCompletionRequest
from services.state_api.client import StateClient
from telemetry import conventions as c
from telemetry.context import SpanKind, activity, annotate, hop_span, record_failure, spawn

log = logging.getLogger("foundationallm.langchain_api")
MAX_MODEL_CALLS = 4
# The final write is idempotent (deterministic result id; once ended, a repeat is refused, 409): retried
# while State API is unreachable or failing (a restart), each attempt its own CLIENT span; ~8 s in all.
FINAL_WRITE_ATTEMPTS = 6
FINAL_WRITE_BACKOFF_S = 0.25


@dataclass
class WorkflowContext:
    instance_id: str
    request: LLMCompletionRequest
    identity: UnifiedUserIdentity
    upn: str | None
    progress: asyncio.Task[None] | None = None  # the progress writes in flight, chained in order
    progress_step: int = 0  # the latest step queued (or the end): an earlier step not yet begun is superseded
    tools: dict[str, CodeInterpreterTool] = field(default_factory=dict)


class AgentWorkflow:
    def __init__(self, state: StateClient, code_sessions: CodeSessionsClient, model: ChatModel,
                 heartbeat_s: float) -> None:
        self._state, self._code_sessions, self._model = state, code_sessions, model
        self._heartbeat_s = heartbeat_s

    async def run(self, ctx: WorkflowContext) -> None:
        """The background task (the original's langchainapi_create_completion_response): the workflow,
        then the result and the status written."""
        request = ctx.request
        attributes = {**request_tags(ctx.instance_id, request.operation_id, ctx.identity),
                      c.ATTR_AGENT_NAME: request.agent.name, c.ATTR_CONVERSATION_ID: request.session_id}
        with activity(c.SPAN_LANGCHAIN_WORKFLOW, attributes) as span:
            heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(ctx))
            try:
                response = await self._invoke(ctx)
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

    async def _invoke(self, ctx: WorkflowContext) -> CompletionResponse:
        request = ctx.request
        tags = plugin_tags(request)
        with activity(c.SPAN_FLLM_LANGCHAIN_PREPARE, tags):
            ctx.tools = self._tools(ctx)
            messages = _messages(request)
        with activity(c.SPAN_FLLM_LANGCHAIN_INVOKE, tags):
            response = await self._converse(ctx, messages)
            response.user_prompt_rewrite = request.user_prompt_rewrite
            return response

    async def _converse(self, ctx: WorkflowContext, messages: list[dict[str, Any]]) -> CompletionResponse:
        """The function-calling workflow: the model call with the tools offered, the tool calls it asks
        for, the model call on their results, then the answer as the original builds it."""
        request, tools = ctx.request, ctx.tools
        workflow = request.agent.workflow.name
        prompt = request.user_prompt_rewrite or request.user_prompt
        definitions = [tool.definition for tool in tools.values()]
        with hop_span(workflow_span(c.SPAN_FLLM_WORKFLOW, workflow)):
            self._progress(ctx, "Running agent workflow.")
            started = time.perf_counter()
            with hop_span(workflow_span(c.SPAN_FLLM_WORKFLOW_LLM_CALL, workflow)):
                turn = await self._chat(messages, definitions)
            router_seconds = time.perf_counter() - started
            first_text = turn.text
            usage = [turn.prompt_tokens, turn.completion_tokens]
            artifacts: list[dict[str, Any]] = []
            images: list[dict[str, Any]] = []
            calls = 1
            while turn.tool_calls:
                if calls == MAX_MODEL_CALLS:
                    turn = ModelTurn(text="The agent stopped after too many tool calls.")
                    break
                self._progress(ctx, "Running agent tools.")
                messages.append({"role": "assistant", "content": turn.text, "tool_calls": [
                    {"id": call.id, "type": "function",
                     "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}
                    for call in turn.tool_calls
                ]})
                for call in turn.tool_calls:
                    result = await self._call_tool(workflow, call, tools, prompt)
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": result.text})
                    artifacts.extend(result.artifacts)
                    images.extend(result.images)
                with hop_span(workflow_span(c.SPAN_FLLM_FINAL_LLM_CALL, workflow)):
                    self._progress(ctx, "Preparing final response.")
                    turn = await self._chat(messages, definitions)
                calls += 1
                usage = [usage[0] + turn.prompt_tokens, usage[1] + turn.completion_tokens]
            await self._progress_written(ctx)  # a failed progress write fails the operation, as in line
            text = turn.text or first_text or FAILURE_RESPONSE
            artifacts.append(workflow_execution_artifact(workflow, prompt, usage[0], usage[1], router_seconds))
            response = CompletionResponse(
                id=f"{request.operation_id}-final",
                operation_id=request.operation_id,
                user_prompt=prompt,
                full_prompt=messages[0]["content"],
                completion=text,  # the original leaves it empty; Core's Message text is read from it here
                content=[*answer_content(text, artifacts), *images],  # image results as the data plane has them
                content_artifacts=artifacts,
                prompt_tokens=usage[0],
                completion_tokens=usage[1],
            )
            if request.is_new_conversation:
                name, prompt_tokens, completion_tokens = await self._conversation_name(workflow, prompt, text)
                response.conversation_name = name
                response.prompt_tokens += prompt_tokens
                response.completion_tokens += completion_tokens
            response.total_tokens = response.prompt_tokens + response.completion_tokens
            return response

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

    async def _call_tool(self, workflow: str, call: ToolCall, tools: dict[str, CodeInterpreterTool],
                         prompt: str) -> ToolResult:
        """``{workflow}_tool_call`` (the original's) around ``execute_tool {tool}`` (the GenAI conventions')."""
        tags = {c.TAG_LC_TOOL_CALL_ID: call.id, c.TAG_LC_TOOL_CALL_FUNCTION: call.name}
        attributes = {
            c.ATTR_GEN_AI_OPERATION: "execute_tool",
            c.ATTR_GEN_AI_TOOL_NAME: call.name,
            c.ATTR_GEN_AI_TOOL_CALL_ID: call.id,
            c.ATTR_GEN_AI_TOOL_TYPE: "function",
            c.ATTR_TOOL_NAME: call.name,
        }
        with hop_span(workflow_span(c.SPAN_FLLM_TOOL_CALL, workflow), tags), \
                hop_span(c.execute_tool_span(call.name), attributes):
            tool = tools.get(call.name)
            if tool is None:
                return ToolResult(f"The agent has no tool named {call.name!r}.", "Failed", [])
            return await tool.run(call.arguments, prompt)

    async def _conversation_name(self, workflow: str, prompt: str, answer: str) -> tuple[str | None, int, int]:
        """A new conversation's name, as the original asks its model for one; a failure leaves it unnamed."""
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer},
                    {"role": "user", "content": TITLE_INSTRUCTION}]
        with hop_span(workflow_span(c.SPAN_FLLM_CONVERSATION_NAME, workflow)) as span:
            try:
                turn = await self._chat(messages, [])
            except Exception as error:  # noqa: BLE001 - the answer stands without a name, as in the original
                log.warning("a conversation name could not be generated: %s", error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:512]))
                return None, 0, 0
        return turn.text.strip().strip('"') or None, turn.prompt_tokens, turn.completion_tokens

    def _progress(self, ctx: WorkflowContext, message: str) -> None:
        """Progress goes to State API in the background, each write after the one before, off the
        critical path; the final result waits for it, so progress never lands after the end. A step whose
        write has not begun when the next step (or the end) comes is superseded and not written: a poller
        reads only the latest status, and this one would be replaced before anyone could read it."""
        ctx.progress_step += 1
        ctx.progress = asyncio.get_running_loop().create_task(
            self._write_progress(ctx, message, ctx.progress, ctx.progress_step))

    @staticmethod
    async def _progress_written(ctx: WorkflowContext) -> None:
        """The end is next: the progress writes begun are waited for, any not begun is superseded."""
        ctx.progress_step += 1
        if ctx.progress is not None:
            await ctx.progress

    async def _write_progress(self, ctx: WorkflowContext, message: str, before: asyncio.Task[None] | None,
                              step: int) -> None:
        if before is not None:
            await before
        if step != ctx.progress_step:
            return
        operation_id = ctx.request.operation_id
        await self._write_status(ctx, OperationStatus.IN_PROGRESS, message,
                                 result=progress_document(operation_id, message.replace(".", "...")))

    async def _write_status(self, ctx: WorkflowContext, status: OperationStatus, message: str,
                            failed_hop: str | None = None, result: dict[str, Any] | None = None) -> None:
        """One PUT: the status and, when given, its result document, stored together by State API."""
        operation = LongRunningOperation(operation_id=ctx.request.operation_id, status=status,
                                         status_message=message, upn=ctx.upn, failed_hop=failed_hop, result=result)
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
            # The answer and the end in one write (one transaction in State): a poller that sees the end
            # also sees the answer.
            document = response.model_dump(mode="json")
            await retrying(lambda: self._write_status(ctx, status, message, failed_hop, result=document),
                           FINAL_WRITE_ATTEMPTS, FINAL_WRITE_BACKOFF_S, "a final write")


def _messages(request: LLMCompletionRequest) -> list[dict[str, Any]]:
    """The system prompt, the conversation so far (as the original: the user's turns and the agent's),
    then the prompt (its rewrite when there is one)."""
    history = [
        {"role": "user" if item.get("sender") == "User" else "assistant", "content": str(item["text"])}
        for item in request.message_history if isinstance(item.get("text"), str)
    ]
    return [
        {"role": "system", "content": f"You are the FoundationaLLM agent {request.agent.name}."},
        *history,
        {"role": "user", "content": request.user_prompt_rewrite or request.user_prompt},
    ]
