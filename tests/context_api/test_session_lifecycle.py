"""Session lifecycle: ``DELETE /instances/{i}/codeSessions/{id}`` deletes a per-request Dynamic Sessions
session from the pool (its own span), keeps a per-conversation custom-container session, and a pool that
fails the delete is logged and answered 502 naming its hop. Also what the Context API passes on of the
interpreter's results: a JSON value's text and an image result."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from services.context_api.config import CODE_INTERPRETER, CUSTOM_CONTAINER
from services.context_api.service import ATTR_SESSION_DELETED, SPAN_DELETE_SESSION
from telemetry import conventions as c
from tests.context_api.conftest import (
    BASE,
    BOB,
    Providers,
    app_for,
    closed_port_url,
    create_session,
    execute_code,
    headers_for,
    make_app,
    make_config,
    running,
    spans_named,
)

POOL_API = "2025-10-02-preview"


def pool_sessions(providers: Providers) -> set[str]:
    url = f"{providers.dynamic_sessions.url}/listSessions?api-version={POOL_API}"
    answer = httpx.get(url, headers={"Authorization": f"Bearer {providers.token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return {session["identifier"] for session in answer.json()["sessions"]}


@pytest.mark.chain
def test_a_code_interpreter_session_is_deleted_from_the_pool(providers: Providers, tmp_path: Path,
                                                             span_exporter: InMemorySpanExporter) -> None:
    async def scenario() -> None:
        async with running(app_for(providers, tmp_path)) as client:
            session_id = await create_session(client, CODE_INTERPRETER, "conv-release")
            assert (await execute_code(client, session_id, "kept = 21\nkept * 2"))["execution_result"] == "42"
            assert session_id in pool_sessions(providers)

            span_exporter.clear()
            response = await client.delete(f"{BASE}/codeSessions/{session_id}", headers=headers_for())
            assert response.status_code == 200, response.text
            assert response.json()["deleted"] is True and response.json()["session_id"] == session_id
            assert session_id not in pool_sessions(providers)
            [span] = spans_named(span_exporter, SPAN_DELETE_SESSION)
            assert span.attributes[ATTR_SESSION_DELETED] is True
            assert span.attributes[c.ATTR_CODE_SESSION_PROVIDER] == CODE_INTERPRETER
            assert span.status.status_code != StatusCode.ERROR
            pool_calls = [s for s in span_exporter.get_finished_spans()
                          if s.parent is not None and s.parent.span_id == span.context.span_id]
            assert len(pool_calls) == 1 and "DELETE" in pool_calls[0].name

            # Deleted twice (a retried release): the pool no longer has it, which is done too.
            again = await client.delete(f"{BASE}/codeSessions/{session_id}", headers=headers_for())
            assert again.status_code == 200 and again.json()["deleted"] is True
            # The identifier is free: a later call gets a new, empty session.
            fresh = await execute_code(client, session_id, "'kept' in globals()")
            assert fresh["status"] == "Succeeded" and fresh["execution_result"] == "false"

    asyncio.run(scenario())


@pytest.mark.chain
def test_a_custom_container_session_stays_for_the_conversation(providers: Providers, tmp_path: Path,
                                                               span_exporter: InMemorySpanExporter) -> None:
    async def scenario() -> None:
        async with running(app_for(providers, tmp_path)) as client:
            session_id = await create_session(client, CUSTOM_CONTAINER, "conv-kept")
            await execute_code(client, session_id, "remembered = 7")
            span_exporter.clear()
            response = await client.delete(f"{BASE}/codeSessions/{session_id}", headers=headers_for())
            assert response.status_code == 200 and response.json()["deleted"] is False
            [span] = spans_named(span_exporter, SPAN_DELETE_SESSION)
            assert span.attributes[ATTR_SESSION_DELETED] is False
            later = await execute_code(client, session_id, "remembered")
            assert later["status"] == "Succeeded" and json.loads(later["execution_result"]) == {"remembered": "7"}

    asyncio.run(scenario())


@pytest.mark.chain
def test_an_image_result_and_a_json_value_pass_through(providers: Providers, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(app_for(providers, tmp_path)) as client:
            session_id = await create_session(client, CODE_INTERPRETER, "conv-image")
            plot = "import matplotlib.pyplot as plt\nplt.bar(['a', 'b'], [1, 3])\nplt.show()"
            image = json.loads((await execute_code(client, session_id, plot))["execution_result"])
            assert image["type"] == "image" and image["format"] == "png"
            assert image["base64_data"].startswith("iVBORw0KGgo")  # the PNG signature, base64
            values = await execute_code(client, session_id, "{'n': [1, 2.5, True, None]}")
            assert json.loads(values["execution_result"]) == {"n": [1, 2.5, True, None]}

    asyncio.run(scenario())


def test_a_failed_delete_is_logged_and_answered_502_naming_the_pool(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                    span_exporter: InMemorySpanExporter) -> None:
    app = make_app(tmp_path, make_config(closed_port_url(), closed_port_url()))

    async def scenario() -> None:
        async with running(app) as client:
            session_id = await create_session(client, CODE_INTERPRETER, "conv-down")
            span_exporter.clear()
            with caplog.at_level(logging.WARNING, logger="foundationallm.context_api"):
                response = await client.delete(f"{BASE}/codeSessions/{session_id}", headers=headers_for())
            assert response.status_code == 502
            assert response.json()["hop"] == c.DYNAMIC_SESSIONS and "DELETE /session" in response.json()["detail"]
            assert any("could not delete a code session" in record.getMessage() for record in caplog.records)
            [span] = spans_named(span_exporter, SPAN_DELETE_SESSION)
            assert span.status.status_code == StatusCode.ERROR

    asyncio.run(scenario())


def test_only_the_owner_can_delete_and_unknown_sessions_are_404(tmp_path: Path) -> None:
    app = make_app(tmp_path, make_config(closed_port_url(), closed_port_url()))

    async def scenario() -> None:
        async with running(app) as client:
            session_id = await create_session(client, CODE_INTERPRETER, "conv-owner")
            other = await client.delete(f"{BASE}/codeSessions/{session_id}", headers=headers_for(BOB))
            assert other.status_code == 404 and "sessionId" in other.text
            unknown = await client.delete(f"{BASE}/codeSessions/no-such-session", headers=headers_for())
            assert unknown.status_code == 404
            bad = await client.delete(f"{BASE}/codeSessions/bad%20id", headers=headers_for())
            assert bad.status_code == 400 and "sessionId" in bad.text

    asyncio.run(scenario())
