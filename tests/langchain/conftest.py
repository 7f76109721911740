"""The LangChain tests' shared fixtures: LangChain's spans in process, and a real chain (each module its own:
the chain tests' ``receiver`` and ``live`` fixtures)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.chain.conftest import live, receiver  # noqa: F401 - fixtures, used by name
from tests.in_process_spans import capture_spans


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return capture_spans("langchain_api")
