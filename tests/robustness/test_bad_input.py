"""Bad input on the real chain: every service's OpenAPI fuzzed (schemathesis strategies, positive and
negative, bounded) with zero 5xx and zero hangs; and the classic bad inputs, each a 4xx JSON error
that names the problem."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from services.common.models import LOCAL_DEVELOPER
from services.common.settings import DEFAULT_INSTANCE_ID
from services.registry import HOPS, called
from tests.faults.harness import FaultChain

INSTANCE = DEFAULT_INSTANCE_ID
EXAMPLES = int(os.environ.get("FLLM_FUZZ_EXAMPLES", "3"))  # per operation and generation mode
ANSWER_WITHIN_S = 20.0  # "no hang": every fuzzed request is answered within this
FUZZED = called()  # every hop's OpenAPI but the portal's (a page, called by no hop)
FUZZ_SESSION = "fuzz-session"  # code runs in one session: random identifiers would each start an interpreter


def _auth_headers(live: FaultChain, package: str) -> dict[str, str]:
    keys = live.chain.secrets_env
    headers = {"X-USER-IDENTITY": LOCAL_DEVELOPER.model_dump_json(),
               "Authorization": f"Bearer {keys['FLLM_DYNAMIC_SESSIONS_TOKEN']}"}
    key = keys.get(HOPS[package].api_key_env or "")
    if key:
        headers["X-API-KEY"] = key
    if package == "core_api":  # an Entra-style token of the chain's local issuer
        headers.update(live.auth())
    return headers


def _fuzz_operation(base_url: str, operation: Any, headers: dict[str, str], mode: GenerationMode,
                    failures: list[str]) -> None:
    overrides: dict[str, Any] = {}
    parameters = {p.name for p in operation.path_parameters} if hasattr(operation, "path_parameters") else set()
    if mode == GenerationMode.POSITIVE and "instanceId" in parameters:
        overrides["path_parameters"] = {"instanceId": INSTANCE}  # else nearly every case stops at 403
    query = {p.name for p in operation.query} if hasattr(operation, "query") else set()
    if "identifier" in query:
        overrides["query"] = {"identifier": FUZZ_SESSION, "api-version": "2024-10-02-preview"}
    if "wait" in query and mode == GenerationMode.POSITIVE:
        overrides["query"] = {"wait": 0}  # a valid long-poll may rightly hold the answer up to 60 s
    strategy = operation.as_strategy(generation_mode=mode, **overrides)

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
        request = {k: v for k, v in kwargs.items() if k in ("method", "url", "headers", "params", "json", "data",
                                                              "files", "cookies")}
        if "json" in request:
            request["content"] = json.dumps(request.pop("json")).encode()
            request["headers"] = {**request["headers"], "Content-Type": "application/json"}
        if isinstance(request.get("data"), str | bytes):  # raw bytes go as content (data is for forms)
            request["content"] = request.pop("data")
        cookies = request.pop("cookies", None)  # the client's own jar: httpx deprecates per-request cookies
        try:
            with httpx.Client(timeout=ANSWER_WITHIN_S, cookies=cookies) as client:
                response = client.request(**request)
        except httpx.TimeoutException:
            failures.append(f"HANG {case.method} {case.formatted_path}")
            return
        except httpx.HTTPError as error:
            if isinstance(error, httpx.TransportError) and "connection" in str(error).lower():
                failures.append(f"DROPPED {case.method} {case.formatted_path}: {error}")
            return
        except (TypeError, AttributeError, ValueError, UnicodeError):  # a request httpx cannot even encode
            return
        if response.status_code >= 500:
            failures.append(f"{response.status_code} {case.method} {case.formatted_path} "
                            f"{str(request.get('params'))[:100]} {str(request.get('content'))[:200]}: "
                            f"{response.text[:200]}")
        elif response.status_code >= 400 and "json" not in response.headers.get("content-type", ""):
            failures.append(f"non-JSON {response.status_code} {case.method} {case.formatted_path}")

    run()


@pytest.mark.parametrize("package", FUZZED)
def test_fuzzed_requests_never_get_a_5xx_or_hang(live: FaultChain, package: str) -> None:
    base_url = live.chain.url(package)
    schema = schemathesis.openapi.from_dict(httpx.get(f"{base_url}/openapi.json", timeout=10).json())
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz_operation(base_url, operation, _auth_headers(live, package), mode, failures)
            except Exception as error:  # noqa: BLE001 - schemathesis cannot always negate a schema
                if "Unsatisfiable" not in type(error).__name__ and "negat" not in str(error).lower():
                    raise
    assert not failures, "\n".join(failures[:20])


# --- the classic bad inputs, one by one ---


def _core(live: FaultChain, instance: str = INSTANCE) -> str:
    return f"{live.chain.url('core_api')}/instances/{instance}/async-completions"


def _problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    if field is not None:
        assert field in json.dumps(body), body
    return body


def test_an_oversized_prompt_is_refused_naming_the_field(live: FaultChain) -> None:
    answer = httpx.post(_core(live), json={"user_prompt": "x" * 262_145, "session_id": "s"}, timeout=30,
                        headers=_auth_headers(live, "core_api"))
    _problem(answer, 400, "user_prompt")


def test_an_oversized_body_is_refused(live: FaultChain) -> None:
    body = json.dumps({"user_prompt": "hi", "session_id": "s", "metadata": {"blob": "y" * (40 * 2**20)}})
    answer = httpx.post(_core(live), content=body, timeout=60,
                        headers={**_auth_headers(live, "core_api"), "Content-Type": "application/json"})
    _problem(answer, 413, "body")
    for code_mb in (9, 20):  # past the code limit (4 MiB), then past the body limit too
        execute = httpx.post(f"{live.chain.url('dynamic_sessions')}/executions", timeout=60,
                             params={"api-version": "2024-10-02-preview", "identifier": FUZZ_SESSION},
                             headers=_auth_headers(live, "dynamic_sessions"),
                             json={"codeInputType": "Inline", "executionType": "Synchronous",
                                   "code": "#" * (code_mb * 2**20)})
        assert execute.status_code in (400, 413), execute.text[:300]
        assert "code" in execute.text or "body" in execute.text


@pytest.mark.parametrize(("content", "content_type"), [
    (b"user_prompt=hi", "application/x-www-form-urlencoded"),
    (b"hello", "text/plain"),
    (b'{"user_prompt": "hi", "session_id":', "application/json"),
    (b'{"user_prompt": "\xff\xfe", "session_id": "s"}', "application/json"),
])
def test_wrong_content_types_and_undecodable_bodies_are_400(live: FaultChain, content: bytes,
                                                            content_type: str) -> None:
    answer = httpx.post(_core(live), content=content, timeout=10,
                        headers={**_auth_headers(live, "core_api"), "Content-Type": content_type})
    _problem(answer, 400, "body")


def test_an_unknown_instance_id_is_403_on_every_hop(live: FaultChain) -> None:
    other = "11111111-2222-3333-4444-555555555555"
    _problem(httpx.post(_core(live, other), json={"user_prompt": "hi", "session_id": "s"}, timeout=10,
                        headers=_auth_headers(live, "core_api")), 403)
    for package, path in (("state_api", f"/instances/{other}/operations/op-1"),
                          ("orchestration_api", f"/instances/{other}/async-completions/op-1/status")):
        headers = _auth_headers(live, package)
        _problem(httpx.get(live.chain.url(package) + path, headers=headers, timeout=10), 403)


@pytest.mark.parametrize("operation_id", ["bad id!", "x" * 129, "../../etc/passwd", "op\u00e9"])
def test_invalid_operation_ids_are_refused_naming_the_field(live: FaultChain, operation_id: str) -> None:
    answer = httpx.post(_core(live), json={"user_prompt": "hi", "session_id": "s", "operation_id": operation_id},
                        timeout=10, headers=_auth_headers(live, "core_api"))
    _problem(answer, 400, "operation_id")


def test_an_unknown_operation_is_404_naming_it(live: FaultChain) -> None:
    _problem(httpx.get(f"{_core(live)}/op-never-submitted/status", timeout=10,
                       headers=_auth_headers(live, "core_api")), 404, "operationId")
    state = f"{live.chain.url('state_api')}/instances/{INSTANCE}/operations/op-never-submitted"
    _problem(httpx.get(state, headers=_auth_headers(live, "state_api"), timeout=10), 404, "operationId")


@pytest.mark.parametrize("identifier", ["abc", "x" * 129, "with space", ""])
@pytest.mark.parametrize("package", ["dynamic_sessions", "code_session_api"])
def test_session_identifiers_outside_4_to_128_allowed_characters_are_400(live: FaultChain, package: str,
                                                                         identifier: str) -> None:
    path, body = (("/executions", {"codeInputType": "Inline", "executionType": "Synchronous", "code": "1"})
                  if package == "dynamic_sessions" else ("/code/execute", {"code": "1"}))
    params = {"api-version": "2024-10-02-preview", "identifier": identifier}
    answer = httpx.post(live.chain.url(package) + path, params=params, json=body,
                        headers=_auth_headers(live, package), timeout=10)
    if package == "code_session_api" and identifier == "":
        assert answer.status_code == 200  # the container's default session, as the original
        return
    _problem(answer, 400, "identifier" if package == "dynamic_sessions" else None)


def test_non_utf8_code_is_400_on_every_code_route(live: FaultChain) -> None:
    code = b'{"code_to_execute": "print(\xff\xfe)"}'
    session = httpx.post(f"{live.chain.url('context_api')}/instances/{INSTANCE}/codeSessions",
                         headers=_auth_headers(live, "context_api"), timeout=10,
                         json={"agent_name": "code-interpreter", "conversation_id": "conv-utf8", "context": "code",
                               "endpoint_provider": "AzureContainerAppsCodeInterpreter", "language": "Python"})
    assert session.status_code == 200, session.text
    execute = (f"{live.chain.url('context_api')}/instances/{INSTANCE}/codeSessions/"
               f"{session.json()['session_id']}/executeCode")
    headers = {**_auth_headers(live, "context_api"), "Content-Type": "application/json"}
    _problem(httpx.post(execute, content=code, headers=headers, timeout=10), 400)
    params = {"api-version": "2024-10-02-preview", "identifier": FUZZ_SESSION}
    raw = b'{"codeInputType": "Inline", "executionType": "Synchronous", "code": "\xff"}'
    answer = httpx.post(f"{live.chain.url('dynamic_sessions')}/executions", params=params, content=raw,
                        headers={**_auth_headers(live, "dynamic_sessions"), "Content-Type": "application/json"},
                        timeout=10)
    _problem(answer, 400)


def test_a_huge_output_is_capped_not_an_error(live: FaultChain) -> None:
    outcome = live.run("Run this:\n```python\nprint('z' * 30_000_000)\n```")
    assert outcome.status == "Completed", outcome.body["status_message"]
    assert 1_000 < len(outcome.body["result"]["text"]) <= 2 * 2**20 + 10_000


@pytest.mark.parametrize("package", ["core_api", "context_api", "dynamic_sessions", "code_session_api"])
def test_a_lone_surrogate_in_a_json_string_is_400(live: FaultChain, package: str) -> None:
    paths = {"core_api": f"/instances/{INSTANCE}/async-completions", "dynamic_sessions": "/executions",
             "context_api": f"/instances/{INSTANCE}/codeSessions", "code_session_api": "/code/execute"}
    body = b'{"user_prompt": "a\\ud800b", "code": "print(1) # \\udc00", "codeInputType": "Inline"}'
    answer = httpx.post(live.chain.url(package) + paths[package], content=body, timeout=10,
                        params={"api-version": "2024-10-02-preview", "identifier": FUZZ_SESSION},
                        headers={**_auth_headers(live, package), "Content-Type": "application/json"})
    _problem(answer, 400, "body")


@pytest.mark.parametrize("code", ["not base64!", "ü€", "//79"])  # not base64, not ASCII, not UTF-8 once decoded
def test_undecodable_base64_code_is_400_naming_it(live: FaultChain, code: str) -> None:
    answer = httpx.post(f"{live.chain.url('dynamic_sessions')}/executions", timeout=10,
                        params={"api-version": "2024-10-02-preview", "identifier": FUZZ_SESSION},
                        headers=_auth_headers(live, "dynamic_sessions"),
                        json={"codeInputType": "InlineBase64", "executionType": "Synchronous", "code": code})
    _problem(answer, 400, "code")
