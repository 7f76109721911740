"""Security on the real chain: API keys and the bearer token, what spans and logs may carry (sizes and
hashes, never code, prompts, keys or session ids), and what code in the sandbox cannot reach."""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3

import httpx
import pytest

from services.common.settings import API_KEY_ENV, DEFAULT_INSTANCE_ID
from telemetry import conventions as c
from tests.chain.spans import SERVER
from tests.faults.harness import FaultChain, code_prompt

INSTANCE = DEFAULT_INSTANCE_ID
OPERATION = "op-security-0001"
SUBMIT = f"POST {c.ROUTE_ASYNC_COMPLETIONS}"  # Core's request span (its SERVER activity is another)
# One protected route per internal hop (with the body it needs to get past validation).
PROTECTED = {
    "gatekeeper_api": ("POST", f"/instances/{INSTANCE}/async-completions", {"user_prompt": "hi"}),
    "orchestration_api": ("POST", f"/instances/{INSTANCE}/async-completions", {"user_prompt": "hi"}),
    "langchain_api": ("POST", f"/instances/{INSTANCE}/async-completions", {}),
    "state_api": ("GET", f"/instances/{INSTANCE}/operations/{OPERATION}", None),
    "context_api": ("POST", f"/instances/{INSTANCE}/codeSessions", {}),
}


def _everything_recorded(live: FaultChain) -> str:
    """Every span the services exported (the embedded file) and every log line they wrote."""
    text = (live.chain.data_dir / "traces.jsonl").read_text(errors="replace")
    for service in live.chain.services.values():
        if service.log_path.exists():
            text += service.log_path.read_text(errors="replace")
    return text


@pytest.mark.parametrize("package", list(PROTECTED))
def test_internal_hops_refuse_a_missing_or_wrong_key_alike(live: FaultChain, package: str) -> None:
    method, path, body = PROTECTED[package]
    url = live.chain.url(package) + path
    key = live.chain.secrets_env[API_KEY_ENV[package]]
    answers = []
    for headers in ({}, {"X-API-KEY": "wrong"}, {"X-API-KEY": key[:-1]}, {"X-API-KEY": key + "x"},
                    {"X-API-KEY": ""}):
        answer = httpx.request(method, url, headers=headers, json=body, timeout=10)
        assert answer.status_code == 401, (headers, answer.text)
        answers.append(answer.json())
    # One answer for every refusal: nothing tells a missing key from a wrong or almost-right one.
    assert all(answer == answers[0] for answer in answers), answers
    assert key not in json.dumps(answers)
    right = httpx.request(method, url, headers={"X-API-KEY": key}, json=body, timeout=10)
    assert right.status_code != 401


def test_the_dynamic_sessions_pool_requires_the_bearer_token(live: FaultChain) -> None:
    url = f"{live.chain.url('dynamic_sessions')}/executions"
    params = {"api-version": "2024-10-02-preview", "identifier": "security-probe"}
    body = {"codeInputType": "Inline", "executionType": "Synchronous", "code": "print(1)"}
    token = live.chain.secrets_env["FLLM_DYNAMIC_SESSIONS_TOKEN"]
    answers = []
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"},
                    {"Authorization": f"Bearer {token[:-1]}"}):
        answer = httpx.post(url, params=params, json=body, headers=headers, timeout=10)
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.headers.get("www-authenticate", "").startswith("Bearer")
        answers.append(answer.json())
    assert all(answer == answers[0] for answer in answers)
    right = httpx.post(url, params=params, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert right.status_code == 200, right.text


def test_keys_code_prompts_outputs_and_session_ids_are_never_recorded(live: FaultChain) -> None:
    marker = f"m{secrets.token_hex(8)}"
    prompt = code_prompt(marker)
    outcome = live.run(prompt)
    assert outcome.status == "Completed", outcome.body
    assert f"cell {marker} 42" in outcome.body["result"]["text"]
    spans = live.spans(outcome.trace_id, lambda spans: any(s.name == c.SPAN_CODE_EXECUTE for s in spans) and any(
        "codeSessions/" in str(s.attributes.get("url.full")) for s in spans))  # both batches exported
    recorded = _everything_recorded(live) + json.dumps([s.attributes for s in live.receiver.spans], default=str)

    assert marker not in recorded  # neither the prompt, nor the code, nor what the code printed
    for name, secret in live.chain.secrets_env.items():
        assert secret not in recorded, f"{name} was recorded"
    with sqlite3.connect(live.chain.data_dir / "context_api.db") as db:
        session_ids = [row[0] for row in db.execute("SELECT id FROM code_sessions")]
    assert session_ids
    for session_id in session_ids:
        assert session_id not in recorded, "a code session id was recorded"

    # What is recorded instead: sizes and hashes.
    core = next(s for s in spans if s.service == c.CORE_API and s.kind == SERVER and s.name == SUBMIT)
    assert core.attributes[c.ATTR_PROMPT_SIZE] == len(prompt.encode())
    assert core.attributes[c.ATTR_PROMPT_SHA256] == hashlib.sha256(prompt.encode()).hexdigest()
    assert c.ATTR_PROMPT_TEXT not in core.attributes
    execution = next(s for s in spans if s.name == c.SPAN_CODE_EXECUTE)
    assert execution.attributes[c.ATTR_CODE_SIZE] > 0 and len(str(execution.attributes[c.ATTR_CODE_SHA256])) == 64
    hashes = {s.attributes.get(c.ATTR_CODE_SESSION_ID_HASH) for s in spans} - {None}
    assert hashes and all(len(str(h)) == 16 for h in hashes)
    urls = [str(s.attributes["url.full"]) for s in spans if "codeSessions/" in str(s.attributes.get("url.full"))]
    assert urls and all(any(h in url for h in hashes) for url in urls)  # client spans show the hash


def test_prompt_capture_is_an_explicit_opt_in(live: FaultChain) -> None:
    live.chain.env["FLLM_CAPTURE_PROMPTS"] = "true"
    live.chain.restart_service("core_api")
    try:
        prompt = f"What is a code session? {secrets.token_hex(4)}"
        outcome = live.run(prompt)
        spans = live.spans(outcome.trace_id, lambda spans: any(s.service == c.CORE_API for s in spans))
        core = next(s for s in spans if s.service == c.CORE_API and s.kind == SERVER and s.name == SUBMIT)
        assert core.attributes[c.ATTR_PROMPT_TEXT] == prompt
    finally:
        live.chain.env.pop("FLLM_CAPTURE_PROMPTS")
        live.chain.restart_service("core_api")


SANDBOX_PROBE = """
import os, socket, glob
def attempt(name, action):
    try:
        result = action()
        print(name, "ALLOWED", repr(result)[:80])
    except Exception as error:
        print(name, "DENIED", type(error).__name__)
attempt("env", lambda: [k for k in os.environ if k.startswith(("FLLM_", "OTEL_")) or "KEY" in k or "TOKEN" in k] or 1/0)
attempt("server_db", lambda: open({db!r}, "rb").read(16))
attempt("server_dir", lambda: os.listdir({data!r}) or 1/0)
attempt("other_session", lambda: [open(p).read() for p in glob.glob({others!r}, recursive=True)
                                  if os.path.isfile(p)] or 1/0)
attempt("server_environ", lambda: open("/proc/1/environ", "rb").read(64) or 1/0)
attempt("network", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2))
"""


def test_code_cannot_reach_the_server_its_keys_other_sessions_or_the_network(live: FaultChain) -> None:
    # Another session leaves a file behind; the probe session then looks for it and for the server.
    other = live.run("Run this:\n```python\nopen('/mnt/data/other.txt', 'w').write('other-session-secret')\n```")
    assert other.status == "Completed", other.body
    data = live.chain.data_dir
    port = int(live.chain.url("core_api").rsplit(":", 1)[1])
    probe = SANDBOX_PROBE.format(db=str(data / "state_api.db"), data=str(data),
                                 others=str(data / "sessions" / "**" / "other.txt"), port=port)
    outcome = live.run(f"Run this:\n```python\n{probe}\n```")
    assert outcome.status == "Completed", outcome.body
    lines = dict(line.split(" ", 1) for line in outcome.body["result"]["text"].splitlines() if " " in line)
    for check in ("env", "server_db", "server_dir", "other_session", "server_environ", "network"):
        assert lines.get(check, "").startswith("DENIED"), (check, outcome.body["result"]["text"])
    assert "other-session-secret" not in outcome.body["result"]["text"]
