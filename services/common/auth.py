"""Request checks shared by the hops: instance id, API keys and the user identity header."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable

from fastapi import Request

from services.common.errors import ServiceError
from services.common.models import UnifiedUserIdentity
from telemetry import conventions as c
from telemetry.context import annotate

API_KEY_HEADER = "X-API-KEY"
USER_IDENTITY_HEADER = "X-USER-IDENTITY"
OPERATION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")  # what Core accepts and generates (lowercase GUIDs)


def check_instance(instance_id: str, expected: str) -> None:
    if instance_id.lower() != expected:
        raise ServiceError(403, "Access denied. Invalid instance ID.")


def check_operation_id(operation_id: str) -> None:
    """An id Core could never have accepted is refused before it reaches a URL toward the next hop."""
    if not OPERATION_ID.fullmatch(operation_id):
        raise ServiceError(400, "operationId must be 1-128 of [A-Za-z0-9._-].", "operationId")


def check_api_key(request: Request, expected: str) -> None:
    """Constant-time comparison; one answer for a missing and a wrong key, so neither is revealed."""
    given = request.headers.get(API_KEY_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ServiceError(401, "A valid X-API-KEY header is required.")


def identity_header(identity: UnifiedUserIdentity) -> str:
    """The identity as the header carries it: JSON with every non-ASCII character escaped, since header
    values travel as latin-1 bytes and a name such as 张伟 has none."""
    return json.dumps(identity.model_dump(mode="json"), separators=(",", ":"))


def user_identity(request: Request, required: bool = True) -> UnifiedUserIdentity | None:
    raw = request.headers.get(USER_IDENTITY_HEADER)
    if not raw:
        if required:
            raise ServiceError(400, "The X-USER-IDENTITY header is missing.", field=USER_IDENTITY_HEADER)
        return None
    try:
        return UnifiedUserIdentity.model_validate_json(raw)
    except (ValueError, TypeError) as error:
        raise ServiceError(400, "The X-USER-IDENTITY header is not a valid identity.", USER_IDENTITY_HEADER) from error


def internal_hop(package: str) -> Callable[[Request, str], Awaitable[None]]:
    """A route dependency for an internal hop: the instance in the path and this service's API key."""

    async def check(request: Request, instanceId: str) -> None:  # noqa: N803 - the route's parameter name
        settings = request.app.state.settings
        check_api_key(request, settings.api_keys[package])
        check_instance(instanceId, settings.instance_id)
        annotate({c.ATTR_INSTANCE_ID: instanceId})

    return check
