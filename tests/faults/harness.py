"""The real chain with a fault proxy in front of every hop, and a client that runs one operation in a
trace of its own (a W3C traceparent the test chose), polling Core until the operation ends."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from services.auth.local_issuer import LocalIssuer
from services.common.agents import PROVIDER_CODE_INTERPRETER
from services.common.auth import API_KEY_HEADER, USER_IDENTITY_HEADER, identity_header
from services.common.models import LOCAL_DEVELOPER
from services.common.settings import DEFAULT_INSTANCE_ID, url_env
from services.launcher import Chain
from services.registry import HOPS, called
from tests.chain.conftest import start_chain
from tests.chain.spans import ERROR, SERVER
from tests.faults.proxy import FaultProxy
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

INSTANCE = DEFAULT_INSTANCE_ID
PROXIED = called()  # every hop some other hop calls
GATEKEEPER_AGENT = "gatekeeper-coder"  # routed through the Gatekeeper API by its own settings


def gatekeeper_agent() -> dict[str, Any]:
    tool = {"name": "code_interpreter", "properties": {
        "code_session_required": True, "code_session_endpoint_provider": PROVIDER_CODE_INTERPRETER,
        "code_session_language": "Python"}}
    return {"name": GATEKEEPER_AGENT, "tools": [tool],
            "gatekeeper_settings": {"use_system_setting": False, "options": ["PromptShield"]}}


@dataclass
class Outcome:
    operation_id: str
    trace_id: str
    parent_span_id: str
    body: dict[str, Any]  # the last LongRunningOperation Core answered
    seconds: float  # after submit: time.monotonic() of the submission; after wait: the whole duration

    @property
    def status(self) -> str:
        return str(self.body.get("status"))


@dataclass
class FaultChain:
    chain: Chain
    receiver: OtlpReceiver
    proxies: dict[str, FaultProxy] = field(default_factory=dict)

    @property
    def core_url(self) -> str:
        return self.proxies["core_api"].url if "core_api" in self.proxies else self.chain.url("core_api")

    def clear_faults(self) -> None:
        for proxy in self.proxies.values():
            proxy.clear()

    def run(self, prompt: str, agent: str = "code-interpreter", token: str | None = None,
            timeout_s: float = 40.0, core_url: str | None = None) -> Outcome:
        """Submit (operation id ``op-<token>``, conversation ``conv-<token>``) and poll until it ends."""
        return self.wait(self.submit(prompt, agent, token, core_url), timeout_s, core_url)

    def submit(self, prompt: str, agent: str = "code-interpreter", token: str | None = None,
               core_url: str | None = None) -> Outcome:
        token = token or secrets.token_hex(6)
        trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
        headers = {"traceparent": f"00-{trace_id}-{parent}-01"}
        started = time.monotonic()
        # The test's own traceparent: an httpx instrumented by an earlier in-process test must not replace it.
        with suppress_http_instrumentation():
            answer = httpx.post(self._base(core_url), headers={**headers, **self.auth()}, timeout=30.0, json={
                "user_prompt": prompt, "agent_name": agent, "session_id": f"conv-{token}",
                "operation_id": f"op-{token}"})
        assert answer.status_code == 202, answer.text
        return Outcome(f"op-{token}", trace_id, parent, answer.json(), started)

    def wait(self, submitted: Outcome, timeout_s: float = 40.0, core_url: str | None = None) -> Outcome:
        """Poll Core (long-poll) until the operation is no longer InProgress."""
        body, deadline = submitted.body, submitted.seconds + timeout_s
        with httpx.Client(timeout=30.0, headers=self.auth()) as client:
            while body["status"] == "InProgress":
                assert time.monotonic() < deadline, f"still InProgress after {timeout_s} s: {body}"
                reply = client.get(f"{self._base(core_url)}/{submitted.operation_id}/status", params={"wait": 5})
                assert reply.status_code == 200, reply.text
                body = reply.json()
        return Outcome(submitted.operation_id, submitted.trace_id, submitted.parent_span_id, body,
                       time.monotonic() - submitted.seconds)

    def auth(self) -> dict[str, str]:
        """The Core API's Authorization header: a token of the chain's local issuer (as `callstack token`)."""
        return {"Authorization": f"Bearer {LocalIssuer.load(self.chain.data_dir).mint()}"}

    def hop_headers(self, package: str) -> dict[str, str]:
        """What a calling hop sends ``package``: its API key and the local developer's identity."""
        key = self.chain.secrets_env[HOPS[package].api_key_env]  # type: ignore[index]
        return {API_KEY_HEADER: key, USER_IDENTITY_HEADER: identity_header(LOCAL_DEVELOPER)}

    def stored(self, operation_id: str) -> dict[str, Any] | None:
        """The operation as State API keeps it, read past its proxy."""
        with suppress_http_instrumentation():
            reply = httpx.get(f"{self.chain.url('state_api')}/instances/{INSTANCE}/operations/{operation_id}",
                              headers=self.hop_headers("state_api"), timeout=10.0)
        return reply.json() if reply.status_code == 200 else None

    def _base(self, core_url: str | None) -> str:
        return f"{core_url or self.core_url}/instances/{INSTANCE}/async-completions"

    def spans(self, trace_id: str, until: Any = None, timeout_s: float = 10.0) -> list[ReceivedSpan]:
        """The trace's spans once ``until(spans)`` holds (default: some arrived), after a short settle."""
        check = until or (lambda spans: bool(spans))
        self.receiver.wait_for(lambda: check(self.receiver.trace(trace_id)), timeout_s)
        return self.receiver.settle(trace_id, quiet_s=0.3)


def code_prompt(token: str, seconds: float = 0.0) -> str:
    sleep = f"import time; time.sleep({seconds})\n" if seconds else ""
    return f"Run this:\n```python\n{sleep}print('cell {token}', 6 * 7)\n```"


def start_fault_chain(tmp: Path, receiver: OtlpReceiver, env: dict[str, str],
                      proxied: Iterable[str] = PROXIED) -> FaultChain:
    faults = FaultChain(None, receiver)  # type: ignore[arg-type]
    for package in proxied:
        faults.proxies[package] = FaultProxy(package, lambda p=package: faults.chain.url(p)).start()
    proxy_env = {url_env(package): proxy.url for package, proxy in faults.proxies.items()}
    proxy_env["FLLM_AGENTS"] = json.dumps([gatekeeper_agent()])
    try:
        faults.chain = start_chain(tmp, receiver.endpoint, env={**proxy_env, **env})
    except BaseException:
        for proxy in faults.proxies.values():
            proxy.stop()
        raise
    return faults


def stop_fault_chain(faults: FaultChain) -> None:
    faults.chain.stop()
    for proxy in faults.proxies.values():
        proxy.stop()


def error_spans_naming(spans: list[ReceivedSpan], hop: str) -> list[ReceivedSpan]:
    """Spans marked ERROR, with the exception recorded, that name ``hop`` as the one that failed."""
    return [s for s in spans if s.status_code == ERROR and "exception" in s.events
            and s.attributes.get("foundationallm.failed_hop") == hop]


def orphans_except(spans: list[ReceivedSpan], root_parent: str, lost: str,
                   callees: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """Spans whose parent is not in the trace, but for what a killed process (``lost``) never exported:
    its unfinished spans are missing, so its own spans, and the server spans of the hops it was calling
    (``callees``) at that moment, may have a parent that never arrived."""
    ids = {span.span_id for span in spans}
    return [(s.service, s.name) for s in spans
            if s.parent_span_id != root_parent and s.parent_span_id not in ids and s.service != lost
            and not (s.kind == SERVER and s.service in callees)]


def assert_connected_except(spans: list[ReceivedSpan], root_parent: str, lost: str,
                            callees: frozenset[str] = frozenset()) -> None:
    roots = [s for s in spans if s.parent_span_id == root_parent]
    assert len(roots) == 1, f"expected one root, found {[(s.service, s.name) for s in roots]}"
    orphans = orphans_except(spans, root_parent, lost, callees)
    assert not orphans, f"spans whose parent is not in the trace: {orphans}"
