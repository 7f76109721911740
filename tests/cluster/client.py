"""Submit completions to Core API and wait for their end, as the portal does (for the cluster tests)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.auth.local_issuer import LocalIssuer
from services.common.settings import DEFAULT_INSTANCE_ID


def code_prompt(code: str) -> str:
    return f"Please run this:\n```python\n{code}\n```"


@dataclass
class Submitted:
    operation_id: str
    trace_id: str
    parent_span_id: str  # the caller's span in the traceparent sent: the trace's root points at it
    started: float


class CoreClient:
    def __init__(self, core_url: str, data_dir: Path, timeout_s: float = 30.0) -> None:
        self.base = f"{core_url}/instances/{DEFAULT_INSTANCE_ID}/async-completions"
        token = LocalIssuer.load(data_dir).mint()
        self.http = httpx.Client(timeout=timeout_s, headers={"Authorization": f"Bearer {token}"})

    def submit(self, prompt: str, agent: str = "code-interpreter") -> Submitted:
        token, trace_id, parent = secrets.token_hex(8), secrets.token_hex(16), secrets.token_hex(8)
        started = time.monotonic()
        reply = self.http.post(self.base, headers={"traceparent": f"00-{trace_id}-{parent}-01"},
                               json={"user_prompt": prompt, "agent_name": agent, "session_id": f"conv-{token}",
                                     "operation_id": f"op-{token}"})
        assert reply.status_code == 202, reply.text
        return Submitted(f"op-{token}", trace_id, parent, started)

    def wait(self, submitted: Submitted, timeout_s: float = 60.0) -> dict[str, Any]:
        """The operation once it ended; a poll that fails (Core restarting) is tried again. A hop behind Core
        that cannot be read is Core's to handle: it answers InProgress until a bounded time, then Failed."""
        deadline = submitted.started + timeout_s
        while True:
            assert time.monotonic() < deadline, f"{submitted.operation_id} did not end within {timeout_s} s"
            try:
                reply = self.http.get(f"{self.base}/{submitted.operation_id}/status", params={"wait": 5})
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            body = reply.json() if reply.status_code == 200 else None
            if body is not None and body["status"] != "InProgress":
                return body
            time.sleep(0.2)

    def close(self) -> None:
        self.http.close()

