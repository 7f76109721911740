"""The instance check of every Core route (after authentication: a 401 tells nothing about instances)."""

from __future__ import annotations

from fastapi import Request

from services.common.auth import check_instance
from telemetry import conventions as c
from telemetry.context import annotate


async def core_instance(request: Request, instanceId: str) -> None:  # noqa: N803 - the original's route name
    check_instance(instanceId, request.app.state.settings.instance_id)
    annotate({c.ATTR_INSTANCE_ID: instanceId})
