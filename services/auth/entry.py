"""The Core API's front door: every route needs a valid bearer token; a refusal is a 401 JSON problem
naming the Authorization header, with RFC 6750's ``WWW-Authenticate`` challenge."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.auth.config import AuthConfig
from services.auth.local_issuer import LocalIssuer
from services.auth.validator import InvalidTokenError, TokenValidator
from services.common.errors import problem
from services.common.models import UnifiedUserIdentity
from telemetry import conventions as c
from telemetry.context import annotate, record_failure

AUTHORIZATION = "Authorization"


def install_bearer_auth(app: FastAPI, config: AuthConfig) -> TokenValidator:
    """Validate bearer tokens on ``app``'s routes that depend on ``caller``; answers 401 for refusals."""
    validator = TokenValidator(config)
    app.state.token_validator = validator

    @app.exception_handler(InvalidTokenError)
    async def _refused(_: Request, exc: InvalidTokenError) -> JSONResponse:
        record_failure(exc)
        response = problem(401, "Unauthorized", exc.message, [{"field": AUTHORIZATION, "message": exc.message}])
        challenge = 'Bearer realm="CoreAPI"'
        if exc.error:
            challenge += f', error="{exc.error}", error_description="{exc.message}"'
        response.headers["WWW-Authenticate"] = challenge
        return response

    return validator


def local_issuer_keys(config: AuthConfig, data_dir: Path) -> None:
    """The local issuer publishes its keys before the first request (Core run on its own, e.g. in Docker)."""
    if config.local:
        LocalIssuer.ensure(data_dir)


async def caller(request: Request) -> UnifiedUserIdentity:
    """The authenticated user (route dependency); the identity the internal hops get in X-USER-IDENTITY."""
    validator: TokenValidator = request.app.state.token_validator
    identity = await validator.identity(request.headers.get(AUTHORIZATION))
    annotate({c.ATTR_USER_ID: identity.user_id})
    return identity
