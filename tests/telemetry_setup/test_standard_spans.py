"""SERVER spans from opentelemetry-instrumentation-fastapi and CLIENT spans from
opentelemetry-instrumentation-httpx, as every service makes them, over a real loopback connection."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from services.common.errors import HopError, install_error_handlers
from services.common.hop_client import HopClient
from services.common.http import close_shared_client
from telemetry import conventions as c
from telemetry.context import hashed, hop_span
from telemetry.server import FASTAPI_TELEMETRY_OFF, instrument_app
from tests.in_process_spans import capture_spans

FASTAPI_SCOPE = "opentelemetry.instrumentation.fastapi"
HTTPX_SCOPE = "opentelemetry.instrumentation.httpx"
SESSION_ID = "conversation-1-code_interpreter-120000000"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return capture_spans("state_api")


def _app() -> FastAPI:
    app = FastAPI(telemetry=FASTAPI_TELEMETRY_OFF)
    instrument_app(app, untraced_prefixes=("/api/traces",))
    install_error_handlers(app)

    @app.get("/instances/{instance_id}/codeSessions/{session_id}/files")
    async def files(instance_id: str, session_id: str) -> dict[str, str]:
        return {"session": session_id}

    @app.get("/executions")
    async def executions(identifier: str) -> dict[str, str]:
        return {"identifier": identifier}

    @app.get("/unavailable")
    async def unavailable() -> JSONResponse:
        return JSONResponse({"detail": "down", "failed_hop": c.CONTEXT_API}, status_code=503)

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(1)
        return {}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("the store is gone")

    @app.get("/status")
    async def status() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/api/traces/{trace_id}")
    async def viewer(trace_id: str) -> dict[str, str]:
        return {"trace": trace_id}

    @app.get("/operations/{operation_id}/status")
    async def operation_status(operation_id: str) -> dict[str, str]:
        return {"status": "InProgress"}

    return app


@pytest.fixture(scope="module")
def server(spans: InMemorySpanExporter) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(_app(), log_level="critical", http="httptools")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert instance.started
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    instance.should_exit = True
    thread.join(5)


def _call(url: str, path: str, hop: str = c.STATE_API, timeout: float = 5.0) -> httpx.Response | HopError:
    async def go() -> httpx.Response | HopError:
        try:
            with hop_span("caller.step"):
                return await HopClient(hop, url, "key", timeout_s=timeout).request("GET", path)
        except HopError as error:
            return error
        finally:
            await close_shared_client()

    return asyncio.run(go())


def _wait_for(spans: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    deadline = time.monotonic() + 5
    while len(spans.get_finished_spans()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(spans.get_finished_spans())


def _one(spans: list[ReadableSpan], kind: SpanKind) -> ReadableSpan:
    (span,) = [s for s in spans if s.kind is kind]
    return span


def test_a_hop_call_is_a_client_span_of_the_httpx_instrumentation_parenting_a_fastapi_server_span(
    server: str, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    answer = _call(server, f"/instances/i-1/codeSessions/{SESSION_ID}/files")
    assert isinstance(answer, httpx.Response) and answer.status_code == 200
    finished = _wait_for(spans, 3)
    client, served = _one(finished, SpanKind.CLIENT), _one(finished, SpanKind.SERVER)
    assert client.instrumentation_scope is not None and client.instrumentation_scope.name == HTTPX_SCOPE
    assert served.instrumentation_scope is not None and served.instrumentation_scope.name == FASTAPI_SCOPE
    assert served.parent is not None and served.parent.span_id == client.context.span_id
    assert served.name == "GET /instances/{instance_id}/codeSessions/{session_id}/files"
    server_attributes, client_attributes = dict(served.attributes or {}), dict(client.attributes or {})
    for key in ("client.address", "client.port", "user_agent.original", "network.protocol.version"):
        assert key in server_attributes, key
    assert "network.peer.address" in client_attributes
    # A code session id is a secret: hashed on both spans, never in clear.
    assert SESSION_ID not in str(server_attributes) and SESSION_ID not in str(client_attributes)
    assert hashed(SESSION_ID) in server_attributes["url.path"]
    assert hashed(SESSION_ID) in client_attributes["url.full"]
    assert server_attributes[c.ATTR_CODE_SESSION_ID_HASH] == hashed(SESSION_ID)
    # Only the server span: no ASGI receive/send spans.
    assert len([s for s in finished if s.name.startswith("GET /instances")]) == 1


def test_the_identifier_query_parameter_is_hashed_on_the_server_span(server: str, spans: InMemorySpanExporter) -> None:
    spans.clear()
    _call(server, f"/executions?identifier={SESSION_ID}")
    served = _one(_wait_for(spans, 3), SpanKind.SERVER)
    assert dict(served.attributes or {})["url.query"] == f"identifier={hashed(SESSION_ID)}"


def test_health_checks_and_untraced_prefixes_are_not_traced_but_a_route_ending_in_status_is(
    server: str, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    _call(server, "/status")
    _call(server, "/api/traces/abc")
    assert not [s for s in _wait_for(spans, 4) if s.kind is SpanKind.SERVER]
    _call(server, "/operations/op-1/status")
    served = _one(_wait_for(spans, 6), SpanKind.SERVER)
    assert served.name == "GET /operations/{operation_id}/status"


def test_an_unhandled_exception_is_one_exception_event_on_the_server_span(
    server: str, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    answer = _call(server, "/boom")
    assert isinstance(answer, HopError) and answer.status_code == 500 and "Internal error" in answer.reason
    served = _one(_wait_for(spans, 3), SpanKind.SERVER)
    assert served.status.status_code is StatusCode.ERROR
    assert [e.attributes["exception.type"] for e in served.events if e.name == "exception"] == ["RuntimeError"]


def test_a_failed_hop_names_the_hop_behind_it_and_records_one_exception(
    server: str, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    error = _call(server, "/unavailable", hop=c.LANGCHAIN_API)
    assert isinstance(error, HopError) and error.hop == c.CONTEXT_API and error.status_code == 503
    finished = _wait_for(spans, 3)
    client, step = _one(finished, SpanKind.CLIENT), next(s for s in finished if s.name == "caller.step")
    assert client.status.status_code is StatusCode.ERROR
    assert dict(client.attributes or {})["http.response.status_code"] == 503
    events = [e for s in finished for e in s.events if e.name == "exception"]
    assert len(events) == 1 and events[0] in step.events
    assert dict(step.attributes or {})[c.ATTR_FAILED_HOP] == c.CONTEXT_API


def test_a_refused_connection_is_a_hop_that_could_not_be_reached(spans: InMemorySpanExporter) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    spans.clear()
    error = _call(f"http://127.0.0.1:{port}", "/anything", hop=c.STATE_API)
    assert isinstance(error, HopError) and error.hop == c.STATE_API
    assert "could not be reached" in error.reason
    client = _one(_wait_for(spans, 2), SpanKind.CLIENT)
    assert client.status.status_code is StatusCode.ERROR
    assert dict(client.attributes or {})["error.type"] == "ConnectError"  # refused, not a timeout
    assert client.instrumentation_scope is not None and client.instrumentation_scope.name == HTTPX_SCOPE


def test_a_hop_that_answers_too_late_timed_out(server: str, spans: InMemorySpanExporter) -> None:
    spans.clear()
    error = _call(server, "/slow", hop=c.STATE_API, timeout=0.3)
    assert isinstance(error, HopError) and "did not answer GET /slow in time" in error.reason
