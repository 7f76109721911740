"""A warm pool of sandboxes waiting for a session, refilled in the background.

Each is a slot (folder, uid, cgroup, /mnt/data tmpfs) with its interpreter started in it: a new session
takes one whole and runs its first code at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.code_execution.process import WorkerError, WorkerProcess
from services.code_execution.sessions import SessionLimitError, Slot

log = logging.getLogger("foundationallm.code_execution")


@dataclass(eq=False)
class WarmSandbox:
    slot: Slot
    worker: WorkerProcess

    @property
    def alive(self) -> bool:
        return self.worker.alive


class WarmPool:
    """``size`` sandboxes started, waiting for ``take``.

    A refill starts ``refill_delay_s`` after a take, so that starting a process (fork/exec in the
    server, interpreter start-up on another core) stays off the request that took the interpreter.
    """

    def __init__(self, spawn: Callable[[], Awaitable[WarmSandbox]], discard: Callable[[WarmSandbox], Awaitable[None]],
                 size: int, refill_delay_s: float = 0.05) -> None:
        self._spawn = spawn
        self._discard = discard
        self.size = max(0, size)
        self.refill_delay_s = refill_delay_s
        self._ready: deque[WarmSandbox] = deque()
        self._filling: set[asyncio.Task[None]] = set()
        self._jobs: set[asyncio.Future[None]] = set()  # discarded sandboxes being cleaned up
        self._closed = False
        self.spawn_failures = 0

    @property
    def ready_count(self) -> int:
        return sum(1 for worker in self._ready if worker.alive)

    def start(self) -> None:
        self._refill()

    def take(self) -> WarmSandbox | None:
        """A ready sandbox, or None when the pool is empty (the caller then starts one cold)."""
        warm = None
        while self._ready and warm is None:
            candidate = self._ready.popleft()
            if candidate.alive:
                warm = candidate
            else:
                self._background(self._discard(candidate))
        if self.size:
            asyncio.get_running_loop().call_later(self.refill_delay_s, self._refill, context=contextvars.Context())
        return warm

    def give_back(self, warm: WarmSandbox) -> None:
        """An unused sandbox that was taken (its session could not be opened)."""
        if self._closed or not warm.alive:
            self._background(self._discard(warm))
        else:
            self._ready.appendleft(warm)

    def _background(self, job: Awaitable[None]) -> None:
        task = asyncio.ensure_future(job)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    def _refill(self) -> None:
        if self._closed:
            return
        missing = self.size - len(self._ready) - len(self._filling)
        for _ in range(max(0, missing)):
            # A fresh context: refills belong to no request's trace.
            task = asyncio.get_running_loop().create_task(self._add_one(), context=contextvars.Context())
            self._filling.add(task)
            task.add_done_callback(self._filling.discard)

    async def _add_one(self) -> None:
        try:
            warm = await self._spawn()
        except (WorkerError, OSError, SessionLimitError) as error:  # SessionLimitError: no uid left
            self.spawn_failures += 1
            log.warning("warm pool: %s", error)
            await asyncio.sleep(min(5.0, 0.1 * self.spawn_failures))
            return
        if self._closed:
            await self._discard(warm)
        else:
            self._ready.append(warm)

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Wait until the pool is full (used at start-up by tests and the benchmark)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.ready_count < self.size and loop.time() < deadline:
            if not self._filling:
                self._refill()
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._filling):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._filling, return_exceptions=True)
        while self._ready:
            await self._discard(self._ready.popleft())
        await asyncio.gather(*self._jobs, return_exceptions=True)
