"""Hops killed (SIGKILL) while an operation is in progress. The operation still ends Failed, naming the
hop, in bounded time (a dead LangChain worker is found by State API's sweeper); the trace keeps every
span the other hops exported, connected; a killed and restarted State API loses nothing."""

from __future__ import annotations

import secrets
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest

from telemetry import conventions as c
from tests.faults.harness import (
    GATEKEEPER_AGENT,
    FaultChain,
    Outcome,
    assert_connected_except,
    code_prompt,
    error_spans_naming,
    orphans_except,
    start_fault_chain,
    stop_fault_chain,
)
from tests.faults.proxy import Fault
from tests.otlp_receiver import OtlpReceiver
from tests.wait import wait_quiet, wait_until

STALE_AFTER_S = 3.0
ENV = {"FLLM_OPERATION_STALE_AFTER_S": str(STALE_AFTER_S), "FLLM_HOP_TIMEOUT_S": "5"}
CODE_SECONDS = 4.0


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[FaultChain]:
    chain = start_fault_chain(tmp_path_factory.mktemp("killed"), receiver, ENV,
                              proxied=("context_api", "orchestration_api"))
    yield chain
    stop_fault_chain(chain)


def _running_code(faults: FaultChain, agent: str = "code-interpreter") -> Outcome:
    """Submit code that sleeps, and return once it runs: it leaves a file in its session folder (/mnt/data,
    under the provider's data folder), then sleeps."""
    marker = f"running-{secrets.token_hex(6)}"
    code = f"open('/mnt/data/{marker}', 'w').close()\nimport time\ntime.sleep({CODE_SECONDS})\nprint('cell', 6 * 7)"
    submitted = faults.submit(f"Run this:\n```python\n{code}\n```", agent)
    wait_until(lambda: next(faults.chain.data_dir.rglob(marker), None), "the code to run", 15)
    return submitted


def _kill(faults: FaultChain, package: str) -> None:
    faults.chain.stop_service(package, signal.SIGKILL)


def _kill_once_held(faults: FaultChain, package: str, hop: str, held: Fault) -> None:
    """Kill ``package`` once the slow call it makes is held at the proxy (it waits in the middle of its work)
    and the spans it ended before have been exported (none new from it for five export intervals)."""
    try:
        wait_until(lambda: held.hits, f"the call {package} makes to be held", 15)
        wait_quiet(lambda: sum(span.service == hop for span in list(faults.receiver.spans)), f"{hop}'s spans", 0.25)
    finally:  # killed even then: the submission it holds must not wait for the slow fault to end
        _kill(faults, package)


def _check(faults: FaultChain, outcome: Outcome, hop: str, lost: str, callees: frozenset[str]) -> None:
    assert outcome.status == "Failed", outcome.body
    assert outcome.body["failed_hop"] == hop and hop in outcome.body["status_message"], outcome.body
    # Hops behind the killed one may still be finishing what it asked them (the code runs on).
    spans = faults.spans(outcome.trace_id, lambda spans: error_spans_naming(spans, hop) and not orphans_except(
        spans, outcome.parent_span_id, lost, callees), timeout_s=CODE_SECONDS + 10)
    assert error_spans_naming(spans, hop), [(s.service, s.name) for s in spans if s.status_code]
    assert_connected_except(spans, outcome.parent_span_id, lost, callees)


@pytest.mark.parametrize(("package", "hop", "agent", "callees"), [
    ("context_api", c.CONTEXT_API, "code-interpreter", frozenset({c.DYNAMIC_SESSIONS})),
    ("dynamic_sessions", c.DYNAMIC_SESSIONS, "code-interpreter", frozenset()),
    ("code_session_api", c.CODE_SESSION_API, "custom-container-coder", frozenset()),
])
def test_a_hop_killed_during_the_code_execution_fails_the_operation(
    faults: FaultChain, package: str, hop: str, agent: str, callees: frozenset[str]
) -> None:
    submitted = _running_code(faults, agent)
    _kill(faults, package)
    try:
        outcome = faults.wait(submitted, timeout_s=30)
        _check(faults, outcome, hop, hop, callees)
    finally:
        faults.chain.restart_service(package)


def test_a_killed_langchain_worker_is_found_and_its_operation_failed_in_bounded_time(faults: FaultChain) -> None:
    submitted = _running_code(faults)
    _kill(faults, "langchain_api")
    killed = time.monotonic()
    try:
        outcome = faults.wait(submitted, timeout_s=30)
        found_after = time.monotonic() - killed
        _check(faults, outcome, c.LANGCHAIN_API, c.LANGCHAIN_API, frozenset({c.STATE_API, c.CONTEXT_API}))
        # Stale after 3 s without a heartbeat, swept every 0.75 s, one long-poll round trip.
        assert found_after < STALE_AFTER_S + 6, found_after
        sweep = [s for s in faults.receiver.trace(outcome.trace_id) if s.name == "state.fail_abandoned_operation"]
        assert len(sweep) == 1 and sweep[0].service == c.STATE_API
    finally:
        faults.chain.restart_service("langchain_api")


@pytest.mark.parametrize(("package", "hop", "agent"), [
    ("orchestration_api", c.ORCHESTRATION_API, "code-interpreter"),
    ("gatekeeper_api", c.GATEKEEPER_API, GATEKEEPER_AGENT),
])
def test_a_hop_killed_while_it_starts_the_operation_fails_it(faults: FaultChain, package: str, hop: str,
                                                             agent: str) -> None:
    # The hop is held in the middle of its start by a slow call behind it, and killed there.
    holding = "context_api" if package == "orchestration_api" else "orchestration_api"
    path = r"/codeSessions$" if package == "orchestration_api" else r"/async-completions$"
    held = faults.proxies[holding].inject("slow", method="POST", path=path, delay_s=3.0, times=1)
    try:
        killer = threading.Thread(target=_kill_once_held, args=(faults, package, hop, held))
        killer.start()
        submitted = faults.submit(code_prompt("held"), agent)
        killer.join()
        assert held.hits, f"{package} was killed before its call was held"
        outcome = faults.wait(submitted, timeout_s=30)
        _check(faults, outcome, hop, hop, frozenset({c.CONTEXT_API, c.ORCHESTRATION_API}))
    finally:
        faults.clear_faults()
        faults.chain.restart_service(package)


def test_a_state_api_killed_and_restarted_mid_operation_loses_nothing(faults: FaultChain) -> None:
    # The operation is held in its tool call (executeCode delayed at the Context API) while State API
    # is killed and started again; LangChain's final writes then find it back.
    held = faults.proxies["context_api"].inject("delay", method="POST", path=r"/executeCode$", about="restarted",
                                                delay_s=3.0, times=1)
    submitted = faults.submit(code_prompt("restarted"))
    wait_until(lambda: held.hits, "the tool call to be held at the Context API")
    _kill(faults, "state_api")
    faults.chain.restart_service("state_api")
    outcome = faults.wait(submitted, timeout_s=30)
    assert outcome.status == "Completed", outcome.body
    assert "cell restarted 42" in outcome.body["result"]["text"]
    with sqlite3.connect(faults.chain.data_dir / "state_api.db") as db:
        statuses = [row[0] for row in db.execute(
            "SELECT status FROM log_entries WHERE operation_id = ? ORDER BY time_stamp", (outcome.operation_id,))]
        results = db.execute("SELECT COUNT(*) FROM results WHERE operation_id = ?", (outcome.operation_id,)).fetchone()
        traceparent = db.execute("SELECT traceparent FROM operations WHERE operation_id = ?",
                                 (outcome.operation_id,)).fetchone()[0]
    assert statuses[0] == "InProgress" and statuses[-1] == "Completed"
    assert results[0] >= 2  # the progress result written before the kill ("Running agent tools."), the final one
    assert traceparent.split("-")[1] == outcome.trace_id  # the trace survives with the record
