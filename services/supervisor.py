"""Keeps a chain's services running: a service that exits is reported and started again, on the same
port, after a backoff that doubles with each restart; after ``max_restarts`` within ``window_s`` it stays
down (reported). While a service is down its port refuses connections (services/launcher.py), so its
callers fail at once, naming it."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from services.common.settings import deployed_name
from services.launcher import ChainError

if TYPE_CHECKING:
    from services.launcher import Chain


def how_it_ended(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


class Supervisor:
    def __init__(self, chain: Chain, report: Callable[[str], None], max_restarts: int = 5,
                 backoff_s: float = 0.5, max_backoff_s: float = 8.0, window_s: float = 300.0,
                 poll_s: float = 0.2, healthy_within_s: float = 30.0) -> None:
        self.chain, self.report = chain, report
        self.max_restarts, self.backoff_s, self.max_backoff_s = max_restarts, backoff_s, max_backoff_s
        self.window_s, self.poll_s, self.healthy_within_s = window_s, poll_s, healthy_within_s
        self.restarts: dict[str, list[float]] = {}
        self.given_up: set[str] = set()  # left down: restarted too often, or stopped on purpose (stop_service)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fllm-supervisor", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop restarting; returns once no restart is under way (so nothing starts after the chain stops)."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self.poll_s):
            for package, service in list(self.chain.services.items()):
                process = service.process
                if process is not None and package not in self.given_up and process.poll() is not None:
                    self._restart(package, process.returncode)

    def _restart(self, package: str, returncode: int) -> None:
        name, now = deployed_name(package), time.monotonic()
        recent = [at for at in self.restarts.get(package, []) if now - at < self.window_s]
        if len(recent) >= self.max_restarts:
            self.given_up.add(package)
            self.report(f"{name} exited ({how_it_ended(returncode)}); restarted {len(recent)} times in "
                        f"{self.window_s:.0f} s: left down")
            return
        delay = min(self.backoff_s * 2 ** len(recent), self.max_backoff_s)
        self.report(f"{name} exited ({how_it_ended(returncode)}); restarting in {delay:.1f} s "
                    f"(restart {len(recent) + 1} of at most {self.max_restarts})")
        self.restarts[package] = [*recent, now]
        if self._stopping.wait(delay):
            return
        service = self.chain.services[package]
        with contextlib.suppress(ProcessLookupError, PermissionError):  # what the dead service had started
            os.killpg(service.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
        try:
            self.chain._spawn(service)
        except ChainError as error:  # its port was taken meanwhile: tried again next round, as a restart
            self.report(f"{name} could not be started again: {error}")
            return
        self._await_healthy(package)

    def _await_healthy(self, package: str) -> None:
        service, deadline = self.chain.services[package], time.monotonic() + self.healthy_within_s
        while not self._stopping.is_set():
            try:
                self.chain.wait_healthy(1.0, [package])
            except ChainError as error:
                if service.process is not None and service.process.poll() is not None:
                    return  # exited again: the next round restarts it (or gives up)
                if time.monotonic() > deadline:
                    self.report(f"{service.name} is not healthy {self.healthy_within_s:.0f} s after its restart: "
                                f"{error}")
                    return
                continue
            self.report(f"{service.name} is up again on {service.url}")
            return
