"""Fixtures: the Context API in-process (its own start/stop, driven through httpx.ASGITransport), the
providers as real uvicorn processes on inherited loopback sockets, spans collected in memory."""

from __future__ import annotations

import json
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.models import UnifiedUserIdentity
from services.common.settings import DEFAULT_INSTANCE_ID, Settings
from services.context_api.config import CODE_INTERPRETER, CUSTOM_CONTAINER, ContextApiConfig
from services.context_api.providers import TokenSource
from tests.in_process_spans import capture_spans
from tests.real_service import start_code_service

REPO = Path(__file__).resolve().parents[2]
KEY = "test-context-api-key"
INSTANCE = DEFAULT_INSTANCE_ID
BASE = f"/instances/{INSTANCE}"
ALICE = UnifiedUserIdentity(name="Alice", user_name="alice@contoso.com", user_id="u-alice", upn="alice@contoso.com")
BOB = UnifiedUserIdentity(name="Bob", user_name="bob@contoso.com", user_id="u-bob", upn="bob@contoso.com")


def headers_for(user: UnifiedUserIdentity = ALICE) -> dict[str, str]:
    return {"X-API-KEY": KEY, "X-USER-IDENTITY": user.model_dump_json()}


def create_body(provider: str = CODE_INTERPRETER, conversation: str = "conv-1", context: str = "Code",
                **extra: Any) -> dict[str, Any]:
    return {"agent_name": "code-interpreter", "conversation_id": conversation, "context": context,
            "endpoint_provider": provider, "language": "Python", **extra}


def make_settings(data_dir: Path, token: str = "unused-token") -> Settings:
    return Settings(data_dir=data_dir, api_keys={"context_api": KEY}, dynamic_sessions_token=token)


def make_config(code_interpreter: str, custom_container: str, **overrides: Any) -> ContextApiConfig:
    endpoints = {CODE_INTERPRETER: {"Python": [code_interpreter], "CSharp": []},
                 CUSTOM_CONTAINER: {"Python": [custom_container], "CSharp": []}}
    return ContextApiConfig(endpoints=endpoints, **overrides)


def make_app(data_dir: Path, config: ContextApiConfig, token_source: TokenSource | None = None,
             token: str = "unused-token") -> FastAPI:
    from services.context_api import create_app

    settings = make_settings(data_dir, token)
    return create_app(settings, config=config, token_source=token_source or TokenSource(token))


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app's own start/stop, not its lifespan: the lifespan would shut the test process's telemetry down."""
    context = app.state.context
    await context.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://context-api", timeout=120) as client:
            yield client
    finally:
        await context.stop()


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session", autouse=True)
def span_exporter() -> InMemorySpanExporter:
    """Spans of the in-process Context API (telemetry is configured once per process, files off: see
    capture_spans; no variable is left set for the chains later tests start)."""
    return capture_spans("context_api")


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


@dataclass
class Provider:
    package: str
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # flushes its spans to traces.jsonl
            self.process.wait(15)

    def spans(self) -> list[dict[str, Any]]:
        found = []
        path = self.data_dir / "traces.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            for resource in json.loads(line)["resourceSpans"]:
                for scope in resource["scopeSpans"]:
                    found.extend(scope["spans"])
        return found

    def wait_for_span(self, trace_id: str, name: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for span in self.spans():
                if span["traceId"] == trace_id and span["name"] == name:
                    return span
            time.sleep(0.1)
        raise AssertionError(f"{self.package} wrote no span {name!r} in trace {trace_id}")


def start_provider(package: str, data_dir: Path, token: str) -> Provider:
    chain = start_code_service(package, data_dir, token)
    process = chain.services[package].process
    assert process is not None
    return Provider(package, chain.url(package), data_dir, process)


@dataclass
class Providers:
    token: str
    dynamic_sessions: Provider
    code_session_api: Provider


def app_for(providers: Providers, data_dir: Path, **overrides: Any) -> FastAPI:
    """The Context API in-process, calling the real provider processes of ``providers``."""
    config = make_config(providers.dynamic_sessions.url, providers.code_session_api.url, **overrides)
    return make_app(data_dir, config, TokenSource(providers.token), token=providers.token)


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POST ``body`` as Alice under the instance; the answer must be 200, its JSON is returned."""
    response = await client.post(f"{BASE}{path}", json=body, headers=headers_for(), **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


async def create_session(client: httpx.AsyncClient, provider: str, conversation: str, **extra: Any) -> str:
    """Alice's code session for the conversation (Orchestration's POST /codeSessions); its id."""
    return (await post(client, "/codeSessions", create_body(provider, conversation, **extra)))["session_id"]


async def execute_code(client: httpx.AsyncClient, session: str, code: str) -> dict[str, Any]:
    """Run ``code`` in the session (POST .../executeCode, must answer 200); the answer's JSON."""
    return await post(client, f"/codeSessions/{session}/executeCode", {"code_to_execute": code})


async def attach(client: httpx.AsyncClient, conversation: str, name: str, content: bytes) -> dict[str, Any]:
    """Attach a file to Alice's conversation (the Context API's POST /files)."""
    response = await client.post(f"{BASE}/files", headers=headers_for(), data={"conversation_id": conversation},
                                 files={"file": (name, content, "text/csv")})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def providers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Providers]:
    """The Dynamic Sessions emulator and the Code Session API, each a real uvicorn process."""
    token = secrets.token_urlsafe(24)
    emulator = start_provider("dynamic_sessions", tmp_path_factory.mktemp("dynamic-sessions"), token)
    try:
        container = start_provider("code_session_api", tmp_path_factory.mktemp("code-session-api"), token)
    except BaseException:
        emulator.stop()
        raise
    yield Providers(token, emulator, container)
    emulator.stop()
    container.stop()
