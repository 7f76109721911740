"""The portal's background waits: one per submitted operation, each keeping ``portal.wait_for_result``
(and ``portal.submit``) open until the operation ends, and sharing what it sees with the page's polls,
so a page asking for an operation the portal already waits on costs Core nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from opentelemetry.context import Context

from services.portal.client import PortalClient
from services.portal.operation import OperationView
from telemetry.context import spawn

log = logging.getLogger("foundationallm.portal")


@dataclass
class _Tracked:
    view: OperationView
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    version: int = 0  # one more for every change published; the page sends back the one it has seen
    task: asyncio.Task[object] | None = None


class Waiters:
    def __init__(self, client: PortalClient, *, max_in_flight: int, timeout_s: float, keep_done: int = 1000) -> None:
        self.client = client
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.keep_done = keep_done
        self._tracked: OrderedDict[str, _Tracked] = OrderedDict()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def track(self, operation_id: str, view: OperationView) -> bool:
        """Start waiting on a submitted operation; False (and its submit span ended) when at capacity."""
        if self._in_flight >= self.max_in_flight:
            self.client.abandon(operation_id, f"the portal already waits on {self.max_in_flight} operations")
            return False
        tracked = _Tracked(view)
        self._tracked[operation_id] = tracked
        self._in_flight += 1
        # An empty context: the wait's spans get their parent from the submission, not from the
        # request that happens to be current.
        tracked.task = spawn(self._wait(operation_id, tracked), Context())
        return True

    async def _wait(self, operation_id: str, tracked: _Tracked) -> None:
        try:
            await self.client.wait(
                operation_id, timeout_s=self.timeout_s, on_status=lambda view: self._publish(tracked, view)
            )
        except Exception as error:  # noqa: BLE001 - the span has it; the page's polls go to Core from now on
            log.warning("waiting on operation %s failed: %s", operation_id, error)
            self._tracked.pop(operation_id, None)
        finally:
            self._in_flight -= 1
            tracked.changed.set()
            self._evict_done()

    def _publish(self, tracked: _Tracked, view: OperationView) -> None:
        if view == tracked.view:
            return  # the page's held requests wake up for news only
        tracked.view = view
        tracked.version += 1
        changed, tracked.changed = tracked.changed, asyncio.Event()
        changed.set()

    def _evict_done(self) -> None:
        done = [op for op, t in self._tracked.items() if t.view.done or (t.task is not None and t.task.done())]
        for operation_id in done[: max(0, len(done) - self.keep_done)]:
            self._tracked.pop(operation_id, None)

    async def view(self, operation_id: str, wait_s: float, seen: int | None = None) -> tuple[OperationView, int] | None:
        """The latest status of a tracked operation and its version. While it runs and the caller has
        seen the latest version (``seen``; default: the version now), wait up to ``wait_s`` for a change.
        None when the portal does not (or no longer) wait on it."""
        tracked = self._tracked.get(operation_id)
        if tracked is None:
            return None
        up_to_date = seen is None or seen >= tracked.version
        if up_to_date and not tracked.view.done and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tracked.changed.wait(), wait_s)
            if self._tracked.get(operation_id) is not tracked:
                return None
        return tracked.view, tracked.version

    async def stop(self) -> None:
        tasks = [t.task for t in self._tracked.values() if t.task is not None and not t.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
