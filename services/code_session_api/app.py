"""FoundationaLLM's Python Code Session API (the custom container behind a custom-container pool)."""

from __future__ import annotations

from fastapi import FastAPI

from services.code_execution import PROVIDER_CUSTOM_CONTAINER, ExecutorConfig
from services.code_execution.web import create_code_service
from services.code_session_api import routes
from services.code_session_api.auth import bearer_required
from services.code_session_api.errors import install_detail_errors
from services.common.settings import Settings

PACKAGE = "code_session_api"
TITLE = "FoundationaLLM Code Session API"


def create_app(settings: Settings | None = None, config: ExecutorConfig | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    config = config or ExecutorConfig.from_env(settings.data_dir, "code-session-api")
    app = create_code_service(PACKAGE, TITLE, PROVIDER_CUSTOM_CONTAINER, config, settings, [routes.router],
                              install_detail_errors)
    app.state.bearer_required = bearer_required()  # the pool's bearer token on every route but /status
    return app
