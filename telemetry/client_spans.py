"""The CLIENT span of one call to the next hop, for calls that do not go through httpx.

It is the span the OpenTelemetry httpx instrumentation makes under the stable HTTP semantic conventions
(``OTEL_SEMCONV_STABILITY_OPT_IN=http``), so a hop reads the same in Jaeger and in the span metrics
whichever client made it: named by the method; ``http.request.method``, ``url.full`` (code session ids
hashed), ``server.address``, ``server.port``, ``network.protocol.version`` and
``http.response.status_code``; ``error.type`` and an ERROR status for an exception or a status >= 400.
The request's headers get the trace context and the baggage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from telemetry.context import record_failure, tracer
from telemetry.setup import redact_session_ids

_TRACER_NAME = "fllm-callstack.hop-client"


class ClientCall:
    """What the caller reports about the answer."""

    def __init__(self, span: Span) -> None:
        self.span = span

    def answered(self, status_code: int) -> None:
        if not self.span.is_recording():
            return
        self.span.set_attribute("http.response.status_code", status_code)
        if status_code >= 400:
            self.span.set_attribute("error.type", str(status_code))
            self.span.set_status(Status(StatusCode.ERROR))


@contextmanager
def client_call(method: str, url: str, host: str, port: int,
                headers: MutableMapping[str, str]) -> Iterator[ClientCall]:
    attributes = {
        "http.request.method": method,
        "url.full": redact_session_ids(url),
        "server.address": host,
        "server.port": port,
        "network.protocol.version": "1.1",
    }
    span = tracer(_TRACER_NAME).start_span(method, kind=SpanKind.CLIENT, attributes=attributes)
    if span.get_span_context().is_valid:  # a trace sampled out upstream is carried on as sampled out
        propagate.inject(headers, context=trace.set_span_in_context(span))
    try:
        yield ClientCall(span)
    except BaseException as error:
        if not isinstance(error, asyncio.CancelledError | GeneratorExit):
            record_failure(error, span)
        raise
    finally:
        span.end()
