"""A fault-injecting HTTP proxy put in front of one real service of the chain.

The chain's callers are pointed at the proxy (its URL replaces the service's in their environment); the
proxy forwards everything to the real service, except requests that match an injected fault:

- ``500``       answer 500 with a JSON problem body
- ``malformed`` answer 200 ``application/json`` whose body is not JSON
- ``slow``      hold the request for ``delay_s`` (past the caller's timeout), then drop the connection
- ``delay``     hold the request for ``delay_s``, then forward it (a hop that is slow but answers)
- ``down``      stop listening and drop every open connection: callers get *connection refused*

A fault can be limited to a method, a path pattern, a body substring and a number of ``times``. The
proxy counts what it forwarded, so a test can tell how many times a route really ran.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


@dataclass
class Fault:
    kind: str  # 500 | malformed | slow | delay | down
    method: str | None = None
    path: str | None = None  # a regular expression searched in the request path (with its query)
    body_contains: str | None = None
    about: str | None = None  # a token that must be in the path or the body (one test's operation)
    times: int | None = None  # None: every matching request
    delay_s: float = 5.0
    hits: int = 0

    def matches(self, method: str, path: str, body: bytes) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and self.method != method:
            return False
        if self.path and not re.search(self.path, path):
            return False
        if self.about and self.about not in path and self.about.encode() not in body:
            return False
        return not (self.body_contains and self.body_contains.encode() not in body)


@dataclass
class FaultProxy:
    name: str
    upstream: Callable[[], str]  # the real service's base URL, read at request time
    faults: list[Fault] = field(default_factory=list)
    forwarded: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connections: set[socket.socket] = field(default_factory=set)
    _server: ThreadingHTTPServer | None = None
    _port: int = 0

    # --- life cycle ---

    def start(self) -> FaultProxy:
        self._listen()
        return self

    def stop(self) -> None:
        self.go_down()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def _listen(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._connections.add(self.connection)

            def finish(self) -> None:
                with contextlib.suppress(OSError):
                    super().finish()
                with proxy._lock:
                    proxy._connections.discard(self.connection)

            def do_GET(self) -> None:  # noqa: N802
                proxy._handle(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET  # noqa: N815

            def log_message(self, *_: object) -> None:
                pass

        for _ in range(100):  # the port of a proxy that went down may take a moment to be free again
            try:
                server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
                break
            except OSError:
                time.sleep(0.02)
        else:
            raise RuntimeError(f"the {self.name} proxy cannot listen on port {self._port} again")
        server.daemon_threads = True
        self._port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def go_down(self) -> None:
        """Refuse connections: close the listening socket and every open connection."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                connection.close()

    def come_up(self) -> None:
        if self._server is None:
            self._listen()

    @property
    def is_up(self) -> bool:
        return self._server is not None

    # --- faults ---

    def inject(self, kind: str, **match: object) -> Fault:
        fault = Fault(kind, **match)  # type: ignore[arg-type]
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
        self.come_up()

    def count(self, method: str, path_pattern: str) -> int:
        with self._lock:
            return sum(1 for m, p in self.forwarded if m == method and re.search(path_pattern, p))

    def _fault_for(self, method: str, path: str, body: bytes) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path, body):
                    fault.hits += 1
                    return fault
        return None

    # --- one request ---

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        method, path = handler.command, handler.path
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        fault = self._fault_for(method, path, body)
        if fault is not None and fault.kind == "down":
            threading.Thread(target=self.go_down, daemon=True).start()
            handler.close_connection = True
            return
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay_s)
            handler.close_connection = True
            return
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay_s)
        if fault is not None and fault.kind == "500":
            self._reply(handler, 500, b'{"detail": "injected fault: internal error"}', "application/json")
            return
        if fault is not None and fault.kind == "malformed":
            self._reply(handler, 200, b'{"status": "Compl', "application/json")
            return
        self._forward(handler, method, path, body)

    def _forward(self, handler: BaseHTTPRequestHandler, method: str, path: str, body: bytes) -> None:
        # http.client, not httpx: an httpx client in a test process whose telemetry is set up would be
        # instrumented and put its own traceparent on the request.
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        try:
            status, content, extra = self._upstream_call(method, path, body, headers)
        except (OSError, http.client.HTTPException):
            handler.close_connection = True  # the real service is gone: so is this connection
            return
        with self._lock:
            self.forwarded.append((method, path))
        self._reply(handler, status, content, None, extra)

    def _upstream_call(self, method: str, path: str, body: bytes, headers: dict[str, str]
                       ) -> tuple[int, bytes, list[tuple[str, str]]]:
        # A fresh connection per request: a failure is then always the service's, never a stale
        # keep-alive connection (and a killed service's port, still held by the launcher, is not retried).
        target = urlsplit(self.upstream())
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            content = response.read()
            extra = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            return response.status, content, extra
        finally:
            connection.close()

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, content: bytes, content_type: str | None,
               headers: list[tuple[str, str]] | None = None) -> None:
        try:
            handler.send_response(status)
            if content_type:
                handler.send_header("Content-Type", content_type)
            for key, value in headers or []:
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(content)))
            handler.end_headers()
            handler.wfile.write(content)
        except OSError:
            handler.close_connection = True
