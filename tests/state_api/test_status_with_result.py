"""A status write that carries its result (PUT …/operations/{op} with ``result``): both stored in one
transaction, on SQLite and PostgreSQL, so a reader never sees a status with another step's result, nor the
end with a progress text; validated like POST …/result; the original's separate result route still works."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.models import OperationStatus
from services.state_api import store as store_module
from services.state_api.store import OperationStore
from tests.state_api.conftest import INSTANCE, state_api

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
STEPS = ("Running agent workflow.", "Running agent tools.", "Preparing final response.")
DONE = "Operation completed successfully."


def _status(operation_id: str, status: OperationStatus, message: str) -> dict[str, Any]:
    return {"operation_id": operation_id, "status": status.value, "status_message": message, "upn": "u@x"}


def _progress(operation_id: str, step: str) -> dict[str, Any]:
    return {"id": None, "operation_id": operation_id, "completion": step.replace(".", "...")}


def _final(operation_id: str) -> dict[str, Any]:
    return {"id": f"{operation_id}-final", "operation_id": operation_id, "completion": "42"}


def test_a_status_and_its_result_are_stored_together(tmp_path: Path, database_url: str | None) -> None:
    async def main() -> None:
        store = OperationStore(tmp_path, database_url)
        try:
            await store.create("i1", "op-1", "u@x", TRACEPARENT)
            row, changed, stored = await store.update_with_result(
                "i1", _status("op-1", OperationStatus.IN_PROGRESS, STEPS[0]), _progress("op-1", STEPS[0]), "")
            assert changed and row["status_message"] == STEPS[0]
            assert stored is not None and (stored["id"], stored["sequence"]) == ("op-1-1", 1)
            assert stored["type"] == "LongRunningOperationResult"
            row, result = await store.get_with_result("op-1")
            assert row is not None and row["status_message"] == STEPS[0] and "latest_document" not in row
            assert result == stored

            row, changed, stored = await store.update_with_result(
                "i1", _status("op-1", OperationStatus.COMPLETED, DONE), _final("op-1"), "")
            assert changed and row["status"] == "Completed" and row["traceparent"] == TRACEPARENT
            assert stored is not None and (stored["id"], stored["sequence"]) == ("op-1-final", 2)
            assert (await store.get_with_result("op-1"))[1] == stored == await store.latest_result("op-1")
            assert [e["status_message"] for e in await store.logs("op-1")] == ["Operation started.", STEPS[0], DONE]

            # A late write to the ended operation is refused whole: neither its status nor its result lands.
            late, changed, latest = await store.update_with_result(
                "i1", _status("op-1", OperationStatus.IN_PROGRESS, STEPS[2]), _progress("op-1", STEPS[2]), "")
            assert not changed and late["status"] == "Completed" and latest == stored
            assert (await store.latest_result("op-1")) == stored

            # A result written through POST …/result (the original's route) and then again with the status
            # (a retried write): stored once; without a result, the status alone, as before.
            await store.create("i1", "op-2", None, TRACEPARENT)
            first = await store.add_result("op-2", _final("op-2"))
            _, _, again = await store.update_with_result(
                "i1", _status("op-2", OperationStatus.COMPLETED, DONE), {**_final("op-2"), "completion": "x"}, "")
            assert again == first and again["completion"] == "42" and again["sequence"] == 1
            await store.create("i1", "op-3", None, TRACEPARENT)
            assert (await store.update_with_result(
                "i1", _status("op-3", OperationStatus.IN_PROGRESS, "hb"), None, ""))[1:] == (True, None)
            assert await store.get_with_result("op-3") == (await store.get("op-3"), None)
            assert await store.get_with_result("op-never") == (None, None)
        finally:
            store.close()

    asyncio.run(main())


def test_a_failed_status_write_stores_no_result(tmp_path: Path, database_url: str | None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The result is inserted first; a status write that fails after it rolls it back (one transaction)."""

    async def broken_write(*_: Any, **__: Any) -> dict[str, Any]:
        raise RuntimeError("the status write failed")

    async def main() -> None:
        store = OperationStore(tmp_path, database_url)
        try:
            await store.create("i1", "op-4", None, TRACEPARENT)
            with monkeypatch.context() as patch:
                patch.setattr(store_module, "_write", broken_write)
                with pytest.raises(RuntimeError, match="status write failed"):
                    await store.update_with_result(
                        "i1", _status("op-4", OperationStatus.COMPLETED, DONE), _final("op-4"), "")
            row, result = await store.get_with_result("op-4")
            assert row is not None and row["status"] == "InProgress" and result is None
        finally:
            store.close()

    asyncio.run(main())


async def _put(client: httpx.AsyncClient, operation_id: str, status: str, message: str,
               result: Any = None) -> httpx.Response:
    body = {"operation_id": operation_id, "status": status, "status_message": message, "result": result}
    return await client.put(f"/instances/{INSTANCE}/operations/{operation_id}", json=body)


def test_the_put_stores_the_result_it_carries_and_answers_with_it(tmp_path: Path) -> None:
    async def main() -> None:
        async with state_api(tmp_path) as client:
            base = f"/instances/{INSTANCE}/operations/op-5"
            assert (await client.post(base, json={"upn": "u@x"})).status_code == 200
            put = await _put(client, "op-5", "InProgress", STEPS[0], _progress("op-5", STEPS[0]))
            assert put.status_code == 200, put.text
            assert put.json()["result"]["completion"] == "Running agent workflow..."
            assert put.json()["result"]["sequence"] == 1 and put.json()["status_message"] == STEPS[0]

            put = await _put(client, "op-5", "Completed", DONE, _final("op-5"))
            assert put.status_code == 200 and put.json()["result"]["id"] == "op-5-final"
            got = (await client.get(base)).json()
            assert (got["status"], got["result"]["completion"], got["result"]["sequence"]) == ("Completed", "42", 2)
            assert (await client.get(f"{base}/result")).json() == got["result"]
            logs = (await client.get(f"{base}/logs")).json()
            assert [e["status"] for e in logs] == ["InProgress", "InProgress", "Completed"]

            # Once ended: 409, nothing written, the answer still the final one.
            late = await _put(client, "op-5", "InProgress", STEPS[2], _progress("op-5", STEPS[2]))
            assert late.status_code == 409 and late.json()["result"]["id"] == "op-5-final"
            assert (await client.get(base)).json()["result"]["id"] == "op-5-final"

            # The original's clients: result null in the PUT, the result through POST …/result.
            base6 = f"/instances/{INSTANCE}/operations/op-6"
            put = await _put(client, "op-6", "InProgress", "started")
            assert put.status_code == 200 and put.json()["result"] is None
            posted = await client.post(f"{base6}/result", json=_progress("op-6", STEPS[1]))
            assert posted.status_code == 200 and posted.json()["sequence"] == 1
            assert (await client.get(base6)).json()["result"]["completion"] == "Running agent tools..."

    asyncio.run(main())


@pytest.mark.parametrize(("result", "field"), [
    ({"operation_id": "op-other", "completion": "x"}, "result.operation_id"),
    ({"completion": "x"}, "result.operation_id"),
    ({"operation_id": 7}, "result.operation_id"),
    ("a text", "result"),
    ([{"operation_id": "op-7"}], "result"),
])
def test_a_bad_result_in_the_put_is_a_400_naming_the_field_and_writes_nothing(tmp_path: Path, result: Any,
                                                                                field: str) -> None:
    async def main() -> None:
        async with state_api(tmp_path) as client:
            base = f"/instances/{INSTANCE}/operations/op-7"
            await client.post(base, json={"upn": "u@x"})
            answer = await _put(client, "op-7", "Completed", DONE, result)
            assert answer.status_code == 400, answer.text
            assert field in answer.text and answer.json()["status"] == 400
            got = (await client.get(base)).json()
            assert (got["status"], got["result"]) == ("InProgress", None)

    asyncio.run(main())


def _consistent(operation: dict[str, Any]) -> bool:
    """The result a reader sees belongs to the status it sees."""
    result = operation["result"] or {}
    if operation["status"] == "Completed":
        return result.get("completion") == "42"
    if operation["status_message"] in STEPS:
        return result.get("completion") == operation["status_message"].replace(".", "...")
    return not result


def test_a_poller_never_sees_a_status_with_another_steps_result(tmp_path: Path) -> None:
    """A reader polls between every two writes. Written as LangChain writes (each step's result with its
    status, one PUT), every read is consistent, Completed always with the final answer. Written as the
    original writes (POST the result, then PUT the status: the control), the reader sees a status with the
    next step's result, the check that would catch it."""

    async def run(operation_id: str, one_write: bool) -> list[dict[str, Any]]:
        async with state_api(tmp_path / operation_id) as client:
            base = f"/instances/{INSTANCE}/operations/{operation_id}"
            seen = [(await client.post(base, json={"upn": "u@x"})).json()]
            writes: list[tuple[str, str, dict[str, Any]]] = [
                *(("InProgress", step, _progress(operation_id, step)) for step in STEPS),
                ("Completed", DONE, _final(operation_id))]
            for status, message, document in writes:
                if one_write:
                    assert (await _put(client, operation_id, status, message, document)).status_code == 200
                    seen.append((await client.get(base)).json())
                else:
                    assert (await client.post(f"{base}/result", json=document)).status_code == 200
                    seen.append((await client.get(base)).json())
                    assert (await _put(client, operation_id, status, message)).status_code == 200
                    seen.append((await client.get(base)).json())
            return seen

    one_write = asyncio.run(run("op-8", one_write=True))
    assert [op["status"] for op in one_write] == ["InProgress"] * 4 + ["Completed"]
    assert all(_consistent(op) for op in one_write), one_write
    two_writes = asyncio.run(run("op-9", one_write=False))
    assert not all(_consistent(op) for op in two_writes)  # the control: the check catches the mismatch


def test_concurrent_pollers_see_only_consistent_reads(tmp_path: Path, database_url: str | None) -> None:
    """Readers racing the writer (two store objects: two replicas on PostgreSQL) see each status with its
    own result, and the end only with the final answer."""

    async def main() -> list[dict[str, Any]]:
        writer, reader = OperationStore(tmp_path, database_url), OperationStore(tmp_path, database_url)
        seen: list[dict[str, Any]] = []
        try:
            operations = [f"op-r{n}" for n in range(6)]
            for operation_id in operations:
                await writer.create("i1", operation_id, None, TRACEPARENT)

            async def write(operation_id: str) -> None:
                for step in STEPS:
                    await writer.update_with_result(
                        "i1", _status(operation_id, OperationStatus.IN_PROGRESS, step), _progress(operation_id, step),
                        "")
                await writer.update_with_result(
                    "i1", _status(operation_id, OperationStatus.COMPLETED, DONE), _final(operation_id), "")

            async def poll(operation_id: str) -> None:
                while True:
                    row, result = await reader.get_with_result(operation_id)
                    assert row is not None
                    seen.append({**row, "result": result})
                    if row["status"] == "Completed":
                        return
                    await asyncio.sleep(0)

            await asyncio.gather(*(write(op) for op in operations), *(poll(op) for op in operations))
            return seen
        finally:
            writer.close()
            reader.close()

    seen = asyncio.run(main())
    assert len(seen) >= 6 and all(_consistent(op) for op in seen), [op for op in seen if not _consistent(op)]
