"""How every service is built and run: telemetry first, then the FastAPI app, then uvicorn."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import uvicorn
import uvloop
from fastapi import FastAPI

from services.common.errors import install_error_handlers
from services.common.http import close_shared_client
from services.common.limits import JsonBodyLimitMiddleware
from services.common.settings import Settings, TelemetrySwitches, TlsSettings, service_name
from telemetry.context import drain_background
from telemetry.server import FASTAPI_TELEMETRY_OFF, instrument_app
from telemetry.setup import TelemetrySettings, configure_telemetry, shutdown_telemetry

log = logging.getLogger("foundationallm")

Hook = Callable[[], Awaitable[None]]


def start_telemetry(package: str, settings: Settings) -> None:
    """Configure telemetry before any app or HTTP client is created (the httpx instrumentor needs it)."""
    configure_telemetry(TelemetrySettings.from_env(service_name(package), settings.data_dir, settings.instance_id))


def create_service(
    package: str,
    settings: Settings,
    *,
    title: str,
    on_startup: list[Hook] | None = None,
    on_shutdown: list[Hook] | None = None,
    untraced_prefixes: tuple[str, ...] = (),
) -> FastAPI:
    start_telemetry(package, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for hook in on_startup or []:
            await hook()
        try:
            yield
        finally:
            await drain_background()
            for hook in on_shutdown or []:
                await hook()
            await close_shared_client()
            shutdown_telemetry()

    app = FastAPI(title=title, lifespan=lifespan, telemetry=FASTAPI_TELEMETRY_OFF)
    instrument_app(app, untraced_prefixes)
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(JsonBodyLimitMiddleware)

    @app.get("/status", include_in_schema=False)
    async def status() -> dict[str, str]:
        return {"name": title, "instance_id": settings.instance_id, "status": "ready"}

    return app


def run(package: str, factory: Callable[[], FastAPI]) -> None:
    """Serve the app on its port (FLLM_PORT or the default), or on an inherited socket (FLLM_FD); over https
    when FLLM_TLS_CERT_FILE and FLLM_TLS_KEY_FILE are set.

    The event loop is uvloop and requests are parsed by httptools, uvicorn's own fast pair (``FLLM_LOOP=asyncio``
    and ``FLLM_HTTP_PARSER=h11`` are the pure-Python ones).
    """
    switches = TelemetrySwitches()
    logging.basicConfig(level=switches.log_level)
    settings = Settings.from_env()
    config = uvicorn.Config(
        factory(),
        host=settings.host,
        port=switches.port if switches.port is not None else settings.port_of(package),
        log_level=switches.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
        limit_concurrency=2000,
        http=switches.http_parser,
        **TlsSettings().uvicorn_options(),  # https with FLLM_TLS_CERT_FILE and FLLM_TLS_KEY_FILE
    )
    # An inherited socket is opened with its real family and protocol (uvicorn's own ``fd=`` path takes
    # it for a Unix socket, so asyncio never sets TCP_NODELAY and every keep-alive answer waits ~40 ms
    # for a delayed ACK).
    # Everything built so far (modules, routes, models, telemetry) lives as long as the process: frozen, the
    # collector's full passes skip it. Unfrozen, a full pass over it stalled a hop for 60-80 ms now and then.
    gc.collect()
    gc.freeze()
    sockets = [socket.socket(fileno=switches.fd)] if switches.fd is not None else None
    serving = _serve(uvicorn.Server(config), sockets, switches.parent_pid)
    if switches.loop == "asyncio":
        asyncio.run(serving)
    else:
        uvloop.run(serving)


async def _serve(server: uvicorn.Server, sockets: list[socket.socket] | None, parent_pid: int | None) -> None:
    watch = asyncio.ensure_future(exit_with_parent(server, parent_pid)) if parent_pid is not None else None
    try:
        await server.serve(sockets=sockets)
    finally:
        if watch is not None:
            watch.cancel()


async def exit_with_parent(server: uvicorn.Server, parent_pid: int, every_s: float = 1.0) -> None:
    """Stop as on SIGTERM once the launcher that started this service is gone (its children are then
    handed to another parent): a chain whose launcher was killed would otherwise keep its ports, its
    sandboxes and its CPU with nobody left to stop it."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(every_s)
    log.warning("the launcher that started this service (pid %d) is gone: stopping", parent_pid)
    server.should_exit = True
