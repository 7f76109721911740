"""A session interpreter process as seen from the server: spawn, attach, execute, kill.

Talks to ``worker.py`` over asyncio subprocess pipes, so the event loop never blocks on code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from services.code_execution.worker import HEADER, decode_header, encode_frame

WORKER_SCRIPT = str(Path(__file__).with_name("worker.py"))
# -S: no site start-up (its .pth hooks, an editable install's finder among them, cost ~20 ms per interpreter);
# the worker puts the site-packages folders on its path itself.
INTERPRETER = (sys.executable, "-I", "-S", "-B", WORKER_SCRIPT)

# The whole environment the interpreter gets: nothing of the server's (no FLLM_*, no tokens).
CHILD_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "MPLBACKEND": "Agg",
    "PYTHONIOENCODING": "utf-8",
}


class WorkerError(Exception):
    """The interpreter process failed (crashed, timed out, or broke the protocol)."""

    def __init__(self, message: str, *, timed_out: bool = False, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.exit_code = exit_code


@dataclass(frozen=True)
class SandboxReport:
    network: str  # isolated | shared
    filesystem: str  # mount-namespace | path-rewrite
    identity: str  # session-uid | server-uid

    def as_dict(self) -> dict[str, str]:
        return {"network": self.network, "filesystem": self.filesystem, "identity": self.identity}


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "the interpreter stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        reason = {"SIGXCPU": " (CPU time limit exceeded)", "SIGKILL": " (killed)", "SIGSEGV": " (crashed)"}
        return f"the interpreter was terminated by {name}{reason.get(name, '')}"
    return f"the interpreter exited with code {code}"


def kill_uid_processes(uid: int) -> None:
    """SIGKILL every process of a session's own uid (catches children that left the process group)."""
    if os.geteuid() != 0:
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                os.kill(int(entry), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue


class Process(Protocol):
    """What a started interpreter is to the executor: asyncio's subprocess, or a zygote's child."""

    pid: int
    stdin: asyncio.StreamWriter | None
    stdout: asyncio.StreamReader | None

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


class WorkerProcess:
    def __init__(self, process: Process, ready: dict[str, Any]) -> None:
        self._process = process
        self.pid = process.pid
        self.network = str(ready.get("network", "shared"))
        self.private_mounts = bool(ready.get("private_mounts"))
        self.filesystem = "pending"
        self.uid: int | None = None
        self.dead = False
        self._kill_reason = ""

    @classmethod
    async def spawn(cls, worker_config: dict[str, Any], timeout_s: float) -> WorkerProcess:
        try:
            process = await asyncio.create_subprocess_exec(
                *INTERPRETER, json.dumps(worker_config),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=CHILD_ENV,
                cwd="/",
                start_new_session=True,  # its own process group: a timeout kills everything it started
                close_fds=True,
            )
        except OSError as error:
            raise WorkerError(f"the interpreter could not be started: {error}") from error
        return await cls.started(process, timeout_s)

    @classmethod
    async def started(cls, process: Process, timeout_s: float) -> WorkerProcess:
        """The interpreter once it said it is ready (sandboxed); killed if it does not in time."""
        try:
            assert process.stdout is not None
            ready = await asyncio.wait_for(_read(process.stdout), timeout_s)
        except (TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
            kill_group(process.pid)
            await process.wait()
            raise WorkerError(f"the interpreter did not start: {_describe_exit(process.returncode)}") from error
        return cls(process, ready)

    @property
    def alive(self) -> bool:
        return not self.dead and self._process.returncode is None

    def report(self) -> SandboxReport:
        return SandboxReport(self.network, self.filesystem, "session-uid" if self.uid is not None else "server-uid")

    async def attach(self, data_dir: Path, tmp_dir: Path, uid: int | None, timeout_s: float) -> None:
        reply = await self._call({"op": "attach", "data_dir": str(data_dir), "tmp_dir": str(tmp_dir), "uid": uid},
                                 timeout_s)
        if not reply.get("ok"):
            self.kill("attach failed")
            raise WorkerError(f"the interpreter could not enter the session: {reply.get('error', 'unknown')}")
        self.filesystem = str(reply.get("filesystem"))
        self.uid = reply.get("uid")

    async def execute(self, code: str, max_output: int, named_results: bool, timeout_s: float) -> dict[str, Any]:
        return await self._call(
            {"op": "exec", "code": code, "max_output": max_output, "named_results": named_results}, timeout_s
        )

    async def _call(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        if not self.alive:
            raise WorkerError(self._kill_reason or _describe_exit(self._process.returncode))
        stdin = self._process.stdin
        assert stdin is not None
        try:
            stdin.write(encode_frame(request))
            await stdin.drain()
            assert self._process.stdout is not None
            return await asyncio.wait_for(_read(self._process.stdout), timeout_s)
        except TimeoutError as error:
            self.kill("timeout")
            raise WorkerError(f"the execution exceeded its {timeout_s:g}-second timeout", timed_out=True) from error
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as error:
            reason = self._kill_reason
            self.kill(reason or "protocol")
            code = await self._exit_code()
            raise WorkerError(reason or _describe_exit(code), exit_code=code) from error
        except asyncio.CancelledError:
            self.kill("cancelled")  # a half-read answer would desynchronise the pipe
            raise

    async def _exit_code(self) -> int | None:
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self._process.wait(), 2.0)
        return self._process.returncode

    def kill(self, reason: str = "") -> None:
        """Kill the process group; safe to call more than once. Processes that left the group are
        swept by uid (``kill_uid_processes``, in a thread) by the executor."""
        if not self.dead:
            self.dead = True
            self._kill_reason = self._kill_reason or reason
            kill_group(self.pid)

    async def close(self) -> None:
        self.kill("closed")
        with contextlib.suppress(ProcessLookupError):
            await self._process.wait()


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _read(stdout: asyncio.StreamReader) -> dict[str, Any]:
    header = await stdout.readexactly(HEADER.size)
    body = await stdout.readexactly(decode_header(header))
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ValueError("the interpreter answered with something other than an object")
    return message
