"""What every data-plane call must carry: a bearer token, an api-version and a session identifier."""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Query, Request

from services.code_execution import Executor, Session, SessionLimitError
from services.dynamic_sessions.errors import AzureError

EXECUTIONS_API_VERSIONS = ("2024-10-02-preview", "2025-02-02-preview", "2025-10-02-preview")
LEGACY_API_VERSIONS = ("2024-02-02-preview", "2024-08-02-preview")
ALL_API_VERSIONS = LEGACY_API_VERSIONS + EXECUTIONS_API_VERSIONS

# The spec's pattern for the identifier query parameter.
IDENTIFIER = re.compile(r"""[a-zA-Z0-9_|}{\[\]:";'<>?/.,@#$%^&*()\-+=!~`]{4,128}""")


async def require_bearer(request: Request) -> None:
    """``Authorization: Bearer <token>``; the emulator accepts its configured dev token (constant time)."""
    expected = request.app.state.settings.dynamic_sessions_token.encode()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise AzureError(
            401, "Unauthorized", "A valid bearer token for https://dynamicsessions.io is required.",
            headers={"WWW-Authenticate": 'Bearer realm="dynamicsessions.io"'},
        )


def check_api_version(api_version: str | None, supported: tuple[str, ...]) -> str:
    if not api_version:
        raise AzureError(400, "MissingApiVersionParameter", "The api-version query parameter is required.",
                         "api-version")
    if api_version not in supported:
        raise AzureError(
            400, "UnsupportedApiVersion",
            f"The api-version '{api_version[:64]}' is not supported here; supported: {', '.join(supported)}.",
            "api-version",
        )
    return api_version


def check_identifier(identifier: str | None) -> str:
    if not identifier:
        raise AzureError(400, "MissingRequiredParameter", "The identifier query parameter is required.", "identifier")
    if not IDENTIFIER.fullmatch(identifier):
        raise AzureError(400, "InvalidParameter",
                         "The identifier must be 4 to 128 characters of the allowed set.", "identifier")
    return identifier


@dataclass(frozen=True)
class SessionCall:
    api_version: str
    identifier: str
    executor: Executor

    def session(self) -> Session:
        """The session, allocated on first use as the pool does; beyond max-sessions -> 404."""
        try:
            return self.executor.open_session(self.identifier)
        except SessionLimitError as error:
            raise AzureError(404, "SessionLimitExceeded", str(error), "identifier") from error


def _dependency(supported: tuple[str, ...]) -> Callable[..., Awaitable[SessionCall]]:
    async def call(
        request: Request,
        api_version: str | None = Query(None, alias="api-version", description=", ".join(supported)),
        identifier: str | None = Query(None, description="The session identifier (a secret)."),
    ) -> SessionCall:
        version = check_api_version(api_version, supported)
        return SessionCall(version, check_identifier(identifier), request.app.state.executor)

    return call


executions_api = _dependency(EXECUTIONS_API_VERSIONS)
legacy_api = _dependency(LEGACY_API_VERSIONS)
any_api = _dependency(ALL_API_VERSIONS)


async def pool_api(
    api_version: str | None = Query(None, alias="api-version", description=", ".join(EXECUTIONS_API_VERSIONS)),
) -> str:
    """Pool-level calls (metadata, listSessions) take no identifier."""
    return check_api_version(api_version, EXECUTIONS_API_VERSIONS)
