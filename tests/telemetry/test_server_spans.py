"""The SERVER span every service's requests get (telemetry.server_spans), through a real app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from services.common.errors import install_error_handlers
from tests.in_process_spans import capture_spans

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return capture_spans("state_api")


@pytest.fixture(scope="module")
def client(spans: InMemorySpanExporter) -> Iterator[TestClient]:
    from telemetry.server_spans import TracedFastAPI

    app: FastAPI = TracedFastAPI()
    install_error_handlers(app)

    @app.get("/instances/{instance_id}/items/{item_id}")
    async def item(instance_id: str, item_id: str) -> dict[str, str]:
        return {"item": item_id}

    @app.get("/unavailable")
    async def unavailable() -> JSONResponse:
        return JSONResponse({"error": "down"}, status_code=503)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("the store is gone")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(iter([b"a", b"b", b"c"]))

    @app.get("/status")
    async def status() -> dict[str, str]:
        return {"status": "ready"}

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def only_server_span(spans: InMemorySpanExporter) -> ReadableSpan:
    (span,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    return span


def test_a_request_is_one_server_span_named_by_its_route_under_the_callers_trace(
    client: TestClient, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    baggage = "foundationallm.operation_id=op-1,foundationallm.instance_id=inst-1"
    answer = client.get("/instances/i-1/items/42?expand=true&sig=secret-signature",
                        headers={"traceparent": TRACEPARENT, "baggage": baggage})
    assert answer.status_code == 200
    span = only_server_span(spans)
    assert span.name == "GET /instances/{instance_id}/items/{item_id}"
    assert format(span.context.trace_id, "032x") == CALLER_TRACE
    assert span.parent is not None and format(span.parent.span_id, "016x") == CALLER_SPAN
    assert span.parent.is_remote
    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.route"] == "/instances/{instance_id}/items/{item_id}"
    assert attributes["url.path"] == "/instances/i-1/items/42"
    assert attributes["url.query"] == "expand=true&sig=REDACTED"
    assert attributes["url.scheme"] == "http"
    assert attributes["server.address"] == "testserver"
    assert attributes["network.protocol.version"] == "1.1"
    assert attributes["http.response.status_code"] == 200
    # The FoundationaLLM ids carried in baggage are stamped on the span.
    assert attributes["foundationallm.operation_id"] == "op-1"
    assert attributes["foundationallm.instance_id"] == "inst-1"
    assert span.status.status_code is StatusCode.UNSET


def test_without_a_caller_the_span_starts_a_trace(client: TestClient, spans: InMemorySpanExporter) -> None:
    spans.clear()
    client.get("/instances/i-1/items/1", headers={"traceparent": "00-garbage-01"})
    span = only_server_span(spans)
    assert span.parent is None
    assert span.context.trace_id != 0


def test_a_5xx_answer_marks_the_span_error(client: TestClient, spans: InMemorySpanExporter) -> None:
    spans.clear()
    assert client.get("/unavailable").status_code == 503
    span = only_server_span(spans)
    assert span.name == "GET /unavailable"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "503"
    assert span.attributes["http.response.status_code"] == 503


def test_an_exception_is_recorded_on_the_span_with_the_500_it_became(
    client: TestClient, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    answer = client.get("/boom")
    assert answer.status_code == 500
    span = only_server_span(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert "the store is gone" in (span.status.description or "")
    assert span.attributes["error.type"] == "RuntimeError"
    assert span.attributes["http.response.status_code"] == 500
    assert [event.name for event in span.events] == ["exception"]


def test_a_streamed_answer_ends_the_span_once_with_the_whole_body(
    client: TestClient, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    assert client.get("/stream").content == b"abc"
    span = only_server_span(spans)
    assert span.name == "GET /stream"
    assert span.attributes["http.response.status_code"] == 200


def test_unmatched_paths_are_named_by_method_and_health_checks_are_not_traced(
    client: TestClient, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    assert client.get("/status").status_code == 200
    assert spans.get_finished_spans() == ()
    assert client.get("/nowhere").status_code == 404
    span = only_server_span(spans)
    assert span.name == "GET"
    assert "http.route" not in (span.attributes or {})
    assert span.status.status_code is StatusCode.UNSET
