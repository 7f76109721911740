"""Waiting in tests for something to happen: poll a condition until it holds, or fail naming it at a deadline.

Use these instead of a fixed sleep whenever a test waits for a state (a span exported, a request arrived,
a status changed): they return as soon as the state is there and say what never came.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline."""


def _fail(what: str, timeout_s: float, last: object) -> WaitTimeout:
    return WaitTimeout(f"waited {timeout_s:g} s for {what}; last seen: {last!r}")


def wait_until(condition: Callable[[], T], what: str, timeout_s: float = 10.0, every_s: float = 0.02) -> T:
    """Call ``condition`` until it returns something truthy, and return that; WaitTimeout at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() >= deadline:
            raise _fail(what, timeout_s, value)
        time.sleep(every_s)
    return value


async def until(condition: Callable[[], T], what: str, timeout_s: float = 10.0, every_s: float = 0.01) -> T:
    """:func:`wait_until` for a coroutine: the event loop keeps running while it waits."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() >= deadline:
            raise _fail(what, timeout_s, value)
        await asyncio.sleep(every_s)
    return value


def wait_quiet(count: Callable[[], int], what: str, quiet_s: float, timeout_s: float = 10.0,
               every_s: float = 0.02) -> int:
    """Wait until ``count()`` has not changed for ``quiet_s`` (late batches of spans have landed); return it.

    For things that arrive in an unknown number of parts with no end marker, such as one trace's spans
    exported by several processes."""
    deadline = time.monotonic() + timeout_s
    last, changed = count(), time.monotonic()
    while time.monotonic() - changed < quiet_s:
        if time.monotonic() >= deadline:
            raise _fail(f"{what} to stop changing", timeout_s, last)
        time.sleep(every_s)
        if (now := count()) != last:
            last, changed = now, time.monotonic()
    return last
