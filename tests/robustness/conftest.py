"""One real chain for the whole package (security, bad input, durability): started once, on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import FaultChain, start_fault_chain, stop_fault_chain
from tests.otlp_receiver import OtlpReceiver

ENV = {"FLLM_HOP_TIMEOUT_S": "10", "FLLM_OPERATION_STALE_AFTER_S": "30"}


@pytest.fixture(scope="package")
def package_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory, package_receiver: OtlpReceiver) -> Iterator[FaultChain]:
    """The chain without proxies: callers talk to the real services."""
    chain = start_fault_chain(tmp_path_factory.mktemp("robustness"), package_receiver, ENV, proxied=())
    yield chain
    stop_fault_chain(chain)
