"""Starts the chain: every service as its own process on loopback, healthy before it is used.

Each service gets a socket bound here first and inherits it (``FLLM_FD``), so ports are known before
any process starts and ephemeral ports are race-free; the launcher then closes its own copy, so a dead
service's port refuses connections (``supervise``: it is started again, services/supervisor.py). API keys
for the internal hops, the code session token, the telemetry hash key and the local issuer's signing key
are the data dir's (generated once, kept 0600 there) unless the environment gives them. ``stop`` sends
SIGTERM (services flush their spans) to every service's process group, a dead service's too, and kills
whatever is still running after a grace period: no orphans.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from services.common.deployment_secrets import deployment_secrets
from services.common.settings import SERVICE_PORTS, TlsSettings, deployed_name, url_env
from services.common.tls import LocalTls, client_context, ensure_local_tls
from services.registry import START_ORDER  # callees before callers

if TYPE_CHECKING:
    from services.supervisor import Supervisor

REPO = Path(__file__).resolve().parents[1]
TLS_PACKAGES = ("dynamic_sessions", "code_session_api")  # the code session pools: https with ``tls``
# Each service process gets its own: its socket, its port, the launcher that started it.
PER_PROCESS_VARIABLES = ("FLLM_FD", "FLLM_PORT", "FLLM_PARENT_PID")


class ChainError(RuntimeError):
    pass


@dataclass
class ServiceProcess:
    package: str
    url: str
    log_path: Path
    sock: socket.socket | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return deployed_name(self.package)


@dataclass
class Chain:
    data_dir: Path
    gatekeeper: str = "bypass"
    ephemeral_ports: bool = False
    env: dict[str, str] = field(default_factory=dict)
    packages: Iterable[str] = START_ORDER
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    secrets_env: dict[str, str] = field(default_factory=dict)
    supervisor: Supervisor | None = None
    tls: bool = False  # the pools listen on https with a local CA's certificate (<data dir>/tls)
    local_tls: LocalTls | None = None

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.packages = tuple(self.packages)

    # --- life cycle ---

    def start(self, timeout_s: float = 60.0) -> Chain:
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        if self.tls:
            self.local_tls = ensure_local_tls(self.data_dir / "tls")
        try:
            for package in self.packages:
                self.services[package] = self._bind(package)
            # Keys and tokens given in the environment win; the rest are the data dir's (deployment_secrets.py).
            self.secrets_env = deployment_secrets(self.data_dir, {**os.environ, **self.env}).env
            for package in self.packages:
                self._spawn(self.services[package])
            self.wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> Chain:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def url(self, package: str) -> str:
        return self.services[package].url

    def service_env(self) -> dict[str, str]:
        """The environment every service of this chain shares (URLs, keys, data dir, gatekeeper)."""
        env = {key: value for key, value in os.environ.items() if key not in PER_PROCESS_VARIABLES}
        env.update({url_env(package): service.url for package, service in self.services.items()})
        env.update(self.secrets_env)
        env.update({"FLLM_DATA_DIR": str(self.data_dir), "FLLM_GATEKEEPER": self.gatekeeper, "PYTHONPATH": str(REPO)})
        if self.local_tls is not None:  # every client of the chain trusts the local CA
            env[TlsSettings.variable("tls_ca_file")] = str(self.local_tls.ca_file)
        env.update(self.env)
        return env

    def _bind(self, package: str, port: int | None = None) -> ServiceProcess:
        if port is None:
            port = 0 if self.ephemeral_ports else SERVICE_PORTS[package]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            sock.close()
            raise ChainError(f"{deployed_name(package)} cannot listen on 127.0.0.1:{port}: {error.strerror}") from error
        sock.listen(512)
        scheme = "https" if self.tls and package in TLS_PACKAGES else "http"
        url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
        return ServiceProcess(package, url, self.data_dir / "logs" / f"{deployed_name(package)}.log", sock)

    def _spawn(self, service: ServiceProcess) -> None:
        if service.sock is None:  # started again: listen on its port again
            service.sock = self._bind(service.package, int(service.url.rsplit(":", 1)[1])).sock
        assert service.sock is not None
        env = {**self.service_env(), "FLLM_FD": str(service.sock.fileno()), "FLLM_PARENT_PID": str(os.getpid())}
        if self.local_tls is not None and service.package in TLS_PACKAGES:
            env.update(self.local_tls.env())
        with service.log_path.open("ab") as log:
            service.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{service.package}"], cwd=REPO, env=env,
                pass_fds=[service.sock.fileno()], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        # The service holds the only listening socket: once it is gone its port refuses connections, so a
        # caller fails at once naming the hop instead of waiting in a backlog nobody accepts from.
        service.sock.close()
        service.sock = None

    def wait_healthy(self, timeout_s: float, packages: Iterable[str] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = list(packages or self.services)
        verify = client_context(self.local_tls.ca_file) if self.local_tls is not None else True
        with httpx.Client(timeout=2.0, verify=verify) as client:
            while waiting:
                for package in list(waiting):
                    service = self.services[package]
                    if service.process is not None and service.process.poll() is not None:
                        raise ChainError(f"{service.name} exited with {service.process.returncode}:\n"
                                         + self.log_tail(package))
                    try:
                        if client.get(f"{service.url}/status").status_code == 200:
                            waiting.remove(package)
                    except httpx.HTTPError:
                        pass
                if waiting and time.monotonic() > deadline:
                    names = ", ".join(deployed_name(p) for p in waiting)
                    raise ChainError(f"not healthy after {timeout_s:.0f} s: {names}")
                if waiting:
                    time.sleep(0.05)

    def log_tail(self, package: str, chars: int = 3000) -> str:
        path = self.services[package].log_path
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop_service(self, package: str, sig: int = signal.SIGTERM, grace_s: float = 10.0) -> None:
        service = self.services[package]
        process = service.process
        if self.supervisor is not None:  # stopped on purpose: not restarted
            self.supervisor.given_up.add(package)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(grace_s)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def restart_service(self, package: str, timeout_s: float = 30.0) -> None:
        self.stop_service(package)
        self._spawn(self.services[package])
        if self.supervisor is not None:
            self.supervisor.given_up.discard(package)
        self.wait_healthy(timeout_s, [package])

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        for package in reversed(tuple(self.services)):
            service = self.services[package]
            # Every process group, even of a service that died: what it started (sandboxes) may still run.
            if service.process is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(service.process.pid, signal.SIGTERM)
        for package in reversed(tuple(self.services)):
            self._reap(package)
        for service in self.services.values():
            if service.sock is not None:
                service.sock.close()
                service.sock = None

    def _reap(self, package: str) -> None:
        process = self.services[package].process
        if process is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the rest of its group, if any
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)

    def supervise(self, report: Callable[[str], None] | None = None, max_restarts: int = 5) -> Supervisor:
        """Restart a service that exits (bounded, with backoff), reporting each event; ``stop`` ends it."""
        from services.supervisor import Supervisor

        self.supervisor = Supervisor(self, report or (lambda line: print(line, file=sys.stderr, flush=True)),
                                     max_restarts=max_restarts).start()
        return self.supervisor
