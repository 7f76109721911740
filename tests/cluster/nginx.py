"""Debian's nginx as the chain's load balancer in the tests: one loopback port per hop, round robin over
that hop's replicas. Its own config, prefix and temp dirs in a temporary folder; run as a foreground
process, stopped with the test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

SERVER = """
    upstream {name} {{
{servers}
        keepalive 64;
        # Below uvicorn's 5 s keep-alive: nginx must drop an idle connection before the replica closes it,
        # or a request sent on it as the replica closes it is lost (a 502, not retried: proxy_next_upstream off).
        keepalive_timeout 4s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{name};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_read_timeout 300s;
            proxy_next_upstream off;
        }}
    }}
"""
CONFIG = """
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format upstream '$upstream_addr $status $request_method $uri';
    access_log {root}/access.log upstream;
    client_max_body_size 32m;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
{servers}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Nginx:
    def __init__(self, root: Path, ports: dict[str, int]) -> None:
        self.root, self.ports = root, ports  # hop -> the port nginx listens on for it
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, package: str) -> str:
        return f"http://127.0.0.1:{self.ports[package]}"

    def start(self, replicas: dict[str, list[str]]) -> Nginx:
        """``replicas``: hop -> the replicas' base URLs (http://127.0.0.1:port)."""
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        (self.root / "tmp").chmod(0o777)  # nginx's workers run as nobody when the tests run as root
        servers = "".join(
            SERVER.format(name=package, port=self.ports[package],
                          servers="\n".join(f"        server {url.removeprefix('http://')};" for url in urls))
            for package, urls in replicas.items())
        config = self.root / "nginx.conf"
        config.write_text(CONFIG.format(root=self.root, servers=servers))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = subprocess.Popen([binary, "-p", str(self.root), "-c", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=(self.root / "stderr.log").open("wb"))
        deadline = time.monotonic() + 15
        for port in self.ports.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("nginx did not start: " + (self.root / "stderr.log").read_text()
                                           + (self.root / "error.log").read_text()) from None
                    time.sleep(0.05)
        return self

    def served(self) -> dict[str, int]:
        """Requests per "replica status method path" (the replica's address), from the access log."""
        log = self.root / "access.log"
        counts: dict[str, int] = {}
        for line in log.read_text().splitlines() if log.exists() else []:
            counts[line] = counts.get(line, 0) + 1
        return counts

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: fast shutdown, workers included
            self.process.wait(10)
