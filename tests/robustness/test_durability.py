"""Durability: State, Context and Core API records survive their process being killed (SIGKILL, no
graceful shutdown: SQLite WAL with an fsync on every commit by default), traceparent included."""

from __future__ import annotations

import signal

import httpx
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from services.common.settings import DEFAULT_INSTANCE_ID
from tests.faults.harness import FaultChain, code_prompt

INSTANCE = DEFAULT_INSTANCE_ID


def _kill_and_restart(live: FaultChain, package: str) -> None:
    live.chain.stop_service(package, signal.SIGKILL)
    live.chain.restart_service(package)


def test_state_api_records_survive_a_kill(live: FaultChain) -> None:
    base = f"{live.chain.url('state_api')}/instances/{INSTANCE}/operations/op-durable-state"
    headers = live.hop_headers("state_api")
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with suppress_http_instrumentation():  # the test's own traceparent, never an instrumented client's
        created = httpx.post(base, json={"upn": "developer@localhost"},
                             headers={**headers, "traceparent": traceparent}, timeout=10)
    assert created.status_code == 200, created.text
    result = httpx.post(f"{base}/result", headers=headers, timeout=10,
                        json={"id": "op-durable-state-final", "operation_id": "op-durable-state", "completion": "42"})
    assert result.status_code == 200, result.text
    _kill_and_restart(live, "state_api")
    after = httpx.get(base, headers=headers, timeout=10)
    assert after.status_code == 200, after.text
    operation = after.json()
    assert operation["status"] == "InProgress"
    assert operation["trace_id"] == "0af7651916cd43dd8448eb211c80319c"  # the trace is in the record
    assert operation["result"]["completion"] == "42"
    logs = httpx.get(f"{base}/logs", headers=headers, timeout=10).json()
    assert [entry["status"] for entry in logs] == ["InProgress"]


def test_context_api_sessions_and_files_survive_a_kill(live: FaultChain) -> None:
    base = f"{live.chain.url('context_api')}/instances/{INSTANCE}"
    headers = live.hop_headers("context_api")
    session = httpx.post(f"{base}/codeSessions", headers=headers, timeout=10, json={
        "agent_name": "code-interpreter", "conversation_id": "conv-durable", "context": "code_interpreter",
        "endpoint_provider": "AzureContainerAppsCodeInterpreter", "language": "Python"}).json()
    record = httpx.post(f"{base}/files", headers=headers, timeout=10, data={"conversation_id": "conv-durable"},
                        files={"file": ("data.csv", b"a,b\n1,2\n", "text/csv")}).json()
    _kill_and_restart(live, "context_api")
    file = httpx.get(f"{base}/files/{record['id']}", headers=headers, timeout=10)
    assert file.status_code == 200 and file.content == b"a,b\n1,2\n"
    upload = httpx.post(f"{base}/codeSessions/{session['session_id']}/uploadFiles", headers=headers, timeout=30,
                        json={"file_names": ["data.csv"]})
    assert upload.status_code == 200, upload.text
    assert upload.json()["file_upload_success"] == {"data.csv": True}


def test_core_api_keeps_an_ended_operation_across_a_kill(live: FaultChain) -> None:
    outcome = live.run(code_prompt("durable"))
    assert outcome.status == "Completed", outcome.body
    _kill_and_restart(live, "core_api")
    status = httpx.get(f"{live.chain.url('core_api')}/instances/{INSTANCE}/async-completions/"
                       f"{outcome.operation_id}/status", timeout=10, headers=live.auth())
    assert status.status_code == 200
    assert status.json()["status"] == "Completed"
    assert status.json()["trace_id"] == outcome.trace_id
    assert "cell durable 42" in status.json()["result"]["text"]
