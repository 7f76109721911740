"""LangChain API's answer pieces against the original's field sets (tests/langchain/original_models.py):
content items for generated files, the artifacts, progress documents, /status, and refused requests."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from services.common.models import LOCAL_DEVELOPER, CompletionResponse
from services.common.settings import DEFAULT_INSTANCE_ID, Settings
from services.langchain_api import create_app
from services.langchain_api.chat_models import TITLE_INSTRUCTION, LocalDeterministicModel
from services.langchain_api.content import (
    FilePathItem,
    answer_content,
    file_artifact,
    progress_document,
    tool_execution_artifact,
    workflow_execution_artifact,
)
from tests.langchain import original_models as original

RECORD = {"file_object_id": "/instances/i/files/f", "file_path": "/mnt/data/x", "file_size_bytes": 12,
          "content_type": "application/octet-stream", "conversation_id": "conv-1"}


def files(*names: str) -> list[dict[str, Any]]:
    return [file_artifact("code_interpreter", f"file-{n}", {**RECORD, "file_name": name})
            for n, name in enumerate(names)]


@pytest.mark.parametrize("extension", [*original.IMAGE_EXTENSIONS, ".PNG", ".JpEg"])
def test_an_image_file_becomes_an_image_file_item(extension: str) -> None:
    [text, image] = answer_content("done", files(f"chart{extension}"))
    assert set(image) == original.IMAGE_FILE_ITEM and set(text) == original.TEXT_ITEM
    assert image == {"type": "image_file", "text": f"chart{extension}", "file_id": "file-0", "file_url": None,
                     "agent_capability_category": original.KNOWLEDGE_MANAGEMENT}
    assert text["annotations"] == [] and text["value"] == "done" and text["text"] is None


@pytest.mark.parametrize("name", ["report.csv", "chart.svg", "page.html", "archive.png.zip", "noextension"])
def test_any_other_file_becomes_a_file_path_annotation_of_the_text(name: str) -> None:
    [text] = answer_content("done", files(name))
    [annotation] = text["annotations"]
    assert set(annotation) == original.FILE_PATH_ITEM
    assert annotation == {"type": "file_path", "text": name, "file_id": "file-0", "start_index": None,
                          "end_index": None, "agent_capability_category": original.KNOWLEDGE_MANAGEMENT}


def test_the_text_comes_first_then_the_images_in_artifact_order() -> None:
    artifacts = [*files("a.png", "b.csv", "c.gif"),
                 tool_execution_artifact("code_interpreter", "p", "code", [], {}, "r"),
                 workflow_execution_artifact("FunctionCalling", "p", 1, 2, 0.5)]
    content = answer_content("done", artifacts)
    assert [(item["type"], item.get("file_id")) for item in content] == [
        ("text", None), ("image_file", "file-0"), ("image_file", "file-2")]
    assert [a["file_id"] for a in content[0]["annotations"]] == ["file-1"]


def test_content_items_take_no_field_beyond_the_originals() -> None:
    with pytest.raises(ValidationError):
        FilePathItem(text="x", file_id="f", file_url="http://x")  # type: ignore[call-arg]


def test_artifacts_carry_the_originals_fields_with_string_metadata() -> None:
    [file] = files("plot.png")
    tool = tool_execution_artifact("code_interpreter", "the prompt", "print(1)", ["in.csv"],
                                   {"standard_output": "1\n", "error_output": None}, "1")
    workflow = workflow_execution_artifact("FunctionCalling", "the prompt", 10, 3, 0.25)
    for artifact, kind, metadata in ((file, "File", original.FILE_METADATA),
                                     (tool, "ToolExecution", original.TOOL_EXECUTION_METADATA),
                                     (workflow, "WorkflowExecution", original.WORKFLOW_EXECUTION_METADATA)):
        assert set(artifact) == original.CONTENT_ARTIFACT and artifact["type"] == kind
        assert artifact["type"] in original.ARTIFACT_TYPES
        assert set(artifact["metadata"]) == metadata
        assert all(isinstance(value, str) for value in artifact["metadata"].values())
    assert (file["id"], file["title"], file["filepath"]) == ("code_interpreter", "code_interpreter (file)", "file-0")
    assert (tool["id"], tool["title"], tool["filepath"] != tool["id"]) == ("code_interpreter", "code_interpreter",
                                                                            True)
    assert tool["metadata"]["tool_input_files"] == "in.csv" and tool["metadata"]["tool_error"] == ""
    assert (workflow["id"], workflow["source"], workflow["content"], workflow["filepath"]) == (
        "FunctionCalling", "FunctionCalling", "the prompt", None)
    failed = workflow_execution_artifact("FunctionCalling", "p", 0, 0, 0.0, error_message="boom")
    assert failed["metadata"]["error_message"] == "boom"


def test_results_and_progress_documents_have_the_completion_response_fields() -> None:
    assert set(CompletionResponse(operation_id="op").model_dump()) == original.COMPLETION_RESPONSE
    progress = progress_document("op-1", "Running agent tools...")
    assert set(progress) == original.COMPLETION_RESPONSE
    assert progress["completion"] == "Running agent tools..." and progress["user_prompt"] == ""
    [item] = progress["content"]
    assert set(item) == original.TEXT_ITEM and item["value"] == "Running agent tools..."


def test_the_local_model_names_a_conversation_from_its_prose() -> None:
    model = LocalDeterministicModel()
    messages = [{"role": "user", "content": "Plot the sales, please!\n```python\nprint(1)\n```"},
                {"role": "assistant", "content": "Here it is."}, {"role": "user", "content": TITLE_INSTRUCTION}]
    turn = asyncio.run(model.complete(messages, []))
    assert turn.text == "Plot the sales please" and not turn.tool_calls


async def _call(method: str, path: str, **kwargs: Any) -> httpx.Response:
    app = create_app(Settings(api_keys={"langchain_api": "k"}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://langchain") as client:
        return await client.request(method, path, **kwargs)


def test_status_answers_the_originals_bodies() -> None:
    plain = asyncio.run(_call("GET", "/status")).json()
    assert tuple(plain) == original.STATUS and plain["name"] == "LangChainAPI" and plain["status"] == "ready"
    assert plain["instance_name"] and plain["version"]
    instance = asyncio.run(_call("GET", f"/instances/{DEFAULT_INSTANCE_ID}/status")).json()
    assert tuple(instance) == original.INSTANCE_STATUS and instance["instance_id"] == DEFAULT_INSTANCE_ID


@pytest.mark.parametrize("workflow", [{"name": "has space"}, {"name": ""}, {"name": "x" * 65}, {"name": "a/b"}])
def test_a_workflow_name_unfit_for_span_names_is_refused_naming_the_field(workflow: dict[str, str]) -> None:
    body = {"operation_id": "op-1", "user_prompt": "hi",
            "agent": {"type": "generic-agent", "name": "code-interpreter", "workflow": workflow}}
    headers = {"X-API-KEY": "k", "X-USER-IDENTITY": LOCAL_DEVELOPER.model_dump_json()}
    answer = asyncio.run(_call("POST", f"/instances/{DEFAULT_INSTANCE_ID}/async-completions", json=body,
                               headers=headers))
    assert answer.status_code == 400, answer.text
    assert [error["field"] for error in answer.json()["errors"]] == ["agent.workflow.name"]
