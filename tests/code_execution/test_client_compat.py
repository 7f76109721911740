"""What the Dynamic Sessions clients of LangChain, Semantic Kernel and LlamaIndex send, served as they need it:
a pool's Azure path in the endpoint, and Semantic Kernel's uploads labelled as JSON."""

from __future__ import annotations

import urllib.parse

import httpx
import pytest

from tests.code_execution.conftest import AUTH, Harness

POOL = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-1/sessionPools/pool-1"


def query(identifier: str, version: str) -> str:
    return urllib.parse.urlencode({"identifier": identifier, "api-version": version})


@pytest.mark.parametrize(("path", "version"), [("/files/upload", "2024-02-02-preview"),
                                               ("/files", "2025-02-02-preview")])
def test_a_multipart_upload_labelled_as_json_is_read_as_multipart(emulator: Harness, path: str,
                                                                  version: str) -> None:
    # Semantic Kernel's SessionsPythonTool keeps Content-Type: application/json on its client after executing.
    identifier = f"sk-upload-{version}"
    answer = emulator.request("POST", f"{path}?{query(identifier, version)}",
                              files={"file": ("/mnt/data/input.csv", b"a,b\n1,2\n", "application/octet-stream")},
                              headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    listing = emulator.request("GET", f"/files?{query(identifier, '2024-02-02-preview')}", headers=AUTH).json()
    assert [(item["properties"]["filename"], item["properties"]["size"]) for item in listing["value"]] == [
        ("input.csv", 8)]


@pytest.mark.parametrize("body", [b'{"file": "not multipart"}', b"--x\r\nno part headers or end", b"", b"--"])
def test_a_json_labelled_body_that_is_no_multipart_upload_is_a_400(emulator: Harness, body: bytes) -> None:
    answer = emulator.request("POST", f"/files/upload?{query('sk-bad-upload', '2024-02-02-preview')}",
                              content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "InvalidRequestBody" and answer.json()["error"]["target"] == "file"


def test_the_data_plane_answers_under_a_pools_azure_path(emulator: Harness) -> None:
    legacy = emulator.request("POST", f"{POOL}/code/execute?{query('pool-path', '2024-02-02-preview')}", headers=AUTH,
                              json={"properties": {"codeInputType": "inline", "executionType": "synchronous",
                                                   "code": "21 * 2"}})
    assert legacy.status_code == 200, legacy.text
    assert legacy.json()["properties"]["result"] == 42

    body = {"codeInputType": "Inline", "executionType": "Asynchronous", "code": "print('later')"}
    accepted = emulator.request("POST", f"{POOL}/executions?{query('pool-path', '2025-02-02-preview')}",
                                json=body, headers=AUTH)
    assert accepted.status_code == 202, accepted.text
    location = httpx.URL(accepted.headers["Operation-Location"])
    assert location.path.startswith(f"{POOL}/executions/")  # polling goes back through the same pool path
    final = emulator.request("GET", f"{location.path}?{location.query.decode()}", headers=AUTH)
    assert final.status_code == 200 and final.json()["id"] == accepted.json()["id"]

    for wrong in ("/subscriptions/s/resourceGroups/rg/sessionPool/p", "/subscriptions/s/sessionPools/p"):
        missing = emulator.request("GET", f"{wrong}/session?{query('pool-path', '2025-02-02-preview')}",
                                   headers=AUTH)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"
