"""The LangChain API client Orchestration uses to start an operation (only exactly 202 is success)."""

from __future__ import annotations

from typing import Any

from services.common.hop_client import HopClient
from services.common.models import UnifiedUserIdentity
from services.common.settings import Settings
from telemetry import conventions as c


class LangChainClient:
    def __init__(self, settings: Settings) -> None:
        self._hop = HopClient(c.LANGCHAIN_API, settings.urls["langchain_api"], settings.api_keys["langchain_api"],
                              settings.timeout_of("langchain_api"))

    async def start(self, instance_id: str, request: dict[str, Any], identity: UnifiedUserIdentity,
                    trace_request: bool = False) -> dict[str, Any]:
        return await self._hop.call(
            "POST", f"/instances/{instance_id}/async-completions", json=request, identity=identity,
            headers={"X-TRACE-COMPLETION-REQUEST": str(trace_request).lower()}, expect=(202,),
        )

    async def aclose(self) -> None:
        await self._hop.aclose()
