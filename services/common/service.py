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

from services.common.coalescing import CoalescingH11Protocol, CoalescingHttpToolsProtocol
from services.common.errors import install_error_handlers
from services.common.limits import JsonBodyLimitMiddleware
from services.common.settings import Settings, service_name
from telemetry.context import drain_background
from telemetry.server_spans import TracedFastAPI
from telemetry.setup import TelemetrySettings, configure_telemetry, shutdown_telemetry

log = logging.getLogger("foundationallm")

Hook = Callable[[], Awaitable[None]]


def start_telemetry(package: str, settings: Settings) -> None:
    """Configure telemetry before any app or HTTP client is created (the httpx instrumentor needs it)."""
    configure_telemetry(TelemetrySettings.from_env(service_name(package), settings.data_dir))


def create_service(
    package: str,
    settings: Settings,
    *,
    title: str,
    on_startup: list[Hook] | None = None,
    on_shutdown: list[Hook] | None = None,
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
            shutdown_telemetry()

    app = TracedFastAPI(title=title, lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(JsonBodyLimitMiddleware)

    @app.get("/status", include_in_schema=False)
    async def status() -> dict[str, str]:
        return {"name": title, "instance_id": settings.instance_id, "status": "ready"}

    return app


def run(package: str, factory: Callable[[], FastAPI], *, starts_processes: bool = False) -> None:
    """Serve the app on its port (FLLM_PORT or the default), or on an inherited socket (FLLM_FD).

    The event loop is uvloop and requests are parsed by httptools, uvicorn's fast pair (``FLLM_LOOP=asyncio``
    and ``FLLM_HTTP_PARSER=h11`` are the pure-Python ones): each took ~5-10% off the chain's end to end.
    A service that ``starts_processes`` (the code services with ``FLLM_CODE_ZYGOTE=off``) keeps asyncio's loop:
    uvloop starts a process with a plain fork on the loop's thread, which stalls a ~150 MB server for ~25 ms
    per interpreter; asyncio's vfork, ~4 ms. With the zygote, the server starts one process, once.
    """
    logging.basicConfig(level=os.environ.get("FLLM_LOG_LEVEL", "WARNING"))
    settings = Settings.from_env()
    config = uvicorn.Config(
        factory(),
        host=settings.host,
        port=int(os.environ.get("FLLM_PORT", settings.port_of(package))),
        log_level=os.environ.get("FLLM_LOG_LEVEL", "warning").lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
        limit_concurrency=2000,
        http=_http_protocol(),
    )
    # An inherited socket is opened with its real family and protocol (uvicorn's own ``fd=`` path takes
    # it for a Unix socket, so asyncio never sets TCP_NODELAY and every keep-alive answer waits ~40 ms
    # for a delayed ACK).
    # Everything built so far (modules, routes, models, telemetry) lives as long as the process: frozen, the
    # collector's full passes skip it. Unfrozen, a full pass over it stalled a hop for 60-80 ms now and then.
    gc.collect()
    gc.freeze()
    sockets = [socket.socket(fileno=int(os.environ["FLLM_FD"]))] if "FLLM_FD" in os.environ else None
    serving = uvicorn.Server(config).serve(sockets=sockets)
    if os.environ.get("FLLM_LOOP", "asyncio" if starts_processes else "uvloop").lower() == "asyncio":
        asyncio.run(serving)
    else:
        uvloop.run(serving)


def _http_protocol() -> type[asyncio.Protocol] | str:
    """One send per response (``FLLM_HTTP_COALESCE=off``: uvicorn's own, head and body sent apart)."""
    parser = os.environ.get("FLLM_HTTP_PARSER", "httptools").lower()
    if os.environ.get("FLLM_HTTP_COALESCE", "on").lower() == "off":
        return parser
    return CoalescingH11Protocol if parser == "h11" else CoalescingHttpToolsProtocol
