"""LangChain API app: the State and Context clients, the model, and the workflow they make up."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.service import create_service
from services.common.settings import Settings, TelemetrySwitches
from services.context_api.client import CodeSessionsClient
from services.langchain_api import routes
from services.langchain_api.chat_models import model_from_env
from services.langchain_api.workflow import AgentWorkflow
from services.state_api.client import StateClient

PACKAGE = "langchain_api"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    async def start() -> None:
        # Clients are made after telemetry is set up, so the httpx instrumentation covers them.
        app.state.state_client = StateClient(settings)
        app.state.code_sessions = CodeSessionsClient(settings)
        app.state.model = model_from_env(settings.model)
        app.state.workflow = AgentWorkflow(app.state.state_client, app.state.code_sessions, app.state.model,
                                           heartbeat_s=max(1.0, settings.operation_stale_after_s / 4))

    async def stop() -> None:
        for client in (app.state.state_client, app.state.code_sessions, app.state.model):
            await client.aclose()

    app = create_service(PACKAGE, settings, title="LangChainAPI", on_startup=[start], on_shutdown=[stop])
    app.state.claimant = routes.claimant_id()  # names this replica in the operations it claims
    app.state.version = TelemetrySwitches().version
    # /status answers the original's LangChain body (routes.status), not the services' common one.
    app.router.routes[:] = [route for route in app.router.routes if getattr(route, "path", None) != "/status"]
    app.include_router(routes.router)
    return app
