"""The real chain for end-to-end tests: every service a uvicorn process on loopback, spans exported over
OTLP/HTTP to a receiver run by the test (and to the embedded traces.jsonl)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.launcher import REPO, Chain
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

CODE_PROMPT = "Please run this:\n```python\nx = 6 * 7\nprint('answer', x)\n```"


@dataclass
class LiveChain:
    chain: Chain
    receiver: OtlpReceiver

    def ask(self, prompt: str = CODE_PROMPT, agent: str = "code-interpreter", *extra: str,
            env: dict[str, str] | None = None) -> dict:
        """``callstack ask --json`` as a separate process: the portal's spans come from it."""
        run_env = {**self.chain.service_env(), **(env or {})}
        completed = subprocess.run(
            [sys.executable, "-m", "services.cli", "ask", prompt, "--agent", agent, "--json",
             "--core-url", self.chain.url("core_api"), "--data-dir", str(self.chain.data_dir), "--timeout", "60",
             *extra],
            cwd=REPO, env=run_env, capture_output=True, text=True, timeout=120,
        )
        assert completed.stdout, f"callstack ask printed nothing: {completed.stderr[-3000:]}"
        return json.loads(completed.stdout.strip().splitlines()[-1])

    def spans(self, trace_id: str, expect_services: set[str], timeout_s: float = 10.0) -> list[ReceivedSpan]:
        """The trace's spans once every expected service has exported its part."""
        self.receiver.wait_for(
            lambda: expect_services <= {span.service for span in self.receiver.trace(trace_id)}, timeout_s
        )
        # Spans of one service arrive in several batches: let the last ones land.
        return self.receiver.settle(trace_id, quiet_s=0.4)


def start_chain(tmp: Path, otlp_endpoint: str, **options: object) -> Chain:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "FLLM_CODE_POOL_SIZE": "1",
        "FLLM_TELEMETRY_FILE": "on",  # whatever an in-process test left in this process's environment
        **options.pop("env", {}),  # type: ignore[dict-item]
    }
    return Chain(tmp, ephemeral_ports=True, env=env, **options).start()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[LiveChain]:
    chain = start_chain(tmp_path_factory.mktemp("chain"), receiver.endpoint)
    yield LiveChain(chain, receiver)
    chain.stop()


os.environ.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "otel")
