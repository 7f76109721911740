"""The one httpx client each service process calls its next hops with.

One ``httpx.AsyncClient`` per event loop, instrumented by opentelemetry-instrumentation-httpx. Its
transport is httpx's own (``FLLM_HTTP_TRANSPORT=httpx``) or aiohttp's through httpx-aiohttp (``aiohttp``,
the default): the same client API and CLIENT spans, with the connection pool and HTTP parsing of aiohttp,
whose C parser costs less per call than httpcore over anyio on a busy core.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from services.common.settings import TelemetrySwitches
from services.common.tls import outgoing_verify
from telemetry.http_client import instrument_client

LIMITS = httpx.Limits(max_connections=500, max_keepalive_connections=100, keepalive_expiry=2.0)
_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


class _AiohttpErrors(httpx.AsyncBaseTransport):
    """httpx-aiohttp's exception map keeps its first match, so every aiohttp connection error (a refused
    connection, a reset) reaches httpx as a ConnectTimeout. This puts httpx's own type back, below the
    instrumentation, so the CLIENT span's ``error.type`` and every caller see what happened."""

    def __init__(self, inner: AiohttpTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except httpx.TimeoutException as error:
            cause = error.__cause__
            if not isinstance(cause, aiohttp.ClientConnectionError) or isinstance(cause, asyncio.TimeoutError):
                raise
            if isinstance(cause, aiohttp.ClientConnectorError):
                raise httpx.ConnectError(str(cause), request=request) from cause
            if isinstance(cause, aiohttp.ServerDisconnectedError):
                raise httpx.RemoteProtocolError(str(cause), request=request) from cause
            raise httpx.ReadError(str(cause), request=request) from cause

    async def aclose(self) -> None:
        await self._inner.aclose()


def new_client(*, timeout: httpx.Timeout | float = 30.0, limits: httpx.Limits = LIMITS,
               headers: dict[str, str] | None = None, verify: ssl.SSLContext | bool | None = None,
               ) -> httpx.AsyncClient:
    """A new instrumented client (for callers that need their own headers or limits).

    ``verify``: how https servers are checked; None: the default roots plus FLLM_TLS_CA_FILE's CA, if set.
    """
    transport: httpx.AsyncBaseTransport
    verify = outgoing_verify() if verify is None else verify
    if TelemetrySwitches().http_transport == "aiohttp":
        transport = _AiohttpErrors(AiohttpTransport(verify=verify, limits=limits, trust_env=False))
    else:
        transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits, trust_env=False)
    client = httpx.AsyncClient(transport=transport, timeout=timeout, headers=headers, trust_env=False)
    return instrument_client(client)


def shared_client() -> httpx.AsyncClient:
    """This loop's client for every hop call of the process."""
    loop = asyncio.get_running_loop()
    client = _shared.get(loop)
    if client is None or client.is_closed:
        client = _shared[loop] = new_client()
    return client


async def close_shared_client() -> None:
    client = _shared.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()
