"""Core API app: operation contexts, the agent catalog, and clients for Gatekeeper and Orchestration."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.agents import load_agents
from services.common.service import create_service
from services.common.settings import Settings
from services.core_api import routes
from services.core_api.completions import CoreService
from services.core_api.store import OperationContexts
from services.orchestration_api.client import AsyncCompletionsClient
from telemetry import conventions as c

PACKAGE = "core_api"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    contexts = OperationContexts(settings.data_dir / "core_api.db")
    clients: dict[str, AsyncCompletionsClient] = {}

    async def start() -> None:
        # Outer hops wait longer than the hops behind them (as the original's 2700/2400/1800/60 s), so a
        # slow inner hop fails as itself, not as the hop that called it.
        ladder = ((c.GATEKEEPER_API, "gatekeeper_api", 4), (c.ORCHESTRATION_API, "orchestration_api", 3))
        for hop, package, factor in ladder:
            clients[hop] = AsyncCompletionsClient(hop, settings.urls[package], settings.api_keys[package],
                                                  settings.hop_timeout_s * factor)
        app.state.core = CoreService(settings.instance_id, load_agents(), contexts, clients, settings.gatekeeper)

    async def stop() -> None:
        for client in clients.values():
            await client.aclose()
        contexts.close()

    app = create_service(PACKAGE, settings, title="CoreAPI", on_startup=[start], on_shutdown=[stop])
    app.include_router(routes.router)
    return app
