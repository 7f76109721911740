"""State API as the chain's arbiter, on real processes: an operation submitted to two LangChain replicas
(behind Debian's nginx, round robin) runs once, since only one claim of it is acquired (nginx, in front of the
Context API too, counts the executeCode calls); and a status that
cannot be read while State API is down is a failed poll (InProgress, tried again), not the operation's end:
State back, it ends Completed; State left down, it ends Failed naming the State API in bounded time."""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.auth import API_KEY_HEADER, USER_IDENTITY_HEADER, identity_header
from services.common.models import LOCAL_DEVELOPER
from services.common.settings import DEFAULT_INSTANCE_ID, url_env
from services.launcher import Chain
from services.registry import HOPS
from telemetry import conventions as c
from tests.cluster.client import CoreClient, code_prompt
from tests.cluster.harness import balanced_cluster
from tests.cluster.nginx import Nginx
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.wait import wait_until

pytestmark = pytest.mark.chain
POLL_FAILURE_LIMIT_S = 8.0  # FLLM_POLL_FAILURE_LIMIT_S: Core ends an operation whose status stays unreadable
OPERATIONS = f"/instances/{DEFAULT_INSTANCE_ID}/operations"
COMPLETIONS = f"/instances/{DEFAULT_INSTANCE_ID}/async-completions"


@dataclass
class Cluster:
    main: Chain  # every hop, its LangChain one of two replicas
    second: Chain  # the other LangChain replica, on the main chain's State and Context APIs
    nginx: Nginx
    core: CoreClient
    receiver: OtlpReceiver

    def headers(self, package: str) -> dict[str, str]:
        key = self.main.service_env()[HOPS[package].api_key_env]  # type: ignore[index]
        return {API_KEY_HEADER: key, USER_IDENTITY_HEADER: identity_header(LOCAL_DEVELOPER)}

    def stored(self, operation_id: str, wait_s: float = 0.0) -> dict[str, Any] | None:
        try:
            reply = httpx.get(f"{self.main.url('state_api')}{OPERATIONS}/{operation_id}", params={"wait": wait_s},
                              headers=self.headers("state_api"), timeout=wait_s + 5)
        except httpx.TransportError:
            return None
        return reply.json() if reply.status_code == 200 else None

    def running(self, marker: str) -> Path | None:
        return next(self.main.data_dir.rglob(marker), None)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    data = tmp_path_factory.mktemp("state-hop")
    balanced = ("langchain_api", "context_api")  # Orchestration -> LangChain, LangChain -> Context: through nginx
    with balanced_cluster(balanced) as parts:
        nginx = parts.nginx
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": parts.receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200",
               "FLLM_TELEMETRY_FILE": "off", "FLLM_CODE_POOL_SIZE": "2",
               "FLLM_POLL_FAILURE_LIMIT_S": str(POLL_FAILURE_LIMIT_S), **{url_env(p): nginx.url(p) for p in balanced}}
        parts.chains.append(Chain(data, ephemeral_ports=True, env=env).start())
        main = parts.chains[0]
        state = {url_env("state_api"): main.url("state_api")}
        parts.chains.append(Chain(data, ephemeral_ports=True, env={**env, **state},
                                  packages=("langchain_api",)).start())
        nginx.start({"langchain_api": [chain.url("langchain_api") for chain in parts.chains],
                     "context_api": [main.url("context_api")]})
        parts.core = CoreClient(main.url("core_api"), data)
        yield Cluster(main, parts.chains[1], nginx, parts.core, parts.receiver)


def _submit_to_orchestration(cluster: Cluster, operation_id: str, prompt: str) -> dict[str, Any]:
    """What Core (or Gatekeeper) sends Orchestration; sent again, it is the retry of one submission."""
    reply = httpx.post(f"{cluster.main.url('orchestration_api')}{COMPLETIONS}", headers=cluster.headers(
        "orchestration_api"), json={"user_prompt": prompt, "agent_name": "code-interpreter",
                                    "session_id": f"conv-{operation_id}", "operation_id": operation_id}, timeout=60)
    assert reply.status_code == 202, reply.text
    return reply.json()


def test_a_submission_sent_to_two_langchain_replicas_runs_once(cluster: Cluster) -> None:
    token = secrets.token_hex(6)
    operation_id = f"op-{token}"
    prompt = code_prompt(f"import time\ntime.sleep(1)\nprint('ran', {token!r})")
    served_before = cluster.nginx.served()
    with ThreadPoolExecutor(2) as pool:  # at once: the two start requests race to claim the operation
        answers = list(pool.map(lambda _: _submit_to_orchestration(cluster, operation_id, prompt), range(2)))
    assert {answer["status"] for answer in answers} <= {"InProgress", "Completed"}, answers
    stored = wait_until(lambda: (s := cluster.stored(operation_id, 10)) and s["status"] != "InProgress" and s,
                        "the operation to end", 60)
    assert stored["status"] == "Completed", stored
    again = _submit_to_orchestration(cluster, operation_id, prompt)  # a retry after the end
    assert again["status"] == "Completed", again

    served = cluster.nginx.served()
    new = {line: n - served_before.get(line, 0) for line, n in served.items() if n > served_before.get(line, 0)}
    started = {line.split()[0] for line in new if line.split()[1:3] == ["202", "POST"]
               and line.endswith("/async-completions")}
    replicas = {chain.url("langchain_api").removeprefix("http://") for chain in (cluster.main, cluster.second)}
    assert started == replicas, new  # both replicas were asked to start it...
    runs = sum(n for line, n in new.items() if line.endswith("/executeCode"))
    assert runs == 1, f"the user's code ran {runs} times: {new}"  # ...and it ran once
    assert f"ran {token}" in str((stored.get("result") or {}).get("completion")), stored
    print(f"\none operation submitted 3 times to 2 LangChain replicas ({sorted(started)}): the code ran {runs}"
          f" time; {stored['status']}")


def test_the_claim_route_refuses_a_claim_without_a_claimant(cluster: Cluster) -> None:
    url = f"{cluster.main.url('state_api')}{OPERATIONS}/op-bad-claim/claim"
    for body in ({}, {"claimant": ""}, {"claimant": "two words"}, {"claimant": 7}):
        reply = httpx.post(url, json=body, headers=cluster.headers("state_api"), timeout=10)
        assert reply.status_code == 400, reply.text
        assert [error["field"] for error in reply.json()["errors"]] == ["claimant"], reply.text
    assert cluster.stored("op-bad-claim") is None  # nothing was claimed or created


def _running_code(cluster: Cluster, seconds: float) -> tuple[Any, float]:
    marker = f"running-{secrets.token_hex(6)}"
    submitted = cluster.core.submit(code_prompt(
        f"open('/mnt/data/{marker}', 'w').close()\nimport time\ntime.sleep({seconds})\nprint('cell', 6 * 7)"))
    wait_until(lambda: cluster.running(marker), "the code to run", 30)
    cluster.main.stop_service("state_api", signal.SIGKILL)
    return submitted, time.monotonic()


def _poll(cluster: Cluster, operation_id: str) -> dict[str, Any]:
    reply = cluster.core.http.get(f"{cluster.core.base}/{operation_id}/status")
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_polls_while_state_is_down_keep_the_operation_which_completes_once_state_is_back(
        cluster: Cluster) -> None:
    submitted, _ = _running_code(cluster, 4)
    try:
        for _ in range(2):
            during = _poll(cluster, submitted.operation_id)
            assert during["status"] == "InProgress", during  # a failed poll, not the operation's end
            assert c.STATE_API in during["status_message"] and not during.get("failed_hop"), during
            time.sleep(0.5)
        # Orchestration answers the poll it could not serve with an error naming the State API.
        reply = httpx.get(f"{cluster.main.url('orchestration_api')}{COMPLETIONS}/{submitted.operation_id}/status",
                          headers=cluster.headers("orchestration_api"), timeout=10)
        assert reply.status_code == 502 and reply.json()["failed_hop"] == c.STATE_API, reply.text
    finally:
        cluster.main.restart_service("state_api")
    # A poll that could not read the status marks Core's step of the poll, naming State API, not the route's
    # server span: the server-error alert counts those, and Core answered it (InProgress).
    def failed_polls() -> list[ReceivedSpan]:
        return [s for s in cluster.receiver.spans if s.service == c.CORE_API and s.name == c.SPAN_CORE_POLL
                and s.attributes.get(c.ATTR_OPERATION_ID) == submitted.operation_id
                and s.attributes.get(c.ATTR_FAILED_HOP) == c.STATE_API]
    assert cluster.receiver.wait_for(lambda: len(failed_polls()) >= 2), "the failed polls' spans"
    for step in failed_polls():
        (server,) = [s for s in cluster.receiver.trace(step.trace_id) if s.span_id == step.parent_span_id]
        assert server.kind == 2 and server.status_code != 2, server  # SERVER, not ERROR
    outcome = cluster.core.wait(submitted, timeout_s=30)
    assert outcome["status"] == "Completed", outcome
    assert "cell 42" in outcome["result"]["text"], outcome["result"]
    stored = cluster.stored(submitted.operation_id)
    assert stored is not None and stored["status"] == "Completed", stored  # Core and State agree
    assert _poll(cluster, submitted.operation_id)["status"] == "Completed"


def test_a_state_api_that_stays_down_ends_the_operation_failed_naming_it(cluster: Cluster) -> None:
    submitted, killed = _running_code(cluster, 2)
    try:
        outcome = cluster.core.wait(submitted, timeout_s=60)
        took = time.monotonic() - killed
    finally:
        cluster.main.restart_service("state_api")
    print(f"\nState API left down: Core answered {outcome['status']} naming {outcome.get('failed_hop')}"
          f" {took:.1f} s after the kill: {outcome.get('status_message')}")
    assert outcome["status"] == "Failed" and outcome["failed_hop"] == c.STATE_API, outcome
    assert c.STATE_API in outcome["status_message"], outcome
    assert POLL_FAILURE_LIMIT_S <= took < POLL_FAILURE_LIMIT_S + 10 and took < 30, took
    # Core keeps that end, even once State has the workflow's own.
    assert _poll(cluster, submitted.operation_id)["status"] == "Failed"
