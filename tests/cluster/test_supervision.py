"""The launcher supervises: a service that dies is reported and started again on its port, its port
refuses connections meanwhile, and stopping the chain leaves no process behind, even after a kill."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from services.common.settings import DEFAULT_INSTANCE_ID
from services.launcher import Chain, ChainError, ServiceProcess
from services.supervisor import Supervisor
from telemetry import conventions as c
from tests.cluster.client import CoreClient, code_prompt
from tests.otlp_receiver import OtlpReceiver
from tests.wait import wait_until

pytestmark = pytest.mark.chain


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    started = OtlpReceiver().start()
    yield started
    started.stop()


def _start(tmp_path: Path, receiver: OtlpReceiver) -> tuple[Chain, list[str]]:
    from tests.chain.conftest import start_chain

    chain = start_chain(tmp_path, receiver.endpoint)
    reports: list[str] = []
    chain.supervise(reports.append)
    return chain, reports


def _stored_end(chain: Chain, operation_id: str) -> dict | None:
    key = chain.service_env()["FLLM_STATE_API_KEY"]
    try:
        reply = httpx.get(f"{chain.url('state_api')}/instances/{DEFAULT_INSTANCE_ID}/operations/{operation_id}",
                          headers={"X-API-KEY": key}, timeout=5)
    except httpx.TransportError:
        return None
    body = reply.json() if reply.status_code == 200 else None
    return body if body and body["status"] != "InProgress" else None


def _refused(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1])
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_killed_state_api_is_restarted_and_the_operation_ends_within_30_s(tmp_path: Path,
                                                                           receiver: OtlpReceiver) -> None:
    chain, reports = _start(tmp_path, receiver)
    core = CoreClient(chain.url("core_api"), chain.data_dir)
    try:
        marker = tmp_path / "running"
        submitted = core.submit(code_prompt(
            "open('/mnt/data/running', 'w').close()\nimport time\ntime.sleep(2)\nprint('cell', 6 * 7)"))
        wait_until(lambda: next(chain.data_dir.rglob(marker.name), None), "the code to run", 20)
        state = chain.services["state_api"]
        old_pid = state.process.pid  # type: ignore[union-attr]
        os.kill(old_pid, signal.SIGKILL)
        state.process.wait(5)  # type: ignore[union-attr]
        assert _refused(state.url), "a dead State API's port must refuse connections, not hang callers"
        outcome = core.wait(submitted, timeout_s=30)
        elapsed = time.monotonic() - submitted.started
        assert outcome["status"] == "Completed" or outcome.get("failed_hop") == c.STATE_API, outcome
        assert elapsed < 30
        wait_until(lambda: any("state-api is up again" in line for line in reports), "the restart", 30)
        # The record itself (not only Core's view) ends too, once LangChain's end lands on the restarted State.
        stored = wait_until(lambda: _stored_end(chain, submitted.operation_id), "the stored end", 30)
        assert stored["status"] == "Completed" or stored["failed_hop"] == c.STATE_API, stored
        assert time.monotonic() - submitted.started < 30
        assert state.process.pid != old_pid  # type: ignore[union-attr]
        assert any("state-api exited (killed by SIGKILL); restarting" in line for line in reports), reports
        print(f"\nkilled State API: Core answered {outcome['status']} ({outcome.get('status_message')}) after"
              f" {elapsed:.1f} s; State keeps {stored['status']} ({stored['status_message']}); reports: {reports}")
        after = core.wait(core.submit(code_prompt("print(6 * 7)")), timeout_s=30)
        assert after["status"] == "Completed", after  # the restarted State API serves the next one
    finally:
        core.close()
        chain.stop()


def test_stopping_after_a_kill_leaves_no_process_behind(tmp_path: Path, receiver: OtlpReceiver) -> None:
    chain, reports = _start(tmp_path, receiver)
    groups = {service.process.pid for service in chain.services.values()}  # type: ignore[union-attr]
    processes = [psutil.Process(pid) for pid in groups]
    processes += [child for process in processes for child in process.children(recursive=True)]
    try:
        victim = chain.services["context_api"].process
        os.kill(victim.pid, signal.SIGKILL)  # type: ignore[union-attr]
        wait_until(lambda: any("context-api exited" in line for line in reports), "the report", 10)
    finally:
        chain.stop()  # while the restart waits its backoff
    gone, alive = psutil.wait_procs(processes, timeout=10)
    assert not alive, f"left running: {[p.pid for p in alive]}"
    for service in chain.services.values():
        with pytest.raises(ProcessLookupError):
            os.killpg(service.process.pid, 0)  # type: ignore[union-attr]



LAUNCHER = """
import sys, time
from pathlib import Path
from services.launcher import Chain
chain = Chain(Path(sys.argv[1]), ephemeral_ports=True, packages=("state_api",)).start()
print(chain.services["state_api"].process.pid, chain.url("state_api"), flush=True)
time.sleep(600)
"""


def test_a_chain_whose_launcher_is_killed_stops_by_itself(tmp_path: Path) -> None:
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                                cwd=Path(__file__).resolve().parents[2])
    service: psutil.Process | None = None
    try:
        assert launcher.stdout is not None
        pid, url = launcher.stdout.readline().split()
        service = psutil.Process(int(pid))
        assert httpx.get(f"{url}/status", timeout=5).status_code == 200
        launcher.kill()  # no chance to stop its chain
        launcher.wait(10)
        gone, alive = psutil.wait_procs([service], timeout=15)
        assert not alive, "the service outlived its launcher"
        with pytest.raises(httpx.ConnectError):  # its port is free again
            httpx.get(f"{url}/status", timeout=5)
    finally:
        launcher.kill()
        if service is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                service.kill()


class _CrashingChain:
    """A chain of one service that exits at once each time it starts."""

    def __init__(self, tmp_path: Path) -> None:
        self.services = {"state_api": ServiceProcess("state_api", "http://127.0.0.1:9", tmp_path / "log")}
        self.starts = 0
        self._spawn(self.services["state_api"])

    def _spawn(self, service: ServiceProcess) -> None:
        self.starts += 1
        service.process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], start_new_session=True)

    def wait_healthy(self, timeout_s: float, packages: list[str]) -> None:
        process = self.services["state_api"].process
        assert process is not None
        process.wait(timeout_s)
        raise ChainError("state-api exited with 3")


def test_restarts_are_bounded_with_a_growing_backoff(tmp_path: Path) -> None:
    chain, reports = _CrashingChain(tmp_path), []
    supervisor = Supervisor(chain, reports.append, max_restarts=3, backoff_s=0.1, poll_s=0.01)  # type: ignore[arg-type]
    supervisor.start()
    try:
        wait_until(lambda: "state_api" in supervisor.given_up, "the supervisor to give up", 20)
    finally:
        supervisor.stop()
    assert chain.starts == 4  # the first start and three restarts
    assert [line.split("restarting in ")[1].split(" s")[0] for line in reports if "restarting in" in line] == [
        "0.1", "0.2", "0.4"]
    assert reports[-1] == "state-api exited (exit code 3); restarted 3 times in 300 s: left down", reports
