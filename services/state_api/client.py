"""The State API client that Orchestration and LangChain use."""

from __future__ import annotations

from typing import Any

from services.common.hop_client import HopClient
from services.common.models import LongRunningOperation
from services.common.settings import Settings
from telemetry import conventions as c


class StateClient:
    def __init__(self, settings: Settings) -> None:
        self._timeout_s = settings.timeout_of("state_api")
        self._hop = HopClient(c.STATE_API, settings.urls["state_api"], settings.api_keys["state_api"], self._timeout_s)

    @staticmethod
    def _path(instance_id: str, operation_id: str, suffix: str = "") -> str:
        return f"/instances/{instance_id}/operations/{operation_id}{suffix}"

    async def create(self, instance_id: str, operation_id: str, upn: str | None) -> dict[str, Any]:
        body = {"operation_id": operation_id, "instance_id": instance_id, "upn": upn}
        return await self._hop.call("POST", self._path(instance_id, operation_id), json=body)

    async def update(self, instance_id: str, operation: LongRunningOperation) -> dict[str, Any]:
        """PUT a status, with ``operation.result`` (when set) stored as its latest result in the same
        transaction; 409 means the operation had already ended (the write was refused)."""
        return await self._hop.call(
            "PUT", self._path(instance_id, operation.operation_id), json=operation.to_wire(), expect=(200, 409)
        )

    async def claim(self, instance_id: str, operation: LongRunningOperation, claimant: str) -> dict[str, Any]:
        """Claim the run of an operation, writing its InProgress status: ``{"acquired", "claimant",
        "operation"}``; only the one caller whose claim is acquired runs it (409: held, or ended)."""
        body = {"claimant": claimant, "status_message": operation.status_message, "upn": operation.upn}
        return await self._hop.call("POST", self._path(instance_id, operation.operation_id, "/claim"), json=body,
                                    expect=(200, 409))

    async def get(self, instance_id: str, operation_id: str, wait_s: float = 0.0) -> dict[str, Any] | None:
        """The operation with its latest result, or None when State has no such operation."""
        response = await self._hop.request(
            "GET",
            self._path(instance_id, operation_id),
            params={"wait": wait_s} if wait_s else None,
            timeout=self._timeout_s + wait_s,
        )
        if response.status_code == 404:
            return None
        return await self._hop.decode(response, "GET", "operation status")

    async def aclose(self) -> None:
        await self._hop.aclose()
