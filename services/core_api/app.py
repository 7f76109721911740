"""Core API app: operation contexts, the agent catalog, and clients for Gatekeeper, Orchestration and (for
the files completions produced) the Context API."""

from __future__ import annotations

from fastapi import FastAPI

from services.auth.config import AuthConfig
from services.auth.entry import install_bearer_auth, local_issuer_keys
from services.common.agents import load_agents
from services.common.service import create_service
from services.common.settings import Settings
from services.core_api import files, routes
from services.core_api.completions import CoreService
from services.core_api.files import ContextFilesClient
from services.core_api.store import OperationContexts
from services.orchestration_api.client import AsyncCompletionsClient
from telemetry import conventions as c

PACKAGE = "core_api"


def create_app(settings: Settings | None = None, auth: AuthConfig | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    auth = auth or AuthConfig.from_env(settings.data_dir)
    local_issuer_keys(auth, settings.data_dir)
    contexts = OperationContexts(settings.data_dir)
    clients: dict[str, AsyncCompletionsClient] = {}

    async def start() -> None:
        # Outer hops wait longer than the hops behind them (as the original's 2700/2400/1800/60 s): the
        # timeout ladder of services/registry.py.
        for hop, package in ((c.GATEKEEPER_API, "gatekeeper_api"), (c.ORCHESTRATION_API, "orchestration_api")):
            clients[hop] = AsyncCompletionsClient(hop, settings.urls[package], settings.api_keys[package],
                                                  settings.timeout_of(package))
        app.state.core = CoreService(settings.instance_id, load_agents(), contexts, clients, settings.gatekeeper,
                                     base_url=settings.urls[PACKAGE],
                                     poll_failure_limit_s=settings.poll_failure_limit_s)
        app.state.context_files = ContextFilesClient(settings.urls["context_api"], settings.api_keys["context_api"],
                                                     settings.timeout_of("context_api"))

    async def stop() -> None:
        await validator.keys.aclose()
        for client in clients.values():
            await client.aclose()
        if getattr(app.state, "context_files", None) is not None:
            await app.state.context_files.aclose()
        contexts.close()

    app = create_service(PACKAGE, settings, title="CoreAPI", on_startup=[start], on_shutdown=[stop])
    validator = install_bearer_auth(app, auth)  # Entra ID bearer tokens, as the original (services/auth)
    app.include_router(routes.router)
    app.include_router(files.router)
    return app
