"""In-process: Core's Message and Orchestration's CompletionResponse built as the original builds them,
from the LangChain result document (the shapes of /tmp/helper-notes/contract-content.md, the original's
function-calling workflow)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from services.common.agents import Agent
from services.common.models import CompletionRequest
from services.core_api.messages import agent_message, content_file_type, message_content
from services.core_api.store import OperationContext
from services.orchestration_api.content import completion_response
from services.orchestration_api.rewrite import RewriteConfigError, UserPromptRewriter
from tests.fidelity.original_models import (
    COMPLETION_RESPONSE_FIELDS,
    MESSAGE_CONTENT_FIELDS,
    MESSAGE_CONTENT_TYPES,
    MESSAGE_FIELDS,
)
from tests.loopback_http import LoopbackServer, Reply, Request

KM = "FoundationaLLM.KnowledgeManagement"
INSTANCE = "8ac6074c-bdde-43cb-a140-ec0002d96d2b"
CSV_ID, PNG_ID = "file-20261130-220101-AbC_d-1", "file-20261130-220101-XyZ-2"
CORE_URL = "http://core.example:63280/"


def langchain_result() -> dict[str, Any]:
    return {
        "id": "op-1-final", "operation_id": "op-1", "user_prompt": "make files", "user_prompt_rewrite": None,
        "full_prompt": "system", "completion": "Saved [report](sandbox:/mnt/data/report.csv) 【4:0†source】 and"
                                             " (sandbox:/mnt/data/other.txt).",
        "content": [
            {"type": "text", "text": None, "agent_capability_category": KM, "value":
                "Saved [report](sandbox:/mnt/data/report.csv) 【4:0†source】 and (sandbox:/mnt/data/other.txt).",
             "annotations": [{"type": "file_path", "text": "report.csv", "agent_capability_category": KM,
                              "start_index": None, "end_index": None, "file_id": CSV_ID}]},
            {"type": "image_file", "text": "plot.png", "agent_capability_category": KM, "file_id": PNG_ID,
             "file_url": None},
        ],
        "analysis_results": [], "content_artifacts": [{"id": "FunctionCalling", "type": "WorkflowExecution"}],
        "conversation_name": "Two files", "user_prompt_embedding": [], "prompt_tokens": 12, "completion_tokens": 7,
        "total_tokens": 19, "total_cost": 0.0, "errors": [], "is_error": False,
    }


def context(upn: str | None = "ada@example.com") -> OperationContext:
    return OperationContext(id="op-1", instance_id=INSTANCE, agent_name="code-interpreter", session_id="conv-1",
                            upn=upn, route="OrchestrationAPI", start_time=0.0, traceparent="")


def test_orchestration_answers_the_completion_response_with_file_urls_and_clean_text() -> None:
    response = completion_response(langchain_result(), "op-1", INSTANCE)
    assert set(response) >= COMPLETION_RESPONSE_FIELDS
    text, image = response["content"]
    url = f"{{{{fllm_base_url}}}}/instances/{INSTANCE}/files/FoundationaLLM.Context/{CSV_ID}"
    assert text["annotations"][0]["file_url"] == url
    # The named link points at the file; the citation marker is gone; an unnamed link keeps its name only.
    assert text["value"] == f"Saved [report]({url})  and (other.txt)."
    assert image["file_url"] == f"{{{{fllm_base_url}}}}/instances/{INSTANCE}/files/FoundationaLLM.Context/{PNG_ID}"
    assert response["conversation_name"] == "Two files"
    assert response["completion"] == text["value"]  # ours: the completion text gets the same links


def test_items_of_another_capability_category_pass_unchanged() -> None:
    item = {"type": "image_file", "agent_capability_category": "OpenAIAssistants", "file_id": "assistant-1"}
    response = completion_response({"content": [item]}, "op-1", INSTANCE)
    assert response["content"] == [item]


def test_core_message_has_the_original_23_properties_and_its_content_items() -> None:
    orchestration = completion_response(langchain_result(), "op-1", INSTANCE)
    message = agent_message({"operation_id": "op-1", "status": "Completed", "result": orchestration},
                            context(), CORE_URL)
    assert set(message) == MESSAGE_FIELDS and len(MESSAGE_FIELDS) == 23
    assert message["content"] == [
        {"type": "file_path", "fileName": "report.csv",
         "value": f"http://core.example:63280/instances/{INSTANCE}/files/FoundationaLLM.Context/{CSV_ID}"},
        {"type": "text", "fileName": None, "value": orchestration["content"][0]["value"].replace(
            "{{fllm_base_url}}", "http://core.example:63280")},
        {"type": "image_file", "fileName": None,
         "value": f"http://core.example:63280/instances/{INSTANCE}/files/FoundationaLLM.Context/{PNG_ID}"},
    ]
    for item in message["content"]:
        assert set(item) == MESSAGE_CONTENT_FIELDS and item["type"] in MESSAGE_CONTENT_TYPES
    assert "{{fllm_base_url}}" not in json.dumps(message)
    # Values as the original's agent message.
    assert (message["type"], message["sender"], message["senderDisplayName"]) == ("Message", "Agent",
                                                                                  "code-interpreter")
    assert message["tokens"] == 7  # the completion's completion tokens
    assert message["text"] == orchestration["completion"].replace("{{fllm_base_url}}", "http://core.example:63280")
    assert "sandbox:" not in message["text"]
    assert message["upn"] == "ada@example.com" and message["deleted"] is False
    assert message["contentArtifacts"] == orchestration["content_artifacts"]
    assert message["analysisResults"] == []
    assert all(message[k] is None for k in ("textRewrite", "rating", "ratingComments", "vector", "completionPromptId",
                                            "expectedCompletion", "attachments", "attachmentDetails"))
    json.dumps(message)  # the wire form


def test_the_placeholder_message_is_the_status_message_with_every_property() -> None:
    message = agent_message({"operation_id": "op-1", "status": "InProgress", "status_message": None}, context(),
                            CORE_URL)
    assert set(message) == MESSAGE_FIELDS
    assert message["text"] == "The completion operation is in progress."
    assert (message["content"], message["contentArtifacts"], message["tokens"]) == (None, None, 0)
    failed = agent_message({"operation_id": "op-1", "status": "Failed", "status_message": "OrchestrationAPI: down",
                            "result": {"completion": "A problem"}}, context(None), CORE_URL, use_result=False)
    assert (failed["text"], failed["status"], failed["upn"]) == ("OrchestrationAPI: down", "Failed", None)
    # Same message on every poll: a stable id.
    assert failed["id"] == message["id"]


@pytest.mark.parametrize(("name", "kind"), [("a.PNG", "image_file"), ("b.svg", "image_file"), ("c.html", "html"),
                                            ("d.csv", "file_path"), ("", "file_path"), (None, "file_path")])
def test_annotation_types_follow_the_originals_file_type_mapping(name: str | None, kind: str) -> None:
    assert content_file_type(name) == kind


def test_unknown_or_malformed_content_items_are_dropped_not_fatal() -> None:
    items = [None, "text", {"type": "html", "value": "<b>"}, {"type": "text", "annotations": [None, 3]},
             {"type": "image", "format": "png", "base64_data": "iVBORw0KGgo="}]
    assert message_content(items, CORE_URL) == [
        {"type": "text", "fileName": None, "value": None},
        {"type": "image", "fileName": None, "value": None, "format": "png", "base64_data": "iVBORw0KGgo="},
    ]
    assert message_content({"not": "a list"}, CORE_URL) == []


# --- the user prompt rewrite (UserPromptRewrite_LLM) ---

def rewrite_agent(model: str = "local-deterministic", prompt: str = "user-prompt-rewrite") -> Agent:
    return Agent.model_validate({"name": "rewriter", "text_rewrite_settings": {
        "user_prompt_rewrite_enabled": True, "user_prompt_rewrite_settings": {
            "user_prompt_rewrite_ai_model_object_id": f"/instances/{INSTANCE}/providers/FoundationaLLM.AIModel/"
                                                      f"aiModels/{model}",
            "user_prompt_rewrite_prompt_object_id": prompt, "user_prompts_window_size": 1}}})


HISTORY = [{"sender": "User", "text": "Plot sales for 2023"}, {"sender": "Agent", "text": "Here it is."},
           {"sender": "User", "text": "old", "text_rewrite": "Plot sales for 2024"},
           {"sender": "Agent", "text": "Done."}]


def request(history: list[dict[str, Any]]) -> CompletionRequest:
    return CompletionRequest(user_prompt="and 2025?", operation_id="op-1", session_id="conv-1",
                             message_history=history)


def test_no_rewrite_without_settings_and_the_prompt_itself_without_history() -> None:
    rewriter = UserPromptRewriter()
    assert asyncio.run(rewriter.rewrite(INSTANCE, Agent(name="plain"), request(HISTORY))) is None
    assert asyncio.run(rewriter.rewrite(INSTANCE, rewrite_agent(), request([]))) == "and 2025?"


def test_unknown_rewrite_prompt_or_model_is_a_configuration_error() -> None:
    with pytest.raises(RewriteConfigError, match="prompt"):
        UserPromptRewriter().settings_of(rewrite_agent(prompt="nope"))
    with pytest.raises(RewriteConfigError, match="model"):
        UserPromptRewriter().settings_of(rewrite_agent(model="gpt-x"))


def test_the_azure_openai_rewrite_sends_the_window_and_uses_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def answer(req: Request) -> Reply:
        seen.append(json.loads(req.body))
        body = {"choices": [{"message": {"content": " Plot sales for 2025 "}}], "usage": {}}
        return Reply(200, json.dumps(body).encode())

    server = LoopbackServer(answer)
    monkeypatch.setenv("FLLM_AZURE_OPENAI_ENDPOINT", server.url)
    monkeypatch.setenv("FLLM_AZURE_OPENAI_DEPLOYMENT", "gpt-test")
    monkeypatch.setenv("FLLM_AZURE_OPENAI_API_KEY", "test-key")
    rewriter = UserPromptRewriter()
    try:
        rewritten = asyncio.run(rewriter.rewrite(INSTANCE, rewrite_agent("azure-openai"), request(HISTORY)))
    finally:
        asyncio.run(rewriter.aclose())
        server.stop()
    assert rewritten == "Plot sales for 2025"
    messages = seen[0]["messages"]
    # The system prompt, the last window (1 user prompt and its answer; a user's rewrite over its text), the prompt.
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert [m["content"] for m in messages[1:]] == ["Plot sales for 2024", "Done.", "and 2025?"]
    assert "tools" not in seen[0]


def test_a_failed_rewrite_call_uses_the_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    server = LoopbackServer(lambda _: Reply(500, b'{"error": "boom"}'))
    monkeypatch.setenv("FLLM_AZURE_OPENAI_ENDPOINT", server.url)
    monkeypatch.setenv("FLLM_AZURE_OPENAI_DEPLOYMENT", "gpt-test")
    monkeypatch.setenv("FLLM_AZURE_OPENAI_API_KEY", "test-key")
    rewriter = UserPromptRewriter()
    try:
        assert asyncio.run(rewriter.rewrite(INSTANCE, rewrite_agent("azure-openai"), request(HISTORY))) == "and 2025?"
    finally:
        asyncio.run(rewriter.aclose())
        server.stop()
