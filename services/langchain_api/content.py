"""The answer as FoundationaLLM's function-calling workflow builds it: its message content items and its
content artifacts (File per downloaded file, ToolExecution per code interpreter call, WorkflowExecution
always), with the field names of the original's Python models (foundationallm.models.orchestration).

Files are referred to by their Context API file record id (``file_id``); LangChain sets no URL: the
original's Orchestration API turns the id into ``{{fllm_base_url}}/instances/{i}/files/FoundationaLLM.Context/{id}``.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common.models import CompletionResponse

KNOWLEDGE_MANAGEMENT = "FoundationaLLM.KnowledgeManagement"  # the workflow's agent capability category
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tiff", ".ico", ".webp")  # the workflow's list
FAILURE_RESPONSE = "Failed to generate a response."
FILE, TOOL_EXECUTION, WORKFLOW_EXECUTION = "File", "ToolExecution", "WorkflowExecution"


class ContentItem(BaseModel):
    """MessageContentItemBase: no field beyond the original's (it forbids extras)."""

    model_config = ConfigDict(extra="forbid")

    type: str
    text: str | None = None
    agent_capability_category: str | None = KNOWLEDGE_MANAGEMENT


class FilePathItem(ContentItem):
    type: Literal["file_path"] = "file_path"
    start_index: int | None = None
    end_index: int | None = None
    file_id: str | None = None


class ImageFileItem(ContentItem):
    type: Literal["image_file"] = "image_file"
    file_id: str | None = None
    file_url: str | None = None


class TextItem(ContentItem):
    type: Literal["text"] = "text"
    annotations: list[FilePathItem] = Field(default_factory=list)
    value: str | None = None


class ContentArtifact(BaseModel):
    id: str
    title: str | None = None
    filepath: str | None = None
    source: str | None = None
    content: str | None = None
    type: str | None = None
    metadata: dict[str, str] | None = None  # strings only: .NET reads them as strings


def is_image(file_name: str) -> bool:
    return file_name.lower().endswith(IMAGE_EXTENSIONS)


def answer_content(text: str, artifacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The text item first; each File artifact an ``image_file`` item (images) or a ``file_path``
    annotation of the text item (any other file)."""
    answer = TextItem(value=text)
    images: list[ContentItem] = []
    for artifact in artifacts:
        if artifact.get("type") != FILE:
            continue
        name = str((artifact.get("metadata") or {}).get("original_file_name", ""))
        if is_image(name):
            images.append(ImageFileItem(text=name, file_id=artifact.get("filepath")))
        else:
            answer.annotations.append(FilePathItem(text=name, file_id=artifact.get("filepath")))
    return [item.model_dump() for item in (answer, *images)]


def progress_document(operation_id: str, text: str) -> dict[str, Any]:
    """An InProgress result, as the original's update_operation_with_text_result_async writes it."""
    return CompletionResponse(operation_id=operation_id, user_prompt="", completion=text,
                              content=[TextItem(value=text).model_dump()]).model_dump(mode="json")


def file_artifact(tool: str, record_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """A file the code made, copied out of the session by the Context API (``record_id``: its file record)."""
    return ContentArtifact(
        id=tool, title=f"{tool} (file)", type=FILE, filepath=record_id,
        metadata={
            "file_object_id": str(record.get("file_object_id", "")),
            "original_file_name": str(record.get("file_name", "")),
            "file_path": str(record.get("file_path", "")),
            "file_size": str(record.get("file_size_bytes", "")),
            "content_type": str(record.get("content_type", "")),
            "conversation_id": str(record.get("conversation_id", "")),
        },
    ).model_dump()


def tool_execution_artifact(tool: str, user_prompt: str, code: str, file_names: list[str],
                            execution: dict[str, Any], result: str) -> dict[str, Any]:
    return ContentArtifact(
        id=tool, title=tool, type=TOOL_EXECUTION,
        filepath=str(uuid.uuid4()),  # the original's: a unique filepath, or upstream filters it out
        metadata={
            "original_user_prompt": user_prompt,
            "tool_input_prompt": "",  # the model hands this tool code, not a prompt to write code from
            "tool_input_files": ", ".join(file_names),
            "tool_generated_code": code,
            "tool_output": str(execution.get("standard_output") or ""),
            "tool_error": str(execution.get("error_output") or ""),
            "tool_result": result,
        },
    ).model_dump()


def workflow_execution_artifact(workflow: str, prompt: str, prompt_tokens: int, completion_tokens: int,
                                router_seconds: float, error_message: str | None = None) -> dict[str, Any]:
    metadata = {"prompt_tokens": str(prompt_tokens), "completion_tokens": str(completion_tokens),
                "completion_time_seconds": str(router_seconds)}
    if error_message:
        metadata["error_message"] = error_message
    return ContentArtifact(id=workflow, title=workflow, source=workflow, type=WORKFLOW_EXECUTION,
                           content=prompt, metadata=metadata).model_dump()
