"""FoundationaLLM's Python Code Session API (the custom container behind a custom-container pool)."""

from __future__ import annotations

from fastapi import FastAPI

from services.code_execution import PROVIDER_CUSTOM_CONTAINER, Executor, ExecutorConfig
from services.code_execution.web import RedactIdentifierMiddleware, install_status
from services.code_session_api import routes
from services.code_session_api.errors import install_detail_errors
from services.common.service import create_service
from services.common.settings import Settings

PACKAGE = "code_session_api"
TITLE = "FoundationaLLM Code Session API"
UID_BASE = 700_000


def create_app(settings: Settings | None = None, config: ExecutorConfig | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    config = config or ExecutorConfig.from_env(settings.data_dir, "code-session-api", uid_base=UID_BASE)
    executor = Executor(config, PROVIDER_CUSTOM_CONTAINER)
    app = create_service(PACKAGE, settings, title=TITLE, on_startup=[executor.start], on_shutdown=[executor.stop])
    app.state.executor = executor
    install_detail_errors(app)
    install_status(app, TITLE, settings, executor)
    app.add_middleware(RedactIdentifierMiddleware)
    app.include_router(routes.router)
    return app
