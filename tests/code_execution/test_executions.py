"""The /executions contract (sync and async), results, failures, and the legacy /code/execute."""

from __future__ import annotations

import base64
import time
import uuid

import pytest

from tests.code_execution.conftest import API, AUTH, LEGACY_VERSIONS, NEW_VERSIONS, Harness


def new_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("version", NEW_VERSIONS)
def test_sync_execution_has_the_resource_fields_and_headers(emulator: Harness, version: str) -> None:
    identifier = new_id()
    response = emulator.execute(identifier, "print(7*9)", version=version, timeoutInSeconds=60)
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"id", "identifier", "sessionId", "executionType", "status", "result", "rawResult"}
    assert body["identifier"] == body["sessionId"] == identifier
    assert body["executionType"] == "Synchronous" and body["status"] == "Succeeded"
    assert body["result"]["stdout"] == "63\n" and body["result"]["stderr"] == ""
    assert body["result"]["executionResult"] == ""
    assert isinstance(body["result"]["executionTimeInMilliseconds"], int)
    assert "error" not in body
    assert response.headers["operation-id"] == body["id"] == body["rawResult"]["operationId"]
    location = response.headers["Operation-Location"]
    assert f"/executions/{body['id']}?" in location and f"api-version={version}" in location


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("x = 40 + 2\nx", 42),  # a JSON value, as the data plane answers ("executionResult": 4 for 2+2)
        ("2.5 * 2", 5.0),
        ("1 < 2", True),
        ("{'a': [1, 2.5, None, 'x']}", {"a": [1, 2.5, None, "x"]}),
        ("[i * i for i in range(4)]", [0, 1, 4, 9]),
        ("'abc'", "'abc'"),  # strings, tuples and other objects: their text/plain repr
        ("(1, 2)", "(1, 2)"),
        ("{1: 'a'}", "{1: 'a'}"),
        ("a = float('nan');a", "nan"),
        ("[float('inf')]", "[inf]"),
        ("import datetime\ndatetime.date(2024, 1, 2)", "datetime.date(2024, 1, 2)"),
        ("list(range(2000))", repr(list(range(2000)))[:4096]),  # too long for JSON within the limit
        ("a = None;a", None),
        ("print('hi')", ""),
        ("y = 1", ""),
    ],
)
def test_trailing_expression_is_the_execution_result(emulator: Harness, code: str, expected: object) -> None:
    body = emulator.execute(new_id(), code).json()
    assert body["status"] == "Succeeded"
    assert body["result"]["executionResult"] == expected


def test_a_cell_gets_none_of_the_interpreters_future_imports(emulator: Harness) -> None:
    code = "def f(x: int) -> None:\n    pass\n[f.__annotations__['x'] is int, f.__annotations__['return'] is None]"
    assert emulator.execute(new_id(), code).json()["result"]["executionResult"] == [True, True]


def test_code_exception_fails_with_traceback_and_keeps_partial_output(emulator: Harness) -> None:
    body = emulator.execute(new_id(), "print('before')\ndef f():\n    return 1 / 0\nf()").json()
    assert body["status"] == "Failed"
    assert body["result"]["stdout"] == "before\n"
    stderr = body["result"]["stderr"]
    assert "Traceback (most recent call last)" in stderr and "ZeroDivisionError: division by zero" in stderr
    assert "return 1 / 0" in stderr  # the code's frames only, none of the interpreter's
    assert "interpreter.py" not in stderr and "fllm_interpreter" not in stderr
    error = body["error"]["error"]
    assert error["code"] == "CodeExecutionFailed" and error["innererror"]["code"] == "ZeroDivisionError"
    assert set(error) == {"code", "message", "target", "details", "innererror"}
    assert body["rawResult"]["error_name"] == "ZeroDivisionError"


def test_syntax_error_and_nonzero_exit_fail(emulator: Harness) -> None:
    syntax = emulator.execute(new_id(), "def broken(:\n  pass").json()
    assert syntax["status"] == "Failed" and "SyntaxError" in syntax["result"]["stderr"]
    exited = emulator.execute(new_id(), "import sys\nsys.exit(3)").json()
    assert exited["status"] == "Failed" and exited["error"]["error"]["innererror"]["code"] == "SystemExit"
    clean_exit = emulator.execute(new_id(), "import sys\nsys.exit(0)").json()
    assert clean_exit["status"] == "Succeeded"


def test_async_execution_answers_202_and_polls_to_succeeded(emulator: Harness) -> None:
    identifier = new_id()
    response = emulator.execute(identifier, "import time\ntime.sleep(0.4)\nprint('done')\n21 * 2",
                                executionType="Asynchronous")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "Running" and body["executionType"] == "Asynchronous" and "result" not in body
    location = response.headers["Operation-Location"]
    assert response.headers["operation-id"] == body["id"]
    path = location.removeprefix("http://testserver")
    seen = []
    for _ in range(200):
        poll = emulator.request("GET", path, headers=AUTH)
        assert poll.status_code == 200
        seen.append(poll.json()["status"])
        if seen[-1] != "Running":
            break
        time.sleep(0.02)
    final = poll.json()
    assert "Running" in seen and final["status"] == "Succeeded"
    assert final["result"]["stdout"] == "done\n" and final["result"]["executionResult"] == 42


def test_sync_execution_can_be_read_back_and_is_scoped_to_its_session(emulator: Harness) -> None:
    identifier = new_id()
    execution_id = emulator.execute(identifier, "1 + 1").json()["id"]
    mine = emulator.request("GET", f"/executions/{execution_id}?api-version={API}&identifier={identifier}",
                            headers=AUTH)
    assert mine.status_code == 200 and mine.json()["result"]["executionResult"] == 2
    other = emulator.request("GET", f"/executions/{execution_id}?api-version={API}&identifier={new_id()}",
                             headers=AUTH)
    assert other.status_code == 404 and other.json()["error"]["code"] == "ExecutionNotFound"
    assert other.headers["x-ms-error-code"] == "ExecutionNotFound"


def test_operation_id_header_makes_a_retry_idempotent(emulator: Harness) -> None:
    identifier = new_id()
    emulator.execute(identifier, "count = 0")
    headers = {"operation-id": f"op-{uuid.uuid4().hex}"}
    first = emulator.execute(identifier, "count += 1\ncount", headers=headers).json()
    second = emulator.execute(identifier, "count += 1\ncount", headers=headers).json()
    assert first["id"] == second["id"] == headers["operation-id"]
    assert first["result"]["executionResult"] == second["result"]["executionResult"] == 1
    bad = emulator.execute(identifier, "1", headers={"operation-id": "not valid!"})
    assert bad.status_code == 400 and bad.json()["error"]["target"] == "operation-id"


def test_input_types_and_enum_case(emulator: Harness) -> None:
    encoded = base64.b64encode(b"print('from base64')").decode()
    body = emulator.execute(new_id(), encoded, codeInputType="InlineBase64").json()
    assert body["result"]["stdout"] == "from base64\n"
    lower = emulator.execute(new_id(), "print(1)", codeInputType="inline", executionType="synchronous").json()
    assert lower["status"] == "Succeeded" and lower["executionType"] == "Synchronous"
    invalid = emulator.execute(new_id(), "%%%", codeInputType="InlineBase64")
    assert invalid.status_code == 400 and invalid.json()["error"]["target"] == "code"


@pytest.mark.parametrize(
    ("body", "target"),
    [
        ({"codeInputType": "Inline", "executionType": "Synchronous"}, "code"),
        ({"codeInputType": "Inline", "code": "1"}, "executionType"),
        ({"codeInputType": "Inline", "executionType": "Synchronous", "code": "1", "timeoutInSeconds": 221},
         "timeoutInSeconds"),
        ({"codeInputType": "Inline", "executionType": "Sometimes", "code": "1"}, "executionType"),
    ],
)
def test_invalid_bodies_are_400_in_the_azure_shape(emulator: Harness, body: dict[str, object], target: str) -> None:
    response = emulator.request("POST", f"/executions?api-version={API}&identifier={new_id()}", json=body,
                                headers=AUTH)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == response.headers["x-ms-error-code"] == "InvalidRequestBody"
    assert error["target"] == target and target in error["message"]
    assert set(error) == {"code", "message", "target", "details", "innererror"}


def test_malformed_json_is_400(emulator: Harness) -> None:
    response = emulator.request("POST", f"/executions?api-version={API}&identifier={new_id()}",
                                content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "InvalidRequestBody"


@pytest.mark.parametrize(
    ("query", "code", "target"),
    [
        ("identifier=abcd", "MissingApiVersionParameter", "api-version"),
        ("api-version=2099-01-01&identifier=abcd", "UnsupportedApiVersion", "api-version"),
        ("api-version=2024-09-01&identifier=abcd", "UnsupportedApiVersion", "api-version"),
        (f"api-version={LEGACY_VERSIONS[0]}&identifier=abcd", "UnsupportedApiVersion", "api-version"),
        (f"api-version={API}", "MissingRequiredParameter", "identifier"),
        (f"api-version={API}&identifier=abc", "InvalidParameter", "identifier"),
        (f"api-version={API}&identifier=has%20space", "InvalidParameter", "identifier"),
        (f"api-version={API}&identifier={'x' * 129}", "InvalidParameter", "identifier"),
    ],
)
def test_query_parameters_are_required_and_checked(emulator: Harness, query: str, code: str, target: str) -> None:
    body = {"codeInputType": "Inline", "executionType": "Synchronous", "code": "1"}
    response = emulator.request("POST", f"/executions?{query}", json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == response.headers["x-ms-error-code"] == code
    assert response.json()["error"]["target"] == target


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}])
def test_bearer_token_is_required(emulator: Harness, headers: dict[str, str]) -> None:
    # No api-version either: authentication is checked first, as at Azure's front door.
    response = emulator.request("POST", "/executions?identifier=abcd", json={}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == response.headers["x-ms-error-code"] == "Unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")
    for path in ("/files", "/session", "/executions/x"):
        assert emulator.request("GET", f"{path}?api-version={API}&identifier=abcd", headers=headers).status_code == 401


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_legacy_code_execute_with_properties(emulator: Harness, version: str) -> None:
    identifier = new_id()
    body = {"properties": {"codeInputType": "inline", "executionType": "synchronous", "code": "v = 5\nprint(v)\nv*2"}}
    response = emulator.request("POST", f"/code/execute?api-version={version}&identifier={identifier}", json=body,
                                headers=AUTH)
    assert response.status_code == 200
    properties = response.json()["properties"]
    assert properties["status"] == "Success" and properties["stdout"] == "5\n"
    assert properties["executionResult"] == properties["result"] == 10
    assert properties["$id"] == response.headers["operation-id"]
    for header in ("X-Ms-Container-Execution-Duration", "X-Ms-Execution-Request-Time", "X-Ms-Session-Guid"):
        assert header in response.headers
    failed = emulator.request("POST", f"/code/execute?api-version={version}&identifier={identifier}",
                              json={"properties": {**body["properties"], "code": "raise KeyError('k')"}}, headers=AUTH)
    assert failed.json()["properties"]["status"] == "Failed" and "KeyError" in failed.json()["properties"]["stderr"]
    # The same session serves both contracts.
    state = emulator.execute(identifier, "v").json()
    assert state["result"]["executionResult"] == 5


def test_legacy_and_new_routes_refuse_each_others_versions(emulator: Harness) -> None:
    body = {"properties": {"codeInputType": "inline", "executionType": "synchronous", "code": "1"}}
    legacy_on_new = emulator.request("POST", f"/code/execute?api-version={API}&identifier=abcd", json=body,
                                     headers=AUTH)
    assert legacy_on_new.status_code == 400
    assert legacy_on_new.json()["error"]["code"] == "UnsupportedApiVersion"
    asynchronous = {"properties": {**body["properties"], "executionType": "Asynchronous"}}
    legacy_async = emulator.request("POST", f"/code/execute?api-version={LEGACY_VERSIONS[1]}&identifier=abcd",
                                    json=asynchronous, headers=AUTH)
    assert legacy_async.status_code == 400


def test_unknown_route_answers_azure_shape(emulator: Harness) -> None:
    response = emulator.request("GET", f"/nothing?api-version={API}&identifier=abcd", headers=AUTH)
    assert response.status_code == 404 and response.json()["error"]["code"] == "NotFound"
