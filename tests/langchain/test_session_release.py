"""The LangChain workflow releases its code session once the completion is done with it, off the answer's
path but inside its trace; a failed release is logged and never fails the completion. An image result
reaches the completion's content in the data plane's shape, without its pixels in the model's text."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from services.auth.local_issuer import LocalIssuer
from services.common.models import LOCAL_DEVELOPER
from services.common.settings import API_KEY_ENV, DEFAULT_INSTANCE_ID, Settings
from services.context_api.client import CodeSessionsClient
from services.context_api.service import ATTR_SESSION_DELETED, SPAN_DELETE_SESSION
from services.langchain_api.code_interpreter import SPAN_RELEASE_SESSION, CodeInterpreterTool, image_result
from telemetry import conventions as c
from tests.chain.conftest import CODE_PROMPT, LiveChain
from tests.chain.spans import ancestors, assert_one_connected_tree, one
from tests.context_api.conftest import closed_port_url

PLOT_PROMPT = ("Chart it:\n```python\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\n"
               "plt.show()\nprint('drawn')\n```")


def pool_sessions(live: LiveChain) -> int:
    return int(httpx.get(f"{live.chain.url('dynamic_sessions')}/status", timeout=10).json()["sessions"])


def wait_for_no_sessions(live: LiveChain, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while (count := pool_sessions(live)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return count


@pytest.mark.chain
def test_the_session_is_deleted_after_the_completion_in_its_own_spans(live: LiveChain) -> None:
    answer = live.ask(CODE_PROMPT)
    assert answer["status"] == "Completed" and "answer 42" in answer["answer"]
    assert wait_for_no_sessions(live) == 0  # not after the 300 s cooldown: now

    trace_id = answer["trace_id"]
    assert live.receiver.wait_for(lambda: any(s.name == "DELETE /session" for s in live.receiver.trace(trace_id)))
    spans = live.receiver.settle(trace_id, quiet_s=0.4)
    assert_one_connected_tree(spans)
    release = one(spans, SPAN_RELEASE_SESSION, c.LANGCHAIN_API)
    assert one(spans, c.SPAN_LANGCHAIN_WORKFLOW, c.LANGCHAIN_API) in ancestors(release, spans)
    assert release.status_code != 2  # not ERROR
    deleted = one(spans, SPAN_DELETE_SESSION, c.CONTEXT_API)
    assert release in ancestors(deleted, spans) and deleted.attributes[ATTR_SESSION_DELETED] is True
    pool_delete = one(spans, "DELETE /session", c.DYNAMIC_SESSIONS)
    assert deleted in ancestors(pool_delete, spans)


@pytest.mark.chain
def test_sequential_completions_leave_no_session_behind(live: LiveChain) -> None:
    for _ in range(3):
        assert live.ask(CODE_PROMPT)["status"] == "Completed"
    assert wait_for_no_sessions(live) == 0


@pytest.mark.chain
def test_a_displayed_figure_reaches_the_completion_content_as_an_image(live: LiveChain) -> None:
    answer = live.ask(PLOT_PROMPT)
    assert answer["status"] == "Completed", answer
    assert "drawn" in answer["answer"] and "base64" not in answer["answer"]
    headers = {"X-API-KEY": live.chain.secrets_env[API_KEY_ENV["state_api"]],
               "X-USER-IDENTITY": LOCAL_DEVELOPER.model_dump_json()}
    url = f"{live.chain.url('state_api')}/instances/{DEFAULT_INSTANCE_ID}/operations/{answer['operation_id']}/result"
    result = httpx.get(url, headers=headers, timeout=10).json()
    images = [item for item in result["content"] if item.get("type") == "image"]
    assert len(images) == 1 and images[0]["format"] == "png"
    assert base64.b64decode(images[0]["base64_data"]).startswith(b"\x89PNG\r\n\x1a\n")
    # Core's agent Message (what the portal reads) carries the image in the same shape.
    token = LocalIssuer.load(live.chain.data_dir).mint()
    status = httpx.get(f"{live.chain.url('core_api')}/instances/{DEFAULT_INSTANCE_ID}/async-completions/"
                       f"{answer['operation_id']}/status", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    message = status.json()["result"]
    [shown] = [item for item in message["content"] if item["type"] == "image"]
    assert shown["format"] == "png" and shown["base64_data"] == images[0]["base64_data"]
    # The model (and the tool's ToolExecution artifact) got the result without its pixels.
    [tool] = [a for a in result["content_artifacts"] if a["type"] == "ToolExecution"]
    told = tool["metadata"]["tool_result"]
    assert '"type": "image"' in told and "base64_data" not in told and result["analysis_results"] == []


def tool_against(url: str, provider: str = "AzureContainerAppsCodeInterpreter") -> CodeInterpreterTool:
    settings = Settings(urls={"context_api": url}, api_keys={"context_api": "k"})
    parameters = {"code_session_id": "conv-1-code-120000000", "code_session_endpoint_provider": provider}
    return CodeInterpreterTool(CodeSessionsClient(settings), DEFAULT_INSTANCE_ID, parameters, LOCAL_DEVELOPER)


def test_a_failed_release_is_logged_and_does_not_raise(caplog: pytest.LogCaptureFixture,
                                                       exporter: InMemorySpanExporter) -> None:
    tool = tool_against(closed_port_url())
    tool.used = True
    exporter.clear()
    with caplog.at_level(logging.WARNING, logger="foundationallm.langchain_api"):
        asyncio.run(tool.release())  # the Context API is down: no exception escapes
    assert any("could not be released" in record.getMessage() for record in caplog.records)
    [span] = [s for s in exporter.get_finished_spans() if s.name == SPAN_RELEASE_SESSION]
    assert span.status.status_code == StatusCode.ERROR


def test_no_release_call_for_an_unused_or_per_conversation_session(exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    asyncio.run(tool_against(closed_port_url()).release())  # never called: the pool holds nothing
    kept = tool_against(closed_port_url(), "AzureContainerAppsCustomContainer")
    kept.used = True
    asyncio.run(kept.release())  # the custom container's session stays for the conversation
    assert not [s for s in exporter.get_finished_spans() if s.name == SPAN_RELEASE_SESSION]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (json.dumps({"type": "image", "format": "png", "base64_data": "iVBO"}),
         {"type": "image", "format": "png", "base64_data": "iVBO"}),
        (json.dumps({"type": "image", "base64_data": "iVBO", "extra": 1}),
         {"type": "image", "format": "png", "base64_data": "iVBO"}),
        (json.dumps({"type": "image", "format": "png"}), None),
        ('{"answer": "42"}', None),
        ("{not json", None),
        ("42", None),
        ("", None),
    ],
)
def test_image_results_are_recognised_in_the_execution_result(text: str, expected: dict | None) -> None:
    assert image_result(text) == expected
