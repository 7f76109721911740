"""The SERVER span of each request a service answers: opentelemetry-instrumentation-fastapi on the app.

FastAPI's built-in telemetry is off, so no request gets two SERVER spans; the ASGI ``receive``/``send``
child spans are left out (they only repeat the server span); health checks are not traced; the HTTP
server metrics are left out (span metrics cover them). Code session ids, secrets that name a live
session, are hashed in ``url.path`` and ``url.query``.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from opentelemetry import metrics
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.trace import Span

from telemetry import conventions as c
from telemetry.context import hashed
from telemetry.http_client import SESSION_IN_PATH, redact_session_ids

HEALTH_PATHS = ("/status", "/health")
FASTAPI_TELEMETRY_OFF = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def _redact_session(span: Span, scope: dict[str, Any]) -> None:
    if not span.is_recording():
        return
    path = scope.get("path", "")
    redacted = redact_session_ids(path)
    if redacted != path:
        span.set_attribute("url.path", redacted)
        if match := SESSION_IN_PATH.search(path):
            span.set_attribute(c.ATTR_CODE_SESSION_ID_HASH, hashed(match.group(2)))
    query = scope.get("query_string", b"").decode("latin-1")
    if "identifier=" in query:
        span.set_attribute("url.query", redact_session_ids("?" + query)[1:])


def instrument_app(app: FastAPI, untraced_prefixes: tuple[str, ...] = ()) -> None:
    """``untraced_prefixes``: paths whose requests are not traced besides the health checks (the portal's
    trace viewer: reading traces must not write traces that would then show in the latency report)."""
    # Anchored at the authority: a route that ends in /status (an operation's) stays traced.
    excluded = [f"://[^/]+{path}/?$" for path in HEALTH_PATHS]
    excluded += [f"://[^/]+{re.escape(prefix)}" for prefix in untraced_prefixes]
    FastAPIInstrumentor.instrument_app(
        app,
        server_request_hook=_redact_session,
        excluded_urls=",".join(excluded),
        exclude_spans=["receive", "send"],
        meter_provider=metrics.NoOpMeterProvider(),
    )
