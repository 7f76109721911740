"""The client for the two routes Orchestration and Gatekeeper share: start an operation, read its status.

Core uses it toward Gatekeeper or Orchestration, Gatekeeper toward Orchestration (``hop`` names which).
"""

from __future__ import annotations

from typing import Any

from services.common.hop_client import HopClient
from services.common.models import UnifiedUserIdentity


class AsyncCompletionsClient:
    def __init__(self, hop: str, base_url: str, api_key: str, timeout_s: float) -> None:
        self.hop = hop
        self._hop = HopClient(hop, base_url, api_key, timeout_s)
        self._timeout_s = timeout_s

    async def start(self, instance_id: str, request: dict[str, Any], identity: UnifiedUserIdentity) -> dict[str, Any]:
        return await self._hop.call("POST", f"/instances/{instance_id}/async-completions", json=request,
                                    identity=identity, expect=(200, 202))

    async def status(self, instance_id: str, operation_id: str, identity: UnifiedUserIdentity,
                     wait_s: float = 0.0) -> dict[str, Any]:
        return await self._hop.call(
            "GET", f"/instances/{instance_id}/async-completions/{operation_id}/status", identity=identity,
            params={"wait": wait_s} if wait_s else None, timeout=self._timeout_s + wait_s,
        )

    async def aclose(self) -> None:
        await self._hop.aclose()
