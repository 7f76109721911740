"""Long-poll support: status readers wait on an event that the terminal status write sets, this replica's
or, through the store's notifications (PostgreSQL), any other's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


class Waiters:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._counts: dict[str, int] = {}

    @contextmanager
    def watching(self, operation_id: str) -> Iterator[asyncio.Event]:
        """Register before reading the status, so an end written in between is not missed."""
        event = self._events.setdefault(operation_id, asyncio.Event())
        self._counts[operation_id] = self._counts.get(operation_id, 0) + 1
        try:
            yield event
        finally:
            self._counts[operation_id] -= 1
            if not self._counts[operation_id]:
                del self._counts[operation_id]
                self._events.pop(operation_id, None)

    def ended(self, operation_id: str | None) -> None:
        """Wake the readers of ``operation_id``; None: every reader (ends may have gone unnoticed)."""
        events = self._events.values() if operation_id is None else filter(None, [self._events.get(operation_id)])
        for event in list(events):
            event.set()
