"""A lean HTTP/1.1 connection pool under httpx, for the plain-http hops between the services.

httpx's default pool (httpcore over anyio, h11 in pure Python) spends ~1.1 ms of CPU on every request
on a 2-core host, more than the FastAPI handler it calls; every hop of the chain paid it several
times per completion. This pool keeps the same contract (it stands in for httpcore's pool inside
``httpx.AsyncHTTPTransport``, so httpx's client, its exceptions and the OpenTelemetry httpx
instrumentation all stay as they are) but talks HTTP/1.1 itself: asyncio connections kept alive, and
responses parsed by httptools (the C parser uvicorn uses). https, HEAD and CONNECT requests go to
httpcore's pool unchanged. ``FLLM_HTTP_CLIENT=httpcore`` switches it off.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

import httpcore
import httptools
import httpx

# Idle connections are dropped before the servers' 5 s keep-alive ends, so a request never goes out on
# a connection the server is closing.
DEFAULT_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=2.0)
_HIGH_WATER = 256 * 1024  # buffered response bytes before the socket stops being read
_FALLBACK_METHODS = {b"HEAD", b"CONNECT"}  # a HEAD answer's Content-Length has no body: httptools can't tell


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head: asyncio.Future[tuple[int, list[tuple[bytes, bytes]], bytes]] = self._loop.create_future()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._wakeup: asyncio.Future[None] | None = None
        self._paused = False
        self.complete = False
        self.reusable = False
        self._error: Exception | None = None
        self._drained: asyncio.Future[None] | None = None

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(httpcore.RemoteProtocolError(f"malformed HTTP response: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(httpcore.RemoteProtocolError("Server disconnected without sending a complete response"))
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(httpcore.WriteError("connection lost while sending"))

    def pause_writing(self) -> None:
        self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # --- httptools callbacks ---

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if not self._head.done():
            self._head.set_result((self._parser.get_status_code(), self._headers, self._reason))

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self.reusable = self._parser.should_keep_alive()
        self._wake()

    # --- the request ---

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _fail(self, error: Exception) -> None:
        self._error = error
        if not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # retrieved here: a failure before any request waits is not "never retrieved"
        self._wake()

    async def send(self, method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]],
                   body: bytes | AsyncIterable[bytes], write_timeout: float | None) -> None:
        self._reset()
        head = [method, b" ", target, b" HTTP/1.1\r\n"]
        chunked = False
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
            if name.lower() == b"transfer-encoding" and value.lower() == b"chunked":
                chunked = True
        head.append(b"\r\n")
        out = b"".join(head)
        if isinstance(body, bytes):
            await self._write(out + body, write_timeout)
            return
        async for chunk in body:
            if not chunk:
                continue
            out += b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
            if len(out) >= _HIGH_WATER:
                await self._write(out, write_timeout)
                out = b""
        if chunked:
            out += b"0\r\n\r\n"
        await self._write(out, write_timeout)

    async def _write(self, data: bytes, timeout: float | None) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise httpcore.WriteError("the connection was closed")
        self.transport.write(data)
        if self._drained is not None:
            await _within(self._loop, self._drained, timeout, httpcore.WriteTimeout)

    async def response_head(self, read_timeout: float | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return await _within(self._loop, self._head, read_timeout, httpcore.ReadTimeout)

    async def body(self, read_timeout: float | None) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered <= _HIGH_WATER // 4 and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                yield chunk
                continue
            if self.complete:
                return
            if self._error is not None:
                raise self._error
            self._wakeup = self._loop.create_future()
            await _within(self._loop, self._wakeup, read_timeout, httpcore.ReadTimeout)
            self._wakeup = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


async def _within(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], timeout: float | None,
                  error: type[Exception]) -> Any:
    """Await ``future``; after ``timeout`` seconds it fails with ``error`` (no task per wait, unlike wait_for)."""
    if timeout is None or future.done():
        return await future

    def expire() -> None:
        if not future.done():
            future.set_exception(error(f"no answer within {timeout} s"))

    timer = loop.call_later(timeout, expire)
    try:
        return await future
    finally:
        timer.cancel()


class _ResponseStream:
    """The body of one response; closing it hands the connection back to the pool (or closes it)."""

    def __init__(self, pool: KeepAlivePool, key: tuple[bytes, int], connection: _Connection,
                 read_timeout: float | None) -> None:
        self._pool, self._key, self._connection, self._read_timeout = pool, key, connection, read_timeout
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._connection.body(self._read_timeout):
            yield chunk

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._key, self._connection)


class KeepAlivePool:
    """Stands in for ``httpcore.AsyncConnectionPool`` inside ``httpx.AsyncHTTPTransport``."""

    def __init__(self, fallback: Any = None, limits: httpx.Limits = DEFAULT_LIMITS) -> None:
        self._fallback = fallback
        self._idle: dict[tuple[bytes, int], list[_Connection]] = {}
        self._max_idle = limits.max_keepalive_connections or 0
        self._expiry = limits.keepalive_expiry if limits.keepalive_expiry is not None else 5.0
        self._slots = asyncio.Semaphore(limits.max_connections) if limits.max_connections else None

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        if request.url.scheme != b"http" or request.method in _FALLBACK_METHODS:
            return await self._fallback.handle_async_request(request)
        timeouts = request.extensions.get("timeout", {})
        key = (request.url.host, request.url.port or 80)
        connection, status, headers, reason = await self._exchange(
            key, request.method, request.url.target, request.headers, request.stream, timeouts  # type: ignore[arg-type]
        )
        return httpcore.Response(
            status,
            headers=headers,
            content=_ResponseStream(self, key, connection, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    async def request(self, host: bytes, port: int, method: bytes, target: bytes,
                      headers: Iterable[tuple[bytes, bytes]], body: bytes,
                      timeout: float | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One whole exchange without httpx around it: (status, headers, body). Failures raise httpcore's
        exceptions, as through httpx they would raise httpx's namesakes."""
        key = (host, port)
        timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        connection, status, answer_headers, _ = await self._exchange(key, method, target, headers, body, timeouts)
        try:
            content = b"".join([chunk async for chunk in connection.body(timeout)])
        finally:
            self.release(key, connection)
        return status, answer_headers, content

    async def _exchange(self, key: tuple[bytes, int], method: bytes, target: bytes,
                        headers: Iterable[tuple[bytes, bytes]], body: bytes | AsyncIterable[bytes],
                        timeouts: dict[str, float | None]) -> tuple[_Connection, int, list[tuple[bytes, bytes]], bytes]:
        await self._slot(timeouts.get("pool"))
        connection: _Connection | None = None
        try:
            connection = self._idle_connection(key) or await self._connect(key, timeouts.get("connect"))
            await connection.send(method, target, headers, body, timeouts.get("write"))
            status, answer_headers, reason = await connection.response_head(timeouts.get("read"))
        except BaseException:
            if connection is not None:
                connection.close()
            self._free_slot()
            raise
        return connection, status, answer_headers, reason

    async def _slot(self, timeout: float | None) -> None:
        if self._slots is None:
            return
        if not self._slots.locked():
            await self._slots.acquire()  # does not suspend while a slot is free
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout)
        except TimeoutError as error:
            raise httpcore.PoolTimeout("no free connection in the pool") from error

    def _free_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()

    def _idle_connection(self, key: tuple[bytes, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self._expiry:
                return connection
            connection.close()
        return None

    async def _connect(self, key: tuple[bytes, int], timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(loop), key[0].decode("ascii"), key[1]), timeout
            )
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(f"could not connect within {timeout} s") from error
        except OSError as error:
            raise httpcore.ConnectError(str(error)) from error
        return connection

    def release(self, key: tuple[bytes, int], connection: _Connection) -> None:
        self._free_slot()
        if not (connection.complete and connection.reusable) or connection.closed:
            connection.close()
            return
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self._max_idle:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        if self._fallback is not None:
            await self._fallback.aclose()

    async def __aenter__(self) -> KeepAlivePool:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


class KeepAliveTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` with plain-http requests on a ``KeepAlivePool``. Its request method
    is httpx's own, so the OpenTelemetry httpx instrumentation traces it as any other transport."""

    def __init__(self, limits: httpx.Limits = DEFAULT_LIMITS, **kwargs: Any) -> None:
        super().__init__(limits=limits, **kwargs)
        self._pool = KeepAlivePool(self._pool, limits)  # type: ignore[assignment]


def lean_pool_enabled() -> bool:
    """False when ``FLLM_HTTP_CLIENT=httpcore``: httpx's own pool and client for every call."""
    return os.environ.get("FLLM_HTTP_CLIENT", "keepalive").lower() != "httpcore"


def async_client(*, limits: httpx.Limits = DEFAULT_LIMITS, **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for the next hop, on the lean pool unless ``FLLM_HTTP_CLIENT=httpcore``."""
    if not lean_pool_enabled():
        return httpx.AsyncClient(limits=limits, **kwargs)
    return httpx.AsyncClient(transport=KeepAliveTransport(limits=limits), **kwargs)
