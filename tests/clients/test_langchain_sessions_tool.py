"""LangChain's ``SessionsPythonREPLTool`` (langchain-azure-dynamic-sessions, unmodified) against the emulator on
https: the requests it sends and the fields it reads, as a user pointing it at a pool gets them."""

from __future__ import annotations

import base64
import io
import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

from tests.clients.conftest import DEFAULT_TIMEOUT_S, HttpsPools
from tests.wait import wait_until

with warnings.catch_warnings():  # the package points to its successor on import; this one is what users run
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_azure_dynamic_sessions import SessionsPythonREPLTool

pytestmark = pytest.mark.chain
AZURE_POOL_PATH = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/sessionPools/pool"


@pytest.fixture
def client_env(https_pools: HttpsPools, monkeypatch: pytest.MonkeyPatch) -> HttpsPools:
    """requests trusts the local CA; azure-identity could only read the environment (no metadata probing)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(https_pools.ca_file))
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential")
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "IDENTITY_ENDPOINT", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return https_pools


@pytest.fixture
def tool(client_env: HttpsPools) -> Iterator[SessionsPythonREPLTool]:
    # The endpoint as Azure gives it (a pool's path), ending with '/' as the tool's docs ask.
    endpoint = f"{client_env.url()}{AZURE_POOL_PATH}/"
    yield SessionsPythonREPLTool(pool_management_endpoint=endpoint, access_token_provider=lambda: client_env.token)


def run(tool: SessionsPythonREPLTool, code: str) -> dict:
    return json.loads(tool.invoke(code))


def test_state_carries_across_calls_and_errors_come_back_in_stderr(tool: SessionsPythonREPLTool) -> None:
    first = run(tool, "```python\nx = 6 * 7\nx\n```")  # the tool strips an LLM's fences
    assert str(first["result"]) == "42" and first["stderr"] == ""
    assert run(tool, "print(x + 1)") == {"result": "", "stdout": "43\n", "stderr": ""}
    failed = tool.execute("print('before')\n1 / 0")
    assert failed["status"] == "Failed" and failed["stdout"] == "before\n"
    assert "Traceback" in failed["stderr"] and "ZeroDivisionError: division by zero" in failed["stderr"]
    assert str(run(tool, "x")["result"]) == "42"  # a failed cell keeps the session's state


def test_a_run_past_the_pools_timeout_fails_and_the_session_goes_on(tool: SessionsPythonREPLTool) -> None:
    run(tool, "kept = 1")
    started = time.monotonic()
    timed_out = tool.execute("import time\ntime.sleep(60)")
    assert time.monotonic() - started < DEFAULT_TIMEOUT_S + 10
    assert timed_out["status"] == "Failed" and "TimeoutError" in timed_out["stderr"]
    assert run(tool, "print('after')")["stdout"] == "after\n"


def test_upload_list_and_download_including_files_written_by_code(tool: SessionsPythonREPLTool,
                                                                  tmp_path: Path) -> None:
    uploaded = tool.upload_file(data=io.BytesIO(b"a,b\n1,2\n3,4\n"), remote_file_path="data.csv")
    assert (uploaded.filename, uploaded.size_in_bytes, uploaded.full_path) == ("data.csv", 12, "/mnt/data/data.csv")
    local = tmp_path / "notes.txt"
    local.write_bytes(b"from disk")
    assert tool.upload_file(local_file_path=str(local)).filename == "notes.txt"

    code = ("import os\nrows = open('/mnt/data/data.csv').read().splitlines()\n"
            "os.makedirs('/mnt/data/out', exist_ok=True)\n"
            "open('/mnt/data/out/report.txt', 'w').write(f'{len(rows) - 1} rows')\nprint(len(rows))")
    assert run(tool, code)["stdout"] == "3\n"
    listed = {entry.filename: entry.size_in_bytes for entry in tool.list_files()}
    assert listed == {"data.csv": 12, "notes.txt": 9, "out/report.txt": 6}
    assert tool.download_file(remote_file_path="out/report.txt").read() == b"2 rows"
    saved = tmp_path / "copy.csv"
    tool.download_file(remote_file_path="data.csv", local_file_path=str(saved))
    assert saved.read_bytes() == b"a,b\n1,2\n3,4\n"
    with pytest.raises(requests.HTTPError) as missing:
        tool.download_file(remote_file_path="absent.txt")
    assert missing.value.response.status_code == 404
    assert missing.value.response.json()["error"]["code"] == "FileNotFound"


def test_a_figure_comes_back_as_an_image_the_tool_keeps_out_of_the_llms_text(tool: SessionsPythonREPLTool) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.show()"
    content, artifact = tool._run(code)  # what the tool hands LangChain: text for the model, the raw artifact
    image = artifact["result"]
    assert isinstance(image, dict) and image["type"] == "image" and image["format"] == "png", artifact
    assert base64.b64decode(image["base64_data"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert json.loads(content)["result"] == {"type": "image", "format": "png"}


def test_delete_session_ends_the_session_in_the_pool(tool: SessionsPythonREPLTool, client_env: HttpsPools) -> None:
    run(tool, "y = 1")
    old = tool.session_id
    pool = httpx.Client(base_url=client_env.url(), verify=client_env.trusting, timeout=10,
                        headers={"Authorization": f"Bearer {client_env.token}"})

    def identifiers() -> set[str]:
        answer = pool.get("/listSessions", params={"api-version": "2025-10-02-preview"})
        return {session["identifier"] for session in answer.json()["sessions"]}

    assert old in identifiers()
    tool.delete_session()  # a DELETE /session in a background thread, and a new session id
    assert tool.session_id != old
    wait_until(lambda: old not in identifiers(), "the deleted session to leave the pool", 10)
    assert "NameError" in tool.execute("y")["stderr"]  # the new session starts empty
    pool.close()


def test_the_tool_refuses_a_pool_whose_certificate_it_does_not_trust(https_pools: HttpsPools,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    tool = SessionsPythonREPLTool(pool_management_endpoint=https_pools.url(),
                                  access_token_provider=lambda: https_pools.token)
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        tool.execute("1")


def test_a_wrong_token_is_refused_with_the_services_error(client_env: HttpsPools) -> None:
    tool = SessionsPythonREPLTool(pool_management_endpoint=client_env.url(), access_token_provider=lambda: "wrong")
    with pytest.raises(requests.HTTPError) as refused:
        tool.execute("1")
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["x-ms-error-code"] == "Unauthorized"
