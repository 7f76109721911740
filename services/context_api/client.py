"""The Context API client for code sessions, used by Orchestration (create) and the code interpreter tool."""

from __future__ import annotations

from typing import Any

from services.common.hop_client import HopClient
from services.common.models import UnifiedUserIdentity
from services.common.settings import Settings
from telemetry import conventions as c


class CodeSessionsClient:
    def __init__(self, settings: Settings) -> None:
        self._hop = HopClient(c.CONTEXT_API, settings.urls["context_api"], settings.api_keys["context_api"],
                              settings.timeout_of("context_api"))
        self._execute_timeout_s = settings.code_timeout_s

    async def create(
        self, instance_id: str, request: dict[str, Any], identity: UnifiedUserIdentity
    ) -> dict[str, Any]:
        """CreateCodeSessionRequest -> {session_id, endpoint}."""
        return await self._hop.call("POST", f"/instances/{instance_id}/codeSessions", json=request, identity=identity)

    async def upload_files(
        self, instance_id: str, session_id: str, file_names: list[str], identity: UnifiedUserIdentity
    ) -> dict[str, Any]:
        path = f"/instances/{instance_id}/codeSessions/{session_id}/uploadFiles"
        return await self._hop.call("POST", path, json={"file_names": file_names}, identity=identity)

    async def download_files(
        self, instance_id: str, session_id: str, upload_operation_id: str, identity: UnifiedUserIdentity
    ) -> dict[str, Any]:
        path = f"/instances/{instance_id}/codeSessions/{session_id}/downloadFiles"
        return await self._hop.call("POST", path, json={"operation_id": upload_operation_id}, identity=identity)

    async def discard_files(
        self, instance_id: str, session_id: str, upload_operation_id: str, identity: UnifiedUserIdentity,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        path = f"/instances/{instance_id}/codeSessions/{session_id}/discardFiles"
        return await self._hop.call("POST", path, json={"operation_id": upload_operation_id}, identity=identity,
                                    timeout=timeout_s)

    async def execute_code(
        self, instance_id: str, session_id: str, code: str, identity: UnifiedUserIdentity
    ) -> dict[str, Any]:
        """{status, execution_result, standard_output, error_output}."""
        path = f"/instances/{instance_id}/codeSessions/{session_id}/executeCode"
        return await self._hop.call(
            "POST", path, json={"code_to_execute": code}, identity=identity, timeout=self._execute_timeout_s
        )

    async def delete(self, instance_id: str, session_id: str, identity: UnifiedUserIdentity) -> dict[str, Any]:
        """The completion is done with the session: {session_id, deleted, detail}."""
        return await self._hop.call("DELETE", f"/instances/{instance_id}/codeSessions/{session_id}", identity=identity)

    async def aclose(self) -> None:
        await self._hop.aclose()
