"""FoundationaLLM's custom-container Code Session API face, on the same executor core."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from telemetry import conventions as c
from tests.code_execution.conftest import AUTH, Harness, LoopThread, make_config, settings_for

QUERY = "api-version=2024-10-02-preview&identifier="


def new_id() -> str:
    return f"code-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory, loop_thread: LoopThread, span_exporter) -> Iterator[Harness]:  # noqa: ANN001
    from services.code_session_api import create_app

    tmp = tmp_path_factory.mktemp("container")
    harness = Harness(create_app(settings_for(tmp), make_config(tmp, pool_size=1)), loop_thread).start()
    harness.client.headers.update(AUTH)  # every route but /status requires the pool's bearer token
    yield harness
    harness.stop()


def execute(harness: Harness, code: str, identifier: str | None = None):  # noqa: ANN201
    query = f"?{QUERY}{identifier}" if identifier else ""
    return harness.request("POST", f"/code/execute{query}", json={"code": code})


@pytest.mark.parametrize(
    ("code", "results"),
    [
        ("a = 1\nb = [1, 2]\na, b", {"a": "1", "b": "[1, 2]"}),
        ("x = y = {'k': 3}", {"x": '{"k": 3}', "y": '{"k": 3}'}),
        ("import datetime\nwhen = datetime.date(2024, 5, 1)\nwhen", {"when": '"2024-05-01"'}),
        ("s = {1}\nf = lambda: 0\ns, f", {"s": "[1]"}),  # unserialisable values are dropped
        ("v = 2\nprint(v)", {}),  # a call names no variable
        ("v = 2\nv + 1", {}),
    ],
)
def test_results_follow_the_last_statement_rule(container: Harness, code: str, results: dict[str, str]) -> None:
    response = execute(container, code, new_id())
    assert response.status_code == 200
    assert response.json() == {"detail": {"results": results, "output": response.json()["detail"]["output"],
                                          "error": ""}}


def test_output_and_stderr_are_returned(container: Harness) -> None:
    detail = execute(container, "import sys\nprint('out')\nsys.stderr.write('warn')", new_id()).json()["detail"]
    assert detail["output"] == "out\n" and detail["error"] == "warn"


ORIGINAL_FAILURE = "The code execution failed with a {} error and the following exception message: {}"


def test_code_exception_answers_200_with_the_originals_failure_text(container: Harness) -> None:
    response = execute(container, "import sys\nprint('partial')\nsys.stderr.write('warned\\n')\n"
                                  "raise ValueError('bad value')", new_id())
    assert response.status_code == 200, response.text
    detail = response.json()["detail"]
    # The original's fields and wording; ours beside them: partial stdout, the whole stderr, a status.
    assert detail["results"] == "" and detail["error"] == ORIGINAL_FAILURE.format("ValueError", "bad value")
    assert detail["output"] == "partial\n" and detail["status"] == "Failed" and detail["timed_out"] is False
    assert detail["stderr"].startswith("warned\nTraceback") and detail["stderr"].rstrip().endswith(
        "ValueError: bad value")


def test_code_exception_leaves_the_server_span_unset_and_the_execute_span_error(
    container: Harness, span_exporter,  # noqa: ANN001
) -> None:
    from opentelemetry.trace import SpanKind, StatusCode

    span_exporter.clear()
    assert execute(container, "1 / 0", new_id()).status_code == 200
    spans = span_exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind == SpanKind.SERVER and "/code/execute" in s.name]
    [code] = [s for s in spans if s.name == c.SPAN_CODE_EXECUTE]
    assert server.status.status_code == StatusCode.UNSET
    assert code.status.status_code == StatusCode.ERROR and code.attributes["error.type"] == "ZeroDivisionError"


def test_missing_code_is_400_with_the_original_message(container: Harness) -> None:
    response = container.request("POST", "/code/execute", json={"not_code": 1})
    assert response.status_code == 400
    assert response.json() == {"detail": "Code not provided in the request body."}
    assert container.request("POST", "/code/execute", content=b"[1]",
                             headers={"content-type": "application/json"}).status_code == 400


def test_identifier_selects_the_session_and_default_exists(container: Harness) -> None:
    one, two = new_id(), new_id()
    execute(container, "who = 'one'", one)
    execute(container, "who = 'two'", two)
    execute(container, "who = 'default'")
    assert execute(container, "who", one).json()["detail"]["results"] == {"who": '"one"'}
    assert execute(container, "who", two).json()["detail"]["results"] == {"who": '"two"'}
    assert execute(container, "who").json()["detail"]["results"] == {"who": '"default"'}
    assert execute(container, "1", "bad").status_code == 400


def test_files_upload_list_download_delete(container: Harness) -> None:
    identifier = new_id()
    uploaded = container.request("POST", f"/files/upload?{QUERY}{identifier}",
                                 files={"file": ("input.csv", b"a\n1\n", "text/csv")})
    assert uploaded.json() == {"status": "success", "filename": "input.csv"}
    execute(container, "import os\nos.makedirs('charts/2024', exist_ok=True)\n"
                       "open('charts/2024/plot.png', 'wb').write(b'PNG')", identifier)
    listing = container.request("GET", f"/files?{QUERY}{identifier}").json()["value"]
    assert [(item["name"], item["parentPath"], item["sizeInBytes"], item["type"]) for item in listing] == [
        ("plot.png", "charts/2024", 3, "file"), ("input.csv", "", 4, "file")]
    assert {"contentType", "lastModifiedAt"} <= set(listing[0]) and listing[0]["lastModifiedAt"].endswith("Z")
    download = container.request("POST", f"/files/download?{QUERY}{identifier}",
                                 json={"file_name": "charts/2024/plot.png"})
    assert download.status_code == 200 and download.content == b"PNG"
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"].startswith('attachment; filename="plot.png"')
    deleted = container.request("POST", f"/files/delete?{QUERY}{identifier}")
    assert deleted.json() == {"status": "success"}
    assert container.request("GET", f"/files?{QUERY}{identifier}").json() == {"value": []}
    # The interpreter still works in its (now empty) /mnt/data.
    assert execute(container, "import os\nprint(os.listdir('/mnt/data'))", identifier).json()["detail"]["output"] \
        == "[]\n"


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"file_name": "nope.txt"}, 404, "File not found."),
        ({"file_name": "../../etc/passwd"}, 400, "Invalid file name."),
        ({}, 400, "The file name was not provided in the request body."),
    ],
)
def test_download_errors(container: Harness, body: dict[str, str], status: int, detail: str) -> None:
    response = container.request("POST", f"/files/download?{QUERY}{new_id()}", json=body)
    assert response.status_code == status and response.json() == {"detail": detail}


def test_upload_with_escaping_name_is_400(container: Harness) -> None:
    response = container.request("POST", f"/files/upload?{QUERY}{new_id()}", files={"file": ("../x.txt", b"x")})
    assert response.status_code == 400 and response.json() == {"detail": "Invalid file name."}


def test_spans_name_the_custom_container_provider(container: Harness, span_exporter) -> None:  # noqa: ANN001
    span_exporter.clear()
    execute(container, "1", new_id())
    spans = [span for span in span_exporter.get_finished_spans() if span.name == c.SPAN_CODE_EXECUTE]
    assert [span.attributes["foundationallm.code_session.provider"] for span in spans] == [
        "AzureContainerAppsCustomContainer"]
    status = container.request("GET", "/status").json()
    assert status["status"] == "ready" and json.dumps(status["sandbox"])


def test_the_callers_timeout_ends_the_execution(container: Harness) -> None:
    """``timeout_seconds`` (the Context API's execution timeout) reaches the executor: killed, and said so."""
    identifier = new_id()
    response = container.request("POST", f"/code/execute?{QUERY}{identifier}",
                                 json={"code": "import time\ntime.sleep(30)\nprint('done')", "timeout_seconds": 1})
    assert response.status_code == 200, response.text
    detail = response.json()["detail"]
    assert detail["timed_out"] is True and detail["status"] == "Failed" and detail["results"] == ""
    assert detail["error"].startswith(ORIGINAL_FAILURE.format("TimeoutError", "")) and "1-second timeout" in \
        detail["error"] and "1-second timeout" in detail["stderr"]
    assert execute(container, "print('next')", identifier).json()["detail"]["output"] == "next\n"


@pytest.mark.parametrize("value", [0, -1, 221, "soon", 1.5])
def test_a_bad_timeout_is_400_naming_the_field(container: Harness, value: object) -> None:
    response = container.request("POST", "/code/execute", json={"code": "print(1)", "timeout_seconds": value})
    assert response.status_code == 400 and "timeout_seconds" in response.json()["detail"], response.text
