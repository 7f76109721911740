"""The waiting helpers return as soon as the condition holds and name what never came."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tests.wait import WaitTimeout, until, wait_quiet, wait_until


def test_wait_until_returns_the_value_once_it_holds() -> None:
    ready = threading.Event()
    threading.Timer(0.05, ready.set).start()
    started = time.monotonic()
    assert wait_until(lambda: ready.is_set() and "ready", "the event") == "ready"
    assert time.monotonic() - started < 1.0


def test_wait_until_names_what_never_came() -> None:
    with pytest.raises(WaitTimeout, match=r"waited 0.1 s for the answer; last seen: \[\]"):
        wait_until(lambda: [], "the answer", timeout_s=0.1)


def test_until_lets_the_loop_run_while_it_waits() -> None:
    async def scenario() -> int:
        box: list[int] = []
        asyncio.get_running_loop().call_later(0.05, box.append, 7)
        return (await until(lambda: box, "the callback"))[0]

    assert asyncio.run(scenario()) == 7
    with pytest.raises(WaitTimeout, match="the callback"):
        asyncio.run(until(lambda: None, "the callback", timeout_s=0.05))


def test_wait_quiet_waits_for_the_last_change() -> None:
    arrivals = [time.monotonic() + delay for delay in (0.05, 0.1, 0.15)]
    started = time.monotonic()
    assert wait_quiet(lambda: sum(t <= time.monotonic() for t in arrivals), "arrivals", quiet_s=0.1) == 3
    assert 0.25 <= time.monotonic() - started < 2.0
    with pytest.raises(WaitTimeout, match="arrivals to stop changing"):
        wait_quiet(time.monotonic_ns, "arrivals", quiet_s=1.0, timeout_s=0.1)
