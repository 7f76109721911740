"""Session files: the 2024-10-02-preview+ routes, the legacy ones, traversal, isolation, the 413 limit."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.code_execution.conftest import API, AUTH, LEGACY_VERSIONS, Harness


def new_id() -> str:
    return f"f-{uuid.uuid4().hex[:12]}"


def url(route: str, identifier: str, version: str = API, **query: str) -> str:
    extra = "".join(f"&{key}={value}" for key, value in query.items())
    return f"{route}?api-version={version}&identifier={identifier}{extra}"


def upload(harness: Harness, identifier: str, name: str, data: bytes, **query: str):  # noqa: ANN201
    return harness.request("POST", url("/files", identifier, **query), files={"file": (name, data, "text/plain")},
                           headers=AUTH)


def test_upload_get_content_list_and_delete(emulator: Harness) -> None:
    identifier = new_id()
    uploaded = upload(emulator, identifier, "data.csv", b"a,b\n1,2\n", path="/mnt/data")
    assert uploaded.status_code == 200
    resource = uploaded.json()
    assert resource["name"] == "data.csv" and resource["type"] == "file" and resource["sizeInBytes"] == 8
    assert resource["contentType"] == "text/csv" and resource["lastModifiedAt"].endswith("Z")
    assert emulator.request("GET", url("/files/data.csv", identifier), headers=AUTH).json() == resource
    content = emulator.request("GET", url("/files/data.csv/content", identifier), headers=AUTH)
    assert content.status_code == 200 and content.content == b"a,b\n1,2\n"
    assert content.headers["content-type"] == "application/octet-stream"
    listing = emulator.request("GET", url("/files", identifier), headers=AUTH).json()
    assert listing == {"value": [resource], "nextLink": None}
    deleted = emulator.request("DELETE", url("/files/data.csv", identifier), headers=AUTH)
    assert deleted.status_code == 204
    for path in ("/files/data.csv", "/files/data.csv/content"):
        missing = emulator.request("GET", url(path, identifier), headers=AUTH)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "FileNotFound"
    assert emulator.request("DELETE", url("/files/data.csv", identifier), headers=AUTH).status_code == 404


def test_code_and_file_api_see_the_same_files_in_sub_folders(emulator: Harness) -> None:
    identifier = new_id()
    assert upload(emulator, identifier, "in.txt", b"uploaded", path="/mnt/data/inputs").status_code == 200
    body = emulator.execute(identifier, "import os\nos.makedirs('out/deep', exist_ok=True)\n"
                                        "open('out/deep/r.txt', 'w').write(open('/mnt/data/inputs/in.txt').read())")
    assert body.json()["status"] == "Succeeded"
    root = emulator.request("GET", url("/files", identifier), headers=AUTH).json()["value"]
    assert [(item["name"], item["type"], item["directory"]) for item in root] == [
        ("inputs", "directory", ""), ("out", "directory", "")]
    deep = emulator.request("GET", url("/files", identifier, path="/out/deep"), headers=AUTH).json()["value"]
    assert [(item["name"], item["directory"]) for item in deep] == [("r.txt", "out/deep")]
    everything = emulator.request("GET", url("/files", identifier, recursive="true"), headers=AUTH).json()["value"]
    assert {f"{item['directory']}/{item['name']}".lstrip("/") for item in everything} == {
        "inputs", "inputs/in.txt", "out", "out/deep", "out/deep/r.txt"}
    content = emulator.request("GET", url("/files/r.txt/content", identifier, path="/out/deep"), headers=AUTH)
    assert content.content == b"uploaded"
    assert emulator.request("DELETE", url("/files/out", identifier, path="/"), headers=AUTH).status_code == 204
    assert emulator.execute(identifier, "import os\nos.path.exists('out')").json()["result"]["executionResult"] is \
        False


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("GET", "/files/%2e%2e/content", {}),
        ("GET", "/files/x.txt/content", {"path": "../../etc"}),
        ("GET", "/files/passwd", {"path": "/mnt/data/../../../etc"}),
        ("DELETE", "/files/%2e%2e", {}),
        ("GET", "/files", {"path": "..\\x"}),
    ],
)
def test_path_traversal_is_refused(emulator: Harness, method: str, path: str, query: dict[str, str]) -> None:
    response = emulator.request(method, url(path, new_id(), **query), headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidFilePath"


@pytest.mark.parametrize("name", ["../evil.txt", "..", "a/../../b.txt", ".upload-x"])
def test_upload_names_that_escape_are_refused(emulator: Harness, name: str) -> None:
    identifier = new_id()
    response = upload(emulator, identifier, name, b"x")
    assert response.status_code == 400
    session = emulator.executor.find_session(identifier)
    assert session is not None and os.listdir(session.data_dir) == []
    assert not (session.folder.parent / "evil.txt").exists()


def test_links_planted_by_code_are_not_followed(emulator: Harness) -> None:
    victim, attacker = new_id(), new_id()
    upload(emulator, victim, "secret.txt", b"victim data")
    victim_file = emulator.executor.find_session(victim).data_dir / "secret.txt"
    code = f"import os\nos.symlink({str(victim_file)!r}, 'link.txt')\nos.symlink('/etc', 'etc')"
    assert emulator.execute(attacker, code).json()["status"] == "Succeeded"
    for path, query in (("/files/link.txt/content", {}), ("/files/passwd/content", {"path": "/etc"})):
        assert emulator.request("GET", url(path, attacker, **query), headers=AUTH).status_code == 404
    names = [item["name"] for item in emulator.request("GET", url("/files", attacker), headers=AUTH).json()["value"]]
    assert names == []  # links are not files of the API
    assert emulator.request("DELETE", url("/files/passwd", attacker, path="/etc"), headers=AUTH).status_code == 404


def test_sessions_cannot_reach_each_others_files(emulator: Harness) -> None:
    owner, other = new_id(), new_id()
    upload(emulator, owner, "private.txt", b"owner only")
    assert emulator.request("GET", url("/files/private.txt/content", other), headers=AUTH).status_code == 404
    emulator.execute(owner, "1")
    session = emulator.executor.find_session(owner)
    by_host_path = emulator.execute(other, f"open({str(session.data_dir / 'private.txt')!r}).read()").json()
    assert by_host_path["status"] == "Failed"
    assert "PermissionError" in by_host_path["result"]["stderr"] or "FileNotFound" in by_host_path["result"]["stderr"]
    if emulator.executor.sandbox["identity"] != "session-uid":
        pytest.skip("sessions share the server's uid here; only the file API and the mounts separate them")
    # Through the owner's interpreter: its pid is not in the other session's /proc at all.
    by_proc = emulator.execute(other, f"open('/proc/{session.worker.pid}/cwd/private.txt').read()").json()
    assert by_proc["status"] == "Failed"
    assert "PermissionError" in by_proc["result"]["stderr"] or "FileNotFound" in by_proc["result"]["stderr"]


def test_upload_over_the_limit_is_413_by_declared_length(emulator: Harness) -> None:
    identifier = new_id()
    limit = emulator.executor.config.max_upload_bytes
    response = upload(emulator, identifier, "big.bin", b"x" * (limit + 200 * 1024))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == response.headers["x-ms-error-code"] == "RequestEntityTooLarge"
    assert os.listdir(emulator.executor.find_session(identifier).data_dir) == []


def test_upload_over_the_limit_is_413_while_streaming(emulator: Harness) -> None:
    identifier = new_id()
    limit = emulator.executor.config.max_upload_bytes
    boundary = "streamboundary"

    async def body() -> AsyncIterator[bytes]:  # chunked: no Content-Length to check up front
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
               "Content-Type: application/octet-stream\r\n\r\n").encode()
        for _ in range(limit // 65536 + 4):
            yield b"y" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = emulator.request("POST", url("/files", identifier), content=body(),
                                headers={**AUTH, "content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413
    assert os.listdir(emulator.executor.find_session(identifier).data_dir) == []  # the partial file is gone


def test_upload_at_the_limit_is_accepted(emulator: Harness) -> None:
    limit = emulator.executor.config.max_upload_bytes
    response = upload(emulator, new_id(), "exact.bin", b"z" * limit)
    assert response.status_code == 200 and response.json()["sizeInBytes"] == limit


def test_upload_without_a_file_part_is_400(emulator: Harness) -> None:
    identifier = new_id()
    no_file = emulator.request("POST", url("/files", identifier), files={"other": ("a.txt", b"x")}, headers=AUTH)
    assert no_file.status_code == 400 and no_file.json()["error"]["target"] == "file"
    not_multipart = emulator.request("POST", url("/files", identifier), content=b"raw", headers=AUTH)
    assert not_multipart.status_code == 400
    malformed = emulator.request("POST", url("/files", identifier), content=b"--b\r\nnot a header line\r\n\r\n",
                                 headers={**AUTH, "content-type": "multipart/form-data; boundary=b"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "InvalidRequestBody"
    upload(emulator, identifier, "plain.txt", b"x")
    into_a_file = upload(emulator, identifier, "y.txt", b"y", path="/plain.txt")
    assert into_a_file.status_code == 400 and into_a_file.json()["error"]["target"] == "path"


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_legacy_file_routes(emulator: Harness, version: str) -> None:
    identifier = new_id()
    uploaded = emulator.request("POST", url("/files/upload", identifier, version),
                                files={"file": ("notes.md", b"# hi", "text/markdown")}, headers=AUTH)
    assert uploaded.status_code == 200
    item = uploaded.json()["value"][0]
    assert item["properties"]["filename"] == "notes.md" and item["properties"]["size"] == 4
    emulator.execute(identifier, "import os\nos.makedirs('sub', exist_ok=True)\nopen('sub/x.txt','w').write('xx')")
    listing = emulator.request("GET", url("/files", identifier, version), headers=AUTH).json()
    assert listing["$id"] == "1"
    assert sorted(entry["properties"]["filename"] for entry in listing["value"]) == ["notes.md", "sub/x.txt"]
    assert all({"filename", "size", "lastModifiedTime", "$id"} <= set(e["properties"]) for e in listing["value"])
    content = emulator.request("GET", url("/files/content/sub/x.txt", identifier, version), headers=AUTH)
    assert content.status_code == 200 and content.content == b"xx"
    escape = emulator.request("GET", url("/files/content/sub/..%2F..%2Fetc%2Fpasswd", identifier, version),
                              headers=AUTH)
    assert escape.status_code == 400
