"""How the providers read the pools' answers, on the shapes each one really returns."""

from __future__ import annotations

import pytest

from services.context_api.providers.base import SessionFile
from services.context_api.providers.custom_container import container_result


@pytest.mark.parametrize(
    ("is_success", "detail", "status", "execution_result"),
    [
        (True, {"results": {}, "output": "hi\n", "error": ""}, "Succeeded", "{}"),
        (True, {"results": {"a": "1"}, "output": "", "error": "a warning"}, "Succeeded", '{"a": "1"}'),
        # FoundationaLLM's own image answers a code exception with 200, results "" and the error.
        (True, {"results": "", "output": "", "error": "ValueError: bad"}, "Failed", "{}"),
        # This project's Code Session API: 422, the traceback and the partial stdout kept.
        (False, {"results": {}, "output": "partial\n", "error": "Traceback ...", "status": "Failed"}, "Failed", "{}"),
    ],
)
def test_custom_container_answers(is_success: bool, detail: dict, status: str, execution_result: str) -> None:
    result = container_result(is_success, detail)
    assert result.status == status and result.execution_result == execution_result
    assert result.standard_output == (detail["output"] or "") and result.error_output == detail["error"]


def test_session_file_paths() -> None:
    assert SessionFile("a.txt", "/").path == "/a.txt"
    assert SessionFile("b c.csv", "/out/sub").path == "/out/sub/b c.csv"
    assert SessionFile("b", "/out/sub").depth == 3
