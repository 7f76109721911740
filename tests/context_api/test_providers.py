"""How the providers read the pools' answers, on the shapes each one really returns."""

from __future__ import annotations

import pytest

from services.context_api.providers.base import SessionFile
from services.context_api.providers.custom_container import container_result

FAILURE = "The code execution failed with a ValueError error and the following exception message: bad"


@pytest.mark.parametrize(
    ("is_success", "detail", "status", "execution_result"),
    [
        (True, {"results": {}, "output": "hi\n", "error": ""}, "Succeeded", "{}"),
        (True, {"results": {"a": "1"}, "output": "", "error": "a warning"}, "Succeeded", '{"a": "1"}'),
        # FoundationaLLM's own image answers a code exception with 200, results "" and the error.
        (True, {"results": "", "output": "", "error": FAILURE}, "Failed", "{}"),
        # This project's Code Session API: the same 200, plus the partial stdout, the stderr and a status.
        (True, {"results": "", "output": "partial\n", "error": FAILURE, "stderr": "Traceback ...\nValueError: bad",
                "status": "Failed", "timed_out": False}, "Failed", "{}"),
        # Any non-2xx (an older build answered 422) is Failed too.
        (False, {"results": {}, "output": "partial\n", "error": "Traceback ...", "status": "Failed"}, "Failed", "{}"),
    ],
)
def test_custom_container_answers(is_success: bool, detail: dict, status: str, execution_result: str) -> None:
    result = container_result(is_success, detail)
    assert result.status == status and result.execution_result == execution_result
    assert result.standard_output == (detail["output"] or "")
    assert result.error_output == detail.get("stderr", detail["error"])  # the traceback when there is one


def test_a_succeeded_answers_stderr_field_does_not_replace_its_error() -> None:
    result = container_result(True, {"results": {}, "output": "", "error": "a warning", "stderr": "other"})
    assert result.status == "Succeeded" and result.error_output == "a warning"


def test_session_file_paths() -> None:
    assert SessionFile("a.txt", "/").path == "/a.txt"
    assert SessionFile("b c.csv", "/out/sub").path == "/out/sub/b c.csv"
    assert SessionFile("b", "/out/sub").depth == 3
