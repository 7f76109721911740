"""The State API in-process: its store on both backends, its app driven through httpx.ASGITransport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.settings import DEFAULT_INSTANCE_ID, Settings
from tests.in_process_spans import capture_spans

API_KEY = "state-test-key"
HEADERS = {"X-API-KEY": API_KEY}
INSTANCE = DEFAULT_INSTANCE_ID


@pytest.fixture(scope="session", autouse=True)
def span_exporter() -> InMemorySpanExporter:
    """Telemetry configured once for this process, files off, before any app configures it."""
    return capture_spans("state_api")


@asynccontextmanager
async def state_api(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The State API app on the SQLite store in ``data_dir``; its store closed at the end (not its lifespan,
    which would shut the test process's telemetry down)."""
    from services.state_api import create_app

    app = create_app(Settings(data_dir=data_dir, api_keys={"state_api": API_KEY}))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://state-api", headers=HEADERS,
                                     timeout=30) as client:
            yield client
    finally:
        app.state.store.close()
