"""The CLIENT span of every hop call: opentelemetry-instrumentation-httpx on each client a service makes.

Clients are instrumented one by one (``instrument_client``), not by patching httpx's transport class,
so any transport plugged into httpx is traced the same way. Code session ids (secrets) are hashed in
``url.full``; the HTTP client metrics are left out (span metrics cover them).
"""

from __future__ import annotations

import re
import urllib.parse

import httpx
from opentelemetry import metrics
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor, RequestInfo
from opentelemetry.trace import Span

from telemetry.context import hashed

SESSION_IN_PATH = re.compile(r"(/codeSessions/)([^/?#]+)", re.IGNORECASE)
_SESSION_IN_QUERY = re.compile(r"([?&]identifier=)([^&#]*)")


def redact_session_ids(url: str) -> str:
    """A URL with its code session identifiers replaced by their keyed hashes."""
    url = SESSION_IN_PATH.sub(lambda m: m.group(1) + hashed(urllib.parse.unquote(m.group(2))), url)
    return _SESSION_IN_QUERY.sub(lambda m: m.group(1) + hashed(urllib.parse.unquote_plus(m.group(2))), url)


async def _redact_url(span: Span, request: RequestInfo) -> None:
    url = str(request.url)
    redacted = redact_session_ids(url)
    if redacted != url and span.is_recording():
        span.set_attribute("url.full", redacted)


def instrument_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    HTTPXClientInstrumentor.instrument_client(
        client, request_hook=_redact_url, meter_provider=metrics.NoOpMeterProvider()
    )
    return client
