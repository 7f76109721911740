"""uvicorn's HTTP protocols (httptools, h11), with the writes of one event-loop step sent together.

uvicorn writes a response's status line and headers, then its body, each straight to the socket:
two sends, two TCP segments (TCP_NODELAY is on), and the caller wakes up twice, for every answer of
every hop. Here writes made in the same loop step are joined and leave in one send when the step
ends, so a response goes out as one segment; nothing waits longer than that step.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """Buffers ``write`` until the current loop step ends; everything else goes to the transport."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(chunk) for chunk in self._pending)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _CoalescingWrites:
    """Mixed in before a uvicorn protocol: its transport buffers the writes of one loop step."""

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(CoalescingTransport(transport, asyncio.get_running_loop()))  # type: ignore[misc]


class CoalescingH11Protocol(_CoalescingWrites, H11Protocol):
    pass


class CoalescingHttpToolsProtocol(_CoalescingWrites, HttpToolsProtocol):
    pass
