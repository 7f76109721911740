"""Spans of the apps a test runs in its own process: the SDK configured once (files off), spans kept in memory."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.settings import Settings


def sdk_provider(package: str) -> TracerProvider:
    """The process's SDK tracer provider; configured as ``package``'s telemetry if nothing was yet."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        from services.common.service import start_telemetry

        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("FLLM_TELEMETRY_FILE", "off")
            start_telemetry(package, Settings())
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "an SDK tracer provider is needed to collect spans"
    return provider


def capture_spans(package: str) -> InMemorySpanExporter:
    """Every span ended in this process from now on (whichever package configured telemetry first)."""
    exporter = InMemorySpanExporter()
    sdk_provider(package).add_span_processor(SimpleSpanProcessor(exporter))
    return exporter
