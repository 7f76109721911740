"""Session interpreters forked from one that has started up already (worker.py's ``zygote``).

Starting an interpreter costs ~35 ms of CPU (the interpreter itself, then the worker's imports); forking
one that has done all that costs ~1 ms. The CPU matters even though the warm pool keeps the start off the
request: every new code session takes an interpreter, and on 2 cores the starts competed with the chain
for the CPU under load. A child is the same worker as a directly started one: its own process group,
resource limits and sandbox applied after the fork, the same pipe protocol.

The zygote talks over a SOCK_SEQPACKET socket pair: a fork request carries the child's two pipe ends,
the answer is the child's pid; the zygote reports each child's exit code, since only it can wait for
them. When it dies, its children die with it (parent-death signal) and the next fork starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections import deque
from typing import Any

from services.code_execution.process import CHILD_ENV, INTERPRETER, WorkerError, WorkerProcess, kill_group

ZYGOTE_GONE_CODE = -9  # its children were killed with it


class ForkedProcess:
    """A zygote's child as the executor sees a process: pid, pipes, and the exit code the zygote reports."""

    def __init__(self, pid: int, stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader,
                 exited: asyncio.Future[int]) -> None:
        self.pid, self.stdin, self.stdout = pid, stdin, stdout
        self._exited = exited

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        code = await asyncio.shield(self._exited)
        self.stdin.close()
        self.stdout.feed_eof()
        return code


class Zygote:
    def __init__(self, worker_config: dict[str, Any], start_timeout_s: float) -> None:
        self._config = worker_config
        self._start_timeout_s = start_timeout_s
        self._process: asyncio.subprocess.Process | None = None
        self._socket: socket.socket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._forks: deque[asyncio.Future[tuple[int, asyncio.Future[int]]]] = deque()
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._starting: asyncio.Lock | None = None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None and self._socket is not None

    async def fork(self, timeout_s: float) -> WorkerProcess:
        """A new interpreter, ready and sandboxed; raises WorkerError."""
        await self._ensure_started()
        assert self._socket is not None
        loop = asyncio.get_running_loop()
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
        forked: asyncio.Future[tuple[int, asyncio.Future[int]]] = loop.create_future()
        try:
            socket.send_fds(self._socket, [b'{"op": "fork"}'], [requests_r, answers_w])
            self._forks.append(forked)
        except OSError as error:
            os.close(requests_w)
            os.close(answers_r)
            raise WorkerError(f"the zygote could not be asked for an interpreter: {error}") from error
        finally:
            os.close(requests_r)
            os.close(answers_w)
        try:
            pid, exited = await asyncio.wait_for(forked, timeout_s)
        except BaseException as error:
            os.close(requests_w)
            os.close(answers_r)
            if isinstance(error, TimeoutError):
                raise WorkerError("the zygote did not fork an interpreter in time") from error
            raise
        stdout = asyncio.StreamReader(limit=2**20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdout), os.fdopen(answers_r, "rb", 0))
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), os.fdopen(requests_w, "wb", 0)
        )
        stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        return await WorkerProcess.started(ForkedProcess(pid, stdin, stdout, exited), timeout_s)

    async def close(self) -> None:
        """Stop the zygote; its children (the interpreters it forked) die with it."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._process is not None:
            try:
                await asyncio.wait_for(self._process.wait(), 2.0)
            except TimeoutError:
                kill_group(self._process.pid)
                await self._process.wait()
        self._gone("the zygote was stopped")

    async def _ensure_started(self) -> None:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.alive:
                return
            await self.close()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                self._process = await asyncio.create_subprocess_exec(
                    *INTERPRETER, json.dumps(self._config), f"--zygote={theirs.fileno()}",
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL, env=CHILD_ENV, cwd="/", start_new_session=True,
                    pass_fds=(theirs.fileno(),),
                )
            except OSError as error:
                ours.close()
                raise WorkerError(f"the zygote could not be started: {error}") from error
            finally:
                theirs.close()
            ours.setblocking(False)
            self._socket = ours
            self._reader = asyncio.get_running_loop().create_task(self._read_reports(ours))

    async def _read_reports(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while record := await loop.sock_recv(sock, 4096):
                self._report(json.loads(record))
        except (OSError, ValueError):
            pass
        self._gone("the zygote exited")
        if self._socket is sock:
            sock.close()
            self._socket = None

    def _report(self, message: dict[str, Any]) -> None:
        if message.get("op") == "exit":
            exited = self._exits.pop(int(message["pid"]), None)
            if exited is not None and not exited.done():
                exited.set_result(int(message["code"]))
            return
        forked = self._forks.popleft() if self._forks else None
        if message.get("op") != "forked":
            if forked is not None and not forked.done():
                forked.set_exception(WorkerError(f"the zygote refused: {message.get('error', 'unknown')}"))
            return
        pid = int(message["pid"])
        exited = asyncio.get_running_loop().create_future()
        self._exits[pid] = exited
        if forked is None or forked.done():  # its caller gave up: nobody will use this interpreter
            kill_group(pid)
            return
        forked.set_result((pid, exited))

    def _gone(self, reason: str) -> None:
        while self._forks:
            forked = self._forks.popleft()
            if not forked.done():
                forked.set_exception(WorkerError(f"no interpreter: {reason}"))
        for exited in self._exits.values():
            if not exited.done():
                exited.set_result(ZYGOTE_GONE_CODE)
        self._exits.clear()
