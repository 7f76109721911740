"""The bearer token every Code Session API route requires: the same one as the Dynamic Sessions emulator
(``FLLM_DYNAMIC_SESSIONS_TOKEN``). In FoundationaLLM the container sits behind a session pool that checks
the caller's Entra token; served on its own here, the container checks it itself. ``/status`` stays open.

``FLLM_CODE_SESSION_API_AUTH=none`` turns the check off, for one use only: a developer's own container
reached through an endpoint provider override (the Context API sends such an endpoint no token, since the
URL comes from the request). ``bearer``, empty or unset means the bearer token is required; any other value
stops the service at startup (``CodeSessionApiSettings``).
"""

from __future__ import annotations

import hmac

from fastapi import Request

from services.code_session_api.errors import DetailError
from services.common.settings import CodeSessionApiSettings

AUTH_ENV = CodeSessionApiSettings.variable("code_session_api_auth")  # FLLM_CODE_SESSION_API_AUTH
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="code-session-api"'}


def bearer_required() -> bool:
    return CodeSessionApiSettings().code_session_api_auth == "bearer"


async def require_bearer(request: Request) -> None:
    """``Authorization: Bearer <token>``, compared in constant time; one answer for a missing or wrong token."""
    if not request.app.state.bearer_required:
        return
    expected = request.app.state.settings.dynamic_sessions_token.encode()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise DetailError(401, "A valid bearer token is required (Authorization: Bearer <token>).", CHALLENGE)
