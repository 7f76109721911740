"""Shared fixtures: the apps run in-process on an event loop in a background thread (one per module),
driven through httpx.ASGITransport; spans are collected by an in-memory exporter."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.code_execution import Executor, ExecutorConfig
from services.code_execution.config import uid_range_of
from services.common.settings import Settings
from tests.in_process_spans import capture_spans

T = TypeVar("T")
TOKEN = "test-dynamic-sessions-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
API = "2024-10-02-preview"
NEW_VERSIONS = ("2024-10-02-preview", "2025-02-02-preview", "2025-10-02-preview")
LEGACY_VERSIONS = ("2024-02-02-preview", "2024-08-02-preview")


class LoopThread:
    """An event loop in a daemon thread; ``run`` executes a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


class Harness:
    """One app with its executor started (without its lifespan, so telemetry stays configured)."""

    def __init__(self, app: FastAPI, loop: LoopThread) -> None:
        self.app, self.loop = app, loop
        self.executor: Executor = app.state.executor
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")

    def start(self) -> Harness:
        self.loop.run(self.executor.start())
        self.loop.run(self.executor.pool.wait_ready())
        return self

    def stop(self) -> None:
        self.loop.run(self.executor.stop())
        self.loop.run(self.client.aclose())

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run(self.client.request(method, url, **kwargs), timeout=kwargs.pop("wait", 60.0))

    def execute(self, identifier: str, code: str, version: str = API, headers: dict[str, str] | None = None,
                **fields: Any) -> httpx.Response:
        body = {"codeInputType": "Inline", "executionType": "Synchronous", "code": code, **fields}
        return self.request("POST", f"/executions?api-version={version}&identifier={identifier}",
                            json=body, headers={**AUTH, **(headers or {})})


@pytest.fixture(scope="module", autouse=True)
def _no_telemetry_files() -> Iterator[None]:
    """In-process apps of these tests export spans to memory only (no .callstack/traces.jsonl)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLLM_TELEMETRY_FILE", "off")
        yield


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """Spans of every in-process app, whoever configured the process's tracer provider first."""
    return capture_spans("dynamic_sessions")


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


def make_config(tmp: Path, **overrides: Any) -> ExecutorConfig:
    """Each executor gets the session uids of its own folder, as each service does: disposing of one
    executor's session kills its uid's processes, which must never be another executor's."""
    sessions_dir = tmp / "sessions"
    base = ExecutorConfig(sessions_dir=sessions_dir, pool_size=2, max_upload_bytes=1024 * 1024,
                          uid_base=uid_range_of(sessions_dir))
    return replace(base, **overrides)


def settings_for(tmp: Path) -> Settings:
    return Settings(data_dir=tmp, dynamic_sessions_token=TOKEN)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory, loop_thread: LoopThread,
             span_exporter: InMemorySpanExporter) -> Iterator[Harness]:
    """The Dynamic Sessions emulator: warm pool of 2, 1 MiB upload limit."""
    from services.dynamic_sessions import create_app

    tmp = tmp_path_factory.mktemp("emulator")
    harness = Harness(create_app(settings_for(tmp), make_config(tmp)), loop_thread).start()
    yield harness
    harness.stop()
