"""Azure Monitor and OTLP at once, from a real service process, with ingestion on loopback only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.launcher import Chain
from telemetry import conventions as c
from tests.loopback_http import LoopbackServer, Reply, Request
from tests.otlp_receiver import OtlpReceiver

INSTANCE = "00000000-0000-0000-0000-000000000001"

pytestmark = pytest.mark.chain  # the State API as its own process


class IngestionStandIn:
    """Application Insights' track endpoint: collects the envelopes the exporter sends."""

    def __init__(self) -> None:
        self.envelopes: list[dict] = []
        self.paths: list[str] = []
        self.server = LoopbackServer(self._track)

    def _track(self, request: Request) -> Reply:
        body = request.body.strip()
        items = json.loads(body) if body.startswith(b"[") else [json.loads(line) for line in body.splitlines()]
        self.paths.append(request.path)
        self.envelopes.extend(items)
        return Reply(body=json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}).encode())

    @property
    def url(self) -> str:
        return self.server.url + "/"


@pytest.fixture(scope="module")
def state_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Chain, IngestionStandIn, OtlpReceiver]]:
    ingestion, receiver = IngestionStandIn(), OtlpReceiver().start()
    connection = (f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={ingestion.url};"
                  f"LiveEndpoint={ingestion.url}")
    env = {
        "APPLICATIONINSIGHTS_CONNECTION_STRING": connection,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    chain = Chain(Path(tmp_path_factory.mktemp("azure")), ephemeral_ports=True, env=env, packages=("state_api",))
    chain.start()
    yield chain, ingestion, receiver
    chain.stop()
    ingestion.server.stop()
    receiver.stop()


def test_spans_reach_azure_monitor_and_otlp_once_each(state_api: tuple[Chain, IngestionStandIn, OtlpReceiver]
                                                      ) -> None:
    chain, ingestion, receiver = state_api
    key = chain.secrets_env["FLLM_STATE_API_KEY"]
    response = httpx.post(f"{chain.url('state_api')}/instances/{INSTANCE}/operations/azure-op-1",
                          json={"upn": "someone@example.com"}, headers={"X-API-KEY": key})
    assert response.status_code == 200
    route = f"POST {c.ROUTE_OPERATION}"

    def requests_in_azure() -> list[dict]:
        return [e for e in ingestion.envelopes if e.get("data", {}).get("baseType") == "RequestData"
                and e["data"]["baseData"]["name"] == route]

    assert receiver.wait_for(lambda: bool(requests_in_azure()) and bool(
        [s for s in receiver.spans if s.name == route]), 20.0), (ingestion.paths, receiver.spans)
    receiver.wait_for(lambda: False, 0.5)
    request = requests_in_azure()[0]
    # the cloud role a FoundationaLLM deployment's State API has: "<service.namespace>.<service.name>"
    assert request["tags"]["ai.cloud.role"] == f"{c.SERVICE_NAMESPACE}.{c.STATE_API}" == "FoundationaLLM.StateAPI"
    assert request["data"]["baseData"]["responseCode"] == "200"
    assert all(path.rstrip("/").endswith("v2.1/track") for path in ingestion.paths)
    # One server span per request, whichever exporter: no double instrumentation.
    otlp = [s for s in receiver.spans if s.name == route]
    assert len(otlp) == 1 and len(requests_in_azure()) == 1
    assert request["tags"]["ai.operation.id"] == otlp[0].trace_id
