"""Two replicas of every hop that keeps nothing of its own (Core, Gatekeeper, Orchestration, LangChain,
State, Context) behind Debian's nginx (round robin), State, Context and Core on one PostgreSQL: every
completion ends, Completed, in one unbroken trace. The code session pools stay single (a session's
sandbox lives in its process, as a Dynamic Sessions pool is one managed service)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.common.settings import url_env
from services.launcher import Chain
from services.registry import HOPS, START_ORDER
from telemetry import conventions as c
from tests.cluster.client import CoreClient, code_prompt
from tests.cluster.harness import balanced_cluster
from tests.cluster.nginx import Nginx
from tests.otlp_receiver import ReceivedSpan
from tests.postgres_server import PostgresServer
from tests.wait import wait_until

pytestmark = pytest.mark.chain
SINGLE = ("dynamic_sessions", "code_session_api", "portal")
REPLICATED = tuple(p for p in START_ORDER if p not in SINGLE)
COMPLETIONS = 500
STALE_AFTER_S = 8  # a LangChain replica that died is noticed after this (heartbeats every 2 s)


def _broken(spans: list[ReceivedSpan], root_parent: str) -> list[str]:
    """What makes a trace other than one tree: a span whose parent is not in it."""
    ids = {span.span_id for span in spans}
    return [f"{span.service}:{span.name}" for span in spans
            if span.parent_span_id and span.parent_span_id not in ids and span.parent_span_id != root_parent]


def _a_dead_langchain_replica_fails_its_operation_naming_it(core: CoreClient, nginx: Nginx, chains: list[Chain],
                                                            data_dir: Path) -> None:
    """The replica that runs a workflow is killed: the operation ends Failed naming LangChain, within the
    stale window (FLLM_OPERATION_STALE_AFTER_S) and a sweep."""
    submitted = core.submit(code_prompt("open('/mnt/data/dying', 'w').close()\nimport time\ntime.sleep(4)"))
    wait_until(lambda: next(data_dir.rglob("dying"), None), "the code to run", 30)
    replicas = {chain.url("langchain_api").removeprefix("http://"): chain for chain in chains}
    posts = [line.split()[0] for line in (nginx.root / "access.log").read_text().splitlines()
             if line.endswith("/async-completions") and " POST " in line and line.split()[0] in replicas]
    replicas[posts[-1]].stop_service("langchain_api", signal.SIGKILL)  # the replica that took the last one
    outcome = core.wait(submitted, timeout_s=60)
    took = time.monotonic() - submitted.started
    print(f"a killed LangChain replica: {outcome['status']} naming {outcome.get('failed_hop')} after {took:.1f} s:"
          f" {outcome.get('status_message')}")
    assert outcome["status"] == "Failed" and outcome["failed_hop"] == c.LANGCHAIN_API, outcome
    assert took < STALE_AFTER_S + 15


def test_two_replicas_of_every_hop_behind_nginx_lose_nothing(tmp_path: Path, postgres: PostgresServer) -> None:
    with balanced_cluster(START_ORDER) as parts:
        receiver, nginx, chains = parts.receiver, parts.nginx, parts.chains
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200",
               "FLLM_OPERATION_STALE_AFTER_S": str(STALE_AFTER_S),
               "FLLM_TELEMETRY_FILE": "off", "FLLM_CODE_POOL_SIZE": "2", "FLLM_DATABASE_URL": postgres.new_database(),
               **{url_env(p): nginx.url(p) for p in START_ORDER}}  # every hop calls the next through nginx
        chains += [Chain(tmp_path, ephemeral_ports=True, env=env), Chain(tmp_path, ephemeral_ports=True, env=env,
                                                                         packages=REPLICATED)]
        for chain in chains:
            chain.start()
        nginx.start({p: [chain.url(p) for chain in chains if p in chain.services] for p in START_ORDER})
        core = parts.core = CoreClient(nginx.url("core_api"), tmp_path)

        def one(n: int) -> tuple[str, str, str]:
            prompt = code_prompt(f"print('cell', {n} * 2)") if n % 5 == 0 else f"Say hello to number {n}."
            submitted = core.submit(prompt)
            outcome = core.wait(submitted, timeout_s=120)
            return outcome["status"], submitted.trace_id, submitted.parent_span_id

        started = time.monotonic()
        with ThreadPoolExecutor(12) as pool:
            outcomes = list(pool.map(one, range(COMPLETIONS)))
        seconds = time.monotonic() - started
        statuses = Counter(status for status, _, _ in outcomes)
        expected = {HOPS[p].service_name for p in ("core_api", "orchestration_api", "langchain_api", "state_api")}

        def broken_traces() -> dict[str, tuple[list[str], list[str]]]:
            broken = {}
            for _, trace_id, parent in outcomes:
                spans = receiver.trace(trace_id)
                missing, orphans = expected - {span.service for span in spans}, _broken(spans, parent)
                if missing or orphans:
                    broken[trace_id] = (sorted(missing), orphans)
            return broken

        receiver.wait_for(lambda: not broken_traces())  # the last spans' batches
        broken = broken_traces()
        served = nginx.served()
        per_replica = {chain.url(p).removeprefix("http://"): p for chain in chains for p in REPLICATED}
        requests = {f"{HOPS[package].name}@{address}": sum(n for line, n in served.items()
                                                           if line.startswith(address + " "))
                    for address, package in per_replica.items()}
        print(f"\n{COMPLETIONS} completions through nginx, 2 replicas per hop, PostgreSQL: {dict(statuses)} in "
              f"{seconds:.1f} s; broken traces: {len(broken)}; requests per replica: {requests}")
        assert statuses == Counter({"Completed": COMPLETIONS}), statuses
        assert not broken, list(broken.items())[:5]
        for address, package in per_replica.items():  # round robin: every replica took its share
            if package != "gatekeeper_api":  # bypassed by default: nobody calls it
                assert any(line.startswith(address + " ") for line in served), (package, address)
        assert not [line for line in served if int(line.split()[1]) >= 400], served  # no hop failed
        _a_dead_langchain_replica_fails_its_operation_naming_it(core, nginx, chains, tmp_path)
