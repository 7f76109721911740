"""The agent ``Message`` Core answers with: the original's 23 properties (Common/Models/Conversation/
Message.cs, camelCase, nulls written), built as its CoreService does from the CompletionResponse.

Values as the original's agent message: ``tokens`` the completion's completion tokens, ``text`` the
completion, ``upn`` the user's (the user's own answer), ``completionPromptId``/``textRewrite``/``rating``/
``ratingComments``/``vector``/``expectedCompletion``/``attachments``/``attachmentDetails`` null (this chain
keeps no conversation store, completion prompts or ratings), ``deleted`` false. Where the original's
placeholder (no result yet) leaves id, sessionId, sender and upn null, ours keeps the message's own.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from services.common.models import OperationStatus, utc_now
from services.core_api.store import OperationContext

IN_PROGRESS_TEXT = "The completion operation is in progress."
BASE_URL_TOKEN = "{{fllm_base_url}}"
# FileUtils.GetMessageContentFileType: an annotation's content type by its file name's extension.
_FILE_TYPES = {ext: "image_file" for ext in (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".svg", ".webp")} | {
    ".html": "html", ".htm": "html"}

MESSAGE_FIELDS = (
    "id", "type", "sessionId", "operation_id", "timeStamp", "sender", "senderDisplayName", "tokens", "text",
    "textRewrite", "rating", "ratingComments", "upn", "deleted", "vector", "completionPromptId",
    "expectedCompletion", "contentArtifacts", "analysisResults", "attachments", "attachmentDetails", "content",
    "status",
)


def message_id(operation_id: str) -> str:
    """The agent message's id: the same on every poll of the operation, on any Core replica."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"agent-message/{operation_id}"))


def content_file_type(file_name: str | None, fallback: str = "file_path") -> str:
    if not file_name:
        return fallback
    return _FILE_TYPES.get(os.path.splitext(file_name)[1].lower(), fallback)


def _resolve(value: Any, base_url: str) -> Any:
    return value.replace(BASE_URL_TOKEN, base_url.rstrip("/")) if isinstance(value, str) else value


def message_content(items: Any, base_url: str) -> list[dict[str, Any]]:
    """CoreService.ProcessCompletionResponse: each text item's file annotations, then the text; image_file
    items as their file URL; ``{{fllm_base_url}}`` resolved to Core's URL. Other item types are dropped,
    as the original drops them, but for an inline image result (``{type: image, format, base64_data}``,
    not in the original) which keeps its data."""
    content: list[dict[str, Any]] = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "text":
            for note in item.get("annotations") or ():
                if isinstance(note, dict):
                    content.append({"type": content_file_type(note.get("text"), note.get("type") or "file_path"),
                                    "fileName": note.get("text"), "value": note.get("file_url")})
            content.append({"type": "text", "fileName": None, "value": item.get("value") or item.get("text")})
        elif kind == "image_file":
            content.append({"type": "image_file", "fileName": None, "value": item.get("file_url")})
        elif kind == "image" and isinstance(item.get("base64_data"), str):
            content.append({"type": "image", "fileName": None, "value": None,
                            "format": item.get("format"), "base64_data": item["base64_data"]})
    for entry in content:
        entry["value"] = _resolve(entry["value"], base_url)
    return content


def agent_message(operation: dict[str, Any], ctx: OperationContext, base_url: str,
                  use_result: bool = True) -> dict[str, Any]:
    """The agent's Message for an operation answer: from its CompletionResponse when there is one (and
    ``use_result``), else the placeholder whose text is the status message."""
    result = operation.get("result") if use_result and isinstance(operation.get("result"), dict) else None
    status = operation.get("status", OperationStatus.FAILED.value)
    if result is not None:
        text = _resolve(result.get("completion") or operation.get("status_message") or "", base_url)
        tokens = result.get("completion_tokens") or 0
        artifacts, analysis = result.get("content_artifacts"), result.get("analysis_results")
        content: list[dict[str, Any]] | None = message_content(result.get("content"), base_url)
    else:
        text = operation.get("status_message") or IN_PROGRESS_TEXT
        tokens, artifacts, analysis, content = 0, None, None, None
    return {
        "id": message_id(ctx.id),
        "type": "Message",
        "sessionId": ctx.session_id,
        "operation_id": ctx.id,
        "timeStamp": utc_now().isoformat(),
        "sender": "Agent",
        "senderDisplayName": ctx.agent_name,
        "tokens": tokens if isinstance(tokens, int) else 0,
        "text": text,
        "textRewrite": None,  # the original sets it on the user's message only
        "rating": None,
        "ratingComments": None,
        "upn": ctx.upn,
        "deleted": False,
        "vector": None,
        "completionPromptId": None,
        "expectedCompletion": None,
        "contentArtifacts": artifacts,
        "analysisResults": analysis,
        "attachments": None,
        "attachmentDetails": None,
        "content": content,
        "status": status,
    }
