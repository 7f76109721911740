"""``AzureContainerAppsCodeInterpreter``: a Dynamic Sessions code-interpreter pool, api-version
2024-10-02-preview (``/files``, ``/files/{name}/content``, ``/executions``), and ``DELETE /session`` at
2025-10-02-preview (the version the reference clients delete sessions with)."""

from __future__ import annotations

import json
from typing import Any

from services.context_api.config import CODE_INTERPRETER
from services.context_api.models import CodeExecutionResult
from services.context_api.providers.base import (
    PoolClient,
    SessionFile,
    SessionTarget,
    log,
    quote,
)
from telemetry import conventions as c
from telemetry.context import annotate


def as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


DELETE_SESSION_API_VERSION = "2025-10-02-preview"


class CodeInterpreterProvider(PoolClient):
    name = CODE_INTERPRETER
    hop = c.DYNAMIC_SESSIONS

    async def delete_session(self, target: SessionTarget) -> None:
        """Release the session (its interpreter and files) back to the pool; already gone counts as done."""
        response = await self.send("DELETE", target, "/session", "DELETE /session",
                                   query={"api-version": DELETE_SESSION_API_VERSION})
        if response.status_code not in (200, 202, 204, 404):
            raise self.unexpected(response, "DELETE /session")

    async def delete_files(self, target: SessionTarget) -> None:
        # Deepest first, so a directory is empty when its turn comes.
        for entry in sorted(await self.list_files(target), key=lambda e: -e.depth):
            response = await self.send("DELETE", target, f"/files/{quote(entry.name)}", "DELETE /files/{name}",
                                       query={"path": entry.parent_path})
            if response.status_code not in (200, 202, 204, 404):
                log.warning("%s could not delete a session file: %s", self.name, response.status_code)

    async def upload_file(self, target: SessionTarget, name: str, content: bytes, content_type: str) -> bool:
        response = await self.send("POST", target, "/files", "POST /files",
                                   files={"file": (name, content, content_type)})
        if not response.is_success:
            log.warning("%s refused an upload: %s", self.name, response.status_code)
        return response.is_success

    async def download_file(self, target: SessionTarget, file: SessionFile, max_bytes: int) -> bytes | None:
        return await self.read_bounded("GET", target, f"/files/{quote(file.name)}/content",
                                       "GET /files/{name}/content", max_bytes, query={"path": file.parent_path})

    async def execute(self, target: SessionTarget, code: str, timeout_s: int) -> CodeExecutionResult:
        body = {"codeInputType": "Inline", "executionType": "Synchronous", "code": code,
                "timeoutInSeconds": timeout_s}
        response = await self.send("POST", target, "/executions", "POST /executions", json=body)
        if response.status_code != 200:
            raise self.unexpected(response, "POST /executions")
        answer = self.json_of(response, "POST /executions")
        result = answer.get("result") or {}
        status = str(answer.get("status") or "Failed")
        stderr = as_text(result.get("stderr"))
        error = (answer.get("error") or {}).get("error") or {}
        if status == "Failed" and not stderr.strip() and error:
            stderr = f"{error.get('code', 'CodeExecutionFailed')}: {error.get('message', '')}"
        annotate({c.ATTR_CODE_EXECUTION_MS: result.get("executionTimeInMilliseconds")})
        return CodeExecutionResult(
            status=status,
            execution_result=as_text(result.get("executionResult")),
            standard_output=as_text(result.get("stdout")),
            error_output=stderr,
        )
