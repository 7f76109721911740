"""Orchestration API app: the agent catalog and the clients for Context, State and LangChain."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.agents import load_agents
from services.common.service import create_service
from services.common.settings import Settings
from services.context_api.client import CodeSessionsClient
from services.langchain_api.client import LangChainClient
from services.orchestration_api import routes
from services.orchestration_api.builder import OrchestrationBuilder
from services.orchestration_api.orchestration import AgentOrchestration
from services.orchestration_api.rewrite import UserPromptRewriter
from services.state_api.client import StateClient

PACKAGE = "orchestration_api"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    clients: list = []

    async def start() -> None:
        # Clients are made after telemetry is set up, so the httpx instrumentation covers them.
        code_sessions, state, langchain = CodeSessionsClient(settings), StateClient(settings), LangChainClient(settings)
        clients.extend((code_sessions, state, langchain))
        builder = OrchestrationBuilder(load_agents(), code_sessions)
        rewriter = UserPromptRewriter()
        clients.append(rewriter)
        app.state.orchestration = AgentOrchestration(builder, state, langchain, rewriter)

    async def stop() -> None:
        for client in clients:
            await client.aclose()

    app = create_service(PACKAGE, settings, title="OrchestrationAPI", on_startup=[start], on_shutdown=[stop])
    app.include_router(routes.router)
    return app
