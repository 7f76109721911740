"""The Azure Container Apps Dynamic Sessions data plane (code-interpreter pool), served locally."""

from __future__ import annotations

from fastapi import FastAPI

from services.code_execution import PROVIDER_CODE_INTERPRETER, ExecutorConfig
from services.code_execution.web import create_code_service
from services.common.settings import Settings
from services.dynamic_sessions import executions, files, legacy, session
from services.dynamic_sessions.compat import PoolPathMiddleware
from services.dynamic_sessions.errors import install_azure_error_handlers

PACKAGE = "dynamic_sessions"
TITLE = "Azure Container Apps Dynamic Sessions (emulator)"


def create_app(settings: Settings | None = None, config: ExecutorConfig | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    config = config or ExecutorConfig.from_env(settings.data_dir, "dynamic-sessions")
    routers = [module.router for module in (executions, files, legacy, session)]
    app = create_code_service(PACKAGE, TITLE, PROVIDER_CODE_INTERPRETER, config, settings, routers,
                              install_azure_error_handlers)
    app.add_middleware(PoolPathMiddleware)
    return app
