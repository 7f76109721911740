"""LangChain API as the original's: its activities as spans in the original's places with its tag names,
and its answer (content items for generated files, artifacts, progress, conversation name) as the
function-calling workflow builds it.

The LangChain app runs in this process (its spans captured in memory) against a real chain's State API,
Context API and Dynamic Sessions; a second test asks the whole chain and reads its trace over OTLP."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.common.agents import DEFAULT_WORKFLOW_NAME
from services.common.models import LOCAL_DEVELOPER, LongRunningOperation
from services.common.settings import API_KEY_ENV, DEFAULT_INSTANCE_ID, Settings
from services.context_api.client import CodeSessionsClient
from services.langchain_api import create_app
from services.langchain_api.chat_models import LocalDeterministicModel
from services.langchain_api.workflow import AgentWorkflow
from services.state_api.client import StateClient
from telemetry import conventions as c
from telemetry.context import drain_background
from tests.chain.conftest import LiveChain
from tests.chain.spans import ancestors, one
from tests.langchain import original_models as original

pytestmark = pytest.mark.chain

# A 1x1 PNG and a CSV, written without any library: the code's files, copied out by the Context API.
FILES_CODE = (
    "import struct, zlib\n"
    "def chunk(kind, data):\n"
    "    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))\n"
    "png = b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 1, 1, 8, 2, 0, 0, 0))"
    " + chunk(b'IDAT', zlib.compress(b'\\x00\\xff\\x00\\x00')) + chunk(b'IEND', b'')\n"
    "open('/mnt/data/plot.png', 'wb').write(png)\n"
    "open('/mnt/data/report.csv', 'w').write('a,b\\n1,2\\n')\n"
    "print('saved both')\n"
)
FILES_PROMPT = f"Make a chart and a report:\n```python\n{FILES_CODE}```"
WORKFLOW = DEFAULT_WORKFLOW_NAME
ORIGINAL_NAMES = {
    c.SPAN_FLLM_LANGCHAIN_SUBMIT, c.SPAN_FLLM_LANGCHAIN_CREATE_RESPONSE, c.SPAN_FLLM_LANGCHAIN_PREPARE,
    c.SPAN_FLLM_LANGCHAIN_INVOKE, *(template.format(workflow=WORKFLOW) for template in (
        c.SPAN_FLLM_WORKFLOW, c.SPAN_FLLM_WORKFLOW_LLM_CALL, c.SPAN_FLLM_TOOL_CALL, c.SPAN_FLLM_FINAL_LLM_CALL,
        c.SPAN_FLLM_CONVERSATION_NAME)),
}


class ThinkingModel(LocalDeterministicModel):
    """The local model, taking a moment per call as a real one does: each progress step's write begins
    before the next step comes (an instant model's steps are superseded, see the test below)."""

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
        await asyncio.sleep(0.05)
        return await super().complete(messages, tools)


class RecordingStateClient(StateClient):
    """The real State API client, noting each status and result LangChain writes, in order, and its calls."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.statuses: list[tuple[str, str | None]] = []
        self.results: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.seen: list[dict[str, Any]] = []  # the operation as a poller read it, each read

    async def claim(self, instance_id: str, operation: LongRunningOperation, claimant: str) -> dict[str, Any]:
        self.calls.append("claim")
        return await super().claim(instance_id, operation, claimant)

    async def update(self, instance_id: str, operation: LongRunningOperation) -> dict[str, Any]:
        self.calls.append("update")
        self.statuses.append((operation.status.value, operation.status_message))
        if operation.result is not None:
            self.results.append(operation.result)
        return await super().update(instance_id, operation)


def chain_settings(live: LiveChain) -> Settings:
    keys = {package: live.chain.secrets_env[API_KEY_ENV[package]] for package in ("state_api", "context_api")}
    return Settings(urls={package: live.chain.url(package) for package in keys},
                    api_keys={**keys, "langchain_api": "test-key"})


async def run_in_process(live: LiveChain, operation_id: str, model: LocalDeterministicModel | None = None,
                         ) -> tuple[dict[str, Any], RecordingStateClient]:
    """One completion through the in-process LangChain app, as Orchestration starts it: the operation and
    the code session made first, then the 202, then the background workflow to its end."""
    settings = chain_settings(live)
    app = create_app(settings)
    state, sessions = RecordingStateClient(settings), CodeSessionsClient(settings)
    app.state.state_client, app.state.code_sessions = state, sessions
    app.state.workflow = AgentWorkflow(state, sessions, model or ThinkingModel(), heartbeat_s=60)
    try:
        await state.create(DEFAULT_INSTANCE_ID, operation_id, LOCAL_DEVELOPER.upn)
        session = await sessions.create(DEFAULT_INSTANCE_ID, {
            "agent_name": "code-interpreter", "conversation_id": f"conv-{operation_id}", "context": "code_interpreter",
            "endpoint_provider": "AzureContainerAppsCodeInterpreter", "language": "Python"}, LOCAL_DEVELOPER)
        body = {
            "operation_id": operation_id, "user_prompt": FILES_PROMPT, "session_id": f"conv-{operation_id}",
            "is_new_conversation": True,
            "agent": {"type": "generic-agent", "name": "code-interpreter", "workflow": {"name": WORKFLOW},
                      "tools": [{"name": "code_interpreter"}]},
            "objects": {"code_interpreter": {"code_session_id": session["session_id"],
                                             "code_session_endpoint_provider": "AzureContainerAppsCodeInterpreter"}},
        }
        headers = {"X-API-KEY": "test-key", "X-USER-IDENTITY": LOCAL_DEVELOPER.model_dump_json()}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://langchain") as client:
            started = await client.post(f"/instances/{DEFAULT_INSTANCE_ID}/async-completions", json=body,
                                        headers=headers)
        assert started.status_code == 202, started.text
        assert set(started.json()) >= original.LONG_RUNNING_OPERATION
        assert started.json()["status"] in original.OPERATION_STATUSES
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # polled as Orchestration polls, every read kept
            state.seen.append(await state.get(DEFAULT_INSTANCE_ID, operation_id) or {})
            if state.seen[-1].get("status") != "InProgress":
                break
            await asyncio.sleep(0.002)
        await drain_background()  # the session release
        return started.json(), state
    finally:
        await state.aclose()
        await sessions.aclose()


def children(span: ReadableSpan, spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == span.context.span_id]


def the(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.name == name]
    return span


def test_the_originals_activities_nest_in_its_places_with_its_tags(live: LiveChain,
                                                                   exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    operation_id = f"op-fidelity-{secrets.token_hex(4)}"
    asyncio.run(run_in_process(live, operation_id))
    server = next(s for s in exporter.get_finished_spans()
                  if s.name == f"POST {c.ROUTE_ASYNC_COMPLETIONS}" and s.kind == SpanKind.SERVER
                  and s.attributes.get(c.ATTR_OPERATION_ID) == operation_id)
    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == server.context.trace_id]
    name = lambda template: template.format(workflow=WORKFLOW)  # noqa: E731

    submit = the(spans, c.SPAN_FLLM_LANGCHAIN_SUBMIT)
    create = the(spans, c.SPAN_FLLM_LANGCHAIN_CREATE_RESPONSE)
    prepare, invoke = the(spans, c.SPAN_FLLM_LANGCHAIN_PREPARE), the(spans, c.SPAN_FLLM_LANGCHAIN_INVOKE)
    workflow = the(spans, name(c.SPAN_FLLM_WORKFLOW))
    assert submit.parent.span_id == server.context.span_id  # type: ignore[union-attr]
    assert create.parent.span_id == submit.context.span_id  # type: ignore[union-attr]
    assert create.end_time > server.end_time  # the background task outlives the 202
    assert {s.name for s in children(create, spans)} >= {prepare.name, invoke.name, c.SPAN_LANGCHAIN_WRITE_RESULT}
    assert workflow.parent.span_id == invoke.context.span_id  # type: ignore[union-attr]
    for span in (submit, create, prepare, invoke):
        assert span.kind == SpanKind.SERVER and span.attributes[c.TAG_LC_OPERATION_ID] == operation_id
        assert span.attributes[c.ATTR_OPERATION_ID] == operation_id
    for span in (submit, create):
        assert span.attributes[c.TAG_LC_INSTANCE_ID] == DEFAULT_INSTANCE_ID == span.attributes[c.ATTR_INSTANCE_ID]
        assert span.attributes[c.ATTR_USER_ID] == LOCAL_DEVELOPER.user_id
    for span in (prepare, invoke):
        assert span.attributes[c.TAG_LC_AGENT_NAME] == "code-interpreter"
        assert span.attributes[c.TAG_LC_CONVERSATION_ID] == f"conv-{operation_id}"

    # Each model call: the original's span around the GenAI conventions' chat span (CLIENT), one each.
    steps = [s for s in children(workflow, spans) if s.name.startswith(f"{WORKFLOW}_")]  # besides State writes
    assert [s.name for s in sorted(steps, key=lambda s: s.start_time)] == [
        name(c.SPAN_FLLM_WORKFLOW_LLM_CALL), name(c.SPAN_FLLM_TOOL_CALL), name(c.SPAN_FLLM_FINAL_LLM_CALL),
        name(c.SPAN_FLLM_CONVERSATION_NAME)]
    for step in steps:
        if step.name != name(c.SPAN_FLLM_TOOL_CALL):
            [chat] = [s for s in children(step, spans) if s.name.startswith(f"{c.SPAN_CHAT_PREFIX} ")]
            assert chat.kind == SpanKind.CLIENT and chat.attributes[c.ATTR_GEN_AI_OPERATION] == "chat"
    # The tool call: the original's tags on {workflow}_tool_call, exactly one execute_tool under it.
    tool_call = the(spans, name(c.SPAN_FLLM_TOOL_CALL))
    [execute] = [s for s in spans if s.attributes.get(c.ATTR_GEN_AI_OPERATION) == "execute_tool"]
    assert execute.name == c.SPAN_LANGCHAIN_TOOL_CALL and execute.parent.span_id == tool_call.context.span_id  # type: ignore[union-attr]
    assert tool_call.attributes[c.TAG_LC_TOOL_CALL_ID] == execute.attributes[c.ATTR_GEN_AI_TOOL_CALL_ID]
    assert tool_call.attributes[c.TAG_LC_TOOL_CALL_FUNCTION] == "code_interpreter"
    # The tool makes no model call of its own (it is handed code): no {tool}_initial_llm_call.
    assert not [s for s in spans if s.name.endswith("_initial_llm_call")]
    # Nothing beyond these: no span of the original's vocabulary twice, none of the names this one replaced.
    assert sorted(s.name for s in spans if s.name in ORIGINAL_NAMES) == sorted(ORIGINAL_NAMES)
    assert not [s for s in spans if s.name in (c.SPAN_LANGCHAIN_WORKFLOW_BEFORE, c.SPAN_LANGCHAIN_TOOL_CALL_BEFORE)]
    # Identity: ids only, never the identity JSON the original puts in user_identity.
    attributes = json.dumps([dict(s.attributes or {}) for s in spans])
    assert "user_identity" not in attributes and LOCAL_DEVELOPER.upn not in attributes  # type: ignore[operator]


def test_the_answer_is_built_as_the_function_calling_workflow_builds_it(live: LiveChain,
                                                                       exporter: InMemorySpanExporter) -> None:
    operation_id = f"op-answer-{secrets.token_hex(4)}"
    _, state = asyncio.run(run_in_process(live, operation_id))
    # The original's progress steps, each a result document (its text) and its status, then the end: here each
    # one State API write carrying both (the original makes two), after the claim.
    assert state.statuses == [("InProgress", step) for step in original.PROGRESS_WITH_TOOLS] + [
        ("Completed", original.COMPLETED_MESSAGE)]
    assert state.calls == ["claim"] + ["update"] * (len(original.PROGRESS_WITH_TOOLS) + 1)
    assert len(state.results) == len(state.statuses)
    # A poller sees each status with its own result, and the end only with the answer, never a progress text.
    progress_texts = {step: step.replace(".", "...") for step in original.PROGRESS_WITH_TOOLS}
    assert state.seen[-1]["status"] == "Completed" and state.seen[-1]["result"]["id"] == f"{operation_id}-final"
    progress_reads = [seen for seen in state.seen if seen["status_message"] in progress_texts]
    assert progress_reads  # read while the tool ran, at least
    for seen in progress_reads:
        assert seen["result"]["completion"] == progress_texts[seen["status_message"]], seen
    *progress, result = state.results
    assert [doc["completion"] for doc in progress] == [s.replace(".", "...") for s in original.PROGRESS_WITH_TOOLS]
    assert all(set(doc) == original.COMPLETION_RESPONSE for doc in state.results)

    assert "saved both" in result["completion"] and result["analysis_results"] == []
    assert result["conversation_name"] == "Make a chart and a report"  # a new conversation: named
    text, image = result["content"]
    assert set(text) == original.TEXT_ITEM and set(image) == original.IMAGE_FILE_ITEM
    assert text["value"] == result["completion"]
    files = {a["metadata"]["original_file_name"]: a for a in result["content_artifacts"] if a["type"] == "File"}
    assert set(files) == {"plot.png", "report.csv"}
    assert (image["type"], image["text"], image["file_id"]) == ("image_file", "plot.png", files["plot.png"]["filepath"])
    [annotation] = text["annotations"]
    assert set(annotation) == original.FILE_PATH_ITEM
    assert (annotation["text"], annotation["file_id"]) == ("report.csv", files["report.csv"]["filepath"])
    assert files["plot.png"]["filepath"].startswith("file-")  # a Context API file record id
    kinds = [a["type"] for a in result["content_artifacts"]]
    assert sorted(kinds[:2]) == ["File", "File"] and kinds[2:] == ["ToolExecution", "WorkflowExecution"]
    for artifact in result["content_artifacts"]:
        assert set(artifact) == original.CONTENT_ARTIFACT
        assert all(isinstance(value, str) for value in artifact["metadata"].values())
    tool = result["content_artifacts"][2]["metadata"]
    assert set(tool) == original.TOOL_EXECUTION_METADATA and "saved both" in tool["tool_output"]
    assert tool["tool_generated_code"] == FILES_CODE and tool["original_user_prompt"] == FILES_PROMPT
    workflow = result["content_artifacts"][3]
    assert (workflow["id"], workflow["source"], workflow["content"]) == (WORKFLOW, WORKFLOW, FILES_PROMPT)
    assert set(workflow["metadata"]) == original.WORKFLOW_EXECUTION_METADATA
    assert result["total_tokens"] == result["prompt_tokens"] + result["completion_tokens"] > 0


def test_progress_superseded_before_its_write_began_is_not_written(live: LiveChain,
                                                                    exporter: InMemorySpanExporter) -> None:
    """An instant model: "Running agent workflow." is superseded by "Running agent tools." before its write
    began, and "Preparing final response." by the end; only the tools step (written while the tool runs) and
    the end reach State, in order, and the end still carries the whole answer."""
    operation_id = f"op-instant-{secrets.token_hex(4)}"
    _, state = asyncio.run(run_in_process(live, operation_id, LocalDeterministicModel()))
    assert state.statuses == [("InProgress", "Running agent tools."), ("Completed", original.COMPLETED_MESSAGE)]
    assert state.calls == ["claim", "update", "update"]
    assert [doc["completion"] for doc in state.results[:-1]] == ["Running agent tools..."]
    assert "saved both" in state.results[-1]["completion"]
    assert state.seen[-1]["status"] == "Completed" and state.seen[-1]["result"]["id"] == f"{operation_id}-final"


def test_through_the_whole_chain_the_agents_workflow_names_the_spans(live: LiveChain) -> None:
    answer = live.ask(FILES_PROMPT)
    assert answer["status"] == "Completed", answer
    spans = live.spans(answer["trace_id"], {c.PORTAL, c.CORE_API, c.LANGCHAIN_API, c.DYNAMIC_SESSIONS})
    server = one(spans, f"POST {c.ROUTE_ASYNC_COMPLETIONS}", c.LANGCHAIN_API)
    submit = one(spans, c.SPAN_FLLM_LANGCHAIN_SUBMIT, c.LANGCHAIN_API)
    tool_call = one(spans, f"{WORKFLOW}_tool_call", c.LANGCHAIN_API)
    execution = one(spans, c.SPAN_CODE_EXECUTE, c.DYNAMIC_SESSIONS)
    assert server in ancestors(submit, spans) and submit in ancestors(tool_call, spans)
    assert tool_call in ancestors(one(spans, c.SPAN_LANGCHAIN_TOOL_CALL), spans)
    assert one(spans, c.SPAN_LANGCHAIN_TOOL_CALL) in ancestors(execution, spans)
    headers = {"X-API-KEY": live.chain.secrets_env[API_KEY_ENV["state_api"]],
               "X-USER-IDENTITY": LOCAL_DEVELOPER.model_dump_json()}
    url = f"{live.chain.url('state_api')}/instances/{DEFAULT_INSTANCE_ID}/operations/{answer['operation_id']}/result"
    result = httpx.get(url, headers=headers, timeout=10).json()
    assert [item["type"] for item in result["content"]] == ["text", "image_file"]
    assert [a["text"] for a in result["content"][0]["annotations"]] == ["report.csv"]
