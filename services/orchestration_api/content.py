"""The completion response of an ended operation as Orchestration answers it (the original's
AgentOrchestration.GetCompletionResponse and TransformFoundationaLLMKnowledgeManagementContentItem):
the CompletionResponse field set, file URLs on generated files, citation markers and sandbox links
resolved in the text."""

from __future__ import annotations

import copy
import re
from typing import Any

KNOWLEDGE_MANAGEMENT = "FoundationaLLM.KnowledgeManagement"
CONTEXT_PROVIDER = "FoundationaLLM.Context"
CITATION = re.compile(r"【[0-9:]+†.+?】")
SANDBOX_LINK = re.compile(r"\(sandbox:[^)]*\)")

# CompletionResponse (CompletionResponseBase.cs and CompletionResponse.cs): every field, with its default.
COMPLETION_RESPONSE_DEFAULTS: dict[str, Any] = {
    "operation_id": None, "completion": None, "content": None, "analysis_results": None,
    "content_artifacts": None, "conversation_name": None, "user_prompt": None, "user_prompt_rewrite": None,
    "full_prompt": None, "prompt_template": None, "agent_name": None, "prompt_tokens": 0, "completion_tokens": 0,
    "total_tokens": 0, "total_cost": 0.0, "deleted": False, "errors": None, "is_error": None,
    "user_prompt_embedding": None,
}


def file_url(instance_id: str, file_id: Any) -> str:
    """Core resolves ``{{fllm_base_url}}`` to its own URL: its files route serves the file."""
    return f"{{{{fllm_base_url}}}}/instances/{instance_id}/files/{CONTEXT_PROVIDER}/{file_id}"


def _text_item(item: dict[str, Any], instance_id: str) -> dict[str, Any]:
    value = CITATION.sub("", item.get("value") or "")
    annotations = [note for note in item.get("annotations") or () if isinstance(note, dict)]
    for note in annotations:
        if (note.get("type") or "file_path") == "file_path" and note.get("file_id"):
            note["file_url"] = file_url(instance_id, note["file_id"])
    # (sandbox:/mnt/data/<name>) -> (<file url>) where an annotation names the file; as the original, a link
    # that none names keeps only its name: (<name>).
    links = {f"({note['text']})": f"({note['file_url']})" for note in annotations
             if note.get("text") and note.get("file_url")}

    def replace(match: re.Match[str]) -> str:
        token = match.group(0).replace("sandbox:/mnt/data/", "")
        return links.get(token, token)

    item["value"] = SANDBOX_LINK.sub(replace, value)
    return item


def transform_content(items: Any, instance_id: str) -> list[dict[str, Any]]:
    """Items of the FoundationaLLM knowledge management category (the LangChain workflow's) are
    transformed; items of another category are left as they are."""
    result: list[dict[str, Any]] = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        item = copy.deepcopy(item)
        if item.get("agent_capability_category", KNOWLEDGE_MANAGEMENT) == KNOWLEDGE_MANAGEMENT:
            if item.get("type") == "text":
                item = _text_item(item, instance_id)
            elif item.get("type") == "image_file" and item.get("file_id"):
                item["file_url"] = file_url(instance_id, item["file_id"])
        result.append(item)
    return result


def completion_response(result: dict[str, Any], operation_id: str, instance_id: str) -> dict[str, Any]:
    """The LLM completion response State keeps, as the CompletionResponse Orchestration answers with
    (ours' extra fields kept)."""
    response = {**COMPLETION_RESPONSE_DEFAULTS, **result, "operation_id": operation_id}
    if result.get("content") is not None:
        response["content"] = transform_content(result["content"], instance_id)
        # Ours: the original's workflow leaves ``completion`` null; ours keeps the text item's value there,
        # so it gets the same links (not dead sandbox: ones).
        before, after = _first_text(result["content"]), _first_text(response["content"])
        if before is not None and after is not None and response.get("completion") == before.get("value"):
            response["completion"] = after.get("value")
    return response


def _first_text(items: Any) -> dict[str, Any] | None:
    return next((item for item in items if isinstance(item, dict) and item.get("type") == "text"), None) if (
        isinstance(items, list)) else None
