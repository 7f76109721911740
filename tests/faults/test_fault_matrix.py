"""The fault matrix on the real chain: for every hop, the next service down (connection refused),
answering 500, answering malformed JSON, and answering too slowly. Each cell: the operation ends
Failed (never stuck InProgress), its status names the failing hop, a span of the trace is ERROR with
the exception recorded and names that hop, and the trace is still one connected tree."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from services.registry import HOPS as REGISTRY
from services.registry import called
from telemetry import conventions as c
from tests.chain.spans import CLIENT, ERROR, assert_one_connected_tree
from tests.faults.harness import (
    GATEKEEPER_AGENT,
    FaultChain,
    code_prompt,
    error_spans_naming,
    start_fault_chain,
    stop_fault_chain,
)
from tests.otlp_receiver import OtlpReceiver
from tests.wait import wait_until

HOP_TIMEOUT_S = 1.5  # FLLM_HOP_TIMEOUT_S: each hop's share of the timeout ladder is a multiple of it
POOL_TIMEOUT_S = 2.5  # Context API -> code session pool
CODE_TIMEOUT_S = 4.0  # LangChain -> Context API executeCode
ENV = {
    "FLLM_HOP_TIMEOUT_S": str(HOP_TIMEOUT_S),
    "FLLM_CONTEXT_POOL_TIMEOUT_S": str(POOL_TIMEOUT_S),
    "FLLM_CODE_TIMEOUT_S": str(CODE_TIMEOUT_S),
    "FLLM_OPERATION_STALE_AFTER_S": "6",
}


@dataclass(frozen=True)
class Hop:
    """Where a hop is broken: its proxy, the call that fails, the agent whose path crosses it."""

    hop: str
    proxy: str
    method: str
    path: str
    caller_timeout_s: float  # how long its caller waits: "slow" holds the call past it
    agent: str = "code-interpreter"


def ladder_s(package: str) -> float:
    """How long a caller waits for ``package`` under ENV: its share of the ladder, else the pool timeout."""
    share = REGISTRY[package].timeout_share
    return HOP_TIMEOUT_S * share if share else POOL_TIMEOUT_S


HOPS = {
    "core->gatekeeper": Hop(c.GATEKEEPER_API, "gatekeeper_api", "POST", r"/async-completions$",
                            ladder_s("gatekeeper_api"), GATEKEEPER_AGENT),
    "gatekeeper->orchestration": Hop(c.ORCHESTRATION_API, "orchestration_api", "POST", r"/async-completions$",
                                     ladder_s("orchestration_api"), GATEKEEPER_AGENT),
    "core->orchestration": Hop(c.ORCHESTRATION_API, "orchestration_api", "POST", r"/async-completions$",
                               ladder_s("orchestration_api")),
    "orchestration->context (session)": Hop(c.CONTEXT_API, "context_api", "POST", r"/codeSessions$",
                                            ladder_s("context_api")),
    "orchestration->state": Hop(c.STATE_API, "state_api", "POST", r"/operations/[^/]+$", ladder_s("state_api")),
    "orchestration->langchain": Hop(c.LANGCHAIN_API, "langchain_api", "POST", r"/async-completions$",
                                    ladder_s("langchain_api")),
    # LangChain's first call to State: the claim of the operation's run, with its InProgress status.
    "langchain->state": Hop(c.STATE_API, "state_api", "POST", r"/operations/[^/]+/claim$", ladder_s("state_api")),
    "langchain->context (execute)": Hop(c.CONTEXT_API, "context_api", "POST", r"/executeCode$", CODE_TIMEOUT_S),
    "context->dynamic-sessions": Hop(c.DYNAMIC_SESSIONS, "dynamic_sessions", "POST", r"/executions\?",
                                     ladder_s("dynamic_sessions")),
    "context->code-session-api": Hop(c.CODE_SESSION_API, "code_session_api", "POST", r"/code/execute\?",
                                     ladder_s("code_session_api"), "custom-container-coder"),
}
FAULTS = ("down", "500", "malformed", "slow")


def test_the_matrix_breaks_every_hop_of_the_registry() -> None:
    # Every hop a service calls (the portal's own calls to Core: tests/portal).
    callees = {p for caller in called() for p in REGISTRY[caller].next_hops}
    assert {hop.proxy for hop in HOPS.values()} == callees
    for hop in HOPS.values():
        assert hop.hop == REGISTRY[hop.proxy].service_name


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[FaultChain]:
    chain = start_fault_chain(tmp_path_factory.mktemp("faults"), receiver, ENV)
    yield chain
    stop_fault_chain(chain)


@pytest.fixture(autouse=True)
def _no_faults_left(faults: FaultChain) -> Iterator[None]:
    faults.clear_faults()
    yield
    faults.clear_faults()


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("where", list(HOPS))
def test_a_failing_hop_fails_the_operation_and_is_named(faults: FaultChain, where: str, fault: str) -> None:
    hop = HOPS[where]
    token = secrets.token_hex(6)
    faults.proxies[hop.proxy].inject(fault, method=hop.method, path=hop.path, about=token,
                                     delay_s=hop.caller_timeout_s + 1.0)
    outcome = faults.run(code_prompt(token), hop.agent, token)

    assert outcome.status == "Failed", outcome.body
    assert outcome.body["failed_hop"] == hop.hop, outcome.body
    assert hop.hop in outcome.body["status_message"], outcome.body
    assert f"conv-{token}" not in outcome.body["status_message"]  # session ids are secrets
    spans = faults.spans(outcome.trace_id, lambda spans: error_spans_naming(spans, hop.hop))
    assert error_spans_naming(spans, hop.hop), [(s.service, s.name, s.attributes) for s in spans if s.status_code]
    assert_one_connected_tree(spans, root_parent=outcome.parent_span_id)
    if fault in ("down", "500", "slow"):  # the call itself failed: its CLIENT span says so
        assert any(s.kind == CLIENT and s.status_code == ERROR for s in spans)


def test_a_claim_that_state_takes_late_leaves_state_naming_the_state_api(faults: FaultChain) -> None:
    # LangChain's claim reaches State only after LangChain stopped waiting: State then holds a claim nobody
    # runs. Its record must end as Core's did, naming the State API, not be swept later as abandoned by
    # LangChain API (an alert on the wrong hop).
    token = secrets.token_hex(6)
    state = faults.proxies["state_api"]
    state.inject("delay", method="POST", path=r"/operations/[^/]+/claim$", about=token,
                 delay_s=ladder_s("state_api") + 1.0)
    outcome = faults.run(code_prompt(token), token=token)
    assert outcome.status == "Failed" and outcome.body["failed_hop"] == c.STATE_API, outcome.body

    wait_until(lambda: state.count("POST", rf"op-{token}/claim$") == 1, "State took the late claim")
    # Ended (by Orchestration's write or, without it, by the sweep of abandoned operations: 6 s stale).
    stored = wait_until(lambda: (s := faults.stored(outcome.operation_id)) and s["status"] != "InProgress" and s,
                        "State's record ended", timeout_s=15.0)
    assert (stored["status"], stored["failed_hop"]) == ("Failed", c.STATE_API), stored
    assert faults.proxies["dynamic_sessions"].count("POST", rf"/executions\?.*conv-{token}") == 0  # nothing ran


def test_without_faults_every_proxied_path_completes(faults: FaultChain) -> None:
    for agent in ("code-interpreter", GATEKEEPER_AGENT, "custom-container-coder"):
        token = secrets.token_hex(6)
        outcome = faults.run(code_prompt(token), agent, token)
        assert outcome.status == "Completed", outcome.body
        assert f"cell {token} 42" in outcome.body["result"]["text"]


def test_a_failed_final_write_is_retried_each_attempt_its_own_span(faults: FaultChain) -> None:
    token = secrets.token_hex(6)
    state = faults.proxies["state_api"]
    # The final write: the answer with the end, one PUT (its result's id is the operation's "-final").
    state.inject("500", method="PUT", path=rf"op-{token}$", body_contains="-final", times=2)
    outcome = faults.run(code_prompt(token), token=token)
    assert outcome.status == "Completed", outcome.body
    assert state.count("PUT", rf"op-{token}$") >= 2  # progress steps and the final one, once
    assert state.count("POST", rf"op-{token}/result$") == 0  # each result goes with its status

    def writes(spans: list) -> list:
        write = [s for s in spans if s.name == c.SPAN_LANGCHAIN_WRITE_RESULT]
        return [s for s in spans if write and s.parent_span_id == write[0].span_id and s.kind == CLIENT
                and s.attributes.get("http.request.method") == "PUT"]

    attempts = writes(faults.spans(outcome.trace_id, lambda spans: len(writes(spans)) >= 3))
    assert [s.status_code for s in sorted(attempts, key=lambda s: s.start_ns)] == [ERROR, ERROR, 0]


def test_a_retried_submission_does_not_run_the_code_twice(faults: FaultChain) -> None:
    token = secrets.token_hex(6)
    first = faults.run(code_prompt(token, 0.5), token=token)
    again = faults.run(code_prompt(token, 0.5), token=token)
    assert first.status == again.status == "Completed"
    assert again.operation_id == first.operation_id
    assert again.body["result"]["text"] == first.body["result"]["text"]
    assert faults.proxies["dynamic_sessions"].count("POST", rf"/executions\?.*conv-{token}") == 1
    assert faults.proxies["langchain_api"].count("POST", r"/async-completions$") >= 1
