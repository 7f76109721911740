"""The LangChain tests' shared fixtures: LangChain's spans in process, and a real chain (each module its own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.chain.conftest import LiveChain, start_chain
from tests.in_process_spans import capture_spans
from tests.otlp_receiver import OtlpReceiver


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return capture_spans("langchain_api")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveChain]:
    receiver = OtlpReceiver().start()
    chain = start_chain(tmp_path_factory.mktemp("langchain-chain"), receiver.endpoint)
    yield LiveChain(chain, receiver)
    chain.stop()
    receiver.stop()
