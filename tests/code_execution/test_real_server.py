"""The emulator as a real process: uvicorn on an inherited loopback socket, httpx over TCP."""

from __future__ import annotations

import ast
import json
import secrets
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from telemetry import conventions as c
from tests.real_service import start_code_service

REPO = Path(__file__).resolve().parents[2]
API = "2024-10-02-preview"
pytestmark = pytest.mark.chain


@dataclass
class Server:
    url: str
    port: int
    token: str
    data_dir: Path
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir, token = tmp_path_factory.mktemp("real"), secrets.token_urlsafe(24)
    chain = start_code_service("dynamic_sessions", data_dir, token)
    url = chain.url("dynamic_sessions")
    process = chain.services["dynamic_sessions"].process
    assert process is not None
    yield Server(url, int(url.rsplit(":", 1)[1]), token, data_dir, process)
    chain.stop()


def test_executes_over_http_and_continues_the_callers_trace(server: Server) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    headers = {"Authorization": f"Bearer {server.token}", "traceparent": f"00-{trace_id}-{parent_id}-01"}
    code = (
        "import os, socket\n"
        "leaks = []\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n        environ = open(f'/proc/{pid}/environ', 'rb').read()\n"
        "    except OSError:\n        continue\n"
        "    if b'FLLM_' in environ or b'DYNAMIC_SESSIONS_TOKEN' in environ:\n        leaks.append(pid)\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {server.port}), timeout=1)\n    reached = True\n"
        "except OSError:\n    reached = False\n"
        "fds = []\nfor fd in os.listdir('/proc/self/fd'):\n"
        "    try:\n        fds.append(os.readlink('/proc/self/fd/' + fd))\n"
        "    except OSError:\n        pass\n"
        "(leaks, reached, sorted(k for k in os.environ if k.startswith('FLLM')), fds)"
    )
    # The test process may have instrumented httpx (other tests configure telemetry): keep our traceparent.
    with suppress_http_instrumentation(), httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post(f"/executions?api-version={API}&identifier=real-process-session", headers=headers,
                               json={"codeInputType": "Inline", "executionType": "Synchronous", "code": code})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "Succeeded", body
        sandbox = client.get("/status").json()["sandbox"]
        # The server's token is not readable from code, by any route the sandbox leaves open.
        leaks, reached, env_keys, fds = ast.literal_eval(body["result"]["executionResult"])
        assert env_keys == []
        if sandbox["isolation"] == "bwrap":  # not the server's listening socket, nor anything else of it
            assert not [target for target in fds if target.startswith("socket:")], fds
        if sandbox["identity"] == "session-uid":
            assert leaks == []
        if sandbox["network"] == "isolated":
            assert reached is False
        unauthorized = client.post(f"/executions?api-version={API}&identifier=real-process-session",
                                   json={"codeInputType": "Inline", "executionType": "Synchronous", "code": "1"})
        assert unauthorized.status_code == 401

    server.process.send_signal(signal.SIGTERM)  # flushes the spans
    server.process.wait(15)
    spans = []
    for line in (server.data_dir / "traces.jsonl").read_text().splitlines():
        for resource in json.loads(line)["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                spans.extend(span for span in scope["spans"] if span["traceId"] == trace_id)
    by_name = {span["name"]: span for span in spans}
    post = by_name["POST /executions"]
    assert post["parentSpanId"] == parent_id
    assert by_name[c.SPAN_CODE_EXECUTE]["parentSpanId"] == post["spanId"]
    assert by_name[c.SPAN_CODE_SESSION_ACQUIRE]["parentSpanId"] == post["spanId"]
    assert "real-process-session" not in json.dumps(spans)
