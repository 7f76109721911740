"""A sandboxed session interpreter as the server sees it: start (bwrap), execute, kill.

The server starts ``bwrap`` with ``subprocess.Popen`` (``close_fds``: the child gets its two pipes and
``/dev/null``, never the server's listening socket or anything else the server has open, whichever
event loop runs) and talks to the interpreter over the pipes with asyncio, so the loop never blocks on
code. bwrap is put in the session's cgroup as soon as it is started, so what it starts is usually born
there (its start-up is then charged to the session, at the sessions' low CPU weight); once the
interpreter says it is ready, and before it runs any code, any of its processes still outside are moved
in. Starting and moving run in a thread: a cgroup move waits for the kernel for a millisecond or more,
and the event loop serves requests meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from services.code_execution.cgroups import SessionCgroup
from services.code_execution.interpreter.launcher import CHILD_ENV, filtered
from services.code_execution.interpreter.protocol import HEADER_SIZE, decode_header, encode_frame


class WorkerError(Exception):
    """The interpreter process failed (crashed, timed out, or broke the protocol)."""

    def __init__(self, message: str, *, timed_out: bool = False, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.exit_code = exit_code


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "the interpreter stopped answering"
    if code > 128:  # bwrap reports a child killed by a signal as 128 + the signal
        code = 128 - code
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        reason = {"SIGXCPU": " (CPU time limit exceeded)", "SIGKILL": " (killed)", "SIGSEGV": " (crashed)"}
        return f"the interpreter was terminated by {name}{reason.get(name, '')}"
    return f"the interpreter exited with code {code}"


def kill_uid_processes(uid: int) -> None:
    """SIGKILL every process of a session's own uid (without a cgroup: the sweep for strays)."""
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


def descendants(pid: int) -> list[int]:
    """``pid`` and every process under it (``/proc/<pid>/task/*/children``)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with contextlib.suppress(OSError):
                    children = Path(f"/proc/{current}/task/{task}/children").read_text()
                    queue.extend(int(child) for child in children.split())
    return found


class WorkerProcess:
    def __init__(self, process: subprocess.Popen[bytes], stdin: asyncio.StreamWriter,
                 stdout: asyncio.StreamReader, cgroup: SessionCgroup | None, uid: int | None) -> None:
        self._process = process
        self.pid = process.pid
        self._stdin, self._stdout = stdin, stdout
        self.cgroup = cgroup
        self.uid = uid
        self.dead = False
        self._kill_reason = ""

    @classmethod
    async def spawn(cls, argv: list[str], cgroup: SessionCgroup | None, timeout_s: float,
                    seccomp_filter: str | None = None) -> WorkerProcess:
        """Start one interpreter (bwrap loading ``seccomp_filter``, when given), wait until it is ready, put it
        in its cgroup; raises WorkerError."""
        loop = asyncio.get_running_loop()
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
        launch = asyncio.ensure_future(
            asyncio.to_thread(_launch, argv, requests_r, answers_w, cgroup, seccomp_filter)
        )
        try:
            process = await asyncio.shield(launch)
        except asyncio.CancelledError:
            launch.add_done_callback(lambda done: _abandon(done, requests_w, answers_r))
            raise
        except OSError as error:
            for fd in (requests_w, answers_r):
                os.close(fd)
            raise WorkerError(f"the interpreter could not be started: {error}") from error
        stdin: asyncio.StreamWriter | None = None
        try:
            stdout = asyncio.StreamReader(limit=2**20)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdout), _pipe_file(answers_r, "rb"))
            transport, protocol = await loop.connect_write_pipe(
                lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), _pipe_file(requests_w, "wb")
            )
            stdin = asyncio.StreamWriter(transport, protocol, None, loop)
            ready = await asyncio.wait_for(_read(stdout), timeout_s)
            if cgroup is not None:  # nothing of the session's code has run yet
                await asyncio.to_thread(_adopt, cgroup, process.pid)
        except (TimeoutError, asyncio.IncompleteReadError, ValueError, OSError) as error:
            _end(process, stdin)
            await asyncio.to_thread(process.wait)
            reason = _startup_error(process) or _describe_exit(process.returncode)
            raise WorkerError(f"the interpreter did not start: {reason}") from error
        except BaseException:  # cancelled: nobody waits for this interpreter any more
            _end(process, stdin)
            threading.Thread(target=process.wait, daemon=True).start()
            raise
        assert process.stderr is not None
        process.stderr.close()  # only bwrap's own errors come this way, before the interpreter starts
        return cls(process, stdin, stdout, cgroup, ready.get("uid"))

    @property
    def alive(self) -> bool:
        return not self.dead and self._process.poll() is None

    async def execute(self, code: str, max_output: int, named_results: bool, timeout_s: float) -> dict[str, Any]:
        return await self._call(
            {"op": "exec", "code": code, "max_output": max_output, "named_results": named_results}, timeout_s
        )

    async def _call(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        if not self.alive:
            raise WorkerError(self._kill_reason or _describe_exit(self._process.returncode))
        try:
            self._stdin.write(encode_frame(request))
            await self._stdin.drain()
            return await asyncio.wait_for(_read(self._stdout), timeout_s)
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
            return await asyncio.wait_for(asyncio.to_thread(self._process.wait), 2.0)
        return self._process.returncode

    def kill(self, reason: str = "") -> None:
        """Kill the sandbox: bwrap's death takes its PID namespace (every process the code started, daemons
        included) with it; the cgroup's processes get a SIGKILL too. Safe to call more than once."""
        if self.dead:
            return
        self.dead = True
        self._kill_reason = self._kill_reason or reason
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.cgroup is not None:
            for pid in self.cgroup.pids():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self._stdin.close()

    async def close(self) -> None:
        self.kill("closed")
        await asyncio.to_thread(self._reap)

    def _reap(self) -> None:
        self._process.wait()
        if self.cgroup is not None:
            self.cgroup.kill()


def _launch(argv: list[str], stdin: int, stdout: int, cgroup: SessionCgroup | None,
            seccomp_filter: str | None) -> subprocess.Popen[bytes]:
    """Start bwrap and put it in the session's cgroup at once (blocking: a thread). Closes the child's
    ends of the pipes."""
    try:
        with filtered(argv, seccomp_filter) as (command, fds):
            process = subprocess.Popen(
                command, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=CHILD_ENV, cwd="/",
                close_fds=True, pass_fds=fds, start_new_session=True,
            )
    finally:
        os.close(stdin)
        os.close(stdout)
    if cgroup is not None:
        with contextlib.suppress(OSError):  # it died already: its start-up error is read later
            cgroup.add(process.pid)
    return process


def _pipe_file(fd: int, mode: str) -> Any:
    """The file object a pipe transport takes. uvloop's transports close the descriptor themselves (libuv)
    and then the file object too, expecting EBADF; but by then another thread may have been given the same
    number (a sandbox starting, a slot being removed), and its file would be closed instead. Under uvloop
    the file object does not own the descriptor; asyncio's own transports close it through the file."""
    loop_module = type(asyncio.get_running_loop()).__module__
    return os.fdopen(fd, mode, 0, closefd=not loop_module.startswith("uvloop"))


def _adopt(cgroup: SessionCgroup, pid: int) -> None:
    cgroup.adopt(descendants(pid))


def _end(process: subprocess.Popen[bytes], stdin: asyncio.StreamWriter | None) -> None:
    """Kill a sandbox that did not start (its process group: bwrap's death ends its PID namespace)."""
    if stdin is not None:
        stdin.close()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _abandon(launch: asyncio.Future[subprocess.Popen[bytes]], *server_ends: int) -> None:
    """The start was cancelled while bwrap was being started: end what was started."""
    for fd in server_ends:
        os.close(fd)
    if not launch.cancelled() and launch.exception() is None:
        process = launch.result()
        _end(process, None)
        threading.Thread(target=process.wait, daemon=True).start()


def _startup_error(process: subprocess.Popen[bytes]) -> str:
    if process.stderr is None:
        return ""
    with contextlib.suppress(OSError, ValueError):
        os.set_blocking(process.stderr.fileno(), False)
        text = (process.stderr.read(2000) or b"").decode(errors="replace").strip()
        process.stderr.close()
        return text
    return ""


async def _read(stdout: asyncio.StreamReader) -> dict[str, Any]:
    header = await stdout.readexactly(HEADER_SIZE)
    body = await stdout.readexactly(decode_header(header))
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ValueError("the interpreter answered with something other than an object")
    return message
