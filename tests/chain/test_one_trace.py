"""The whole chain, real processes on loopback: a code prompt runs, and ONE trace covers every hop."""

from __future__ import annotations

import json
import secrets

from services.registry import HOPS, default_path
from telemetry import conventions as c
from tests.chain.conftest import CODE_PROMPT, LiveChain
from tests.chain.spans import CLIENT, SERVER, ancestors, assert_one_connected_tree, named, one

CHAIN = {HOPS[package].service_name for package in default_path()}  # no gatekeeper (bypassed), no custom container
SUBMIT_ROUTE = f"POST {c.ROUTE_ASYNC_COMPLETIONS}"
HTTP_SERVER_SCOPE = "opentelemetry.instrumentation.fastapi"


def test_a_code_prompt_completes_with_what_the_code_printed(live: LiveChain) -> None:
    answer = live.ask()
    assert answer["status"] == "Completed", answer
    assert "answer 42" in answer["answer"]
    assert len(answer["trace_id"]) == 32


def test_one_trace_runs_from_the_portal_to_the_code_execution(live: LiveChain) -> None:
    answer = live.ask()
    spans = live.spans(answer["trace_id"], CHAIN)
    assert {span.service for span in spans} >= CHAIN
    root = assert_one_connected_tree(spans)
    assert (root.service, root.name) == (c.PORTAL, c.SPAN_PORTAL_SUBMIT)

    # Server spans on every hop, each the child of its caller's client span. FoundationaLLM's own SERVER
    # activities (AsyncCompletions_StartCompletionOperation, langchainapi_*) are not request spans: they
    # sit inside their service's request span, as the original's under ASP.NET Core's and FastAPI's.
    by_id = {s.span_id: s for s in spans}
    for service in CHAIN - {c.PORTAL}:
        servers = [s for s in spans if s.service == service and s.kind == SERVER and s.scope == HTTP_SERVER_SCOPE]
        assert servers, f"{service} has no server span"
        for server in servers:
            caller = by_id[server.parent_span_id]
            assert caller.kind == CLIENT and caller.service != service, (service, server.name, caller.name)
    for activity in (s for s in spans if s.kind == SERVER and s.scope != HTTP_SERVER_SCOPE):
        assert any(a.service == activity.service and a.scope == HTTP_SERVER_SCOPE
                   for a in ancestors(activity, spans)), (activity.service, activity.name)
    for service in (c.PORTAL, c.CORE_API, c.ORCHESTRATION_API, c.LANGCHAIN_API, c.CONTEXT_API):
        assert any(s.service == service and s.kind == CLIENT for s in spans), f"{service} made no client call"
    # The HTTP spans come from the standard instrumentations, nothing hand-made.
    assert {s.scope for s in spans if s.kind == SERVER and "http.request.method" in s.attributes} == {
        HTTP_SERVER_SCOPE}
    hop_calls = [s for s in spans if s.kind == CLIENT and s.attributes.get("http.request.method")]
    assert {s.scope for s in hop_calls} == {"opentelemetry.instrumentation.httpx"}
    chats = [s for s in spans if s.attributes.get(c.ATTR_GEN_AI_OPERATION) == "chat"]
    assert chats and all(s.attributes[c.ATTR_GEN_AI_PROVIDER] == "foundationallm.local" for s in chats)

    # The background workflow: a descendant of the submission, outliving the 202 that started it.
    workflow = one(spans, c.SPAN_LANGCHAIN_WORKFLOW, c.LANGCHAIN_API)
    langchain_server = one(spans, SUBMIT_ROUTE, c.LANGCHAIN_API)
    assert langchain_server in ancestors(workflow, spans)
    assert root in ancestors(workflow, spans)
    assert workflow.end_ns > langchain_server.end_ns
    execution = one(spans, c.SPAN_CODE_EXECUTE, c.DYNAMIC_SESSIONS)
    assert workflow in ancestors(execution, spans)
    # One execute_tool span per tool call, the workflow's; the interpreter run sits under it.
    (tool,) = [s for s in spans if s.attributes.get(c.ATTR_GEN_AI_OPERATION) == "execute_tool"]
    assert tool.name == "execute_tool code_interpreter" and tool.service == c.LANGCHAIN_API
    assert tool in ancestors(execution, spans)
    assert tool.attributes[c.ATTR_GEN_AI_TOOL_NAME] == "code_interpreter"
    assert str(tool.attributes[c.ATTR_GEN_AI_TOOL_CALL_ID]).startswith("call_")
    assert execution.attributes[c.ATTR_CODE_STATUS] == "Succeeded"
    assert isinstance(execution.attributes[c.ATTR_CODE_EXECUTION_MS], int)


def test_every_hop_carries_the_instance_and_operation_ids(live: LiveChain) -> None:
    answer = live.ask()
    spans = live.spans(answer["trace_id"], CHAIN)
    for span in spans:
        if span.kind == SERVER:
            assert span.attributes.get(c.ATTR_OPERATION_ID) == answer["operation_id"], (span.service, span.name)
            assert span.attributes.get(c.ATTR_INSTANCE_ID), (span.service, span.name)
    core = one(spans, SUBMIT_ROUTE, c.CORE_API)
    assert core.attributes[c.ATTR_AGENT_NAME] == "code-interpreter"
    assert core.attributes[c.ATTR_GATEKEEPER_DECISION] == "bypassed"
    tool = one(spans, c.SPAN_LANGCHAIN_TOOL_CALL)
    assert tool.attributes[c.ATTR_CODE_SESSION_PROVIDER] == "AzureContainerAppsCodeInterpreter"
    assert len(str(tool.attributes[c.ATTR_CODE_SESSION_ID_HASH])) == 16
    attributes = json.dumps([span.attributes for span in spans])
    assert "6 * 7" not in attributes  # code is never put on spans
    # Code session ids ("{conversation}-{tool}-{time}") are secrets: hashed in paths, queries and attributes.
    assert "-code_interpreter-" not in attributes
    assert "/codeSessions/" in attributes


def test_the_embedded_traces_file_holds_the_same_trace(live: LiveChain) -> None:
    answer = live.ask()
    received = {span.span_id for span in live.spans(answer["trace_id"], CHAIN)}
    in_file: set[str] = set()
    for line in (live.chain.data_dir / "traces.jsonl").read_text().splitlines():
        for resource_spans in json.loads(line)["resourceSpans"]:
            for scope_spans in resource_spans["scopeSpans"]:
                in_file.update(s["spanId"] for s in scope_spans["spans"] if s["traceId"] == answer["trace_id"])
    assert in_file == received


def test_a_callers_traceparent_is_joined_by_the_whole_chain(live: LiveChain) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    answer = live.ask(CODE_PROMPT, "code-interpreter", "--traceparent", f"00-{trace_id}-{parent_id}-01")
    assert answer["status"] == "Completed" and answer["trace_id"] == trace_id
    spans = live.spans(trace_id, CHAIN)
    root = assert_one_connected_tree(spans, root_parent=parent_id)
    assert root.name == c.SPAN_PORTAL_SUBMIT


def test_status_polls_are_their_own_traces_linked_to_the_operation(live: LiveChain) -> None:
    answer = live.ask()
    submit = one(live.spans(answer["trace_id"], CHAIN), c.SPAN_PORTAL_SUBMIT)
    polls = [s for s in named(live.receiver.spans, c.SPAN_PORTAL_POLL)
             if (answer["trace_id"], submit.span_id) in s.links]
    assert len(polls) == answer["polls"] >= 1
    assert all(poll.trace_id != answer["trace_id"] and poll.parent_span_id == "" for poll in polls)
    core_polls = [s for s in live.receiver.spans if s.trace_id in {p.trace_id for p in polls}
                  and s.service == c.CORE_API and s.kind == SERVER]
    assert core_polls and all(s.attributes[c.ATTR_OPERATION_ID] == answer["operation_id"] for s in core_polls)


def test_the_custom_container_provider_runs_the_code_in_code_session_api(live: LiveChain) -> None:
    answer = live.ask(CODE_PROMPT, "custom-container-coder")
    assert answer["status"] == "Completed" and "answer 42" in answer["answer"]
    spans = live.spans(answer["trace_id"], CHAIN - {c.DYNAMIC_SESSIONS} | {c.CODE_SESSION_API})
    assert_one_connected_tree(spans)
    assert one(spans, c.SPAN_CODE_EXECUTE, c.CODE_SESSION_API)
    assert not [s for s in spans if s.service == c.DYNAMIC_SESSIONS]


def test_a_prompt_without_code_is_answered_without_a_code_execution(live: LiveChain) -> None:
    answer = live.ask("What is a code session?")
    assert answer["status"] == "Completed" and "no Python code" in answer["answer"]
    spans = live.spans(answer["trace_id"], {c.PORTAL, c.CORE_API, c.LANGCHAIN_API})
    assert not named(spans, c.SPAN_CODE_EXECUTE)


def test_the_services_own_metrics_reach_the_collector(live: LiveChain) -> None:
    answer = live.ask()
    assert answer["status"] == "Completed"
    expected = {c.METRIC_OPERATIONS, c.METRIC_OPERATION_DURATION, c.METRIC_CODE_EXECUTION_DURATION,
                c.METRIC_CODE_SESSION_ACQUIRE, c.METRIC_CODE_SESSION_OOM_KILLS, c.METRIC_CODE_SESSION_THROTTLED}
    assert live.receiver.wait_for(lambda: expected <= live.receiver.metric_names, 10.0), live.receiver.metric_names
