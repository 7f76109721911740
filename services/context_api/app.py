"""FoundationaLLM's Context API (code sessions), served on port 5004."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry import trace
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.http import new_client
from services.common.service import create_service
from services.common.settings import Settings
from services.context_api import routes
from services.context_api.config import CODE_INTERPRETER, CUSTOM_CONTAINER, LOCAL_CUSTOM_CONTAINER, ContextApiConfig
from services.context_api.files import ConversationFiles
from services.context_api.providers import (
    CodeInterpreterProvider,
    CustomContainerProvider,
    PoolClient,
    ProviderError,
    TokenSource,
)
from services.context_api.service import CodeSessionService
from services.context_api.store import ContextStore
from telemetry import conventions as c
from telemetry.context import hashed, record_failure

PACKAGE = "context_api"
TITLE = "FoundationaLLM Context API"
SESSION_PATH = re.compile(r"^(/instances/[^/]+/codeSessions/)([^/]+)(.*)$")


class ContextApi:
    """What the routes use, built at startup: after telemetry, so the httpx client is instrumented."""

    def __init__(self, settings: Settings, config: ContextApiConfig, tokens: TokenSource) -> None:
        self.settings, self.config, self.tokens = settings, config, tokens
        self.http: httpx.AsyncClient | None = None
        self.store: ContextStore | None = None
        self.files: ConversationFiles | None = None
        self.service: CodeSessionService | None = None

    async def start(self) -> None:
        self.http = new_client(
            timeout=httpx.Timeout(self.config.pool_timeout_s, connect=min(self.config.pool_timeout_s, 10.0)),
        )
        self.store = ContextStore(self.settings.data_dir)
        self.files = ConversationFiles(self.settings.data_dir / "context_files", self.store)
        providers: dict[str, PoolClient] = {
            CODE_INTERPRETER: CodeInterpreterProvider(self.http, self.tokens),
            CUSTOM_CONTAINER: CustomContainerProvider(self.http, self.tokens),
            # An enabled override: the same container contract, no api-version, no Authorization header.
            LOCAL_CUSTOM_CONTAINER: CustomContainerProvider(self.http, None, None, LOCAL_CUSTOM_CONTAINER),
        }
        self.service = CodeSessionService(self.config, self.store, self.files, providers)

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self.store is not None:
            self.store.close()


class RedactSessionPathMiddleware:
    """Session ids are secrets: on the server span, ``url.path`` carries the id's hash instead."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (match := SESSION_PATH.match(scope.get("path", ""))):
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attribute("url.path", f"{match[1]}{hashed(match[2])}{match[3]}")
                span.set_attribute(c.ATTR_CODE_SESSION_ID_HASH, hashed(match[2]))
        await self.app(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    config: ContextApiConfig | None = None,
    token_source: TokenSource | None = None,
) -> FastAPI:
    settings = settings or Settings.from_env()
    context = ContextApi(settings, config or ContextApiConfig.from_env(settings),
                         token_source or TokenSource.from_env(settings))
    app = create_service(PACKAGE, settings, title=TITLE, on_startup=[context.start], on_shutdown=[context.stop])
    app.state.context = context

    @app.exception_handler(ProviderError)
    async def _provider_failed(_: Request, exc: ProviderError) -> JSONResponse:
        record_failure(exc, hop=exc.hop)  # the server span; the step's span recorded it already
        body = {"type": "about:blank", "title": "Code session provider failed", "status": exc.answer_status,
                "detail": str(exc), "hop": exc.hop, "provider": exc.provider}
        return JSONResponse(body, status_code=exc.answer_status)

    app.add_middleware(RedactSessionPathMiddleware)
    app.include_router(routes.router)
    return app
