"""A fake Core API under a real uvicorn on loopback, and an in-memory span exporter for the client's spans.

The fake answers like Core: 202 + an InProgress LongRunningOperation (with ``trace_id``, taken from the
``traceparent`` the POST carried, as the real Core's trace), then InProgress for a number of polls or
until a moment, then Completed with the agent Message (camelCase) as ``result``. It can honour
``?wait=`` (long-poll) or ignore it, and it records the headers and query of every request.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.settings import DEFAULT_INSTANCE_ID
from tests.chain.conftest import live, receiver  # noqa: F401 - fixtures (test_trace_pages' real chain)
from tests.in_process_spans import capture_spans

PROGRESS = "Running agent tools..."


def answer_to(prompt: str) -> str:
    return f"The agent answers: {prompt[::-1]}"


@dataclass
class FakeOperation:
    operation_id: str
    session_id: str
    prompt: str
    trace_id: str
    in_progress_polls: int | None
    complete_at: float | None
    fail: bool
    polls: int = 0
    content: list[dict[str, Any]] = field(default_factory=list)  # extra content items once Completed
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    def done(self) -> bool:
        by_polls = self.in_progress_polls is not None and self.polls > self.in_progress_polls
        by_time = self.complete_at is not None and time.monotonic() >= self.complete_at
        return by_polls or by_time

    def body(self) -> dict[str, Any]:
        done = self.done()
        status = ("Failed" if self.fail else "Completed") if done else "InProgress"
        text = ("The code raised ZeroDivisionError" if self.fail else answer_to(self.prompt)) if done else PROGRESS
        message = {
            "id": f"agent-{self.operation_id}",
            "type": "Message",
            "sessionId": self.session_id,
            "operation_id": self.operation_id,
            "sender": "Agent",
            "senderDisplayName": "code-interpreter",
            "text": text,
            "status": status,
            "content": [{"type": "text", "fileName": None, "value": text}, *(self.content if done else [])],
            "contentArtifacts": self.artifacts if done else [],
        }
        return {
            "id": self.operation_id,
            "type": "LongRunningOperation",
            "operation_id": self.operation_id,
            "status": status,
            "status_message": text if status != "Completed" else None,
            "result": message,
            "trace_id": self.trace_id,
            "failed_hop": "context-api" if self.fail and done else None,
        }


@dataclass
class FakeCore:
    url: str = ""
    instance_id: str = DEFAULT_INSTANCE_ID
    # behaviour of the next submissions
    in_progress_polls: int | None = 2
    complete_after_s: float | None = None
    honour_wait: bool = False
    fail: bool = False
    start_failed: bool = False  # Core's 202 with a Failed operation (it could not start it)
    content: list[dict[str, Any]] = field(default_factory=list)  # added to the completed Message
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # served by Core's files route
    file_requests: list[dict[str, Any]] = field(default_factory=list)
    # what was received
    submissions: list[dict[str, Any]] = field(default_factory=list)
    polls: list[dict[str, Any]] = field(default_factory=list)
    operations: dict[str, FakeOperation] = field(default_factory=dict)

    def reset(self, **behaviour: Any) -> FakeCore:
        self.in_progress_polls, self.complete_after_s, self.honour_wait = 2, None, False
        self.fail = self.start_failed = False
        self.content, self.artifacts, self.files = [], [], {}
        self.file_requests.clear()
        for key, value in behaviour.items():
            setattr(self, key, value)
        self.submissions.clear()
        self.polls.clear()
        return self

    def app(self) -> FastAPI:
        app = FastAPI()

        def denied(instance_id: str) -> JSONResponse | None:
            if instance_id != self.instance_id:
                body = {"title": "Forbidden", "status": 403, "detail": "Access denied. Invalid instance ID."}
                return JSONResponse(body, status_code=403)
            return None

        @app.post("/instances/{instance_id}/async-completions")
        async def start(instance_id: str, request: Request) -> JSONResponse:
            body = await request.json()
            traceparent = request.headers.get("traceparent", "")
            baggage = request.headers.get("baggage")
            self.submissions.append({"body": body, "traceparent": traceparent, "baggage": baggage,
                                     "authorization": request.headers.get("authorization")})
            if (problem := denied(instance_id)) is not None:
                return problem
            if not body.get("user_prompt") or not body.get("session_id"):
                return JSONResponse({"detail": "user_prompt and session_id are required",
                                     "errors": [{"field": "user_prompt", "message": "required"}]}, status_code=400)
            operation = FakeOperation(
                operation_id=body.get("operation_id") or str(uuid.uuid4()),
                session_id=body["session_id"],
                prompt=body["user_prompt"],
                trace_id=traceparent.split("-")[1] if traceparent.count("-") == 3 else uuid.uuid4().hex,
                in_progress_polls=self.in_progress_polls,
                complete_at=time.monotonic() + self.complete_after_s if self.complete_after_s is not None else None,
                fail=self.fail,
                content=list(self.content),
                artifacts=list(self.artifacts),
            )
            self.operations[operation.operation_id] = operation
            answer = operation.body()
            if self.start_failed:
                reason = "Could not start completion operation due to an internal error."
                message = {**answer["result"], "text": reason, "status": "Failed"}
                answer.update(status="Failed", status_message=reason, result=message)
            else:
                answer.update(status="InProgress", status_message=None, result=None)
            return JSONResponse(answer, status_code=202)

        @app.get("/instances/{instance_id}/async-completions/{operation_id}/status")
        async def status(instance_id: str, operation_id: str, request: Request) -> JSONResponse:
            if (problem := denied(instance_id)) is not None:
                return problem
            operation = self.operations.get(operation_id)
            wait = float(request.query_params.get("wait", "0"))
            self.polls.append({"operation_id": operation_id, "traceparent": request.headers.get("traceparent", ""),
                               "wait": request.query_params.get("wait"), "at": time.monotonic()})
            if operation is None:
                return JSONResponse({"detail": f"Operation {operation_id} was not found."}, status_code=404)
            if self.honour_wait and wait > 0 and not operation.done():
                deadline = time.monotonic() + wait
                while not operation.done() and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
            operation.polls += 1
            return JSONResponse(operation.body())

        @app.get("/instances/{instance_id}/files/FoundationaLLM.Context/{file_id}")
        async def file(instance_id: str, file_id: str, request: Request) -> Response:
            self.file_requests.append({"file_id": file_id, "authorization": request.headers.get("authorization")})
            if (problem := denied(instance_id)) is not None:
                return problem
            if file_id not in self.files:
                return JSONResponse({"detail": f"File {file_id} was not found."}, status_code=404)
            content, media_type = self.files[file_id]
            return Response(content, media_type=media_type)

        return app


def png(width: int = 48, height: int = 24) -> bytes:
    """A real PNG (a blue bar on white), built by hand: no imaging library needed."""
    rows = b"".join(b"\x00" + b"".join(b"\x1f\x6f\xeb" if y > height // 3 and x < width * 2 // 3 else b"\xff\xff\xff"
                                         for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class ServerThread:
    """uvicorn serving an app on 127.0.0.1 (a free port) in a daemon thread."""

    def __init__(self, app: FastAPI) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake Core API did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self._socket.close()


@pytest.fixture(scope="session")
def fake_core_server() -> Iterator[FakeCore]:
    fake = FakeCore()
    server = ServerThread(fake.app()).start()
    fake.url = server.url
    yield fake
    server.stop()


@pytest.fixture()
def fake_core(fake_core_server: FakeCore) -> FakeCore:
    return fake_core_server.reset()


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """Spans of this process, whoever configured its tracer provider first (as the services do,
    with the httpx instrumentation on, but no telemetry files)."""
    return capture_spans("portal")


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def trace_id_hex(span: ReadableSpan) -> str:
    return format(span.context.trace_id, "032x")


def traceparent_trace_id(traceparent: str) -> str:
    parts = traceparent.split("-")
    assert len(parts) == 4, f"not a traceparent: {traceparent!r}"
    return parts[1]
