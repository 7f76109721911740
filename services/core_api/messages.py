"""The conversation ``Message`` Core answers with (camelCase, as the original's Message model)."""

from __future__ import annotations

import uuid
from typing import Any

from services.common.models import OperationStatus, utc_now

IN_PROGRESS_TEXT = "The completion operation is in progress."


def agent_message(operation: dict[str, Any], session_id: str, agent_name: str) -> dict[str, Any]:
    """The agent's message for an operation answer: the completion once there is a result."""
    result = operation.get("result") if isinstance(operation.get("result"), dict) else None
    status = operation.get("status", OperationStatus.FAILED.value)
    text = (result or {}).get("completion") or operation.get("status_message") or IN_PROGRESS_TEXT
    content = [
        {"type": item.get("type", "text"), "fileName": item.get("file_name"),
         "value": item.get("value") or item.get("text"),
         # An image result keeps the data plane's shape: {type: image, format, base64_data}.
         **({key: item[key] for key in ("format", "base64_data") if key in item} if item.get("type") == "image"
            else {})}
        for item in (result or {}).get("content", [])
        if isinstance(item, dict)
    ]
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"agent-message/{operation.get('operation_id')}")),
        "type": "Message",
        "sessionId": session_id,
        "operation_id": operation.get("operation_id"),
        "timeStamp": utc_now().isoformat(),
        "sender": "Agent",
        "senderDisplayName": agent_name,
        "tokens": (result or {}).get("total_tokens", 0),
        "text": text,
        "status": status,
        "content": content,
        "contentArtifacts": (result or {}).get("content_artifacts", []),
        "analysisResults": (result or {}).get("analysis_results", []),
        "attachments": [],
    }
