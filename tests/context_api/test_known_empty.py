"""An upload into a session the Context API knows to be empty (a code-interpreter session it just created,
nothing uploaded or executed in it since) skips listing the pool's files; any other session is listed and
emptied as before. The flag lives in the session record: a restart or a second replica sees it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.context_api.config import CODE_INTERPRETER, CUSTOM_CONTAINER
from services.context_api.models import ContextCodeSessionRecord
from services.context_api.service import ATTR_SESSION_KNOWN_EMPTY
from services.context_api.store import ContextStore
from tests.context_api.conftest import (
    Providers,
    app_for,
    attach,
    create_session,
    execute_code,
    post,
    running,
    spans_named,
)

UPLOAD_SPAN = "POST /instances/{instanceId}/codeSessions/{sessionId}/uploadFiles"
INPUT_CSV = b"a\nb\n"  # the conversation file each upload puts in the session
LEAVE_A_FILE = "open('/mnt/data/left.txt', 'w').write('from before')\nprint('left')"


# --- the store, on both backends ------------------------------------------------------------------


def record(session_id: str = "conv-1-code-101010123", upn: str = "u@x", known_empty: bool = True,
           provider: str = CODE_INTERPRETER) -> ContextCodeSessionRecord:
    return ContextCodeSessionRecord(id=session_id, instance_id="i1", upn=upn, conversation_id="conv-1",
                                    endpoint_provider=provider, endpoint="http://127.0.0.1:1", language="Python",
                                    known_empty=known_empty)


def test_the_flag_is_in_the_record_and_claimed_once_across_replicas(tmp_path: Path,
                                                                    database_url: str | None) -> None:
    async def main() -> None:
        first = ContextStore(tmp_path, database_url)
        stored = await first.upsert_session(record())
        assert stored.known_empty is True
        first.close()
        # A restart (SQLite), or two replicas on one database (PostgreSQL): each sees the same flag.
        stores = [ContextStore(tmp_path, database_url) for _ in range(2 if database_url else 1)]
        try:
            for store in stores:
                found = await store.session("i1", "u@x", record().id)
                assert found is not None and found.known_empty is True
            claims = await asyncio.gather(*(stores[n % len(stores)].claim_empty("i1", "u@x", record().id)
                                            for n in range(6)))
            assert sorted(claims) == [False] * 5 + [True]  # exactly one caller skips the listing
            for store in stores:
                found = await store.session("i1", "u@x", record().id)
                assert found is not None and found.known_empty is False
            assert await stores[0].claim_empty("i1", "u@x", "no-such-session") is False
        finally:
            for store in stores:
                store.close()

    asyncio.run(main())


def test_an_identifier_seen_before_is_never_known_empty(tmp_path: Path, database_url: str | None) -> None:
    async def main() -> None:
        store = ContextStore(tmp_path, database_url)
        try:
            await store.upsert_session(record("again"))
            again = await store.upsert_session(record("again"))  # made a second time: it may hold files
            assert again.known_empty is False
            assert (await store.session("i1", "u@x", "again")).known_empty is False  # type: ignore[union-attr]
            await store.upsert_session(record("shared"))
            other_user = await store.upsert_session(record("shared", upn="other@x"))  # one pool identifier
            assert other_user.known_empty is False
            assert (await store.upsert_session(record("custom", known_empty=False))).known_empty is False
        finally:
            store.close()

    asyncio.run(main())


# --- end to end: the Context API in-process, the providers as real processes -----------------------


async def files_after_upload(client: httpx.AsyncClient, session: str) -> dict[str, str]:
    """Upload input.csv, then what the session holds besides it (what a download would copy out)."""
    upload = await post(client, f"/codeSessions/{session}/uploadFiles", {"file_names": ["input.csv"]})
    assert upload["all_files_uploaded"] is True
    download = await post(client, f"/codeSessions/{session}/downloadFiles", {"operation_id": upload["operation_id"]})
    assert download["errors"] == []
    return {r["metadata"]["code_session_file_path"]: r["file_name"] for r in download["file_records"].values()}


def provider_calls(exporter: InMemorySpanExporter, server: ReadableSpan) -> list[str]:
    """``METHOD /path`` of each call the Context API made to a provider while serving ``server``."""
    calls = []
    for span in exporter.get_finished_spans():
        if span.kind == SpanKind.CLIENT and span.context.trace_id == server.context.trace_id:
            attributes = span.attributes or {}
            calls.append(f"{attributes['http.request.method']} {urlsplit(str(attributes['url.full'])).path}")
    return calls


def last_upload(exporter: InMemorySpanExporter) -> tuple[bool, list[str]]:
    span = spans_named(exporter, UPLOAD_SPAN)[-1]
    return bool((span.attributes or {})[ATTR_SESSION_KNOWN_EMPTY]), provider_calls(exporter, span)


@pytest.mark.chain
def test_a_new_code_interpreter_session_is_not_listed_a_used_one_is(providers: Providers, tmp_path: Path,
                                                                     span_exporter: InMemorySpanExporter) -> None:
    async def scenario() -> None:
        async with running(app_for(providers, tmp_path)) as client:
            await attach(client, "conv-fresh", "input.csv", INPUT_CSV)
            session = await create_session(client, CODE_INTERPRETER, "conv-fresh")
            assert await files_after_upload(client, session) == {}
            assert last_upload(span_exporter) == (True, ["POST /files"])  # no GET /files: no listing

            # Code ran in it (no upload first): the next upload lists it and deletes what the code left.
            used = await create_session(client, CODE_INTERPRETER, "conv-fresh", context="Other")
            assert (await execute_code(client, used, LEAVE_A_FILE))["standard_output"] == "left\n"
            assert await files_after_upload(client, used) == {}  # left.txt is gone
            known_empty, calls = last_upload(span_exporter)
            assert not known_empty and calls[0] == "GET /files" and "DELETE /files/left.txt" in calls

            # The first session's second upload (after code ran in it) lists it too.
            await execute_code(client, session, LEAVE_A_FILE)
            assert await files_after_upload(client, session) == {}
            known_empty, calls = last_upload(span_exporter)
            assert not known_empty and "GET /files" in calls and "DELETE /files/left.txt" in calls

    asyncio.run(scenario())


@pytest.mark.chain
def test_the_flag_survives_a_restart_of_the_context_api(providers: Providers, tmp_path: Path,
                                                        span_exporter: InMemorySpanExporter) -> None:
    async def create() -> str:
        async with running(app_for(providers, tmp_path)) as client:
            await attach(client, "conv-restarted", "input.csv", INPUT_CSV)
            return await create_session(client, CODE_INTERPRETER, "conv-restarted")

    async def execute(session: str) -> None:
        async with running(app_for(providers, tmp_path)) as client:
            await execute_code(client, session, LEAVE_A_FILE)

    async def upload(session: str) -> dict[str, str]:
        async with running(app_for(providers, tmp_path)) as client:
            return await files_after_upload(client, session)

    fresh = asyncio.run(create())
    assert asyncio.run(upload(fresh)) == {}
    assert last_upload(span_exporter) == (True, ["POST /files"])
    used = asyncio.run(create())
    asyncio.run(execute(used))  # one process ran code in it, another uploads: it still lists
    assert asyncio.run(upload(used)) == {}
    known_empty, calls = last_upload(span_exporter)
    assert not known_empty and "GET /files" in calls and "DELETE /files/left.txt" in calls


@pytest.mark.chain
def test_a_custom_container_session_is_always_emptied(providers: Providers, tmp_path: Path,
                                                      span_exporter: InMemorySpanExporter) -> None:
    """Per conversation and reused turn after turn: never known to be empty, not even when first made."""

    async def scenario() -> None:
        async with running(app_for(providers, tmp_path)) as client:
            await attach(client, "conv-container", "input.csv", INPUT_CSV)
            session = await create_session(client, CUSTOM_CONTAINER, "conv-container")
            assert await files_after_upload(client, session) == {}
            assert last_upload(span_exporter) == (False, ["POST /files/delete", "POST /files/upload"])
            await execute_code(client, session, LEAVE_A_FILE)
            # The next completion's create: the same session, with what the last turn left in it.
            again = await create_session(client, CUSTOM_CONTAINER, "conv-container")
            assert again == session
            assert await files_after_upload(client, again) == {}  # left.txt is gone
            assert last_upload(span_exporter)[0] is False

    asyncio.run(scenario())

