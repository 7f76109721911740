"""Gatekeeper API app: the prompt checks and the Orchestration client."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.service import create_service
from services.common.settings import Settings
from services.gatekeeper_api import routes
from services.orchestration_api.client import AsyncCompletionsClient
from telemetry import conventions as c

PACKAGE = "gatekeeper_api"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    async def start() -> None:
        app.state.orchestration = AsyncCompletionsClient(
            c.ORCHESTRATION_API, settings.urls["orchestration_api"], settings.api_keys["orchestration_api"],
            settings.timeout_of("orchestration_api"),  # longer than Orchestration's own hops (the ladder)
        )

    async def stop() -> None:
        await app.state.orchestration.aclose()

    app = create_service(PACKAGE, settings, title="GatekeeperAPI", on_startup=[start], on_shutdown=[stop])
    app.include_router(routes.router)
    return app
