"""SqliteStore keeps every commit when its process is killed (WAL; synchronous=FULL by default, and
non-durable writes, which skip their own fsync, are kept as well)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.sqlite_store import SqliteStore, SqliteTx, synchronous_from_env
from services.launcher import REPO

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);"
WRITER = """
import asyncio, os, signal, sys
from pathlib import Path
from services.common.sqlite_store import SqliteStore
store = SqliteStore(Path(sys.argv[1]), {schema!r})
async def main():
    for k in range(50):
        await store.execute("INSERT INTO t VALUES (?, ?)", (k, "x" * 100), durable=k % 3 != 0)
    print("committed", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint: only the WAL holds the commits
asyncio.run(main())
"""


@pytest.mark.parametrize("mode", ["NORMAL", "FULL"])
def test_commits_survive_the_process_being_killed(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "store.db"
    killed = subprocess.run([sys.executable, "-c", WRITER.format(schema=SCHEMA), str(path)], cwd=REPO,
                            env={"FLLM_SQLITE_SYNCHRONOUS": mode, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, timeout=60)
    assert killed.stdout.strip() == "committed" and killed.returncode == -9, killed.stderr
    store = SqliteStore(path, SCHEMA)
    rows = asyncio.run(store.fetchall("SELECT k FROM t ORDER BY k"))
    store.close()
    assert [row["k"] for row in rows] == list(range(50))


def test_the_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLLM_SQLITE_SYNCHRONOUS", raising=False)
    assert synchronous_from_env() == "FULL"
    monkeypatch.setenv("FLLM_SQLITE_SYNCHRONOUS", "normal")
    assert synchronous_from_env() == "NORMAL"
    monkeypatch.setenv("FLLM_SQLITE_SYNCHRONOUS", "OFF")
    with pytest.raises(ValueError):
        synchronous_from_env()


def test_a_non_durable_write_leaves_the_store_fsyncing_the_next(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db", SCHEMA, synchronous="FULL")

    async def mode(db: SqliteTx) -> int:
        return (await db.fetchone("PRAGMA synchronous"))["synchronous"]  # type: ignore[index]

    async def main() -> tuple[int, int, int]:
        during = await store.transaction(mode, durable=False)
        after = await store.transaction(mode)
        await store.execute("INSERT INTO t VALUES (1, 'a')", durable=False)
        return during, after, len(await store.fetchall("SELECT k FROM t"))

    try:
        assert asyncio.run(main()) == (1, 2, 1)  # NORMAL for that write only, then FULL again
    finally:
        store.close()
