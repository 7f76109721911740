"""``AzureContainerAppsCustomContainer``: FoundationaLLM's Code Session API behind a custom-container pool
(``/files/upload``, ``/files``, ``/files/delete``, ``/files/download``, ``/code/execute``). Without
api-version and bearer token it is the ``LocalCustomContainer`` of an endpoint override."""

from __future__ import annotations

import json
from typing import Any

import httpx

from services.context_api.config import CUSTOM_CONTAINER
from services.context_api.models import CodeExecutionResult
from services.context_api.providers.base import (
    PoolClient,
    SessionFile,
    SessionTarget,
    error_text,
    log,
)
from telemetry import conventions as c

EXECUTE_GRACE_S = 30.0


class CustomContainerProvider(PoolClient):
    name = CUSTOM_CONTAINER
    hop = c.CODE_SESSION_API

    async def delete_files(self, target: SessionTarget) -> None:
        response = await self.send("POST", target, "/files/delete", "POST /files/delete")
        if not response.is_success:
            log.warning("%s could not delete the session files: %s", self.name, response.status_code)

    async def upload_file(self, target: SessionTarget, name: str, content: bytes, content_type: str) -> bool:
        response = await self.send("POST", target, "/files/upload", "POST /files/upload",
                                   files={"file": (name, content, content_type)})
        if not response.is_success:
            log.warning("%s refused an upload: %s", self.name, response.status_code)
        return response.is_success

    async def download_file(self, target: SessionTarget, file: SessionFile, max_bytes: int) -> bytes | None:
        # Unlike the original, the file's folder is sent too: files in sub-folders can be downloaded.
        return await self.read_bounded("POST", target, "/files/download", "POST /files/download", max_bytes,
                                       json={"file_name": file.path.lstrip("/")})

    async def execute(self, target: SessionTarget, code: str, timeout_s: int) -> CodeExecutionResult:
        # The timeout travels in the body (this project's Code Session API kills the execution at it); the
        # HTTP wait ends a little later, for a container that ignores the field (the original image).
        body = {"code": code, "timeout_seconds": timeout_s}
        wait = httpx.Timeout(timeout_s + EXECUTE_GRACE_S, connect=min(timeout_s + EXECUTE_GRACE_S, 10.0))
        response = await self.send("POST", target, "/code/execute", "POST /code/execute", json=body, timeout=wait)
        body = self.json_of(response, "POST /code/execute") if response.content else None
        detail = body.get("detail") if isinstance(body, dict) else None
        if not isinstance(detail, dict):
            if response.is_success:
                raise self.unexpected(response, "POST /code/execute")
            # A 4xx without the detail object: the container refused the request itself.
            return CodeExecutionResult(status="Failed", error_output=error_text(response))
        return container_result(response.is_success, detail)


def container_result(is_success: bool, detail: dict[str, Any]) -> CodeExecutionResult:
    """Failed when the container says so. A code exception answers 200 with ``results`` ``""`` beside the
    "The code execution failed with a ..." ``error`` (the original image and this project's Code Session API,
    which adds ``status`` "Failed" and the whole ``stderr``, traceback included: that is the error output
    then). Unlike the original Context API, such an answer is Failed here; so is any non-2xx."""
    results = detail.get("results")
    error = str(detail.get("error") or "")
    stderr = detail.get("stderr")
    original_exception = isinstance(results, str) and not results and bool(error.strip())
    failed = not is_success or detail.get("status") == "Failed" or original_exception
    return CodeExecutionResult(
        status="Failed" if failed else "Succeeded",
        execution_result=results if isinstance(results, str) and results else json.dumps(results or {}),
        standard_output=str(detail.get("output") or ""),
        error_output=stderr if failed and isinstance(stderr, str) and stderr.strip() else error,
    )
