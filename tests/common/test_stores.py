"""The State, Context and Core stores on both backends: SQLite (the embedded default) and PostgreSQL
(``FLLM_DATABASE_URL``), the same tests. A "restart" is a new store object on the same database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.common.models import OperationStatus
from services.context_api.models import ContextCodeSessionRecord, ContextFileRecord
from services.core_api.store import OperationContext, OperationContexts
from services.state_api.store import OperationStore
from services.state_api.waiters import Waiters
from telemetry import conventions as c
from tests.postgres_server import PostgresServer

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _status(operation_id: str, status: OperationStatus, message: str = "", hop: str | None = None) -> dict:
    return {"operation_id": operation_id, "status": status.value, "status_message": message, "failed_hop": hop}


def test_operations_results_and_logs_survive_a_restart(tmp_path: Path, database_url: str | None) -> None:
    async def first() -> None:
        store = OperationStore(tmp_path, database_url)
        try:
            created = await store.create("i1", "op-1", "user@x", TRACEPARENT)
            assert created["status"] == OperationStatus.IN_PROGRESS.value
            again = await store.create("i1", "op-1", "other@x", "")
            assert again["upn"] == "user@x" and again["traceparent"] == TRACEPARENT  # idempotent
            await store.add_result("op-1", {"operation_id": "op-1", "completion": "interim"})
            await store.add_result("op-1", {"id": "op-1-final", "operation_id": "op-1", "completion": "42"})
            row, changed = await store.update("i1", _status("op-1", OperationStatus.COMPLETED, "done"), TRACEPARENT)
            assert changed and row["status"] == "Completed"
        finally:
            store.close()

    async def after_restart() -> None:
        store = OperationStore(tmp_path, database_url)
        try:
            row = await store.get("op-1")
            assert row is not None and row["status"] == "Completed" and row["instance_id"] == "i1"
            result = await store.latest_result("op-1")
            assert result is not None and result["completion"] == "42" and result["sequence"] == 2
            again = await store.add_result("op-1", {"id": "op-1-final", "operation_id": "op-1", "completion": "x"})
            assert again["completion"] == "42"  # the same id: the stored document, not a new one
            late, changed = await store.update("i1", _status("op-1", OperationStatus.IN_PROGRESS), TRACEPARENT)
            assert not changed and late["status"] == "Completed"  # an ended operation stays ended
            assert [entry["status"] for entry in await store.logs("op-1")] == ["InProgress", "Completed"]
            assert [op["operation_id"] for op in await store.list("i1")] == ["op-1"]
        finally:
            store.close()

    asyncio.run(first())
    asyncio.run(after_restart())


def test_concurrent_writes_to_one_operation_keep_every_result(tmp_path: Path, database_url: str | None) -> None:
    """Two writers (two replicas on PostgreSQL) race: every result gets its own sequence number."""

    async def main() -> list[int]:
        stores = [OperationStore(tmp_path, database_url) for _ in range(2)]
        try:
            await stores[0].create("i1", "op-2", None, TRACEPARENT)
            await asyncio.gather(*(stores[n % 2].add_result("op-2", {"operation_id": "op-2", "n": n})
                                   for n in range(40)))
            await asyncio.gather(*(stores[n % 2].create("i1", f"op-c{n // 2}", None, "") for n in range(20)))
            latest = await stores[1].latest_result("op-2")
            assert latest is not None
            return [latest["sequence"], len(await stores[0].list("i1"))]
        finally:
            for store in stores:
                store.close()

    assert asyncio.run(main()) == [40, 11]


def test_stale_operations_are_found(tmp_path: Path, database_url: str | None) -> None:
    async def main() -> tuple[list[str], list[str]]:
        store = OperationStore(tmp_path, database_url)
        try:
            await store.create("i1", "op-3", None, TRACEPARENT)
            later = datetime.now(UTC).isoformat()
            before = [row["operation_id"] for row in await store.in_progress_since(later)]
            await store.update("i1", _status("op-3", OperationStatus.FAILED, "x", c.STATE_API), TRACEPARENT)
            after = [row["operation_id"] for row in await store.in_progress_since(datetime.now(UTC).isoformat())]
            return before, after
        finally:
            store.close()

    assert asyncio.run(main()) == (["op-3"], [])


def test_an_end_written_through_one_replica_wakes_the_waiters_of_another(postgres: PostgresServer,
                                                                         tmp_path: Path) -> None:
    url = postgres.new_database()

    async def main() -> float:
        writer, reader = OperationStore(tmp_path, url), OperationStore(tmp_path, url)
        waiters, listening = Waiters(), asyncio.Event()

        def notified(operation_id: str | None) -> None:
            if operation_id is None:  # called once LISTEN is issued (and on every reconnection)
                listening.set()
            waiters.ended(operation_id)

        try:
            await reader.on_ended(notified)
            await writer.create("i1", "op-4", None, TRACEPARENT)
            await asyncio.wait_for(listening.wait(), 5)
            with waiters.watching("op-4") as ended:
                loop = asyncio.get_running_loop()
                started = loop.time()
                await writer.update("i1", _status("op-4", OperationStatus.COMPLETED), TRACEPARENT)
                await asyncio.wait_for(ended.wait(), 5)
                return loop.time() - started
        finally:
            writer.close()
            reader.close()

    assert asyncio.run(main()) < 1.0


def test_context_records_on_both_backends(tmp_path: Path, database_url: str | None) -> None:
    from services.context_api.store import ContextStore

    now = datetime.now(UTC)
    session = ContextCodeSessionRecord(id="cs-1", instance_id="i1", upn="u@x", created_by="u@x", created_at=now,
                                       endpoint_provider="DynamicSessions", conversation_id="c1",
                                       language="Python", endpoint="http://127.0.0.1:1/")
    files = [ContextFileRecord(id=f"f-{n}", instance_id="i1", upn="u@x", conversation_id="c1",
                               file_name="plot.png", created_at=now, content_type="image/png",
                               file_object_id=f"obj-{n}", file_path=f"c1/{n}", file_size_bytes=n)
             for n in range(3)]

    async def main() -> None:
        store = ContextStore(tmp_path, database_url)
        try:
            await store.upsert_session(session)
            updated = session.model_copy(update={"created_by": "someone-else", "endpoint": "http://127.0.0.1:2/"})
            stored = await store.upsert_session(updated)
            assert stored.created_by == "u@x" and stored.endpoint.endswith(":2/")  # audit fields kept
            for record in files:
                await store.add_file(record)
        finally:
            store.close()
        store = ContextStore(tmp_path, database_url)  # a restart
        try:
            found = await store.session("i1", "u@x", "cs-1")
            assert found is not None and found.endpoint.endswith(":2/")
            assert await store.session("i1", "other@x", "cs-1") is None  # partitioned by UPN
            newest = await store.conversation_file("i1", "u@x", "c1", "plot.png")
            assert newest is not None and newest.id == "f-2"  # same instant: the last one made
            assert (await store.file("i1", "u@x", "f-0")).file_size_bytes == 0  # type: ignore[union-attr]
        finally:
            store.close()

    asyncio.run(main())


def test_core_operation_contexts_on_both_backends(tmp_path: Path, database_url: str | None) -> None:
    ctx = OperationContext(id="op-5", instance_id="i1", agent_name="a", session_id="s", upn=None,
                           route=c.ORCHESTRATION_API, start_time=1_790_000_000.123456, traceparent=TRACEPARENT)

    async def main() -> None:
        first, second = OperationContexts(tmp_path, database_url), OperationContexts(tmp_path, database_url)
        try:
            assert await first.insert(ctx) == (ctx, True)
            other = OperationContext(**{**ctx.__dict__, "agent_name": "b"})
            assert await second.insert(other) == (ctx, False)  # the first one wins
            assert await second.finish("op-5", {"status": "Completed"})
            assert not await first.finish("op-5", {"status": "Failed"})
            stored = await first.get("op-5")
            assert stored is not None and stored.final == {"status": "Completed"}
            assert stored.start_time == ctx.start_time  # full precision on both
            # stored by an earlier version, which named the hop by its deployment name: read as today's
            await first.insert(OperationContext(**{**ctx.__dict__, "id": "op-6", "route": "gatekeeper-api"}))
            assert (await first.get("op-6")).route == c.GATEKEEPER_API  # type: ignore[union-attr]
        finally:
            first.close()
            second.close()

    asyncio.run(main())


def test_a_bad_database_url_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    from services.common.settings import SettingsError

    monkeypatch.setenv("FLLM_DATABASE_URL", "mysql://127.0.0.1/x")
    with pytest.raises(SettingsError, match="FLLM_DATABASE_URL"):
        OperationStore(tmp_path)


def test_the_sweep_names_the_hop_that_stopped_writing(tmp_path: Path, database_url: str | None) -> None:
    """An operation whose writes stopped before this State API started lost them to State being down;
    one that went quiet while State ran lost its worker (LangChain)."""
    from services.state_api.app import fail_abandoned

    async def main() -> dict[str, tuple[str, str]]:
        store = OperationStore(tmp_path, database_url)
        try:
            await store.create("i1", "op-before", None, TRACEPARENT)
            started = datetime.now(UTC).isoformat()  # this State API starts here
            await asyncio.sleep(0.01)
            await store.create("i1", "op-after", None, TRACEPARENT)
            await asyncio.sleep(0.05)
            assert await fail_abandoned(store, Waiters(), 0.04, started) == 2
            rows = {op: await store.get(op) for op in ("op-before", "op-after")}
            return {op: (row["failed_hop"], row["status_message"]) for op, row in rows.items() if row}
        finally:
            store.close()

    ended = asyncio.run(main())
    assert ended["op-before"][0] == c.STATE_API and ended["op-before"][1].startswith(f"{c.STATE_API}: the State API")
    assert ended["op-after"][0] == c.LANGCHAIN_API and "the worker that ran it stopped" in ended["op-after"][1]


def test_exactly_one_claim_of_an_operation_is_acquired(tmp_path: Path, database_url: str | None) -> None:
    """Worker replicas race to claim one operation through two State replicas: one claim wins, every
    other answer names the winner; an ended operation cannot be claimed; a claim never moves."""

    def running(n: int) -> dict:
        return {"operation_id": "op-7", "status": "InProgress", "status_message": f"run by {n}", "upn": "u@x"}

    async def main() -> None:
        stores = [OperationStore(tmp_path, database_url) for _ in range(2)]
        try:
            await stores[0].create("i1", "op-7", "u@x", TRACEPARENT)
            answers = await asyncio.gather(*(stores[n % 2].claim("i1", running(n), f"{c.LANGCHAIN_API}@r{n}", "")
                                             for n in range(24)))
            winners = [(row, holder) for row, holder, acquired in answers if acquired]
            assert len(winners) == 1, answers
            row, winner = winners[0]
            assert row["status_message"] == f"run by {winner.rsplit('@r', 1)[1]}"
            assert {holder for _, holder, _ in answers} == {winner}
            stored = await stores[1].get("op-7")
            assert stored is not None and stored["status_message"] == row["status_message"]
            assert stored["traceparent"] == TRACEPARENT  # the claim keeps the operation's trace
            again = await stores[1].claim("i1", running(99), winner, "")
            assert again[1:] == (winner, False)  # its own claim again: not a second run either

            await stores[0].update("i1", _status("op-7", OperationStatus.COMPLETED, "done"), TRACEPARENT)
            late, holder, acquired = await stores[1].claim("i1", running(100), f"{c.LANGCHAIN_API}@late", "")
            assert (late["status"], holder, acquired) == ("Completed", winner, False)

            # Failed by Orchestration before any worker claimed it: no claim, no run.
            await stores[0].create("i1", "op-8", None, TRACEPARENT)
            await stores[0].update("i1", _status("op-8", OperationStatus.FAILED, "x", c.ORCHESTRATION_API), "")
            assert (await stores[1].claim("i1", {**running(1), "operation_id": "op-8"}, "w", ""))[1:] == ("", False)

            # A claim of an operation State never saw creates it, claimed.
            unseen = {**running(2), "operation_id": "op-9"}
            row, holder, acquired = await stores[1].claim("i1", unseen, "w", TRACEPARENT)
            assert acquired and holder == "w" and row["instance_id"] == "i1" and row["traceparent"] == TRACEPARENT
            assert [e["status"] for e in await stores[0].logs("op-9")] == ["InProgress"]
        finally:
            for store in stores:
                store.close()

    asyncio.run(main())


def test_the_sweep_names_the_claimant_that_stopped(tmp_path: Path, database_url: str | None) -> None:
    """A claimant that stops writing heartbeats keeps its claim (no takeover: it may still be running the
    code); the sweep fails its operation, naming LangChain and the replica."""
    from services.state_api.app import fail_abandoned

    async def main() -> tuple[dict, tuple]:
        store = OperationStore(tmp_path, database_url)
        try:
            started = datetime.now(UTC).isoformat()
            await asyncio.sleep(0.01)
            operation = {"operation_id": "op-10", "status": "InProgress", "status_message": "running"}
            assert (await store.claim("i1", operation, f"{c.LANGCHAIN_API}@host-1", TRACEPARENT))[2]
            await asyncio.sleep(0.05)
            assert await fail_abandoned(store, Waiters(), 0.04, started) == 1
            after = await store.claim("i1", operation, f"{c.LANGCHAIN_API}@host-2", "")
            return await store.get("op-10") or {}, after[1:]
        finally:
            store.close()

    row, after = asyncio.run(main())
    assert row["status"] == "Failed" and row["failed_hop"] == c.LANGCHAIN_API, row
    assert f"the worker that ran it stopped ({c.LANGCHAIN_API}@host-1)" in row["status_message"], row
    assert after == (f"{c.LANGCHAIN_API}@host-1", False)


def test_core_counts_failed_polls_from_the_first_across_replicas(tmp_path: Path, database_url: str | None) -> None:
    """Since when an operation's status could not be read: the first failed poll's time, whichever Core
    replica saw it, until a poll reads it again."""
    ctx = OperationContext(id="op-11", instance_id="i1", agent_name="a", session_id="s", upn=None,
                           route=c.ORCHESTRATION_API, start_time=1_790_000_000.0, traceparent=TRACEPARENT)

    async def main() -> None:
        first, second = OperationContexts(tmp_path, database_url), OperationContexts(tmp_path, database_url)
        try:
            await first.insert(ctx)
            assert (await second.get("op-11")).poll_failed_since is None  # type: ignore[union-attr]
            assert await first.poll_failed("op-11", 100.5) == 100.5
            assert await second.poll_failed("op-11", 107.0) == 100.5  # the streak began on the other replica
            assert (await second.get("op-11")).poll_failed_since == 100.5  # type: ignore[union-attr]
            await second.poll_succeeded("op-11")
            assert (await first.get("op-11")).poll_failed_since is None  # type: ignore[union-attr]
            assert await first.poll_failed("op-11", 200.0) == 200.0  # a new streak
        finally:
            first.close()
            second.close()

    asyncio.run(main())
