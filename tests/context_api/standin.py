"""A local HTTP stand-in for a real code-interpreter pool (``https://<region>.dynamicsessions.io/...``):
it checks what the real service requires of every call (bearer token, api-version, identifier, the
execution body) and records the requests, so the provider's real client code is what gets tested."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from tests.wait import wait_until

POOL_PATH = "/subscriptions/sub-1/resourceGroups/rg-1/sessionPools/pool-1"
API_VERSION = "2024-10-02-preview"
IDENTIFIER = re.compile(r"""[a-zA-Z0-9_|}{\[\]:";'<>?/.,@#$%^&*()\-+=!~`]{4,128}""")


@dataclass
class PoolStandIn:
    token: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # identifier -> "/dir/name" -> bytes
    url: str = ""

    def app(self) -> FastAPI:
        app = FastAPI()
        pool = self

        @app.middleware("http")
        async def check(request: Request, call_next):  # noqa: ANN001, ANN202
            query = dict(request.query_params)
            pool.requests.append({"method": request.method, "path": request.url.path, "query": query,
                                  "authorization": request.headers.get("authorization")})
            if request.headers.get("authorization") != f"Bearer {pool.token}":
                pool.problems.append(f"bad token on {request.method} {request.url.path}")
                return JSONResponse({"error": {"code": "Unauthorized", "message": "no token"}}, 401)
            if query.get("api-version") != API_VERSION:
                pool.problems.append(f"api-version {query.get('api-version')!r}")
                return JSONResponse({"error": {"code": "UnsupportedApiVersion", "message": "api"}}, 400)
            if not IDENTIFIER.fullmatch(query.get("identifier", "")):
                pool.problems.append("identifier")
                return JSONResponse({"error": {"code": "InvalidParameter", "message": "identifier"}}, 400)
            return await call_next(request)

        def folder(identifier: str) -> dict[str, bytes]:
            return pool.files.setdefault(identifier, {})

        @app.post(f"{POOL_PATH}/executions")
        async def execute(request: Request, identifier: str) -> JSONResponse:
            body = await request.json()
            expected = {"codeInputType": "Inline", "executionType": "Synchronous"}
            if {k: body.get(k) for k in expected} != expected or not isinstance(body.get("code"), str) \
                    or not 1 <= int(body.get("timeoutInSeconds", 0)) <= 220:
                pool.problems.append(f"execution body {sorted(body)}")
                return JSONResponse({"error": {"code": "InvalidRequestBody", "message": "body"}}, 400)
            code = body["code"]
            if "sleep" in code:
                await asyncio.sleep(1.0)
            if "crash" in code:
                return JSONResponse({"error": {"code": "InternalServerError", "message": "pool broke"}}, 500)
            if "raise" in code:
                return JSONResponse({"id": "e2", "identifier": identifier, "status": "Failed",
                                     "result": {"stdout": "partial\n", "stderr": "", "executionResult": None,
                                                "executionTimeInMilliseconds": 3},
                                     "error": {"error": {"code": "CodeExecutionFailed",
                                                         "message": "ValueError: bad value"}}})
            folder(identifier)["/result.txt"] = b"from the pool"
            folder(identifier)["/out/chart.png"] = b"\x89PNG"
            return JSONResponse({"id": "e1", "identifier": identifier, "executionType": "Synchronous",
                                 "status": "Succeeded",
                                 "result": {"stdout": "hello\n", "stderr": "", "executionResult": "42",
                                            "executionTimeInMilliseconds": 5}})

        @app.post(f"{POOL_PATH}/files")
        async def upload(identifier: str, file: UploadFile = File(...)) -> JSONResponse:
            folder(identifier)[f"/{file.filename}"] = await file.read()
            return JSONResponse({"name": file.filename, "type": "File"})

        @app.get(f"{POOL_PATH}/files")
        async def listing(identifier: str, path: str = Query("/")) -> JSONResponse:
            prefix = path.rstrip("/") + "/"
            entries: dict[str, dict[str, Any]] = {}
            for full, content in folder(identifier).items():
                if not full.startswith(prefix):
                    continue
                rest = full[len(prefix):]
                name, _, below = rest.partition("/")
                kind = "directory" if below else "file"
                entries[name] = {"name": name, "type": kind, "contentType": "application/octet-stream",
                                 "sizeInBytes": 0 if below else len(content), "lastModifiedAt": "2026-01-01T00:00:00Z"}
            return JSONResponse({"value": list(entries.values())})

        @app.delete(f"{POOL_PATH}/files/{{name}}")
        async def delete(name: str, identifier: str, path: str = Query(...)) -> Response:
            full = f"{path.rstrip('/')}/{name}"
            files = folder(identifier)
            gone = [key for key in files if key == full or key.startswith(full + "/")]
            for key in gone:
                del files[key]
            return Response(status_code=204 if gone else 404)

        @app.get(f"{POOL_PATH}/files/{{name}}/content")
        async def content(name: str, identifier: str, path: str = Query(...)) -> Response:
            data = folder(identifier).get(f"{path.rstrip('/')}/{name}")
            if data is None:
                return JSONResponse({"error": {"code": "FileNotFound", "message": "no file"}}, 404)
            return Response(data, media_type="application/octet-stream")

        return app


@contextmanager
def serve(pool: PoolStandIn) -> Iterator[PoolStandIn]:
    """uvicorn on 127.0.0.1 in a thread of the test process."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(pool.app(), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "the stand-in pool to start")
    pool.url = f"http://127.0.0.1:{sock.getsockname()[1]}{POOL_PATH}"
    try:
        yield pool
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
