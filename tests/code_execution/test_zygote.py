"""Interpreters forked from the zygote: what they are, how they end, and what happens when it dies."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from services.code_execution import ExecutionSpec, Executor
from services.code_execution.process import WorkerError
from services.code_execution.zygote import ZYGOTE_GONE_CODE, Zygote
from tests.code_execution.conftest import make_config


async def _wait_dead(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        await asyncio.sleep(0.02)
    return False


def test_forked_interpreters_are_the_zygotes_children_in_their_own_group_and_report_exit_codes(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        zygote = Zygote(make_config(tmp_path).worker_config(), 15)
        try:
            first, second = await zygote.fork(15), await zygote.fork(15)
            assert zygote._process is not None
            for worker in (first, second):
                assert psutil.Process(worker.pid).ppid() == zygote._process.pid
                assert os.getpgid(worker.pid) == worker.pid  # killing its group kills only it
            answer = await first.execute("x = 41\nprint(x + 1)", 1000, False, 10)
            assert answer["stdout"] == "42\n" and answer["status"] == "Succeeded"
            with pytest.raises(WorkerError, match="exited with code 3"):
                await second.execute("import os\nos._exit(3)", 1000, False, 10)
            assert await second._process.wait() == 3
            await first.close()
            assert first._process.returncode == -signal.SIGKILL
        finally:
            await zygote.close()

    asyncio.run(scenario())


def test_a_killed_zygote_takes_its_interpreters_with_it_and_the_next_fork_starts_a_new_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        zygote = Zygote(make_config(tmp_path).worker_config(), 15)
        try:
            worker = await zygote.fork(15)
            assert zygote._process is not None
            old_zygote = zygote._process.pid
            os.kill(old_zygote, signal.SIGKILL)
            assert await _wait_dead(worker.pid), "the interpreter outlived its zygote"
            with pytest.raises(WorkerError):
                await worker.execute("print(1)", 1000, False, 10)
            assert await asyncio.wait_for(worker._process.wait(), 5) == ZYGOTE_GONE_CODE
            fresh = await zygote.fork(15)
            assert zygote._process.pid != old_zygote
            assert (await fresh.execute("print(2)", 1000, False, 10))["stdout"] == "2\n"
        finally:
            await zygote.close()

    asyncio.run(scenario())


def test_closing_the_zygote_ends_its_interpreters(tmp_path: Path) -> None:
    async def scenario() -> None:
        zygote = Zygote(make_config(tmp_path).worker_config(), 15)
        worker = await zygote.fork(15)
        await zygote.close()
        assert await _wait_dead(worker.pid)

    asyncio.run(scenario())


@pytest.mark.parametrize("zygote", [True, False])
def test_the_executor_runs_code_with_or_without_the_zygote(tmp_path: Path, zygote: bool) -> None:
    async def scenario() -> None:
        config = replace(make_config(tmp_path), zygote=zygote, pool_size=1)
        executor = Executor(config, "AzureContainerAppsCodeInterpreter")
        await executor.start()
        try:
            session = executor.open_session("zygote-test")
            record = await executor.run(session, ExecutionSpec("print(6 * 7)", 10, 1000), "zygote-run")
            assert record.outcome is not None and record.outcome.stdout == "42\n", record
            assert session.worker is not None
            parent = psutil.Process(session.worker.pid).ppid()
            assert (parent != os.getpid()) is zygote
        finally:
            await executor.stop()

    asyncio.run(scenario())
