"""The lean HTTP/1.1 pool under httpx: reuse, bodies of every framing, and every way a server misbehaves,
against a raw asyncio server on loopback that answers exactly the bytes each test gives it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from services.common.keepalive import KeepAliveTransport, async_client

pytestmark = pytest.mark.anyio
Handler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


class RawServer:
    """Answers each request with ``handler``; counts the connections it accepted."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while (request := await read_request(reader)) is not None:
                self.requests.append(request)
                if not await self.handler(request, reader, writer):
                    break
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()


def answer(body: bytes, status: str = "200 OK", extra: bytes = b"") -> Handler:
    async def handler(_: bytes, __: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: application/json\r\n" + extra
                     + b"content-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        return True
    return handler


def client(base: str, **kwargs: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, transport=KeepAliveTransport(), **kwargs)  # type: ignore[arg-type]


async def test_requests_reuse_one_connection_and_carry_headers_and_body() -> None:
    server = RawServer(answer(b'{"ok": true}', extra=b"x-answer: yes\r\n"))
    async with server as base, client(base) as http:
        for n in range(5):
            response = await http.post(f"/items/{n}?q=1", json={"n": n}, headers={"x-key": "k"})
            assert response.status_code == 200
            assert response.json() == {"ok": True}
            assert response.headers["x-answer"] == "yes"
            assert response.reason_phrase == "OK"
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /items/0?q=1 HTTP/1.1\r\n")
    assert b"x-key: k\r\n" in first.lower()
    assert json.loads(first.split(b"\r\n\r\n", 1)[1]) == {"n": 0}


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    async def close_after_answer(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await answer(b"{}", extra=b"connection: close\r\n")(request, reader, writer)
        return False

    server = RawServer(close_after_answer)
    async with server as base, client(base) as http:
        for _ in range(3):
            assert (await http.get("/")).status_code == 200
    assert server.connections == 3


async def test_chunked_and_large_bodies_arrive_whole() -> None:
    app = FastAPI()
    blob = bytes(range(256)) * 8192  # 2 MiB: more than the pool buffers before it stops reading

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def parts():  # noqa: ANN202
            for start in range(0, len(blob), 65536):
                yield blob[start:start + 65536]
        return StreamingResponse(parts(), media_type="application/octet-stream")

    @app.post("/echo")
    async def echo(body: dict) -> dict:
        return body

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        async with client(base) as http:
            response = await http.get("/stream")
            assert response.headers.get("transfer-encoding") == "chunked"
            assert response.content == blob
            async with http.stream("GET", "/stream") as streamed:
                received = b"".join([part async for part in streamed.aiter_bytes()])
            assert received == blob
            big = {"text": "x" * 1_000_000}
            assert (await http.post("/echo", json=big)).json() == big

            async def upload():  # noqa: ANN202 - a request body of unknown length goes out chunked
                yield b'{"text": "'
                yield b"y" * 300_000
                yield b'"}'
            assert (await http.post("/echo", content=upload(),
                                    headers={"content-type": "application/json"})).json() == {"text": "y" * 300_000}
    finally:
        server.should_exit = True
        await task


async def test_a_refused_connection_is_a_connect_error() -> None:
    server = RawServer(answer(b"{}"))
    async with server as base:
        pass  # closed: nothing listens there any more
    async with client(base) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/")


async def test_a_silent_server_is_a_read_timeout_and_the_connection_is_dropped() -> None:
    async def silent(*_: object) -> bool:
        await asyncio.sleep(5)
        return False

    server = RawServer(silent)
    async with server as base, client(base, timeout=httpx.Timeout(0.2)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/")


async def test_a_server_that_hangs_up_mid_answer_is_a_protocol_error() -> None:
    async def half(_: bytes, __: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"partial")
        await writer.drain()
        return False

    server = RawServer(half)
    async with server as base, client(base) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("/")


async def test_malformed_answers_are_protocol_errors_not_hangs() -> None:
    async def garbage(_: bytes, __: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"this is not HTTP\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)
        return False

    server = RawServer(garbage)
    async with server as base, client(base, timeout=httpx.Timeout(2.0)) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("/")


async def test_an_error_status_is_an_answer_and_the_connection_stays() -> None:
    server = RawServer(answer(b'{"detail": "boom"}', status="503 Service Unavailable"))
    async with server as base, client(base) as http:
        for _ in range(2):
            response = await http.get("/")
            assert response.status_code == 503
            assert response.json() == {"detail": "boom"}
    assert server.connections == 1


async def test_concurrent_requests_get_their_own_connections_and_answers() -> None:
    async def echo_path(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        path = request.split(b" ", 2)[1]
        await asyncio.sleep(0.01)
        body = json.dumps({"path": path.decode()}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        return True

    server = RawServer(echo_path)
    async with server as base, client(base) as http:
        answers = await asyncio.gather(*(http.get(f"/{n}") for n in range(20)))
        assert [a.json()["path"] for a in answers] == [f"/{n}" for n in range(20)]
        assert server.connections <= 20
        again = await asyncio.gather(*(http.get(f"/{n}") for n in range(20)))
        assert all(a.status_code == 200 for a in again)
    assert server.connections <= 40


def test_the_stock_pool_stays_one_switch_away(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLLM_HTTP_CLIENT", "httpcore")
    stock = async_client()
    assert not isinstance(stock._transport, KeepAliveTransport)  # noqa: SLF001
    monkeypatch.delenv("FLLM_HTTP_CLIENT")
    assert isinstance(async_client()._transport, KeepAliveTransport)  # noqa: SLF001


async def test_the_direct_client_reaches_any_origin_with_the_query_merged_and_a_json_body() -> None:
    from services.common.hop_client import DirectClient

    pool_a, pool_b = RawServer(answer(b'{"value": []}')), RawServer(answer(b"{}", "404 Not Found"))
    async with pool_a as first, pool_b as second:
        direct = DirectClient(timeout_s=5)
        try:
            listed = await direct.request("GET", f"{first}/files?api-version=1", params={"identifier": "s 1"})
            created = await direct.request("POST", f"{second}/executions", headers={"authorization": "Bearer t"},
                                           json={"code": "print(1)"})
            again = await direct.request("GET", f"{first}/files")
        finally:
            await direct.aclose()
    assert (listed.status_code, listed.json(), listed.is_success) == (200, {"value": []}, True)
    assert (created.status_code, created.is_success) == (404, False)
    assert again.is_success
    assert pool_a.connections == 1 and pool_b.connections == 1  # each origin's connection is kept and reused
    assert pool_a.requests[0].startswith(b"GET /files?api-version=1&identifier=s+1 HTTP/1.1\r\n")
    assert pool_a.requests[1].startswith(b"GET /files HTTP/1.1\r\n")
    sent = pool_b.requests[0]
    assert b"authorization: Bearer t\r\n" in sent and b"content-type: application/json\r\n" in sent
    assert json.loads(sent.split(b"\r\n\r\n", 1)[1]) == {"code": "print(1)"}


async def test_an_identity_beyond_latin_1_reaches_the_next_hop_whole() -> None:
    from services.common.auth import USER_IDENTITY_HEADER
    from services.common.hop_client import HopClient
    from services.common.models import UnifiedUserIdentity

    identity = UnifiedUserIdentity(name="张伟 Zoë", upn="zhang.wei@例え.jp", user_id="u-1")
    server = RawServer(answer(b"{}"))
    async with server as base:
        hop = HopClient("state-api", base)
        try:
            assert (await hop.request("GET", "/x", identity=identity)).status_code == 200
        finally:
            await hop.aclose()
    head = server.requests[0].split(b"\r\n\r\n", 1)[0].decode("ascii")  # the header stayed ASCII
    (line,) = [line for line in head.split("\r\n") if line.lower().startswith(USER_IDENTITY_HEADER.lower())]
    assert UnifiedUserIdentity.model_validate(json.loads(line.split(":", 1)[1])) == identity
