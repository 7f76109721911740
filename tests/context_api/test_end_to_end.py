"""Both providers end to end: the Context API (in-process) calls the Dynamic Sessions emulator and the
Code Session API running as real uvicorn processes over loopback TCP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.context_api.config import CODE_INTERPRETER, CUSTOM_CONTAINER
from tests.context_api.conftest import (
    BASE,
    Provider,
    Providers,
    app_for,
    attach,
    create_body,
    headers_for,
    post,
    running,
    spans_named,
)
from tests.real_service import start_code_service

WRITE_FILES = (
    "import os\n"
    "rows = open('/mnt/data/input.csv').read().splitlines()\n"
    "os.makedirs('/mnt/data/charts', exist_ok=True)\n"
    "open('/mnt/data/summary.txt', 'w').write(f'{len(rows)} rows')\n"
    "open('/mnt/data/charts/plot data.csv', 'w').write('x,y\\n1,2\\n')\n"
    "print('wrote', len(rows))\n"
    "len(rows) * 7"
)
FAILING = "print('before the error')\nraise ValueError('bad value')"

pytestmark = pytest.mark.chain  # both providers run as their own processes


async def generated_files(client: httpx.AsyncClient, session: str, operation_id: str) -> dict[str, bytes]:
    download = await post(client, f"/codeSessions/{session}/downloadFiles", {"operation_id": operation_id})
    assert download["errors"] == []
    found = {}
    for file_id, record in download["file_records"].items():
        assert record["id"] == file_id and record["origin"] == "code-session"
        assert record["file_object_id"] == f"{BASE}/providers/FoundationaLLM.Context/files/{file_id}"
        content = await client.get(f"{BASE}/files/{file_id}", headers=headers_for())
        assert content.status_code == 200 and len(content.content) == record["file_size_bytes"]
        found[record["metadata"]["code_session_file_path"]] = content.content
    return found


@pytest.mark.parametrize("provider", [CODE_INTERPRETER, CUSTOM_CONTAINER])
def test_upload_execute_and_download_through_each_provider(providers: Providers, tmp_path: Path,
                                                          provider: str) -> None:
    app = app_for(providers, tmp_path)

    async def scenario() -> None:
        async with running(app) as client:
            conversation = f"conv-{provider[-9:].lower()}"
            await attach(client, conversation, "input.csv", b"a\nb\nc\n")
            session = (await post(client, "/codeSessions", create_body(provider, conversation)))["session_id"]
            upload = await post(client, f"/codeSessions/{session}/uploadFiles",
                                {"file_names": ["input.csv", "missing.csv"]})
            assert upload["file_upload_success"] == {"input.csv": True, "missing.csv": False}
            assert upload["all_files_uploaded"] is False
            assert await generated_files(client, session, upload["operation_id"]) == {}  # the baseline

            result = await post(client, f"/codeSessions/{session}/executeCode", {"code_to_execute": WRITE_FILES})
            assert result["status"] == "Succeeded", result
            assert result["standard_output"] == "wrote 3\n"  # never dropped
            if provider == CODE_INTERPRETER:
                assert result["execution_result"] == "21"  # the interpreter's executionResult
            else:
                assert result["execution_result"] == "{}"  # the container's named results: none here
            files = await generated_files(client, session, upload["operation_id"])
            assert files == {"/summary.txt": b"3 rows", "/charts/plot data.csv": b"x,y\n1,2\n"}

            failed = await post(client, f"/codeSessions/{session}/executeCode", {"code_to_execute": FAILING})
            assert failed["status"] == "Failed"
            assert "ValueError: bad value" in failed["error_output"] and "Traceback" in failed["error_output"]
            assert failed["standard_output"] == "before the error\n"

            # A new upload starts the session from the uploaded files: the generated ones are gone.
            again = await post(client, f"/codeSessions/{session}/uploadFiles", {"file_names": ["input.csv"]})
            assert again["all_files_uploaded"] is True
            assert await generated_files(client, session, again["operation_id"]) == {}

    asyncio.run(scenario())


def test_one_trace_runs_from_the_context_api_into_the_provider(providers: Providers, tmp_path: Path,
                                                               span_exporter: InMemorySpanExporter) -> None:
    app = app_for(providers, tmp_path)
    span_exporter.clear()

    async def scenario() -> str:
        async with running(app) as client:
            session = (await post(client, "/codeSessions", create_body(CODE_INTERPRETER, "conv-trace")))["session_id"]
            await post(client, f"/codeSessions/{session}/executeCode", {"code_to_execute": "print('traced')"})
            return session

    session = asyncio.run(scenario())
    server = spans_named(span_exporter, "POST /instances/{instanceId}/codeSessions/{sessionId}/executeCode")[-1]
    trace_id = format(server.context.trace_id, "032x")
    client_span = next(span for span in span_exporter.get_finished_spans()
                       if span.name == "POST" and span.context.trace_id == server.context.trace_id)
    emulator: Provider = providers.dynamic_sessions
    remote = emulator.wait_for_span(trace_id, "POST /executions")
    assert remote["parentSpanId"] == format(client_span.context.span_id, "016x")
    local = json.dumps([dict(span.attributes or {}) for span in span_exporter.get_finished_spans()])
    assert session not in local and "identifier=" in local  # the client span's url.full carries the hash
    assert session not in json.dumps([span for span in emulator.spans() if span["traceId"] == trace_id])


def test_custom_container_sessions_are_stable_and_keep_their_files(providers: Providers, tmp_path: Path) -> None:
    """Turn after turn (a create per completion, as Orchestration does), and across a Context API restart."""

    async def turn(code: str) -> dict[str, Any]:
        async with running(app_for(providers, tmp_path)) as client:
            session = (await post(client, "/codeSessions", create_body(CUSTOM_CONTAINER, "conv-stable")))
            result = await post(client, f"/codeSessions/{session['session_id']}/executeCode",
                                {"code_to_execute": code})
            return {**result, "session_id": session["session_id"]}

    first = asyncio.run(turn("open('/mnt/data/state.txt', 'w').write('turn one')\nprint('saved')"))
    second = asyncio.run(turn("print(open('/mnt/data/state.txt').read())"))
    assert first["session_id"] == second["session_id"] == "code-conv-stable-code"
    assert second["status"] == "Succeeded" and second["standard_output"] == "turn one\n"


def test_records_survive_a_restart(providers: Providers, tmp_path: Path) -> None:
    async def create() -> tuple[str, str]:
        async with running(app_for(providers, tmp_path)) as client:
            session = (await post(client, "/codeSessions", create_body(CODE_INTERPRETER, "conv-restart")))
            upload = await post(client, f"/codeSessions/{session['session_id']}/uploadFiles", {"file_names": []})
            return session["session_id"], upload["operation_id"]

    async def use(session: str, operation_id: str) -> None:
        async with running(app_for(providers, tmp_path)) as client:
            result = await post(client, f"/codeSessions/{session}/executeCode",
                                {"code_to_execute": "open('/mnt/data/after.txt', 'w').write('ok')"})
            assert result["status"] == "Succeeded"
            assert await generated_files(client, session, operation_id) == {"/after.txt": b"ok"}

    asyncio.run(use(*asyncio.run(create())))
    assert (tmp_path / "context_api.db").exists()


def test_an_enabled_override_uses_the_local_custom_container(providers: Providers, tmp_path: Path) -> None:
    # A developer's own container: the Context API sends an override's endpoint no token, so it runs without
    # the pool's bearer check (FLLM_CODE_SESSION_API_AUTH=none), as the original container does.
    local = start_code_service("code_session_api", tmp_path / "local-container", providers.token,
                               FLLM_CODE_SESSION_API_AUTH="none")
    try:
        _use_the_local_container(providers, tmp_path, local.url("code_session_api"))
    finally:
        local.stop()


def _use_the_local_container(providers: Providers, tmp_path: Path, endpoint: str) -> None:
    app = app_for(providers, tmp_path)
    override = {"upn": "ALICE@contoso.com", "endpoint": endpoint, "enabled": True}

    async def scenario() -> None:
        async with running(app) as client:
            created = await post(client, "/codeSessions", create_body(
                CUSTOM_CONTAINER, "conv-override", endpoint_provider_override=override))
            assert created["endpoint"] == endpoint
            assert created["session_id"].startswith("__local_code_session_") and created["session_id"].endswith("__")
            result = await post(client, f"/codeSessions/{created['session_id']}/executeCode",
                                {"code_to_execute": "answer = 6 * 7\nprint('local')\nanswer"})
            assert result == {"status": "Succeeded", "execution_result": '{"answer": "42"}',
                              "standard_output": "local\n", "error_output": ""}

    asyncio.run(scenario())
