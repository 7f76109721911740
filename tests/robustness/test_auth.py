"""Authentication at every entry of the real chain, and ids checked against their rule where they enter.

Core API: an Entra-style bearer token (the data dir's local issuer) checked for signature, issuer, audience,
lifetime and scope, the user taken from its claims; ``callstack token`` gives one that works. The
code-session-api: the pool's bearer token. State API: operation ids follow Core's rule.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest

from services.auth.local_issuer import LocalIssuer, TokenUser
from services.common.settings import DEFAULT_INSTANCE_ID
from services.launcher import REPO
from tests.faults.harness import FaultChain
from tests.real_service import start_code_service

pytestmark = pytest.mark.chain  # the package's chain: every service its own process

INSTANCE = DEFAULT_INSTANCE_ID
PROMPT = {"user_prompt": "What is a code session?", "agent_name": "code-interpreter", "session_id": "conv-auth"}


def _core(live: FaultChain, instance: str = INSTANCE) -> str:
    return f"{live.chain.url('core_api')}/instances/{instance}/async-completions"


def _issuer(live: FaultChain) -> LocalIssuer:
    return LocalIssuer.load(live.chain.data_dir)


def _refused(response: httpx.Response) -> dict:
    """401, a JSON problem naming the Authorization header, and a Bearer challenge."""
    assert response.status_code == 401, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["www-authenticate"].startswith('Bearer realm="CoreAPI"')
    body = response.json()
    assert body["status"] == 401 and body["errors"][0]["field"] == "Authorization", body
    return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_core_refuses_a_request_without_a_token(live: FaultChain) -> None:
    body = _refused(httpx.post(_core(live), json=PROMPT, timeout=10))
    assert "bearer token is required" in body["detail"]
    _refused(httpx.get(f"{_core(live)}/op-1/status", timeout=10))
    # Authentication comes before the instance check: a stranger learns nothing about instances.
    _refused(httpx.post(_core(live, "11111111-2222-3333-4444-555555555555"), json=PROMPT, timeout=10))


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _forged(live: FaultChain, tmp_path: Path) -> dict[str, str]:
    issuer = _issuer(live)
    header, payload, signature = issuer.mint().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["upn"] = claims["preferred_username"] = "admin@contoso.com"
    stranger = LocalIssuer.ensure(tmp_path / "another-deployment")
    return {
        "a claim changed after signing": f"{header}.{_b64(claims)}.{signature}",
        "signed by another deployment's key": stranger.mint(),
        "expired an hour ago": issuer.mint(now=time.time() - 2 * 3600),
        "not valid for an hour": issuer.mint(now=time.time() + 3600),
        "for another audience": issuer.mint(audience="api://some-other-api"),
        "from another issuer": issuer.mint(issuer="https://login.microsoftonline.com/evil/v2.0"),
        "without the Data.Read scope": issuer.mint(scope="User.Read"),
        "not a JWT": "not-a-token",
        "unsigned (alg none)": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
    }


@pytest.mark.parametrize("case", ["a claim changed after signing", "signed by another deployment's key",
                                  "expired an hour ago", "not valid for an hour", "for another audience",
                                  "from another issuer", "without the Data.Read scope", "not a JWT",
                                  "unsigned (alg none)"])
def test_core_refuses_an_invalid_token(live: FaultChain, tmp_path: Path, case: str) -> None:
    token = _forged(live, tmp_path)[case]
    body = _refused(httpx.post(_core(live), json=PROMPT, headers=_bearer(token), timeout=10))
    assert token not in json.dumps(body)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Token abc", "bearer", "Bearer a.b.c"])
def test_core_refuses_a_malformed_authorization_header(live: FaultChain, header: str) -> None:
    _refused(httpx.post(_core(live), json=PROMPT, headers={"Authorization": header}, timeout=10))


def _callstack_token(live: FaultChain, *args: str) -> str:
    completed = subprocess.run([sys.executable, "-m", "services.cli", "token", "--data-dir", str(live.chain.data_dir),
                                *args], cwd=REPO, env=live.chain.service_env(), capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def test_callstack_token_works_against_core_and_its_user_reaches_the_internal_hops(live: FaultChain) -> None:
    token = _callstack_token(live, "--upn", "alice@contoso.com", "--name", "Alice Zhang",
                             "--oid", "aaaaaaaa-0000-0000-0000-000000000001")
    operation_id = f"op-auth-{time.time_ns()}"
    started = httpx.post(_core(live), json={**PROMPT, "operation_id": operation_id}, headers=_bearer(token),
                         timeout=30)
    assert started.status_code == 202, started.text
    status = httpx.get(f"{_core(live)}/{operation_id}/status", params={"wait": 10}, headers=_bearer(token),
                       timeout=30)
    assert status.status_code == 200, status.text
    # The user from the token's claims is the X-USER-IDENTITY every internal hop got: State API keeps its upn.
    state = httpx.get(f"{live.chain.url('state_api')}/instances/{INSTANCE}/operations/{operation_id}",
                      headers={"X-API-KEY": live.chain.secrets_env["FLLM_STATE_API_KEY"]}, timeout=10)
    assert state.status_code == 200 and state.json()["upn"] == "alice@contoso.com", state.text
    # Another user's token does not reach Alice's operation.
    bob = _issuer(live).mint(TokenUser(upn="bob@contoso.com", name="Bob", oid="bbbbbbbb-0000-0000-0000-000000000002"))
    other = httpx.get(f"{_core(live)}/{operation_id}/status", headers=_bearer(bob), timeout=10)
    assert other.status_code == 404, other.text


def test_callstack_token_prints_json_and_refuses_a_bad_lifetime(live: FaultChain) -> None:
    answer = json.loads(_callstack_token(live, "--json", "--ttl", "60"))
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 60
    refused = subprocess.run([sys.executable, "-m", "services.cli", "token", "--ttl", "0", "--data-dir",
                              str(live.chain.data_dir)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--ttl" in refused.stderr


def test_the_code_session_api_requires_the_pools_bearer_token(live: FaultChain) -> None:
    url = f"{live.chain.url('code_session_api')}/code/execute"
    params = {"identifier": "auth-probe-session"}
    token = live.chain.secrets_env["FLLM_DYNAMIC_SESSIONS_TOKEN"]
    answers = []
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"},
                    {"Authorization": f"Bearer {token[:-1]}"}, {"Authorization": f"Bearer {token}x"}):
        for method, path in (("POST", "/code/execute"), ("GET", "/files"), ("POST", "/files/delete")):
            answer = httpx.request(method, live.chain.url("code_session_api") + path, params=params,
                                   json={"code": "print(1)"}, headers=headers, timeout=10)
            assert answer.status_code == 401, (headers, path, answer.text)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            answers.append(answer.json())
    assert all(answer == answers[0] for answer in answers) and token not in json.dumps(answers)
    right = httpx.post(url, params=params, json={"code": "print(1)"}, headers=_bearer(token), timeout=30)
    assert right.status_code == 200 and right.json()["detail"]["output"] == "1\n", right.text
    assert httpx.get(f"{live.chain.url('code_session_api')}/status", timeout=10).status_code == 200  # health stays open


def test_generated_secrets_are_kept_0600_in_the_data_dir(live: FaultChain) -> None:
    secrets_file = live.chain.data_dir / "secrets.env"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    assert (live.chain.data_dir / "auth" / "signing-key.pem").stat().st_mode & 0o777 == 0o600
    text = secrets_file.read_text()
    for name in ("FLLM_DYNAMIC_SESSIONS_TOKEN", "FLLM_STATE_API_KEY", "FLLM_TELEMETRY_HASH_KEY"):
        assert f"{name}={live.chain.secrets_env[name]}" in text


def test_a_token_given_in_the_environment_is_honoured(tmp_path: Path) -> None:
    """`callstack up` (the launcher) gives the emulator the token the environment named, and writes it nowhere."""
    given = "a-token-the-user-chose-0123456789"
    chain = start_code_service("dynamic_sessions", tmp_path, given)
    try:
        assert chain.secrets_env["FLLM_DYNAMIC_SESSIONS_TOKEN"] == given
        url = f"{chain.url('dynamic_sessions')}/executions"
        params = {"api-version": "2024-10-02-preview", "identifier": "given-token-session"}
        body = {"codeInputType": "Inline", "executionType": "Synchronous", "code": "print(1)", "timeoutInSeconds": 30}
        assert httpx.post(url, params=params, json=body, headers=_bearer(given), timeout=30).status_code == 200
        assert given not in (tmp_path / "secrets.env").read_text()
    finally:
        chain.stop()


# --- ids against their rule where they enter ---

BAD_OPERATION_IDS = {"129 characters": "a" * 129, "NUL": "op\x00x", "space": "op x", "non-ASCII": "op\u00e9",
                     "percent": "op%x", "tab": "op\ttab", "colon": "op:1"}


@pytest.mark.parametrize("name", list(BAD_OPERATION_IDS))
def test_state_api_refuses_operation_ids_outside_the_rule(live: FaultChain, name: str) -> None:
    base = f"{live.chain.url('state_api')}/instances/{INSTANCE}/operations"
    operation_id = urllib.parse.quote(BAD_OPERATION_IDS[name], safe="")
    headers = {"X-API-KEY": live.chain.secrets_env["FLLM_STATE_API_KEY"]}
    for method, path, body in (("POST", "", {"upn": "developer@localhost"}), ("GET", "", None),
                               ("PUT", "", {"operation_id": BAD_OPERATION_IDS[name], "status": "InProgress"}),
                               ("GET", "/logs", None), ("GET", "/result", None),
                               ("POST", "/result", {"operation_id": BAD_OPERATION_IDS[name]}),
                               ("POST", "/claim", {"claimant": "LangChainAPI@host-1"})):
        answer = httpx.request(method, f"{base}/{operation_id}{path}", json=body, headers=headers, timeout=10)
        assert answer.status_code == 400, (method, path, answer.status_code, answer.text[:300])
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json()["errors"][0]["field"] == "operationId", answer.text
    listed = httpx.get(base, headers=headers, timeout=10).json()
    assert all(op["operation_id"] != BAD_OPERATION_IDS[name] for op in listed)


def test_state_api_accepts_an_operation_id_of_128_allowed_characters(live: FaultChain) -> None:
    operation_id = "a.B_c-" + "9" * 122
    url = f"{live.chain.url('state_api')}/instances/{INSTANCE}/operations/{operation_id}"
    headers = {"X-API-KEY": live.chain.secrets_env["FLLM_STATE_API_KEY"]}
    created = httpx.post(url, json={"upn": "developer@localhost"}, headers=headers, timeout=10)
    assert created.status_code == 200 and created.json()["operation_id"] == operation_id, created.text


@pytest.mark.parametrize("session_id", ["conv with space", "conv/../x", "conv\u00e9", "x" * 257])
def test_core_refuses_conversation_ids_outside_the_rule(live: FaultChain, session_id: str) -> None:
    answer = httpx.post(_core(live), json={**PROMPT, "session_id": session_id}, headers=live.auth(), timeout=10)
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"][0]["field"] == "session_id"


def test_core_refuses_a_status_poll_for_an_operation_id_outside_the_rule(live: FaultChain) -> None:
    answer = httpx.get(f"{_core(live)}/{'a' * 129}/status", headers=live.auth(), timeout=10)
    assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "operationId", answer.text


@pytest.mark.parametrize("session_id", ["x" * 129, "with space", "s\u00e9ance", "semi;colon"])
def test_context_api_refuses_code_session_ids_outside_the_rule(live: FaultChain, session_id: str) -> None:
    headers = {"X-API-KEY": live.chain.secrets_env["FLLM_CONTEXT_API_KEY"],
               "X-USER-IDENTITY": json.dumps({"upn": "developer@localhost", "user_id": "u"})}
    url = (f"{live.chain.url('context_api')}/instances/{INSTANCE}/codeSessions/"
           f"{urllib.parse.quote(session_id, safe='')}/executeCode")
    answer = httpx.post(url, json={"code_to_execute": "print(1)"}, headers=headers, timeout=10)
    assert answer.status_code == 400, answer.text
    assert "sessionId" in answer.json()["errors"][0]["field"], answer.text


def test_the_portals_page_submissions_reach_core_with_a_token(live: FaultChain) -> None:
    """The page posts to the portal server, which submits to Core with the local issuer's token."""
    portal = live.chain.url("portal")
    submitted = httpx.post(f"{portal}/api/completions", json={"prompt": "What is a code session?"}, timeout=30)
    assert submitted.status_code == 202, submitted.text
    operation_id = submitted.json()["operation_id"]
    deadline = time.monotonic() + 30
    view = submitted.json()
    while view["status"] == "InProgress" and time.monotonic() < deadline:
        view = httpx.get(f"{portal}/api/completions/{operation_id}", params={"wait": 5}, timeout=30).json()
    assert view["status"] == "Completed", view
